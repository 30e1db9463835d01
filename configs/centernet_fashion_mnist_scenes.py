"""CenterNet on a ResNet-18 feature pyramid, finding Fashion-MNIST items in 128x128 scenes.

  python -m experiments.train --config=configs/centernet_fashion_mnist_scenes.py \
      --workdir=/tmp/centernet

The backbone's maps at strides 4, 8, 16 and 32 (ImageNet stem) feed the pyramid; CenterNet reads
its stride-4 level, 32x32 for a 128x128 scene. Scored by pycocotools' COCO AP on the 1,000 fixed
test scenes.

The runs so far, alone on 2 Intel Xeon cores (Emerald Rapids), test AP / AP50 (flip test):
- float32, 13 epochs, evaluated every 2: 0.5594 / 0.7746 in 1,748 s; at learning rate 2e-3 for
  12 epochs 0.4632 / 0.6909 in 1,705 s;
- bfloat16, 19 epochs, every 4 (after the max pools' bfloat16 fix, before batch norm's):
  0.6082 / 0.8183 (0.6352 / 0.8315) in 1,511 s, at 158 scenes/s against float32's 107. AP was
  0.4046 after 4 epochs, 0.4826 after 8 and 0.5630 after 12;
- 22 epochs with batch norm in bfloat16 too, at 177 scenes/s: 0.6327 / 0.8323 (0.6545 /
  0.8419), AP75 0.7516, in 1,564 s. AP was 0.3886, 0.4815, 0.5383, 0.6050 and 0.6289 after 4, 8,
  12, 16 and 20 epochs;
- 28 epochs, at 212 scenes/s once the scripts ran on TCMalloc (PERFORMANCE.md): 0.6683 /
  0.8555 (0.6887 / 0.8672), AP75 0.7811, in 1,674 s (1,588 s of training). AP was 0.3843,
  0.4644, 0.4496, 0.5948, 0.5862 and 0.6628 after 4, 8, 12, 16, 20 and 24 epochs;
- the same at learning rate 6e-3: 0.6846 / 0.8696 (0.7013 / 0.8772), in 1,648 s. AP was
  0.4166, 0.5086, 0.4893, 0.5890, 0.6311 and 0.6678 after 4 to 24 epochs;
- this config, at 8e-3: 0.6904 / 0.8753 (0.7088 / 0.8842), AP75 0.8080, in 1,661 s. AP was
  0.4004, 0.4824, 0.5119, 0.5988, 0.6280 and 0.6764 after 4 to 24 epochs;
- at 1e-2: 0.6918 / 0.8753 (0.7102 / 0.8871), the same as 8e-3 within a seed's spread, in
  1,839 s on a slow hour (193 scenes/s): 8e-3 stays;
- batch 64 at 1.4e-2 for 30 epochs (218 scenes/s, against 195 for batch 32 that hour): 0.6555 /
  0.8525 (0.6785 / 0.8628) in 1,756 s. AP was 0.5851 after 16 epochs against this config's
  0.5988: half the steps cost more than the extra epochs give;
- this config with a moving average of the weights (--config.ema_decay=0.999): the plain AP the
  same 0.6904 and the average's 0.6937, in 1,741 s. The average leads by far mid-run (AP 0.6508
  against 0.5988 after 16 epochs, 0.6893 against 0.6764 after 24), but the cosine schedule's end
  all but catches it up, so the config reports the plain weights. The same at 1.2e-2: plain
  0.6922 / 0.8786 (0.7112 / 0.8849), the average 0.6953, in 1,758 s. Evaluating the average too
  made each run's evaluations take 121 s in all, against 73;
- this config once AdamW's update ran in the extension (convjax/training/fused_adamw.py, which
  rounds differently from XLA's program of optax's): 0.6879 / 0.8709 (0.7048 / 0.8774) in 1,595
  s at 221 scenes/s. AP was 0.3858, 0.5047, 0.5311, 0.6204, 0.6445 and 0.6647 after 4 to 24
  epochs.
More epochs within the 30 minutes are what bfloat16 and TCMalloc buy; what limits AP is telling
garments apart (docs/detection.md).
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'resnet18'
  config.dataset = 'fashion_mnist_scenes'
  config.model_kwargs.widths = (32, 64, 128, 256)  # Half of ResNet-18's widths: 2 CPU cores.
  config.detection.pyramid_width = 64
  config.detection.head_width = 64
  config.augment.flip = True
  config.augment.scene_scale = (0.8, 1.25)
  config.batch_size = 32
  config.eval_batch_size = 100
  config.num_epochs = 28.0
  config.optimizer = 'adamw'
  config.learning_rate = 8e-3
  config.weight_decay = 1e-4
  config.warmup_epochs = 0.25
  config.lr_schedule = 'cosine'
  config.tta_flip = True  # CenterNet's flip test, reported beside the plain AP.
  config.eval_every_steps = 1500  # Every 4 epochs of 375 steps.
  # bfloat16 activations: oneDNN's AMX and AVX-512 BF16 kernels buy the epochs that raise AP
  # within the 30 minutes (see the docstring); float32 parameters and loss.
  config.half_precision = True
  return config
