"""The README's comparison: every model on Fashion-MNIST under one schedule and a time budget.

  python -m experiments.compare --config=configs/compare_fashion_mnist.py \
      --models=lenet5,resnet20,vgg11_bn --workdir=workdirs/compare_fashion_mnist --budget_seconds=180

Adam 1e-3 with a 10-epoch cosine schedule, batch 96, no augmentation, evaluation on the full
test set every 25 steps (so slow models still draw a curve). With --budget_seconds, each model
trains for at most that many seconds of step time, and the schedule is cut where it stops.
"""
from configs import default


def get_config():
  # Dataset, batch, epochs, optimiser and schedule are default.py's: Fashion-MNIST, batch 96,
  # 10 epochs, Adam 1e-3, cosine.
  config = default.get_config()
  config.eval_every_steps = 25
  config.log_every_steps = 25
  return config
