"""The PyTorch peer of `experiments.benchmark --mode=train`: the same models, batch and timing.

  python -m benchmarks.pytorch --models=lenet5,resnet20 --batch_size=256 --output=FILE.json
  python -m benchmarks.pytorch --models=resnet50 --batch_size=16 --breakdown ...  # By operation

  python -m benchmarks.pytorch --models=resnet50 --batch_size=256 --device=cuda --amp ...  # GPU

One train step = uint8 images -> float normalise -> forward -> softmax cross-entropy -> backward ->
SGD with momentum 0.9, exactly what convjax's benchmark step does. fp32 (or bf16 autocast with
--amp), channels_last memory format (oneDNN's and cuDNN's fastest), synthetic data made once.
Timed by the same `convjax.analysis.benchmark.time_steps` as convjax: median step after warm-up, p10, p90.
Input shapes default to convjax's registry, so both sides build the same network.
"""

from absl import flags

from convjax import errors
from experiments import cli

_MODELS = flags.DEFINE_list('models', ['lenet5', 'resnet20'], 'Models of benchmarks.torch_models.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 256, 'Batch size.')
_INPUT_SHAPE = flags.DEFINE_list('input_shape', None,
                                  'height,width,channels; default: the registry\'s native shape.')
_MIN_SECONDS = flags.DEFINE_float('min_seconds', 3.0, 'Timed seconds per model, at least.')
_THREADS = flags.DEFINE_integer('threads', None, 'torch.set_num_threads; default: PyTorch\'s.')
_DEVICE = flags.DEFINE_enum('device', 'cpu', ['cpu', 'cuda'], 'Where PyTorch runs.')
_AMP = flags.DEFINE_bool('amp', False, 'bfloat16 autocast (fp32 master weights), the GPU peer of '
                         'experiments.benchmark --half_precision.')
_BREAKDOWN = flags.DEFINE_bool('breakdown', False,
                                'Also profile the step (torch.profiler) and print where its time '
                                'goes, in the classes of experiments.benchmark --breakdown.')
_OUTPUT = flags.DEFINE_string('output', None, 'Where to write the JSON results.')
flags.mark_flags_as_required(['output'])

def train_step_fn(name: str, batch_size: int, input_shape, device: str = 'cpu', amp: bool = False,
                  seed: int = 0):
  """(model, step) where step(None) runs one SGD step on a fixed synthetic uint8 batch."""
  import numpy as np
  import torch
  from benchmarks import torch_models
  torch.manual_seed(seed)
  h, w, c = input_shape
  model = torch_models.MODELS[name](in_channels=c).to(device, memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
  rng = np.random.default_rng(seed)
  images = torch.from_numpy(rng.integers(0, 256, (batch_size, c, h, w), dtype=np.uint8))
  images = images.to(device).contiguous(memory_format=torch.channels_last)
  labels = torch.from_numpy(rng.integers(0, 10, batch_size).astype(np.int64)).to(device)
  model.train()

  def step(_):
    x = (images.float() / 255 - 0.5) / 0.25
    with torch.autocast(device, torch.bfloat16, enabled=amp):
      logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss
  return model, step


# PyTorch's operator names -> convjax.analysis.profile's classes (the first pattern found wins);
# the optimiser's class is every operator under its step.
_TORCH_CLASSES = (('conv', 'convolution'), ('addmm', 'dense'), ('aten::mm', 'dense'),
                  ('linear', 'dense'), ('matmul', 'dense'), ('norm', 'normalisation'),
                  ('pool', 'pooling'), ('copy_', 'layout copies'), ('clone', 'layout copies'),
                  ('contiguous', 'layout copies'))


def _torch_class(event) -> str:
  parent = event
  while parent is not None:
    if parent.name.startswith('Optimizer.'):
      return 'optimiser'
    parent = parent.cpu_parent
  name = event.name.lower()
  return next((cls for pattern, cls in _TORCH_CLASSES if pattern in name), 'elementwise and other')


def breakdown(step, steps: int = 5) -> dict:
  """profile.profile's result for a PyTorch step: each operator's own (self) CPU time, by
  class, per step. An operator's time is its wall time on the calling thread, its intra-op
  threads included."""
  import time
  import torch
  from convjax.analysis import profile
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    start = time.perf_counter()
    for _ in range(steps):
      step(None).item()
    wall = time.perf_counter() - start
  classes = dict.fromkeys(profile.CLASSES, 0.0)
  for event in prof.events():
    classes[_torch_class(event)] += event.self_cpu_time_total / 1e3 / steps
  return {'classes': classes, 'total_ms': sum(classes.values()), 'step_ms': 1e3 * wall / steps}


def main(argv):
  del argv
  import torch
  from convjax import models
  from convjax.analysis import benchmark
  from convjax.training import metrics
  from benchmarks import torch_models
  if _THREADS.value:
    torch.set_num_threads(_THREADS.value)
  results = []
  for name in _MODELS.value:
    if name not in torch_models.MODELS:
      raise errors.InvalidValueError(f"unknown model '{name}'; the PyTorch references are: "
                                     f"{', '.join(torch_models.MODELS)}")
    shape = cli.parse_shape(_INPUT_SHAPE.value) or models.get_spec(name).input_shape
    model, step = train_step_fn(name, _BATCH_SIZE.value, shape, _DEVICE.value, _AMP.value)
    # CPU steps are synchronous; on a GPU, .item() waits for the step's kernels.
    timing = benchmark.time_steps(step, None, min_seconds=_MIN_SECONDS.value,
                                  block=lambda loss: loss.item())
    rate = _BATCH_SIZE.value / (timing.median_ms / 1e3)
    results.append({'model': name, 'mode': 'train', 'batch_size': _BATCH_SIZE.value,
                    'input_shape': list(shape), 'images_per_sec': rate,
                    'step_ms': timing.summary(), 'params': torch_models.count_params(model),
                    'peak_rss_bytes': benchmark.peak_rss_bytes()})
    print(f'pytorch {name:10s} train {rate:>11,.1f} img/s  step {timing.median_ms:8.2f} ms '
          f'(p10 {timing.percentile(10):.2f}, p90 {timing.percentile(90):.2f})', flush=True)
    if _BREAKDOWN.value:
      from convjax.analysis import profile
      results[-1]['breakdown'] = breakdown(step)
      print(profile.format_breakdown(f'pytorch {name} train', results[-1]['breakdown']),
            flush=True)
  report = {'framework': 'pytorch', 'version': torch.__version__, 'device': _DEVICE.value,
            'num_threads': torch.get_num_threads(),
            'dtype': 'bfloat16' if _AMP.value else 'float32',
            'memory_format': 'channels_last', 'results': results}
  metrics.write_json(_OUTPUT.value, report, make_dirs=True)


if __name__ == '__main__':
  cli.run(main)
