"""CenterNet on a ResNet-50 feature pyramid for COCO 2017, for a GPU with internet-prepared data.

  python -m experiments.train --config=configs/centernet_resnet50_coco.py \
      --workdir=workdirs/centernet_coco --config.init_from=resnet50-11ad3fa6.pth

init_from: torchvision's ImageNet weights of ResNet-50 (IMAGENET1K_V2, `.pth` or `.safetensors`)
start the backbone, as every published detector starts from ImageNet; the pyramid and heads start
at random. TFDS's coco/2017 must be prepared (its builder needs TensorFlow; convjax does not).
The same config trains on PASCAL VOC 2007 with --config.dataset=voc/2007.

The recipe is CenterNet's (Zhou et al. 2019, section 5): 512x512 inputs, random scaling of 0.6 to
1.3 with a random crop, horizontal flips, Adam at 5e-4 for a batch of 128 (scaled linearly here),
with our FPN (256 channels, Lin et al. 2017) in place of its deconvolution upsampling. The paper
trains 140 epochs; 70 halves it. Published anchors on COCO val, single scale: CenterNet
ResNet-18 28.1 AP (and DLA-34 37.4); FCOS R-50-FPN 37.1 AP (38.7 with its improvements). This
config has not been run here (no GPU, no COCO): it has no result of its own yet.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'resnet50'
  config.dataset = 'coco/2017'
  config.image_size = 512
  config.detection.pyramid_width = 256
  config.detection.head_width = 128
  config.augment.flip = True
  config.augment.scene_scale = (0.6, 1.3)
  config.batch_size = 64
  config.eval_batch_size = 64
  config.num_epochs = 70.0
  config.optimizer = 'adamw'
  config.learning_rate = 2.5e-4  # CenterNet's 5e-4 for a batch of 128, scaled to 64.
  config.weight_decay = 1e-4
  config.warmup_epochs = 1.0
  config.lr_schedule = 'cosine'
  config.half_precision = True
  config.input_workers = 16
  config.eval_every_steps = 18_480  # Every 10 epochs of 1,848 steps.
  config.checkpoint_every_steps = 1_848
  return config
