"""M5 (Dai et al. 2017), a 1-D convnet on raw waveforms, on the Free Spoken Digit Dataset.

  python -m experiments.train --config=configs/m5_spoken_digit.py --workdir=workdirs/m5_spoken_digit \
      --config.data_dir=PATH/TO/free-spoken-digit-dataset/recordings

The net reads one second of 8 kHz samples and learns its own filterbank in its first layer (80
samples, stride 4). FSDD's official split tests on recordings 0-4 of each digit and speaker;
--config.data_split=speaker:NAME tests on a speaker the net never heard instead. Training shifts
each clip in time by up to 0.1 s (augment.crop_padding, in samples), as the recordings are
trimmed to the word and a real word starts anywhere.

Result: see README.md ("Results") for the accuracy and wall time this config reaches.
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model = 'm5'
  config.dataset = 'spoken_digit'
  config.batch_size = 32
  config.eval_batch_size = 300
  config.num_epochs = 30.0
  config.optimizer = 'adamw'
  config.learning_rate = 3e-3
  config.weight_decay = 0.01
  config.lr_schedule = 'cosine'
  config.warmup_epochs = 1.0
  config.augment.crop_padding = 800
  config.num_devices = 1
  return config
