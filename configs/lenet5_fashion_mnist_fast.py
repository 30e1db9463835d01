"""LeNet-5 on Fashion-MNIST in the least wall time that still reaches 90% test accuracy (2 CPU cores).

  python -m experiments.train --config=configs/lenet5_fashion_mnist_fast.py \
      --workdir=workdirs/lenet5_fashion_mnist_fast

Plain Adam, cut to what 90% needs: 7 epochs at batch 256 and a peak learning rate of 4e-3 on a
cosine schedule, and evaluation and checkpointing only at the end. Like the main job it runs on
one device: LeNet-5's step is too small to gain from splitting 2 cores (PERFORMANCE.md).
Result: PERFORMANCE.md.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'lenet5'
  config.dataset = 'fashion_mnist'
  config.batch_size = 256
  config.num_epochs = 7.0
  config.optimizer = 'adam'
  config.learning_rate = 4e-3
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 0.5
  config.num_devices = 1
  config.eval_every_steps = default.AT_THE_END
  config.checkpoint_every_steps = default.AT_THE_END
  return config
