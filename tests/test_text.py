"""Text as bytes: encoding and its refusals, Debian's fortune files read and split deterministically
without duplicates, the one-hot convolution as table lookups, the n-gram baseline, and a tiny
char-CNN fitting a handful of real quotes."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax import models
from convjax.analysis import visualize
from convjax.data import datasets, text
from convjax.models import text as text_models
from convjax.nn import layers
from convjax.training import baseline
from tests import fitting

HAVE_WORD_LISTS = all(os.path.isfile(os.path.join(text.DICT_DIR, names[0]))
                      for _, names in text.WORD_LISTS.values())
HAVE_FORTUNES = all(text._fortune_files(text.FORTUNES_DIR, files[0])
                    for _, files in text.LANGUAGES.values())
needs_fortunes = pytest.mark.skipif(
    not HAVE_FORTUNES, reason="Debian's fortunes packages are not installed (.ci/setup does it)")


def test_a_text_becomes_its_utf8_bytes_and_back():
  codes = text.encode('Всё течёт', 32)
  assert codes.shape == (32, 1) and codes.dtype == np.uint8
  assert (codes[:17, 0] > 0).all() and (codes[17:] == 0).all()  # 8 Cyrillic letters: 2 bytes each.
  assert text.decode(codes) == 'Всё течёт'


@pytest.mark.parametrize('line, message', [
    ('   ', 'is empty'), ('a\x00b', "control character '\\\\x00'"),
    ('x' * 33, 'is 33 bytes long in UTF-8; this model reads at most 32'),
    ('ééééééééééééééééé', 'is 34 bytes long'), ('caf\udce9', 'is not valid UTF-8')])
def test_bad_text_is_refused_in_one_sentence(line, message):
  with pytest.raises(text.TextError, match=message):
    text.encode(line, 32)


def test_fortune_files_split_on_percent_lines_and_drop_empty_and_huge_entries(tmp_path):
  path = tmp_path / 'quotes'
  path.write_text('First   quote,\n  on two lines.\n%\n%\nSecond.\n%\n' + 'y' * 2000 + '\n%\n')
  assert text.read_fortunes(str(path)) == ['First quote, on two lines.', 'Second.']


def test_a_missing_package_is_named_with_how_to_install_it(tmp_path):
  with pytest.raises(datasets.DatasetNotFoundError,
                     match='no fortune files of fortunes, fortunes-de.*sudo apt-get install '
                           'fortunes fortunes-de'):
    text.labelled_texts('fortunes_language', str(tmp_path))


def test_a_text_in_two_files_is_kept_once_with_its_first_label(tmp_path):
  for language, (_, files) in text.LANGUAGES.items():
    folder = tmp_path / files[0]
    if files[0] in ('de', 'es', 'it', 'pl', 'ru', 'cs', 'eo', 'bg', 'ga'):
      folder.mkdir()
      folder = folder / 'quotes'
    folder.write_text(f'Only in {language}.\n%\nShared everywhere.\n%\n')
  pairs, names = text.labelled_texts('fortunes_language', str(tmp_path))
  assert names == datasets.get_info('fortunes_language').label_names
  shared = [label for t, label in pairs if t == 'Shared everywhere.']
  assert shared == [0] and len(pairs) == 1 + len(text.LANGUAGES)


def test_the_test_split_is_a_tenth_by_hash_whatever_the_order():
  texts = [f'quote number {i}' for i in range(5000)]
  chosen = {t for t in texts if text.is_test(t)}
  assert 400 < len(chosen) < 600
  assert chosen == {t for t in reversed(texts) if text.is_test(t)}


@needs_fortunes
@pytest.mark.parametrize('name', ['fortunes_language', 'fortunes_topic', pytest.param(
    'words_language', marks=[pytest.mark.slow, pytest.mark.skipif(
        not HAVE_WORD_LISTS, reason="Debian's word lists are not installed")])])
@pytest.mark.slow  # Reads the real fortune files.
def test_real_splits_are_disjoint_deduplicated_and_cover_every_class(name):
  dataset = datasets.load(name)
  info = dataset.info
  train = {bytes(x) for x in dataset.train.images[..., 0]}
  test = {bytes(x) for x in dataset.test.images[..., 0]}
  assert dataset.train.images.shape[1:] == info.image_shape
  assert len(test) > 0.08 * (len(train) + len(test))
  pairs, _ = text.labelled_words() if name == 'words_language' else text.labelled_texts(name)
  assert len(dataset.train) + len(dataset.test) == len(pairs) == len({t for t, _ in pairs})
  # Distinct texts may share their first 256 bytes; whole texts never cross the split.
  assert not {t for t, _ in pairs if text.is_test(t)} & {t for t, _ in pairs
                                                         if not text.is_test(t)}
  assert len(train & test) < 0.01 * len(test)
  assert set(dataset.test.labels) == set(range(info.num_classes))


def test_a_convolution_of_one_hot_codes_is_a_sum_of_lookups():
  codes = jax.random.randint(jax.random.PRNGKey(0), (2, 20), 0, 256)
  module = text_models.OneHotConv(features=6, kernel_size=5)
  variables = module.init(jax.random.PRNGKey(1), codes)
  conv = layers.conv(6, 5, ndim=1, padding='VALID')
  one_hot = jax.nn.one_hot(codes, 256)
  expected = conv.apply(variables, one_hot)
  np.testing.assert_allclose(module.apply(variables, codes), expected, atol=1e-5)


def test_the_baseline_reads_the_same_bytes_and_is_refused_for_images():
  def split(n, seed):
    rng = np.random.default_rng(seed)
    words = [('the and of ', 0), ('der und die ', 1)]
    pairs = [words[i % 2] for i in range(n)]
    texts = [(w * rng.integers(1, 4), label) for w, label in pairs]
    return datasets.Split(np.stack([text.encode(t, 64) for t, _ in texts]),
                          np.array([label for _, label in texts], np.int32))
  data = datasets.Dataset(datasets.get_info('fortunes_language'), split(40, 0), split(20, 1))
  assert baseline.char_ngram_accuracy(data) == 1.0
  with pytest.raises(ValueError, match="baseline 'char_ngram' classifies text; 'mnist' holds image"):
    baseline.check('char_ngram', 'mnist')
  with pytest.raises(ValueError, match="unknown baseline 'bow'"):
    baseline.check('bow', 'fortunes_topic')


@needs_fortunes
@pytest.mark.slow  # Trains a model.
def test_a_tiny_char_cnn_fits_a_handful_of_real_quotes():
  dataset = datasets.load('fortunes_language')
  pick = np.concatenate([np.flatnonzero(dataset.train.labels == c)[:2] for c in range(4)])
  model = models.create('char_cnn', num_classes=4, features=16, hidden=32, dropout_rate=0.0)
  assert fitting.fitted_accuracy(model, dataset.info, dataset.train.images[pick],
                                 dataset.train.labels[pick], 3e-3, 40) == 1.0


def test_byte_codes_survive_normalisation_exactly():
  codes = jnp.arange(256, dtype=jnp.uint8)[None, :, None]
  info = datasets.get_info('fortunes_language')
  for dtype in (jnp.float32, jnp.bfloat16):
    restored = text_models.byte_codes(datasets.normalize(codes, info.mean, info.std, dtype))
    np.testing.assert_array_equal(restored[0], np.arange(256))


def test_a_filter_tuned_to_a_string_shows_that_string():
  weights = np.zeros((3, 256, 2), np.float32)
  for tap, byte in enumerate(b'the'):
    weights[tap, byte, 0] = 1.0
  weights[:, 0, 1] = 1.0  # Padding bytes: not printable.
  assert visualize.preferred_strings(weights) == ['the', '···']
  model = models.create('kim_cnn', num_classes=3, embedding=4, filters=5)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 1)))
  path, folded = visualize.byte_filters(model, variables, (32, 1))
  table, kernel = (np.asarray(variables['params'][name][key])
                   for name, key in (('Embed_0', 'embedding'), ('Conv_0', 'kernel')))
  assert path == 'Conv_0' and folded.shape == (3, 256, 5)
  np.testing.assert_allclose(folded[1, 65], table[65] @ kernel[1], rtol=1e-5)


def test_word_lists_in_either_encoding_leave_out_possessives_and_ambiguous_words(tmp_path):
  for language, (_, names) in text.WORD_LISTS.items():
    for name in names:
      words = [f'{language}word', "cat's", 'radio', 'smörgås' if language == 'sv' else 'x' * 40]
      data = '\n'.join(words).encode('latin-1' if language == 'sv' else 'utf-8')
      (tmp_path / name).write_bytes(data)
  pairs, names = text.labelled_words(str(tmp_path))
  assert names == datasets.get_info('words_language').label_names
  words = {w for w, _ in pairs}
  assert 'radio' not in words and "cat's" not in words  # In every list; a possessive.
  assert ('svword', names.index('sv')) in pairs and ('enword', 0) in pairs
  assert ('smörgås', names.index('sv')) in pairs  # Read from ISO-8859-1.
  assert not any(len(w.encode()) > text.MAX_WORD_BYTES for w in words)


def test_missing_word_lists_name_their_packages(tmp_path):
  with pytest.raises(datasets.DatasetNotFoundError, match='no word lists of wamerican, wbritish'):
    text.labelled_words(str(tmp_path))


@pytest.mark.parametrize('name', ['ag_news_subset', 'imdb_reviews'])
def test_tfds_text_datasets_load_as_bytes_at_the_papers_length(name):
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=5):
    dataset = datasets.load(name)
  assert dataset.train.images.shape == (5, 1014, 1) and dataset.train.images.dtype == np.uint8
  assert set(dataset.test.labels) <= set(range(dataset.info.num_classes))
  assert text.decode(dataset.train.images[0])  # Mock text, read back.


@pytest.mark.parametrize('model, dataset, message', [
    ('char_cnn', 'spoken_digit', "model 'char_cnn' reads text but dataset 'spoken_digit' holds "
                                 'audio; models for it: logmel_cnn, m11, m18, m3, m5'),
    ('m5', 'fortunes_topic', "model 'm5' reads audio but dataset 'fortunes_topic' holds text; "
                             'models for it: char_cnn, kim_cnn'),
    ('lenet5', 'moving_fashion_mnist', "reads image but dataset 'moving_fashion_mnist' holds "
                                       'video; models for it: c3d_small, framewise_2d'),
    ('kim_cnn', 'fortunes_topic', None)])
def test_a_model_must_read_what_the_dataset_holds(model, dataset, message):
  from configs import default
  from convjax.training import config as config_lib
  config = default.get_config()
  config.model, config.dataset = model, dataset
  if message is None:
    config_lib.validate(config, num_devices=1)
    return
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config, num_devices=1)
