"""A workdir's inference function, weights included, as a jax.export artifact that JAX alone loads.

  exported = export.export_model(saved_run.load_model(workdir), platforms=('cpu',))
  blob = exported.serialize()
  # Elsewhere, without convjax:
  logits = jax.export.deserialize(blob).call(images)  # uint8 [b, h, w, c] -> float32 [b, classes]

The function takes uint8 images already sized for the model (convjax.deploy.inference.read_image does
that) with a symbolic batch dimension, normalises them with the dataset's statistics and returns
the logits. Convolutions are lowered through XLA's own ops while exporting, never convjax's oneDNN
extension, whose custom calls a bare JAX could not run, and which no GPU has.
"""
from typing import Sequence

import jax
import jax.numpy as jnp

from convjax import errors
from convjax.nn import conv_backend
from convjax.training import saved_run

PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')


def export_model(saved: saved_run.SavedModel, platforms: Sequence[str] = ('cpu',)
                 ) -> jax.export.Exported:
  """uint8 images [b, h, w, c] (b symbolic) -> logits float32 [b, classes], weights inside."""
  platforms = [p for p in platforms if p]  # --platforms=cpu, leaves an empty name.
  if not platforms:
    raise errors.InvalidValueError('no platform given; name at least one of: '
                                   f"{', '.join(PLATFORMS)}")
  unknown = [p for p in platforms if p not in PLATFORMS]
  if unknown:
    raise errors.InvalidValueError(f"unknown platform '{unknown[0]}'; platforms are: "
                                   f"{', '.join(PLATFORMS)}")
  forward = jax.jit(saved.apply)  # Normalises inside: the artifact takes uint8 pixels.
  height, width, channels = saved.input_shape
  images = jax.ShapeDtypeStruct(jax.export.symbolic_shape(f'b, {height}, {width}, {channels}'),
                                jnp.uint8)
  previous = conv_backend.backend_setting()
  conv_backend.use_backend('xla')
  try:
    return jax.export.export(forward, platforms=tuple(platforms))(images)
  finally:
    conv_backend.use_backend(*previous)
