"""What a run reports: metrics.jsonl, TensorBoard events, and progress on stdout."""
import json
import math
import os
import sys
import time
from typing import Any

import tqdm

METRICS_FILE = 'metrics.jsonl'


def write_text(path: str, text: str) -> None:
  """Writes through a temporary file and a rename, so a kill leaves the old file or the new one,
  never half of one."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def to_json(content: Any, indent: int | None = None) -> str:
  """Valid JSON: numpy scalars become numbers, NaN and Inf become null (a value that could not
  be measured; JSON has no NaN), and other values JSON lacks are written as str."""
  return json.dumps(_json_safe(content), indent=indent, default=str, allow_nan=False)


def _json_safe(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  if hasattr(value, 'item') and getattr(value, 'ndim', 0) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_json(path: str, content: Any, make_dirs: bool = False) -> None:
  """`write_text` of indented `to_json`.

  make_dirs creates the missing directories above path first (report files named by a flag).
  """
  if make_dirs:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  write_text(path, to_json(content, indent=2))


def read_metrics(workdir: str) -> list[dict]:
  """Every complete line of WORKDIR/metrics.jsonl; a torn last line is skipped."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue  # A line cut short by a kill mid-write.
  return records


class MetricsWriter:
  """Appends one JSON object per line to metrics.jsonl and mirrors scalars to TensorBoard.

  On resume from step s, lines for steps after s (written after the last checkpoint by a run
  that then died) are dropped first, so no step appears twice.
  """

  def __init__(self, workdir: str, start_step: int, enabled: bool = True):
    self._enabled = enabled
    if not enabled:
      return
    self._path = os.path.join(workdir, METRICS_FILE)
    self._keep_until(start_step)
    self._file = open(self._path, 'a')
    from tensorboardX import SummaryWriter  # Imported here: only the writing process needs it.
    self._tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def _keep_until(self, step: int) -> None:
    if not os.path.exists(self._path):
      return
    kept = [r for r in read_metrics(os.path.dirname(self._path)) if r.get('step', 0) <= step]
    tmp = self._path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(to_json(r) + '\n' for r in kept)
    os.replace(tmp, self._path)  # Atomic: the old file stays whole until the new one is.

  def write(self, step: int, values: dict[str, Any]) -> None:
    if not self._enabled:
      return
    record = _json_safe({'step': int(step), **values})
    self._file.write(to_json(record) + '\n')
    self._file.flush()
    for key, value in record.items():
      if key != 'step' and isinstance(value, float):  # Not None: unmeasured values stay out.
        self._tensorboard.add_scalar(key, value, step)

  def close(self) -> None:
    if self._enabled:
      self._file.close()
      self._tensorboard.close()


class Progress:
  """A tqdm bar on a terminal; otherwise a line every `log_every_steps` with loss, images/s, ETA."""

  def __init__(self, start_step: int, total_steps: int, enabled: bool = True,
               budget_seconds: float = 0.0, unit: str = 'img'):
    """budget_seconds > 0: training stops after that many training seconds, so the ETA is
    never later than the budget's end. unit: what the rate counts per second ('img', 'clip')."""
    self._interactive = enabled and sys.stdout.isatty()
    self._enabled, self._budget = enabled, budget_seconds
    self._total, self._start, self._time = total_steps, start_step, time.time()
    self._bar = tqdm.tqdm(total=total_steps, initial=start_step, unit='step',
                          dynamic_ncols=True) if self._interactive else None
    self._postfix, self._unit = {}, unit

  def update(self, step: int, loss: float, images_per_sec: float,
             train_seconds: float | None = None) -> None:
    """A progress line: loss and images/s of the last interval, and the ETA. train_seconds (the
    run's training time so far) lets a time budget bound the ETA."""
    if not self._enabled:
      return
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      self._postfix.update({'loss': f'{loss:.4f}', f'{self._unit}_s': f'{images_per_sec:,.0f}'})
      self._bar.set_postfix(self._postfix)
      return
    elapsed = time.time() - self._time
    rate = (step - self._start) / elapsed if elapsed > 0 else math.nan
    eta = (self._total - step) / rate if rate > 0 else math.nan
    if self._budget > 0 and train_seconds is not None:
      left = max(self._budget - train_seconds, 0.0)
      eta = min(eta, left) if math.isfinite(eta) else left
    print(f'step {step}/{self._total}  loss {loss:.4f}  {images_per_sec:,.0f} {self._unit}/s  '
          f'ETA {_duration(eta)}', flush=True)

  def evaluated(self, step: int, headline: str) -> None:
    """An evaluation at `step`, as its headline ('test accuracy 0.9123'): on the bar, or a line
    of its own."""
    if not self._enabled:
      return
    if self._bar is not None:
      self._postfix['test'] = headline.removeprefix('test ')
      self._bar.set_postfix(self._postfix)
      return
    print(f'step {step}/{self._total}  {headline}', flush=True)

  def message(self, text: str) -> None:
    if not self._enabled:
      return
    if self._bar is not None:
      self._bar.write(text)
    else:
      print(text, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  minutes, seconds = divmod(int(seconds), 60)
  return f'{minutes}m{seconds:02d}s' if minutes else f'{seconds}s'
