"""LeNet-5 on Fashion-MNIST in the least wall time that still reaches 90% test accuracy (2 CPU cores).

  python -m experiments.train --config=configs/lenet5_fashion_mnist_fast.py \
      --workdir=workdirs/lenet5_fashion_mnist_fast

The main job's recipe, cut to what 90% needs: fewer epochs at a larger batch and a higher peak
learning rate, and evaluation and checkpointing only at the end. Like the main job it runs on one
device: LeNet-5's step is too small to gain from splitting 2 cores (PERFORMANCE.md). Result: PERFORMANCE.md.
"""
from configs import lenet5_fashion_mnist


def get_config():
  config = lenet5_fashion_mnist.get_config()
  config.batch_size = 256
  config.num_epochs = 7.0
  config.learning_rate = 4e-3
  config.warmup_epochs = 0.5
  config.eval_every_steps = 10 ** 9  # Only the final evaluation.
  config.checkpoint_every_steps = 10 ** 9  # Only the final checkpoint.
  return config
