"""torchvision's ImageNet ResNet-18 fine-tuned on Fashion-MNIST.

  python -m experiments.train --config=configs/finetune_resnet18_fashion_mnist.py \
      --workdir=workdirs/finetune_resnet18 --config.init_from=resnet18-f37072fd.pth

It needs the real weights, which cannot be downloaded here: torchvision's ImageNet file
resnet18-f37072fd.pth (ResNet18_Weights.IMAGENET1K_V1), which
`torchvision.models.resnet18(weights='DEFAULT')` saves under ~/.cache/torch/hub/checkpoints/
(reading .pth needs torch; a .safetensors copy needs only NumPy). init_from defaults to that
cache path.

What the ImageNet weights need on 28x28 grayscale images (convjax/training/finetune.py):
  - image_size=64 (resized once, in memory) and small_inputs=False keep ResNet-18's ImageNet
    layers, the 7x7/2 stem and 3x3/2 max pool that the weights fit; 64x64 reaches layer4 as 2x2;
  - the stem's RGB kernel is summed over its colour channels for one-channel input;
  - the 1000-class fc is replaced by a fresh 10-class classifier (reinit_head, automatic).
Everything trains, the backbone at a tenth of the head's learning rate (backbone_lr_scale);
--config.freeze=backbone trains the classifier alone on frozen ImageNet features instead.

Smoke test, with torchvision's random initialisation in place of the ImageNet weights, so the
figure says that the path runs and learns, not what pretraining gives. On a file written by
  python -c "import torch, torchvision; torch.save(torchvision.models.resnet18().state_dict(),
             'resnet18_random.pth')"
and --config.init_from=resnet18_random.pth, the 3 epochs reached test accuracy 0.8827 (flip TTA
0.8855; 0.8600 after epoch 1, 0.8784 after epoch 2) in 1,582 s of wall time at 126 training
images/s (2 Xeon cores, 2026-11-30; a test run shared the cores for part of it).
"""
import os

from configs import default

TORCH_HUB_FILE = os.path.join('~', '.cache', 'torch', 'hub', 'checkpoints', 'resnet18-f37072fd.pth')


def get_config():
  config = default.get_config()
  config.model = 'resnet18'
  config.dataset = 'fashion_mnist'
  config.image_size = 64
  config.small_inputs = False
  config.init_from = os.path.expanduser(TORCH_HUB_FILE)
  config.backbone_lr_scale = 0.1
  config.batch_size = 96
  config.num_epochs = 3.0
  config.optimizer = 'nesterov'
  config.momentum = 0.9
  config.learning_rate = 0.01
  config.weight_decay = 1e-4
  config.lr_schedule = 'cosine'
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.tta_flip = True
  return config
