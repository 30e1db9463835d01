"""`python -m experiments.train ...` that SIGKILLs itself while writing one checkpoint.

  python tests/reliability/crash_while_saving.py STEP MOMENT [train flags...]

MOMENT 'writing': just after Orbax has made the checkpoint's temporary directory, before the
arrays are in it. 'committing': with every array written, just before the rename that commits
the checkpoint. Either way the process dies as a power cut would take it: no cleanup runs.
"""
import os
import runpy
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from orbax.checkpoint._src.path import atomicity  # pylint: disable=g-import-not-at-top


def main():
  step, moment = int(sys.argv[1]), sys.argv[2]
  sys.argv = ['experiments.train'] + sys.argv[3:]
  name = {'writing': 'create', 'committing': 'finalize'}[moment]
  original = getattr(atomicity.AtomicRenameTemporaryPath, name)

  async def die_at_step(self, *args, **kwargs):
    if os.path.basename(str(self.get_final())) == str(step):
      if moment == 'writing':
        await original(self, *args, **kwargs)
      os.kill(os.getpid(), signal.SIGKILL)
    return await original(self, *args, **kwargs)

  setattr(atomicity.AtomicRenameTemporaryPath, name, die_at_step)
  runpy.run_module('experiments.train', run_name='__main__')


if __name__ == '__main__':
  main()
