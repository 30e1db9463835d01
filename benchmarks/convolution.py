"""Three ways to convolve an n x n image, timed as n grows: where each one wins.

  python -m benchmarks.convolution [--sizes=16,32,...] [--output_dir=workdirs/convolution]

- direct: convjax.nn.convolution_math.convolve, the definition (one shift-and-add per kernel tap),
  O(n^2 k^2) work in k^2 whole-image passes;
- fft: convjax.nn.convolution_math.fft_convolve, the convolution theorem, O(n^2 log n) whatever k is;
- lax: jax.lax.conv_general_dilated on the flipped kernel, XLA's convolution, what layers use.

Two sweeps: a fixed 5x5 kernel (the CNN case) and a kernel as large as the image, k = n (where
the FFT's independence from k pays). Each point is the median of repeated jitted calls after
compilation, blocking on the result. Writes convolution.json and convolution_{small,large}.png.
"""
import json
import os

from absl import flags

from experiments import cli

_SIZES = flags.DEFINE_list('sizes', ['16', '32', '64', '128', '256', '512', '1024'], 'Image sides n.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'workdirs/convolution', 'Where JSON and PNGs '
                                  'go; --output_dir=benchmarks/results refreshes the figures of '
                                  'docs/convolution.md.')
_MIN_SECONDS = flags.DEFINE_float('min_seconds', 0.5, 'Timed seconds per point, at least.')
_MAX_TAPS = flags.DEFINE_integer('max_taps', 2 ** 30, 'Skip direct and lax points above this '
                                 'many multiply-adds (their cost grows as n^2 k^2).')


def lax_convolve(image, kernel):
  """'full' convolution through XLA's conv: correlate with the flipped kernel, padded k - 1."""
  import jax
  k = kernel.shape[0]
  return jax.lax.conv_general_dilated(image[None, None], kernel[::-1, ::-1][None, None], (1, 1),
                                      [(k - 1, k - 1)] * 2)[0, 0]


def time_point(fn, image, kernel) -> float:
  """Median milliseconds of fn(image, kernel), jitted, after compilation."""
  import jax
  from convjax.analysis import benchmark
  jitted = jax.jit(fn)
  return benchmark.time_steps(lambda _: jitted(image, kernel), None, warmup=1, min_steps=3,
                              min_seconds=_MIN_SECONDS.value).median_ms


def sweep(kernel_size, sizes) -> dict:
  import jax
  import numpy as np
  from convjax.nn import convolution_math
  methods = {'direct': convolution_math.convolve, 'fft': convolution_math.fft_convolve, 'lax': lax_convolve}
  results = {name: [] for name in methods}
  rng = np.random.default_rng(0)
  for n in sizes:
    k = kernel_size(n)
    image = jax.device_put(rng.normal(size=(n, n)).astype(np.float32))
    kernel = jax.device_put(rng.normal(size=(k, k)).astype(np.float32))
    reference = np.asarray(convolution_math.fft_convolve(image, kernel, 'full'))
    for name, fn in methods.items():
      if name != 'fft' and (n + k) ** 2 * k * k > _MAX_TAPS.value:
        continue  # Minutes to hours at this size; the trend is already clear.
      np.testing.assert_allclose(np.asarray(fn(image, kernel)), reference, rtol=2e-3,
                                 atol=2e-3 * np.abs(reference).max())
      results[name].append((n, time_point(fn, image, kernel)))
      print(f'n={n:5d} k={k:5d} {name:6s} {results[name][-1][1]:10.3f} ms', flush=True)
  return results


def main(argv):
  del argv
  import jax
  from convjax.analysis import plots
  sizes = [int(s) for s in _SIZES.value]
  report = {'device': jax.devices()[0].device_kind, 'sweeps': {}}
  for label, kernel_size, title in (
      ('small', lambda n: 5, '5x5 kernel on an n x n image'),
      ('large', lambda n: n, 'n x n kernel on an n x n image')):
    results = sweep(kernel_size, sizes)
    report['sweeps'][label] = results
    plots.curves({name: ([n for n, _ in points], [ms for _, ms in points])
                  for name, points in results.items() if points},
                 'n (image side)', 'milliseconds (median)', f"'full' convolution: {title}",
                 os.path.join(_OUTPUT_DIR.value, f'convolution_{label}.png'), log_x=True,
                 log_y=True)
  with open(os.path.join(_OUTPUT_DIR.value, 'convolution.json'), 'w') as f:
    json.dump(report, f, indent=2)


if __name__ == '__main__':
  cli.run(main)
