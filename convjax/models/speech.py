"""Speech classifiers: 1-D convnets on the raw waveform, and a 2-D convnet on its log-mel
spectrogram.

`RawWaveformNet` is Dai, Dai, Qu, Li & Das 2017, "Very Deep Convolutional Neural Networks for Raw
Waveforms" (Table 1). What it showed: a 1-D convnet can learn its own filterbank from samples,
with no spectrogram. The first layer's long kernel (80 samples, 10 ms at 8 kHz) with stride 4
does a filterbank's work; then stacks of 3-sample kernels, each followed by batch norm and ReLU,
with max pooling by 4 between stages, and global average pooling over time before the softmax.
No fully connected layer but the classifier.

  M3   [80/4, 256], pool 4, [3, 256],                  pool 4          0.2M parameters
  M5   [80/4, 128], pool 4, [3, 128], pool 4, [3, 256], pool 4, [3, 512], pool 4   0.5M
  M11  [80/4, 64],  pool 4, 2x[3, 64], pool 4, 2x[3, 128], pool 4, 3x[3, 256], pool 4,
       2x[3, 512]                                                      1.8M
  M18  as M11 with 4 layers per stage                                  3.7M

The paper takes 32,000 samples (4 s at 8 kHz, UrbanSound8K); on FSDD's one-second clips (8,000
samples) M5's time axis goes 2,000 -> 500 -> 125 -> 31 -> 7 before the global pool.

`LogMelNet` computes a log-mel spectrogram (convjax/nn/spectrogram.py) inside the model and reads
it with a small VGG-style 2-D convnet, after the keyword-spotting nets of Sainath & Parada 2015
and Tang & Lin 2018: the hand-made front end that the raw-waveform nets replace, for comparison.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from convjax.nn import layers, spectrogram
from convjax.models import common


class RawWaveformNet(nn.Module):
  """Waveforms [b, samples, 1] -> logits [b, num_classes]; features: the pooled last stage.

  stem: the first layer's (features, kernel, stride).
  stages: (features, layers) of each stage of 3-sample convolutions.
  pool_last: max-pool after the last stage too (M3 and M5 do, M11 and M18 do not).
  """
  stages: Sequence[tuple[int, int]]
  stem: tuple[int, int, int] = (128, 80, 4)
  pool_last: bool = True
  pool_size: int = 4
  num_classes: int = 10
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    features, kernel, stride = self.stem
    x = common.conv_bn(x.astype(self.dtype), features, kernel, train, self.dtype, ndim=1,
                       strides=stride)
    x = layers.max_pool(x, window=self.pool_size)
    for stage, (width, depth) in enumerate(self.stages):
      for _ in range(depth):
        x = common.conv_bn(x, width, 3, train, self.dtype, ndim=1)
      if self.pool_last or stage < len(self.stages) - 1:
        x = layers.max_pool(x, window=self.pool_size)
    x = layers.global_pool(x, 'avg')
    return common.classify(x, self.num_classes, return_features, self.dtype)


M3 = functools.partial(RawWaveformNet, stem=(256, 80, 4), stages=((256, 1),))
M5 = functools.partial(RawWaveformNet, stem=(128, 80, 4), stages=((128, 1), (256, 1), (512, 1)))
M11 = functools.partial(RawWaveformNet, stem=(64, 80, 4), pool_last=False,
                        stages=((64, 2), (128, 2), (256, 3), (512, 2)))
M18 = functools.partial(RawWaveformNet, stem=(64, 80, 4), pool_last=False,
                        stages=((64, 4), (128, 4), (256, 4), (512, 4)))


class LogMelNet(nn.Module):
  """Waveforms [b, samples, 1] -> log-mel [b, frames, mels, 1] -> 2-D convnet -> logits.

  The spectrogram: n_fft-sample Hann windows every `hop` samples (defaults: 32 ms every 10 ms at
  8 kHz), num_mels bands; batch norm then standardises it, as its statistics are unknown a priori.
  widths: one block per entry, 3x3 conv -> batch norm -> ReLU -> 2x2 max pool; then global
  average pooling, dropout and the classifier.
  """
  widths: Sequence[int] = (32, 64, 128, 128)
  sample_rate: int = spectrogram.SAMPLE_RATE
  n_fft: int = spectrogram.N_FFT
  hop: int = spectrogram.HOP
  num_mels: int = spectrogram.NUM_MELS
  dropout_rate: float = 0.2
  num_classes: int = 10
  dtype: Any = jnp.float32

  def log_mel(self, waveform: jnp.ndarray) -> jnp.ndarray:
    """[b, samples, 1] -> the log-mel image [b, frames, num_mels, 1], float32: the parameter-free
    front end alone, for plots (`model.apply(variables, waveform, method='log_mel')`)."""
    return spectrogram.log_mel(waveform, self.sample_rate, self.n_fft, self.hop, self.num_mels)

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    x = spectrogram.LogMel(self.sample_rate, self.n_fft, self.hop, self.num_mels)(x)
    x = layers.batch_norm(train, dtype=self.dtype)(x.astype(self.dtype))
    for width in self.widths:
      x = common.conv_bn(x, width, 3, train, self.dtype)
      x = layers.max_pool(x, window=2)
    x = layers.dropout(layers.global_pool(x, 'avg'), self.dropout_rate, train)
    return common.classify(x, self.num_classes, return_features, self.dtype)
