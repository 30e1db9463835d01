"""Serialises a workdir's inference function, weights included, with jax.export.

  python -m experiments.export --workdir=DIR --output=model.jaxexport [--platforms=cpu,cuda]

The artifact maps uint8 images [b, h, w, c] (any batch b; h, w, c the model's input, sized as
experiments.predict sizes them) to float32 logits [b, classes]. JAX alone loads it:

  import jax
  with open('model.jaxexport', 'rb') as f:
    logits = jax.export.deserialize(bytearray(f.read())).call(images)

A workdir without a checkpoint is refused in one sentence and nothing is written.
"""
from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run, or experiments.convert output.')
_OUTPUT = flags.DEFINE_string('output', None, 'The artifact to write.')
_PLATFORMS = flags.DEFINE_list('platforms', ['cpu'], 'Platforms the artifact runs on.')
flags.mark_flags_as_required(['workdir', 'output'])


def main(argv):
  del argv
  import os
  from convjax.deploy import export
  from convjax.training import saved_run
  saved = saved_run.load_model(_WORKDIR.value)
  blob = export.export_model(saved, _PLATFORMS.value).serialize()
  temporary = _OUTPUT.value + '.tmp'
  with open(temporary, 'wb') as f:
    f.write(blob)
  os.replace(temporary, _OUTPUT.value)  # A kill leaves no half-written artifact.
  height, width, channels = saved.input_shape
  print(f'wrote {_OUTPUT.value} ({len(blob):,} bytes): {saved.config.model} at step {saved.step}, '
        f'uint8 [b, {height}, {width}, {channels}] -> logits, for {",".join(_PLATFORMS.value)}')


if __name__ == '__main__':
  cli.run(main)
