"""Speech: reading WAV files, the Free Spoken Digit Dataset's splits, the log-mel front end, and a
1-D convnet that learns a handful of real recordings."""
import os
import pathlib
import wave

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax import models
from convjax.analysis import summary, visualize
from convjax.data import augment, datasets, speech
from convjax.nn import spectrogram
from tests import fitting

# Narrow versions, for tests that run the nets.
TINY_SPEECH = {'m3': dict(stem=(4, 80, 4), stages=((8, 1),)),
               'logmel_cnn': dict(widths=(4, 8))}
FSDD = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'fsdd'
needs_fsdd = pytest.mark.skipif(not (FSDD / 'recordings').is_dir(),
                                reason=f'no FSDD copy at {FSDD}')


def write_wav(path, samples, rate=8000, channels=1, width=2):
  with wave.open(str(path), 'wb') as f:
    f.setnchannels(channels)
    f.setsampwidth(width)
    f.setframerate(rate)
    f.writeframes(np.asarray(samples).tobytes())
  return str(path)


def tone(hz, seconds=0.5, rate=8000):
  t = np.arange(int(seconds * rate)) / rate
  return 0.5 * np.sin(2 * np.pi * hz * t)


# ------------------------------------------------------------------------------------------------
# Reading WAV files.

def test_reads_16_and_8_bit_pcm_as_the_same_waveform(tmp_path):
  wave_16 = write_wav(tmp_path / 'a.wav', speech.to_int16(tone(440)))
  eight_bit = np.round(tone(440) * 128 + 128).clip(0, 255).astype(np.uint8)
  wave_8 = write_wav(tmp_path / 'b.wav', eight_bit, width=1)
  (a, note_a), (b, note_b) = speech.read_wav(wave_16), speech.read_wav(wave_8)
  assert a.shape == b.shape == (4000,) and note_a == note_b == ''
  np.testing.assert_allclose(a, tone(440), atol=1e-4)
  np.testing.assert_allclose(b, tone(440), atol=1 / 128)


def test_another_sample_rate_is_resampled_and_says_so(tmp_path):
  path = write_wav(tmp_path / 'hi.wav', speech.to_int16(tone(440, rate=16000)), rate=16000)
  waveform, note = speech.read_wav(path)
  assert waveform.shape == (4000,) and '16000 Hz' in note and 'resampled' in note
  # Still a 440 Hz tone: its spectrum peaks at 440 Hz (bin width 2 Hz).
  peak = np.argmax(np.abs(np.fft.rfft(waveform))) * 8000 / len(waveform)
  assert abs(peak - 440) <= 2


@pytest.mark.parametrize('make, message', [
    (lambda p: write_wav(p, speech.to_int16(np.zeros((100, 2)) + 0.1), channels=2), '2 channels'),
    (lambda p: write_wav(p, np.zeros(0, np.int16)), 'no sound'),
    (lambda p: write_wav(p, np.zeros(800, np.int16)), 'no sound'),
    (lambda p: (p.write_text('not a wav'), str(p))[1], 'cannot read'),
    (lambda p: str(p) + '.missing', 'cannot read'),
])
def test_bad_audio_is_refused_in_one_sentence(tmp_path, make, message):
  with pytest.raises(speech.AudioError, match=message) as error:
    speech.read_wav(make(tmp_path / 'x.wav'))
  assert '\n' not in str(error.value)


def test_clips_are_centred_padded_or_cropped_to_one_second():
  short, long = np.ones(3000, np.float32), np.arange(9000, dtype=np.float32)
  padded = speech.fit_length(short)
  assert padded.shape == (8000,) and padded[:2500].sum() == 0 and padded[2500:5500].all()
  np.testing.assert_array_equal(speech.fit_length(long), np.arange(500, 8500))
  assert speech.clip_example(short).shape == (8000, 1)
  assert speech.clip_example(short).dtype == np.int16


def test_training_shift_moves_a_waveform_in_time():
  waveform = jnp.arange(1, 101, dtype=jnp.int16)[:, None]
  shifted = augment.random_crop(jax.random.PRNGKey(0), waveform, 10)
  start = int(jnp.argmax(shifted[:, 0] == 1)) if shifted[0, 0] == 0 else 0
  offset = int(shifted[start, 0]) - 1 - start  # How far the samples moved.
  assert shifted.shape == waveform.shape and abs(offset) <= 10
  np.testing.assert_array_equal(shifted[shifted[:, 0] != 0, 0],
                                waveform[shifted[shifted[:, 0] != 0, 0] - 1, 0])


# ------------------------------------------------------------------------------------------------
# The Free Spoken Digit Dataset.

@needs_fsdd
def test_official_split_is_fsdds_with_every_digit_equally_often():
  dataset = datasets.load('spoken_digit', str(FSDD))
  assert dataset.train.images.shape == (2700, 8000, 1)
  assert dataset.test.images.shape == (300, 8000, 1)
  assert dataset.train.images.dtype == np.int16
  np.testing.assert_array_equal(np.bincount(dataset.test.labels), [30] * 10)
  # The catalogue's statistics are the training split's.
  mean, std = datasets.channel_stats(dataset.train.images)
  assert abs(mean[0]) < 1e-3 and std[0] == pytest.approx(datasets.get_info('spoken_digit').std[0],
                                                         abs=1e-4)


@needs_fsdd
@pytest.mark.parametrize('split', ['official', 'speaker:theo'])
def test_splits_are_disjoint_and_deterministic(split):
  files = sorted(os.listdir(FSDD / 'recordings'))
  test = {f for f in files if speech.is_test(f, split)}
  assert len(test) == (300 if split == 'official' else 500)
  if split != 'official':  # The held-out speaker is in the test side only.
    assert all(speech.parse_name(f)[1] == 'theo' for f in test)
  first, second = (datasets.load('spoken_digit', str(FSDD), split=split) for _ in range(2))
  np.testing.assert_array_equal(first.test.images, second.test.images)
  train_clips = {c.tobytes() for c in first.train.images}
  assert not any(c.tobytes() in train_clips for c in first.test.images)


def test_unknown_splits_and_speakers_are_refused():
  info = datasets.get_info('spoken_digit')
  with pytest.raises(datasets.errors.InvalidValueError, match='speaker:NAME'):
    datasets.check_split(info, 'random')
  with pytest.raises(datasets.errors.InvalidValueError, match='no split'):
    datasets.check_split(datasets.get_info('fashion_mnist'), 'speaker:theo')
  with pytest.raises(datasets.errors.InvalidValueError, match='jackson'):
    datasets.load('spoken_digit', str(FSDD), split='speaker:bob')


def test_a_folder_without_recordings_says_where_to_get_them(tmp_path):
  with pytest.raises(datasets.DatasetNotFoundError, match='free-spoken-digit-dataset'):
    datasets.load('spoken_digit', str(tmp_path), source='idx')


# ------------------------------------------------------------------------------------------------
# The log-mel front end.

def test_mel_filters_are_triangles_evenly_spaced_in_mels():
  bank = spectrogram.mel_filterbank(8000, 256, 40)
  assert bank.shape == (129, 40) and bank.min() >= 0 and bank.max() <= 1
  centres = np.argmax(bank, axis=0) * 8000 / 256
  assert np.all(np.diff(centres) >= 0)  # Bands go up in pitch.
  mel_steps = np.diff(spectrogram.hz_to_mel(centres[5:]))
  assert mel_steps.std() < 0.35 * mel_steps.mean()  # Evenly spaced in mels, up to FFT bins.


@pytest.mark.parametrize('hz', [300, 1000, 3000])
def test_a_pure_tone_lights_the_band_around_its_pitch(hz):
  image = spectrogram.log_mel(jnp.asarray(tone(hz, 1.0))[None, :, None], 8000, 256, 80, 40)
  assert image.shape == (1, 97, 40, 1)
  band = int(np.argmax(np.asarray(image[0, 50, :, 0])))
  bank = spectrogram.mel_filterbank(8000, 256, 40)
  assert bank[int(round(hz * 256 / 8000)), band] > 0  # The tone's FFT bin is in that band.


def test_power_spectrogram_is_parsevals_energy_per_frame():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 1000))
  power = spectrogram.power_spectrogram(x, 256, 80)
  frames = spectrogram.frames(x, 256, 80) * np.hanning(257)[:-1]
  # Parseval for the real FFT: sum |x|^2 = (|X_0|^2 + 2 sum |X_k|^2 + |X_N/2|^2) / N.
  energy = (power[..., 0] + 2 * power[..., 1:-1].sum(-1) + power[..., -1]) / 256
  np.testing.assert_allclose(energy, (frames ** 2).sum(-1), rtol=1e-4)


# ------------------------------------------------------------------------------------------------
# A 1-D convnet learns real speech.

@needs_fsdd
@pytest.mark.slow  # Trains a model.
def test_a_tiny_raw_waveform_net_fits_a_handful_of_real_recordings():
  dataset = datasets.load('spoken_digit', str(FSDD))
  pick = np.concatenate([np.flatnonzero(dataset.train.labels == d)[:2] for d in range(4)])
  model = models.create('m5', num_classes=4, stem=(16, 80, 4), stages=((16, 1), (32, 1)))
  assert fitting.fitted_accuracy(model, dataset.info, dataset.train.images[pick],
                                 dataset.train.labels[pick], 3e-3, 60) == 1.0


def test_summary_counts_m5s_receptive_field_in_samples_by_hand():
  rows = {row.path: row for row in summary.layers(models.create('m5'), (8000, 1))}
  # Conv_0: 80 samples, stride 4; a 4-wide pool then adds 3 steps of 4 samples: 80 + 12 = 92.
  assert (rows['Conv_0'].receptive_field, rows['Conv_0'].stride) == ((80,), (4,))
  assert (rows['Pool_0'].receptive_field, rows['Pool_0'].stride) == ((92,), (16,))
  # A 3-tap conv reaches 2 more steps of 16: 92 + 32 = 124.
  assert rows['Conv_1'].receptive_field == (124,)
  assert rows['GlobalPool_0'].receptive_field == (8000,) and not rows['Conv_0'].counted_from


def test_summary_counts_the_log_mel_nets_positions_from_its_spectrogram():
  rows = summary.layers(models.create('logmel_cnn'), (8000, 1))
  front = rows[0]
  assert (front.path, front.output_shape, front.params) == ('LogMel_0', (97, 40, 1), 0)
  assert all(row.counted_from == 'LogMel_0' for row in rows)
  by_path = {row.path: row for row in rows}
  assert by_path['Conv_0'].receptive_field == (3, 3)
  assert by_path['GlobalPool_0'].receptive_field == (97, 40)
  assert 'From LogMel_0 on, RF and stride count positions of its output (97x40)' in (
      summary.format_layers(rows))


def test_a_filter_tuned_to_a_tone_peaks_at_its_frequency():
  times = np.arange(80) / 8000
  kernel = np.stack([np.cos(2 * np.pi * hz * times) * np.hanning(80) for hz in (500, 2000)],
                    -1)[:, None, :]
  np.testing.assert_allclose(visualize.peak_frequencies(kernel, 8000), [500, 2000], atol=8)


@pytest.mark.parametrize('name, front_end', [('m3', None), ('logmel_cnn', ('LogMel_0', (97, 40, 1)))])
def test_feature_maps_of_a_sound_follow_the_nets_stages(name, front_end):
  model = models.create(name, **TINY_SPEECH[name])
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8000, 1)))
  waveform = jnp.asarray(tone(440, seconds=1.0)[:, None])
  stages = visualize.feature_maps(model, variables, waveform)
  if front_end:
    assert (stages[0][0], stages[0][1].shape) == front_end
  else:
    assert stages[0][0] == 'Conv_0 (conv 80)' and stages[0][1].shape == (2000, 4)
  assert any(label.startswith('Pool_0') for label, _ in stages)
