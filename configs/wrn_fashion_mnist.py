"""Wide ResNets and PreAct-ResNet-18 on Fashion-MNIST with the full recipe: the benchmark's best
rows (Fashion-MNIST's README: WRN-40-4 0.967, WRN-28-10 + random erasing 0.963).

  python -m experiments.train --config=configs/wrn_fashion_mnist.py \
      --workdir=workdirs/wrn16_8_fashion_mnist
  # the others: --config.model=wrn40_4 | wrn28_10, or --config.model=preact_resnet18
  #   --config.model_kwargs.dropout_rate=0 (He et al.'s, without the WRN dropout)

WRN-16-8 (10,961,370 parameters on 28x28x1 inputs) by default. The recipe is convjax's ResNet-20
recipe (configs/resnet20_fashion_mnist.py: Nesterov SGD 0.1 on a cosine schedule with a one-
epoch warm-up, weight decay 5e-4, label smoothing 0.1, 2-pixel translations, flips, random
erasing on a quarter of the images, an EMA of the weights, flip test-time augmentation, bfloat16
activations) with Zagoruyko & Komodakis's dropout of 0.3 between each block's convolutions and
60 epochs (the paper's 200 were for CIFAR at batch 128).

Cost, measured in bfloat16 as the config runs (`python -m experiments.benchmark
--models=preact_resnet18,wrn16_8 --batch_size=128 --mode=train --input_shape=28,28,1
--half_precision`, 2 Xeon cores, 2026-12-07): PreAct-ResNet-18 trains 247 images/s and WRN-16-8
166, so 60 epochs take about 4 and 6 hours there (in float32, 2026-12-05: 87.7 and 42.8 images/s,
11 and 23 hours). On a GPU it is minutes.

Measured (benchmarks/results/fashion_mnist.csv): PreAct-ResNet-18 without dropout for 30 epochs
(`--config.model=preact_resnet18 --config.model_kwargs.dropout_rate=0 --config.num_epochs=30`,
2 AMD EPYC Zen 5 cores, 2026-12-07) reached test accuracy 0.9546, EMA 0.9538, flip TTA 0.9548,
in 8,615 s of wall time with a 16-minute pause for a benchmark in it: about 2 hours at the 250
images/s it trained at. Every 5 epochs, plain / TTA / EMA: 0.912 / 0.912 / 0.931, 0.925 / 0.927 /
0.938, 0.939 / 0.940 / 0.946, 0.943 / 0.946 / 0.950, 0.951 / 0.953 / 0.953, then the final.
"""
from configs import resnet20_fashion_mnist

STEPS_PER_EPOCH = resnet20_fashion_mnist.STEPS_PER_EPOCH


def get_config():
  config = resnet20_fashion_mnist.get_config()
  config.model = 'wrn16_8'
  config.model_kwargs.dropout_rate = 0.3
  config.num_epochs = 60.0
  config.eval_every_steps = STEPS_PER_EPOCH * 2
  config.checkpoint_every_steps = STEPS_PER_EPOCH // 2  # Hours per run: lose little to a stop.
  return config
