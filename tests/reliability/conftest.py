"""Shared by the reliability suite: one compilation cache, and one uninterrupted reference run
that every interrupted run must end up equal to."""
import shutil

import pytest

from tests.reliability import harness


@pytest.fixture(scope='session')
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('jax_cache'))


@pytest.fixture(scope='session')
def reference(tmp_path_factory, cache_dir):
  """The workdir of a straight, uninterrupted run of harness.BASE."""
  workdir = str(tmp_path_factory.mktemp('reference') / 'run')
  result = harness.run(workdir, cache_dir=cache_dir)
  assert result.returncode == 0, result.stderr
  return workdir


@pytest.fixture
def reference_copy(reference, tmp_path):
  """A private copy of the reference workdir, free to damage."""
  workdir = str(tmp_path / 'copy')
  shutil.copytree(reference, workdir)
  return workdir
