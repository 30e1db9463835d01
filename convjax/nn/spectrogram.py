"""The log-mel spectrogram: how speech becomes an image for a 2-D convnet, computed in JAX.

A waveform is cut into overlapping frames (n_fft samples, every hop samples), each frame is
weighted by a Hann window and Fourier-transformed; the power |X(f)|^2 of each frequency is then
summed into mel bands (triangular filters evenly spaced on the mel scale, mel = 2595
log10(1 + f / 700), which is roughly how pitch is heard) and compressed by a logarithm. The
result [frames, mel bands] is a picture of the sound: time across, pitch up, loudness as
brightness. Everything runs on the device, inside the model, so a trained net takes raw audio.
"""
import functools

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

# The defaults: 32 ms windows every 10 ms, 40 bands, at FSDD's 8 kHz.
SAMPLE_RATE, N_FFT, HOP, NUM_MELS = 8000, 256, 80, 40


def hz_to_mel(hz):
  """The HTK mel scale: 2595 log10(1 + f / 700)."""
  return 2595 * np.log10(1 + np.asarray(hz, np.float64) / 700)


def mel_to_hz(mel):
  return 700 * (10 ** (np.asarray(mel, np.float64) / 2595) - 1)


@functools.lru_cache(maxsize=None)
def mel_filterbank(sample_rate: int, n_fft: int, num_mels: int, low_hz: float = 0.0,
                   high_hz: float | None = None) -> np.ndarray:
  """float32 [n_fft // 2 + 1, num_mels]: triangular filters with centres evenly spaced in mels
  between low_hz and high_hz (default: half the sample rate), each peaking at 1 and reaching 0
  at its neighbours' centres."""
  high_hz = sample_rate / 2 if high_hz is None else high_hz
  edges = mel_to_hz(np.linspace(hz_to_mel(low_hz), hz_to_mel(high_hz), num_mels + 2))
  bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
  lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  rising = (bins - lower) / (centre - lower)
  falling = (upper - bins) / (upper - centre)
  return np.maximum(0, np.minimum(rising, falling)).T.astype(np.float32)


def frames(waveform: jnp.ndarray, n_fft: int, hop: int) -> jnp.ndarray:
  """[b, samples] -> [b, 1 + (samples - n_fft) // hop, n_fft]: the overlapping windows."""
  count = 1 + (waveform.shape[1] - n_fft) // hop
  index = hop * np.arange(count)[:, None] + np.arange(n_fft)[None, :]
  return waveform[:, index]


def power_spectrogram(waveform: jnp.ndarray, n_fft: int, hop: int) -> jnp.ndarray:
  """[b, samples] -> |FFT of each Hann-windowed frame|^2, [b, frames, n_fft // 2 + 1]."""
  window = jnp.asarray(np.hanning(n_fft + 1)[:-1], jnp.float32)  # Periodic Hann, as librosa's.
  spectrum = jnp.fft.rfft(frames(waveform.astype(jnp.float32), n_fft, hop) * window, axis=-1)
  return jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2


def log_mel(waveform: jnp.ndarray, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT,
            hop: int = HOP, num_mels: int = NUM_MELS, floor: float = 1e-6) -> jnp.ndarray:
  """Waveforms [b, samples, 1] -> log-mel spectrograms [b, frames, num_mels, 1] (an image per
  waveform: time down the rows, mel bands across), log(mel power + floor)."""
  power = power_spectrogram(waveform[..., 0], n_fft, hop)
  mel = power @ jnp.asarray(mel_filterbank(sample_rate, n_fft, num_mels))
  return jnp.log(mel + floor)[..., None]


class LogMel(nn.Module):
  """A parameter-free layer: waveforms [b, samples, 1] -> log-mel [b, frames, num_mels, 1].

  A module rather than a function so that model summaries show where the 1-D waveform becomes a
  2-D image (and count receptive fields from there). Defaults: 32 ms windows every 10 ms, 40
  bands, at 8 kHz.
  """
  sample_rate: int = SAMPLE_RATE
  n_fft: int = N_FFT
  hop: int = HOP
  num_mels: int = NUM_MELS

  def __call__(self, waveform: jnp.ndarray) -> jnp.ndarray:
    return log_mel(waveform, self.sample_rate, self.n_fft, self.hop, self.num_mels)
