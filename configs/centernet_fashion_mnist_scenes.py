"""CenterNet on a ResNet-18 feature pyramid, finding Fashion-MNIST items in 128x128 scenes.

  python -m experiments.train --config=configs/centernet_fashion_mnist_scenes.py \
      --workdir=/tmp/centernet

The backbone's maps at strides 4, 8, 16 and 32 (ImageNet stem) feed the pyramid; CenterNet reads
its stride-4 level, 32x32 for a 128x128 scene. Scored by pycocotools' COCO AP on the 1,000 fixed
test scenes.
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
  config.num_epochs = 13.0
  config.optimizer = 'adamw'
  config.learning_rate = 4e-3
  config.weight_decay = 1e-4
  config.warmup_epochs = 0.25
  config.lr_schedule = 'cosine'
  config.tta_flip = True  # CenterNet's flip test, reported beside the plain AP.
  config.eval_every_steps = 750  # Every 2 epochs of 375 steps.
  return config
