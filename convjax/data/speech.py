"""Speech: reading WAV files, and the Free Spoken Digit Dataset (FSDD).

FSDD (Jackson et al., github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0) holds 3,000
mono 8 kHz recordings, `recordings/{digit}_{speaker}_{index}.wav`: 6 speakers say each digit 50
times. Its official split tests on indices 0-4 (300 files) and trains on 5-49 (2,700); the same
speakers are in both. 'speaker:NAME' instead tests on every recording of one speaker and trains
on the other five, which asks whether a net recognises the digit in a voice it has never heard.

Every recording becomes one second, int16 [8000, 1]: shorter ones are zero-padded on both sides,
the few longer ones (about 1%) keep their centre second. The loader reads a local copy of the
recordings (`data_dir`), or TFDS's `spoken_digit` (the same recordings) for users online.
"""
import math
import os
import re
import wave

import numpy as np

from convjax import errors
from convjax.data import datasets

SAMPLE_RATE = 8000
CLIP_SAMPLES = 8000
SPEAKERS = ('george', 'jackson', 'lucas', 'nicolas', 'theo', 'yweweler')
# Official split: these indices of each digit and speaker are the test set.
TEST_INDICES = range(5)
_NAME = re.compile(r'^(\d)_([a-z]+)_(\d+)\.wav$')


class AudioError(errors.UserError, ValueError):
  """A sound file convjax cannot read as mono speech."""


def read_wav(path: str, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, str]:
  """Reads a mono PCM WAV file as float32 [samples] in [-1, 1] at `sample_rate`.

  Returns the waveform and a note ('' or a sentence saying it was resampled). Raises AudioError
  in one sentence for a file that is unreadable, not PCM, not mono or empty.
  """
  try:
    with wave.open(path, 'rb') as f:
      channels, width, rate, frames = (f.getnchannels(), f.getsampwidth(), f.getframerate(),
                                       f.readframes(f.getnframes()))
  except (wave.Error, EOFError, OSError) as e:
    raise AudioError(f'cannot read {path} as a WAV file of PCM audio ({e})') from None
  if channels != 1:
    raise AudioError(f'{path} has {channels} channels; the speech models take mono audio: mix it '
                     f'down first (e.g. `sox {path} -c 1 mono.wav`)')
  if width not in (1, 2, 4):
    raise AudioError(f'{path} has {8 * width}-bit samples; convjax reads 8-, 16- and 32-bit PCM')
  waveform = _pcm_to_float(frames, width)
  if not waveform.size or not np.any(waveform):
    raise AudioError(f'{path} holds no sound ({waveform.size} samples, all silent)')
  if rate == sample_rate:
    return waveform, ''
  return resample(waveform, rate, sample_rate), (
      f'{path} is sampled at {rate} Hz; resampled to the {sample_rate} Hz the model was trained on')


def _pcm_to_float(frames: bytes, width: int) -> np.ndarray:
  """WAV's PCM bytes -> float32 [samples] in [-1, 1]: 8-bit samples are unsigned (offset 128),
  wider ones signed little-endian, as the WAV format has them."""
  if width == 1:
    return (np.frombuffer(frames, np.uint8).astype(np.float32) - 128) / 128
  dtype = {2: '<i2', 4: '<i4'}[width]
  return np.frombuffer(frames, dtype).astype(np.float32) / 2 ** (8 * width - 1)


def resample(waveform: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
  """float32 [samples] at `rate` -> [samples * target_rate / rate] at target_rate, by polyphase
  filtering (band-limited, so no aliasing from higher rates)."""
  from scipy import signal  # Imported here: only resampling needs SciPy.
  common = math.gcd(rate, target_rate)
  return signal.resample_poly(waveform, target_rate // common, rate // common).astype(np.float32)


def fit_length(waveform: np.ndarray, length: int = CLIP_SAMPLES) -> np.ndarray:
  """[samples] -> [length]: zero-padded equally on both sides, or the centre `length` kept."""
  excess = len(waveform) - length
  if excess >= 0:
    return waveform[excess // 2: excess // 2 + length]
  before = -excess // 2
  return np.pad(waveform, (before, -excess - before))


def to_int16(waveform: np.ndarray) -> np.ndarray:
  """float [...] in [-1, 1] -> int16 [...] (what the in-memory dataset stores)."""
  return np.clip(np.round(waveform * 32768), -32768, 32767).astype(np.int16)


def clip_example(waveform: np.ndarray) -> np.ndarray:
  """A waveform float32 [samples] -> the model's example, int16 [CLIP_SAMPLES, 1]."""
  return to_int16(fit_length(waveform))[:, None]


def parse_name(filename: str) -> tuple[int, str, int]:
  """'7_jackson_32.wav' -> (7, 'jackson', 32): digit, speaker and index."""
  found = _NAME.match(os.path.basename(filename))
  if not found:
    raise errors.InvalidValueError(f'{filename} is not named digit_speaker_index.wav as FSDD is')
  return int(found[1]), found[2], int(found[3])


def is_test(filename: str, split: str) -> bool:
  """Whether a recording belongs to the test side of `split` ('official' or 'speaker:NAME')."""
  _, speaker, index = parse_name(filename)
  if split == 'official':
    return index in TEST_INDICES
  return speaker == split.split(':', 1)[1]


def load_spoken_digit(info: datasets.DatasetInfo, data_dir: str | None, source: str,
                      download: bool, split: str) -> datasets.Dataset:
  """FSDD as a Dataset of int16 [n, 8000, 1] clips and digit labels, divided by `split`.

  Reads WAV files from data_dir (or data_dir/recordings) unless source is 'tfds'; with no local
  copy, TFDS's `spoken_digit`. Raises DatasetNotFoundError saying where it looked.
  """
  if split.startswith('speaker:') and split.split(':', 1)[1] not in SPEAKERS:
    raise errors.InvalidValueError(f"split '{split}' names no FSDD speaker; the speakers are: "
                                   f"{', '.join(SPEAKERS)}")
  folder = None if source == 'tfds' else _recordings_dir(data_dir)
  if folder:
    files = sorted(f for f in os.listdir(folder) if _NAME.match(f))
    examples = [(f, read_wav(os.path.join(folder, f))[0], parse_name(f)[0]) for f in files]
  elif source == 'idx':
    raise datasets.DatasetNotFoundError(_how_to_get(data_dir))
  else:
    examples = _tfds_examples(info, data_dir, download)
  train = [(clip_example(w), label) for name, w, label in examples if not is_test(name, split)]
  test = [(clip_example(w), label) for name, w, label in examples if is_test(name, split)]
  return datasets.Dataset(info, _split(train), _split(test))


def _split(pairs: list) -> datasets.Split:
  return datasets.Split(np.stack([clip for clip, _ in pairs]),
                        np.array([label for _, label in pairs], np.int32))


def _recordings_dir(data_dir: str | None) -> str | None:
  """The folder of FSDD's WAV files: data_dir itself or its recordings/ (a clone's layout)."""
  for folder in ([data_dir, os.path.join(data_dir, 'recordings')] if data_dir else []):
    if os.path.isdir(folder) and any(_NAME.match(f) for f in os.listdir(folder)):
      return folder
  return None


def _how_to_get(data_dir: str | None) -> str:
  where = f'no FSDD recordings in {data_dir}' if data_dir else 'no --config.data_dir was given'
  return (f"dataset 'spoken_digit': {where}; clone github.com/Jakobovski/free-spoken-digit-dataset "
          'and pass its folder as --config.data_dir, or with internet pass '
          "--config.data_source=tfds --config.download=True for TFDS's copy")


def _tfds_examples(info: datasets.DatasetInfo, data_dir, download) -> list:
  """(file name, float32 waveform, label) of every recording in TFDS's spoken_digit, whose one
  split holds them all: the split by file name is then the same as from local files."""
  source = datasets.tfds_source(info, 'train', data_dir, download)
  examples = []
  for i in range(len(source)):
    item = source[i]
    name = item['audio/filename']
    name = name.decode() if isinstance(name, bytes) else str(name)
    examples.append((name, np.asarray(item['audio'], np.float32) / 32768, int(item['label'])))
  return examples
