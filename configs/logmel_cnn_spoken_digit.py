"""A log-mel spectrogram and a small 2-D convnet on the Free Spoken Digit Dataset: the
hand-made front end against which the raw-waveform nets (configs/m5_spoken_digit.py) compare.

  python -m experiments.train --config=configs/logmel_cnn_spoken_digit.py \
      --workdir=workdirs/logmel_cnn_spoken_digit \
      --config.data_dir=PATH/TO/free-spoken-digit-dataset/recordings

The model computes the spectrogram itself (40 mel bands, 32 ms windows every 10 ms), on the
device, so it takes the same one-second waveforms as M5, shifted in time by up to 0.1 s in
training.

Result: see README.md ("Results") for the accuracy and wall time this config reaches.
"""
from configs import m5_spoken_digit


def get_config():
  config = m5_spoken_digit.get_config()
  config.model = 'logmel_cnn'
  return config
