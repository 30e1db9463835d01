"""Steady-state speed of models' train and inference steps on synthetic data (timm's benchmark).

  python -m experiments.benchmark --models=lenet5,resnet20 --batch_size=256 --mode=both
      [--half_precision] [--num_devices=D] [--input_shape=H,W,C] [--breakdown] --output=FILE.json

Per model and mode: median images/s, step time (median, p10, p90), compile time, parameters,
forward FLOPs per image, and the achieved FLOP/s as a fraction of the peak that a large matmul
reaches on the same devices in the same run. A train step is counted as 3 forward passes.
--breakdown adds where each step's time goes, by class of operation (convjax.analysis.profile).
On a CPU, --num_devices=D splits the host into D XLA devices (set before JAX starts); without it,
convjax's default applies: one device per core.
"""


from absl import flags

from convjax import errors
from experiments import cli

_MODELS = flags.DEFINE_string('models', None, 'Comma-separated registry names or fnmatch patterns.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 256, 'Global batch size.')
_MODE = flags.DEFINE_enum('mode', 'both', ['train', 'infer', 'both'], 'What to time.')
_HALF = flags.DEFINE_bool('half_precision', False, 'bfloat16 activations (float32 parameters).')
_NUM_DEVICES = flags.DEFINE_integer('num_devices', None, 'Devices to run on; default: all local.')
_INPUT_SHAPE = flags.DEFINE_list('input_shape', None, 'height,width,channels; default: native.')
_MIN_SECONDS = flags.DEFINE_float('min_seconds', 3.0, 'Timed seconds per model and mode, at least.')
_CONV_BACKEND = flags.DEFINE_enum('conv_backend', 'auto', ['auto', 'xla', 'onednn'],
                                  "How convolutions run: 'auto' is oneDNN on CPU where convjax's "
                                  'extension is built, XLA otherwise.')
_BREAKDOWN = flags.DEFINE_bool('breakdown', False,
                                'Also profile each step and print where its time goes, by class '
                                'of operation (convolution, dense, normalisation, ...).')
_OUTPUT = flags.DEFINE_string('output', None, 'Where to write the JSON results.')
flags.mark_flags_as_required(['models', 'output'])


def main(argv):
  del argv
  from convjax import parallel
  if _NUM_DEVICES.value:  # cli.run gave one device per core; exactly the devices asked for.
    parallel.use_cpu_cores(_NUM_DEVICES.value)
  import jax
  import jax.numpy as jnp
  from configs import default
  from convjax import models
  from convjax.analysis import benchmark, profile
  from convjax.nn import conv_backend
  from convjax.training import metrics
  names = models.match(_MODELS.value)
  input_shape = cli.parse_shape(_INPUT_SHAPE.value)
  if _BATCH_SIZE.value <= 0:
    raise errors.InvalidValueError(f'--batch_size must be positive, got {_BATCH_SIZE.value}')
  dp = parallel.DataParallel(_NUM_DEVICES.value)
  if _BATCH_SIZE.value % dp.num_devices:
    raise errors.InvalidValueError(f'--batch_size={_BATCH_SIZE.value} is not divisible by the '
                                   f'{dp.num_devices} devices')
  conv_backend.use_backend(_CONV_BACKEND.value, dp.num_local_devices)
  dtype = jnp.bfloat16 if _HALF.value else jnp.float32
  backend = conv_backend.backend_name(dtype)
  peak = benchmark.peak_matmul_flops(dp, dtype)
  bandwidth = benchmark.peak_memory_bandwidth(dp)
  print(f'{dp.num_devices} x {jax.devices()[0].device_kind}: matmul peak {peak / 1e9:,.1f} GFLOP/s '
        f'({jnp.dtype(dtype).name}), memory bandwidth {bandwidth / 1e9:,.1f} GB/s, convolutions: '
        f'{backend}', flush=True)
  modes = benchmark.MODES if _MODE.value == 'both' else (_MODE.value,)
  results, width = [], max(map(len, names))
  for name in names:
    for mode in modes:
      config = benchmark.benchmark_config(default.get_config(), name, _BATCH_SIZE.value,
                                          _HALF.value)
      row = benchmark.measure(config, mode, dp, peak, input_shape, _MIN_SECONDS.value,
                              _BREAKDOWN.value)
      results.append(row)
      print(f"{name:{width}s} {mode:5s} {row['images_per_sec']:>11,.1f} img/s  step "
            f"{row['step_ms']['median']:8.2f} ms (p10 {row['step_ms']['p10']:.2f}, p90 "
            f"{row['step_ms']['p90']:.2f})  compile {row['compile_seconds']:5.1f} s  "
            f"{100 * row['flops_utilization']:5.1f}% of peak", flush=True)
      if _BREAKDOWN.value:
        print(profile.format_breakdown(f'{name} {mode}', row['breakdown']), flush=True)
  report = {'device': jax.devices()[0].device_kind, 'platform': jax.default_backend(),
            'num_devices': dp.num_devices, 'dtype': jnp.dtype(dtype).name, 'peak_flops': peak,
            'conv_backend': backend,
            'peak_bandwidth': bandwidth,
            'results': results}
  metrics.write_json(_OUTPUT.value, report, make_dirs=True)  # Never a half-written file over an older result.


if __name__ == '__main__':
  cli.run(main)
