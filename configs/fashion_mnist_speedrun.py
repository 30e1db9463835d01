"""The Fashion-MNIST speed run: 0.94 test accuracy in under 10 minutes of wall time on 2 CPU cores.

  python -m experiments.train --config=configs/fashion_mnist_speedrun.py \
      --workdir=workdirs/fashion_mnist_speedrun

SpeedNet (convjax/models/speednet.py, which gives its rationale) under the speed-run recipe:
a large batch on a one-cycle schedule with Nesterov momentum, label smoothing, an EMA of the
weights, random 2-pixel translations and flips, and flip test-time augmentation. Wall time
counts everything: start-up, loading the data, compiling, training and every evaluation.
Results on 2 Xeon cores, deterministic from run to run: test accuracy 0.9399, flip TTA 0.9431,
EMA 0.9385. On 2026-11-22, with an evaluation every 3 epochs: 602.6 s of wall time (559.4 s of
training steps at 1,284 images/s). On 2026-11-30, evaluating once at the end, on a machine running
6% slower: 617.5 s (594.7 s of training at 1,208 images/s; the other 23 s start-up, compilation and
the one evaluation). Not yet the target: 0.94 plain in under 600 s. README.md ("Results on
Fashion-MNIST") keeps the table.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'speednet'
  config.dataset = 'fashion_mnist'
  config.batch_size = 512
  config.num_epochs = 12.0
  config.optimizer = 'nesterov'
  config.momentum = 0.9
  config.learning_rate = 0.4
  config.weight_decay = 5e-4
  config.lr_schedule = 'onecycle'
  config.onecycle_pct_start = 0.25
  config.label_smoothing = 0.2
  config.ema_decay = 0.99
  config.augment.crop_padding = 2
  config.augment.flip = True
  config.tta_flip = True
  # One evaluation, at the end: each costs ~20 s (plain, mirrored and EMA logits), 3% of the budget.
  config.eval_every_steps = 117 * 12
  config.checkpoint_every_steps = 117 * 3
  return config
