"""Defaults for every config field; experiment configs import this and change what differs.

  python -m experiments.train --config=configs/default.py --workdir=/tmp/run \
      --config.model=lenet5 --config.dataset=digits --config.image_size=28
"""
import ml_collections
from ml_collections import config_dict

# An interval (eval_every_steps, checkpoint_every_steps) longer than any run: the only evaluation
# or checkpoint is the one every run makes at its end.
AT_THE_END = 10 ** 9


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # Model: a registry name (convjax.models.list_models()).
  config.model = 'lenet5'
  config.num_classes = config_dict.placeholder(int)  # None: the dataset's number of classes.
  config.half_precision = False  # bfloat16 activations; parameters and optimiser stay float32.
  # ImageNet models' small-image stem (models.SMALL_INPUT_SIZE): None picks it for inputs below
  # 64x64; True or False forces it.
  config.small_inputs = config_dict.placeholder(bool)
  # > 0 turns on GoogLeNet's auxiliary classifiers and weights their loss (the paper: 0.3).
  config.aux_loss_weight = 0.0
  # Other fields of the model's Flax module, passed to models.create: for example
  # --config.model_kwargs.normalization=group or --config.model_kwargs.dropout_rate=0.2.
  # `python -m experiments.summary --model=NAME` lists a model's fields. Part of a checkpoint's
  # identity: a run resumes only with the kwargs it started with.
  config.model_kwargs = ml_collections.ConfigDict()

  # Data: a catalogue name (convjax.data.datasets.CATALOGUE documents each one's preprocessing).
  # In memory: digits, mnist, fashion_mnist, kmnist, cifar10, cifar100, svhn_cropped.
  # Streamed: imagenette, imagenet2012. Audio: spoken_digit (data_dir: a folder of FSDD's WAV files).
  # Video: moving_fashion_mnist (made from fashion_mnist). Text: fortunes_language, fortunes_topic
  # (Debian's fortune files; data_dir: another folder holding them).
  config.dataset = 'fashion_mnist'
  config.data_dir = config_dict.placeholder(str)  # IDX files, or TFDS's data_dir.
  config.data_source = 'auto'  # 'auto' (local IDX files, else TFDS), 'idx' or 'tfds'.
  # Text only: 'char_ngram' also trains a character n-gram logistic regression on the same split
  # and reports its test accuracy beside the net's (convjax/training/baseline.py); '' for none.
  config.baseline = ''
  # How the dataset divides into train and test: 'default' is its standard split; spoken_digit
  # also takes 'speaker:NAME', which tests on one speaker and trains on the other five.
  config.data_split = 'default'
  config.download = False  # Let TFDS download a missing dataset (needs internet).
  config.manual_dir = config_dict.placeholder(str)  # imagenet2012: the downloaded ILSVRC tars.
  # In-memory datasets: resize both splits once, when set. Streamed ones: the crop size (224).
  config.image_size = config_dict.placeholder(int)
  config.eval_crop_ratio = 0.875  # Streamed evaluation: resize to image_size / this, crop centre.
  config.input_workers = 8  # Streamed datasets: threads that read and decode images.

  # Training augmentation; evaluation never augments.
  config.augment = ml_collections.ConfigDict()
  config.augment.crop_padding = 0  # In memory: zero-pad by this much, crop back randomly (0 = off).
  config.augment.flip = False  # Random horizontal flip; refused where it changes the class.
  config.augment.cutout = 0  # In memory: side of a square set to the mean pixel (0 = off).
  # In memory: random erasing (Zhong et al. 2020): with this probability, a rectangle of
  # erasing_scale (fraction of the area, uniform) and erasing_ratio (height / width,
  # log-uniform) is filled with random pixels (0 = off).
  config.augment.random_erasing = 0.0
  config.augment.erasing_scale = (0.02, 0.33)
  config.augment.erasing_ratio = (0.3, 3.3)
  config.augment.min_crop_scale = 0.08  # Streamed: random-resized-crop's smallest area fraction.
  # RandAugment (Cubuk et al. 2020): this many ops per image, drawn from rotate, shear, translate,
  # brightness, contrast, sharpness, solarize, posterize, autocontrast and equalize, at magnitude
  # randaugment_magnitude in [0, 10] (timm's scale; 0 = off). On the device for in-memory
  # datasets, on the input threads for streamed ones (convjax/data/randaugment.py).
  config.augment.randaugment_ops = 0
  config.augment.randaugment_magnitude = 9.0
  # Detection only: zoom each scene by a factor log-uniform in this range and crop or pad it back
  # at a random offset, boxes moving with it ((1, 1) = off); flip mirrors the boxes too.
  config.augment.scene_scale = (1.0, 1.0)

  # Detection datasets (fashion_mnist_scenes): `model` names the backbone, under a feature
  # pyramid and a CenterNet head (convjax/models/detection.py, convjax/training/detection.py).
  config.detection = ml_collections.ConfigDict()
  # The backbone maps the pyramid merges, fine to coarse (convjax/models/features.py); the first
  # sets the output's stride.
  config.detection.feature_indices = (1, 2, 3, 4)
  config.detection.pyramid_width = 64
  config.detection.head_width = 64
  # CenterNet's loss: focal alpha and beta, and the weights of heatmap, size and offset terms.
  config.detection.focal_alpha = 2.0
  config.detection.focal_beta = 4.0
  config.detection.heatmap_weight = 1.0
  config.detection.size_weight = 0.1
  config.detection.offset_weight = 1.0
  # Evaluation: each image's highest-scoring peaks, as COCO scores up to 100 per image.
  config.detection.max_detections = 100
  # Streamed detection datasets (VOC, COCO): objects kept per training image, the rest dropped.
  config.detection.max_objects = 100

  # Schedule. batch_size is global: split over every device of every process. 96 splits evenly
  # over 1, 2, 3, 4, 6, 8, 12 or 16 devices (and 60,000 Fashion-MNIST images into 625 batches).
  config.batch_size = 96
  config.eval_batch_size = 1000
  config.num_epochs = 10.0
  config.num_train_steps = -1  # > 0 overrides num_epochs.
  # > 0: stop once this many seconds of training steps have run (compilation, evaluation and
  # checkpointing excluded; resumed runs count earlier runs' seconds), then evaluate. Comparisons
  # at equal compute time use it; the learning-rate schedule still spans the full run.
  config.train_budget_seconds = 0.0

  # Optimiser.
  config.optimizer = 'adam'  # sgd, momentum, nesterov, adam, adamw.
  config.learning_rate = 1e-3  # For the global batch; not rescaled with batch size.
  config.momentum = 0.9  # momentum and nesterov.
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.adam_eps = 1e-8
  config.weight_decay = 0.0  # Kernels only; decoupled for adamw, L2 for the rest.
  # adamw, momentum and nesterov: each parameter updated in one pass (convjax.training.fused_adamw
  # and fused_sgd), with optax's numbers bit for bit; False: optax's update and apply_gradients.
  config.fused_update = True
  # constant; cosine (to 0 at the end); linear (to 0 at the end); step (lr_decay_*); onecycle:
  # triangular, from learning_rate / onecycle_div_factor up to learning_rate over the first
  # onecycle_pct_start of training, then down to 0 (Smith & Topin 2017; warmup_epochs must be 0).
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 0.0
  config.lr_decay_epochs = (30, 60, 80)  # step schedule: epochs where the rate is multiplied...
  config.lr_decay_factor = 0.1  # ...by this.
  config.onecycle_pct_start = 0.25
  config.onecycle_div_factor = 25.0

  # Recipe: each part is off by default.
  # Label smoothing's epsilon: targets (1 - eps) one-hot + eps / classes (Szegedy et al. 2016).
  config.label_smoothing = 0.0
  # Split each device's batch into this many micro-batches and average their gradients: the
  # update of the whole batch_size with 1/K of the activation memory. batch_size must be a
  # multiple of the devices times this.
  config.grad_accum_steps = 1
  # Evaluation also averages each image's logits with its mirror's, reported as
  # tta_test_accuracy and tta_test_loss beside the plain figures; refused where a mirror changes
  # the class (digits, characters). A detector averages heatmaps and sizes instead (CenterNet's
  # flip test), reported as tta_test_AP, tta_test_AP50, ...
  config.tta_flip = False
  # Evaluation also averages in each image shifted this many pixels up-left and down-right,
  # zero-filled as augment.crop_padding trains (and their mirrors with tta_flip): the untranslated
  # and the translated views weigh half each, as in airbench (Jordan 2024). Images only; 0 is off.
  config.tta_translate = 0
  # Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) inside the train step, with timm's
  # semantics: each device's batch is mixed with its reverse, lam ~ Beta(alpha, alpha) per batch,
  # labels mixed as soft targets. An alpha of 0 turns that kind off; mix_prob is the chance a
  # batch is mixed at all; with both on, mix_switch_prob is the chance of CutMix over Mixup.
  config.mixup_alpha = 0.0
  config.cutmix_alpha = 0.0
  config.mix_prob = 1.0
  config.mix_switch_prob = 0.5
  # > 0: keep an exponential moving average of the parameters and batch statistics with this
  # decay, warmed up as min(decay, (1 + step) / (10 + step)); every evaluation also reports it as
  # ema_test_accuracy and ema_test_loss (a detector's as ema_test_AP, ema_test_AP50, ...).
  # Checkpointed with the state.
  config.ema_decay = 0.0
  # > 0: stochastic depth (Huang et al. 2016) for ResNets and DenseNet: block l of L is skipped
  # per example with probability drop_path_rate * l / L in training (the model's field).
  config.drop_path_rate = 0.0

  # Fine-tuning (convjax/training/finetune.py). init_from: '' starts from the random initialisation; a
  # convjax workdir (its newest checkpoint, such as one experiments.convert wrote) or a weights
  # file of torchvision's counterpart of `model` (.safetensors; .pth with torch installed) starts
  # from those weights. Read at step 0 only: a resumed run continues from its own checkpoints.
  config.init_from = ''
  # The head, the layers that output the classes (models.ModelSpec.head): None re-initialises
  # it when its shapes differ from init_from's (another number of classes) or init_from is a
  # workdir of another dataset; True always; False never (a shape mismatch is then an error).
  config.reinit_head = config_dict.placeholder(bool)
  # 'none' trains every layer; 'backbone' trains the head alone on a frozen backbone, which runs
  # in evaluation mode: batch norm normalises with its running statistics and keeps them, and
  # dropout is off (a linear probe, for models whose head is one layer).
  config.freeze = 'none'
  config.backbone_lr_scale = 1.0  # With freeze='none': the backbone's rate relative to the head's.

  # How convolutions run: 'auto' (oneDNN on CPU where convjax's extension is built, XLA's
  # otherwise), 'xla' or 'onednn' (an error where the extension is unavailable).
  config.conv_backend = 'auto'

  # Devices: data-parallel over this many local devices per process (it must divide batch_size);
  # <= 0 means all of them, or the most that batch_size splits over evenly, as the run prints.
  config.num_devices = -1
  # Several processes (hosts) through jax.distributed. True calls jax.distributed.initialize()
  # with the cluster's own settings (SLURM, Open MPI, Kubernetes, Cloud TPU); it is also called
  # whenever JAX_COORDINATOR_ADDRESS is set. See docs/multi-host.md.
  config.distributed = False

  # Bookkeeping.
  config.seed = 0
  config.log_every_steps = 100
  config.eval_every_steps = -1  # <= 0: evaluate once per epoch.
  config.checkpoint_every_steps = -1  # <= 0: once per epoch.
  config.max_checkpoints_to_keep = 3
  # A NaN or Inf loss or gradient stops training, naming the step, before anything non-finite is
  # checkpointed. > 0 instead skips up to this many such steps in a row (parameters, optimiser
  # state and batch statistics unchanged), logged as skipped_steps, and stops after more.
  config.skip_nonfinite_steps = 0
  config.prefetch_batches = 2  # Streamed datasets: batches read ahead and copied to the devices.
  return config
