"""Where a compiled step spends its time, by class of operation (convolution, batch norm, ...).

XLA:CPU records each operation it runs (a fusion, a custom call, a copy) as a profiler event
named after the HLO instruction. `op_classes` reads the compiled HLO text and gives each
instruction a class, from what it computes and the name stack JAX and Flax wrote into its
metadata (e.g. 'transpose(jvp(ResNet))/BasicBlock_0/BatchNorm_0/...'); `profile` runs the step
under `jax.profiler.trace`, sums the events' durations by class, and divides by the steps.

A fusion takes the class of the costliest thing it contains: a convolution or a matrix product
decides, then pooling windows, then any operation of a normalisation layer (so batch norm fused
with the ReLU after it counts as batch norm), then the optimiser (steps.apply_update's scope).
"""
import collections
import dataclasses
import glob
import os
import re
import tempfile
import time
from typing import Any, Callable

import jax

CLASSES = ('convolution', 'dense', 'normalisation', 'pooling', 'optimiser', 'collectives',
           'layout copies', 'elementwise and other')
_COLLECTIVES = {'all-reduce', 'all-gather', 'reduce-scatter', 'collective-permute', 'all-to-all',
                'all-reduce-start', 'all-reduce-done', 'all-gather-start', 'all-gather-done'}
_NOT_RUN = {'parameter', 'constant', 'tuple', 'get-tuple-element', 'bitcast'}
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.-]+) = .*?\s([a-z][\w-]*)\((.*)$')
_COMPUTATION = re.compile(r'^(?:ENTRY )?%?([\w.-]+) [(]')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLS = re.compile(r'(?:calls|to_apply)=%?([\w.-]+)')
_TARGET = re.compile(r'custom_call_target="([^"]*)"')
_NORM = re.compile(r'/\w*Norm\w*_\d+/')


@dataclasses.dataclass
class _Op:
  opcode: str
  op_name: str
  target: str  # A custom call's target ('' otherwise).
  calls: list[str]  # Computations it runs (a fusion's body).


def _parse(hlo_text: str) -> tuple[dict[str, list[tuple[str, _Op]]], str]:
  """({computation: [(instruction, op)]}, the entry computation's name)."""
  computations, entry, current = collections.defaultdict(list), '', None
  for line in hlo_text.splitlines():
    header = _COMPUTATION.match(line)
    if header and line.rstrip().endswith('{'):
      current = header.group(1)
      entry = current if line.startswith('ENTRY') else entry
      continue
    match = _INSTRUCTION.match(line)
    if match and current:
      rest = match.group(3)
      op_name, target = _OP_NAME.search(rest), _TARGET.search(rest)
      computations[current].append((match.group(1), _Op(
          match.group(2), op_name.group(1) if op_name else '', target.group(1) if target else '',
          _CALLS.findall(rest))))
  return computations, entry


def _contents(op: _Op, computations) -> list[_Op]:
  """op and every operation of the computations it calls, recursively."""
  found, stack = [op], list(op.calls)
  while stack:
    for _, inner in computations.get(stack.pop(), ()):
      found.append(inner)
      stack.extend(inner.calls)
  return found


def classify(ops: list[_Op]) -> str:
  """The class (one of CLASSES) of a run operation, given it and everything it contains."""
  opcodes = {op.opcode for op in ops}
  targets = ' '.join(op.target for op in ops)
  if 'convolution' in opcodes or re.search(r'conv_|convolution', targets):
    return 'convolution'
  if 'dot' in opcodes or 'matmul' in targets:
    return 'dense'
  if opcodes & {'reduce-window', 'select-and-scatter'}:
    return 'pooling'
  if 'norm' in targets or any(_NORM.search(op.op_name + '/') for op in ops):
    return 'normalisation'
  if any('optimizer' in op.op_name for op in ops):
    return 'optimiser'
  if opcodes & _COLLECTIVES:
    return 'collectives'
  if opcodes <= {'copy', 'transpose', 'copy-start', 'copy-done'}:
    return 'layout copies'
  return 'elementwise and other'


def op_classes(hlo_text: str) -> dict[str, str]:
  """{instruction name: class} for every operation the entry computation runs."""
  computations, entry = _parse(hlo_text)
  return {name: classify(_contents(op, computations))
          for name, op in computations[entry] if op.opcode not in _NOT_RUN}


def _event_durations(trace_dir: str) -> collections.Counter:
  """{event name: total nanoseconds} over every thread of the trace in trace_dir."""
  path, = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True)
  totals = collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(path).planes:
    for line in plane.lines:
      for event in line.events:
        totals[event.name] += event.duration_ns
  return totals


def profile(step: Callable[[Any], Any], carry: Any, hlo_text: str, steps: int = 5,
            devices: int = 1) -> dict:
  """Milliseconds per step and device of each class while `step` (carry -> carry, already
  compiled and warm) runs `steps` times; hlo_text is its compiled program (`.as_text()`).

  Returns {'classes': {class: ms}, 'total_ms': their sum} per step and device, and 'step_ms',
  the wall time of a step while profiled (a little above the unprofiled one). The milliseconds
  are those of the threads that ran each operation: XLA runs independent operations side by side
  on its thread pool, so their sum can exceed the wall time. With D devices their events are
  summed and divided by D. Events that are no instruction of the program (the runtime's own
  work) are left out.
  """
  classes = op_classes(hlo_text)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      start = time.perf_counter()
      for _ in range(steps):
        carry = jax.block_until_ready(step(carry))
      wall = time.perf_counter() - start
    durations = _event_durations(trace_dir)
  per_step = 1e-6 / (steps * devices)
  by_class = dict.fromkeys(CLASSES, 0.0)
  for name, nanoseconds in durations.items():
    if name in classes:
      by_class[classes[name]] += nanoseconds * per_step
  return {'classes': by_class, 'total_ms': sum(by_class.values()),
          'step_ms': 1e3 * wall / steps}


def format_breakdown(model: str, result: dict) -> str:
  """A model's breakdown as lines of 'class  ms  share'."""
  total = result['total_ms']
  lines = [f"{model}: {result['step_ms']:.1f} ms a step; operations {total:.1f} thread-ms a device"]
  for name, ms in sorted(result['classes'].items(), key=lambda item: -item[1]):
    if ms:
      lines.append(f'  {name:<22} {ms:9.2f} ms  {100 * ms / total:5.1f}%')
  return '\n'.join(lines)
