"""convjax: convolutional networks in JAX/Flax, as pure functions trained data-parallel.

The package is layered; a part imports only the parts below it (tests/test_layering.py):

  errors, parallel   bad-input errors; everything that knows about devices
  nn                 layers, convolution from first principles, convolution backends (oneDNN, XLA)
  models             the architecture families, their registry, torchvision weight import
  data               the dataset catalogue, input pipelines, augmentation, batch sampling
  training           config, run assembly, steps, loop, optimiser, checkpoints, workdirs, metrics
  analysis, deploy   inspecting and comparing runs; exporting and classifying with them

Importing convjax has no side effects. On a CPU, call `convjax.parallel.use_cpu_cores()` before
JAX computes anything to train data-parallel over every core; the experiment scripts do.
"""
