"""Figures as PNG files: comparison curves and scatters, image grids, matrices.

Every function builds a matplotlib Figure, writes it to `path` and returns it closed, so callers
and tests can inspect its axes (one line or point series per model, say) without a display.
"""
import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use('Agg')  # Files only: no display is needed or opened.
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
from matplotlib import patches  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

DPI = 120


def save(fig, path: str):
  """Writes fig as PNG through a temporary file, so a kill never leaves half an image."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp.png'
  fig.savefig(tmp, dpi=DPI, bbox_inches='tight')
  os.replace(tmp, path)
  plt.close(fig)
  return fig


def curves(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str,
           ylabel: str, title: str, path: str, log_x: bool = False, log_y: bool = False):
  """One line per name: series maps name -> (x values, y values)."""
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for name, (x, y) in series.items():
    ax.plot(x, y, marker='o', markersize=3, label=name)
  if log_x:
    ax.set_xscale('log', base=2)
  if log_y:
    ax.set_yscale('log')
  _finish(ax, xlabel, ylabel, title)
  return save(fig, path)


def scatter(points: Mapping[str, tuple[float, float]], xlabel: str, ylabel: str, title: str,
            path: str, log_x: bool = True):
  """One labelled point per name: points maps name -> (x, y)."""
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  position = np.log([x for x, _ in points.values()]) if log_x else [x for x, _ in points.values()]
  middle = (np.min(position) + np.max(position)) / 2 if points else 0.0
  for (name, (x, y)), at in zip(points.items(), position):
    ax.scatter([x], [y], s=40, label=name)
    # Labels point inwards (left of points in the right half), so none crosses the frame.
    inwards = at > middle
    ax.annotate(name, (x, y), textcoords='offset points', xytext=(-5 if inwards else 5, 5),
                ha='right' if inwards else 'left', fontsize=8)
  if log_x:
    ax.set_xscale('log')
  ax.margins(x=0.08, y=0.12)  # Room for the labels above the highest points.
  _finish(ax, xlabel, ylabel, title)
  return save(fig, path)


def _title_margin(fig, suptitle: str, inches: float = 0.45) -> None:
  """Puts the suptitle a fixed distance above the grid. Matplotlib's default top margin is a
  fraction of the figure (12%), which in a tall grid of many rows becomes a blank band."""
  height = fig.get_figheight()
  fig.subplots_adjust(top=1 - (inches if suptitle else 0.1) / height, bottom=0.1 / height)
  if suptitle:
    fig.suptitle(suptitle, fontsize=10, y=1 - 0.1 / height, va='top')


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], path: str, columns: int = 8,
               suptitle: str = '', cmap: str = 'gray', size: float = 1.4, symmetric: bool = False):
  """Images [h, w] or [h, w, 3] in a grid, each with a title; each is scaled to its own range
  (symmetric: around zero, for filters and signed maps)."""
  rows = max(1, -(-len(images) // columns))
  columns = min(columns, max(len(images), 1))
  fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows + 0.4),
                           squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for ax, image, title in zip(axes.flat, images, titles):
    image = np.asarray(image, np.float32)
    if symmetric:
      bound = float(np.abs(image).max()) or 1.0
      ax.imshow(image, cmap='RdBu_r', vmin=-bound, vmax=bound)
    elif image.ndim == 3:
      low, high = image.min(), image.max()
      ax.imshow((image - low) / max(high - low, 1e-12))
    else:
      ax.imshow(image, cmap=cmap)
    ax.set_title(title, fontsize=7)
  _title_margin(fig, suptitle)
  return save(fig, path)


def matrix(values: np.ndarray, labels: Sequence[str], xlabel: str, ylabel: str, title: str,
           path: str):
  """A square matrix (a confusion matrix, say) with its counts written in the cells."""
  fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
  ax.imshow(values, cmap='Blues')
  ax.set_xticks(range(len(labels)), labels, rotation=60, ha='right', fontsize=7)
  ax.set_yticks(range(len(labels)), labels, fontsize=7)
  threshold = values.max() / 2
  for (i, j), v in np.ndenumerate(values):
    ax.text(j, i, f'{v:d}' if np.issubdtype(values.dtype, np.integer) else f'{v:.2f}',
            ha='center', va='center', fontsize=6, color='white' if v > threshold else 'black')
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  return save(fig, path)


def feature_rows(stages: Sequence[tuple[str, np.ndarray]], path: str, max_maps: int = 16,
                 suptitle: str = '', size: float = 0.9, time_across: bool = False):
  """One row per stage, labelled with its shape. A 2-D stage's first max_maps feature maps
  [h, w, c] sit side by side; a 1-D stage [t, c] spans the row, as a line for one channel (a
  waveform) or as its first max_maps channels down against time across; a 3-D stage
  [t, h, w, c] shows one map frame by frame, the channel whose values vary most over time.

  time_across: draw 2-D maps transposed with the origin low, as spectrograms are drawn (their
  first axis is time, their second frequency).
  """
  # float32 for matplotlib, which draws a bfloat16 map (a half-precision model's) wrongly: a
  # 32x32 one came out one flat colour.
  stages = [(label, np.asarray(maps, np.float32)) for label, maps in stages]
  widths = [maps.shape[-1] for _, maps in stages if maps.ndim == 3]
  widths += [maps.shape[0] for _, maps in stages if maps.ndim == 4]  # Frames.
  columns = min(max_maps, max(widths) if widths else max_maps)
  fig, axes = plt.subplots(len(stages), columns + 1, squeeze=False,
                           figsize=(size * (columns + 2.5), size * len(stages) + 0.4),
                           gridspec_kw={'width_ratios': [2.5] + [1] * columns})
  grid = axes[0, 0].get_gridspec()
  for index, (row, (label, maps)) in enumerate(zip(axes, stages)):
    for ax in row:
      ax.axis('off')
    caption = f'{label}\n{"x".join(map(str, maps.shape))}'
    if maps.ndim == 4:  # A clip's stage [t, h, w, c]: one channel, the one motion moves most.
      channel = int(np.argmax(maps.var(axis=0).mean(axis=(0, 1))))
      caption += f'\nmap {channel}'
    row[0].text(1.0, 0.5, caption, ha='right', va='center', fontsize=7,
                transform=row[0].transAxes)
    if maps.ndim == 4:  # Frame by frame.
      for ax, frame in zip(row[1:], maps[..., channel]):
        ax.imshow(frame, cmap='viridis')
      continue
    if maps.ndim == 2 or (time_across and maps.shape[-1] == 1):  # A signal or a spectrogram.
      for ax in row[1:]:
        ax.remove()
      _signal(fig.add_subplot(grid[index, 1:]), maps[:, :max_maps] if maps.ndim == 2
              else maps[..., 0])
      continue
    for ax, channel in zip(row[1:], range(min(columns, maps.shape[-1]))):
      picture = maps[..., channel]
      if time_across:
        ax.imshow(picture.T, cmap='viridis', origin='lower', aspect='auto')
      else:
        ax.imshow(picture, cmap='viridis')
  _title_margin(fig, suptitle)
  return save(fig, path)


def _signal(ax, maps: np.ndarray) -> None:
  """A stage [t, c] against time: one channel as a line; several channels, or the frequency
  bands of a spectrogram, as a heatmap with time across and the first channel low."""
  if maps.shape[1] == 1:
    ax.plot(maps[:, 0], linewidth=0.5)
    ax.set_xlim(0, len(maps) - 1)
  else:
    ax.imshow(maps.T, cmap='viridis', aspect='auto', interpolation='nearest', origin='lower')
  ax.set_xticks([])
  ax.set_yticks([])


def signal_grid(signals: Sequence[np.ndarray], titles: Sequence[str], path: str,
                columns: int = 8, suptitle: str = '', size: float = 1.4):
  """1-D signals [n] (learned 1-D filters, say) as small line plots in a grid, each titled."""
  rows = max(1, -(-len(signals) // columns))
  columns = min(columns, max(len(signals), 1))
  fig, axes = plt.subplots(rows, columns, figsize=(size * columns, 0.7 * size * rows + 0.4),
                           squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for ax, signal, title in zip(axes.flat, signals, titles):
    ax.plot(np.asarray(signal, np.float32), linewidth=0.7)
    ax.axhline(0, color='grey', linewidth=0.3)
    ax.set_title(title, fontsize=7)
  _title_margin(fig, suptitle)
  return save(fig, path)


def projection(points: np.ndarray, labels: np.ndarray, names: Sequence[str], title: str,
               path: str):
  """2-D points [n, 2] coloured by class, one scatter series (and legend entry) per class."""
  fig, ax = plt.subplots(figsize=(6.4, 5.2))
  colours = plt.get_cmap('tab10' if len(names) <= 10 else 'tab20')
  for c, name in enumerate(names):
    chosen = labels == c
    if chosen.any():
      ax.scatter(points[chosen, 0], points[chosen, 1], s=3, alpha=0.6, color=colours(c % 20),
                 label=name)
  ax.set_title(title)
  ax.set_xticks([])
  ax.set_yticks([])
  ax.legend(fontsize=7, markerscale=3, loc='best')
  return save(fig, path)


def text_table(lines: Sequence[str], path: str, title: str, columns: int = 1):
  """Lines of text in a monospace figure, in `columns` columns, under a title."""
  rows = -(-len(lines) // columns)
  fig, ax = plt.subplots(figsize=(4.2 * columns, 0.18 * rows + 0.6))
  ax.axis('off')
  for column in range(columns):
    chunk = lines[column * rows:(column + 1) * rows]
    ax.text(column / columns, 1.0, '\n'.join(chunk), family='monospace', fontsize=7, va='top',
            transform=ax.transAxes)
  ax.set_title(title, fontsize=9)
  return save(fig, path)


def detections(image: np.ndarray, found: Sequence[Mapping], path: str, title: str = '',
               truth: Sequence[Sequence[float]] = ()):
  """An image [h, w] or [h, w, 3] with each detection's box ({'bbox': (x, y, w, h), 'class',
  'score'}) drawn and labelled with its class and score; boxes in `truth` (x, y, w, h) dashed."""
  height, width = np.shape(image)[:2]
  scale = 6.0 / max(height, width)
  fig, ax = plt.subplots(figsize=(max(width * scale, 2.0), max(height * scale, 2.0) + 0.3))
  ax.imshow(np.asarray(image), cmap='gray')
  ax.axis('off')
  for x, y, w, h in truth:
    ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor='white',
                                   linestyle='--', linewidth=0.8))
  for (x, y, w, h), label in box_labels(found):
    ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor='lime',
                                   linewidth=1.2))
    ax.text(x - 0.5, y - 1, label, color='black', fontsize=6, va='bottom',
            bbox=dict(facecolor='lime', edgecolor='none', pad=0.5))
  ax.set_title(title, fontsize=8)
  return save(fig, path)


def box_labels(found: Sequence[Mapping]) -> list[tuple[tuple[float, ...], str]]:
  """One (box, label) per distinct box of the detections, in their order: the label names each
  class found in that box with its score, best first ('Coat 0.52 / Pullover 0.46').

  CenterNet sizes a box per peak, not per class, so one object can come back in several classes
  with the same box; their labels drawn one by one would print over each other."""
  labels: dict[tuple[float, ...], list[Mapping]] = {}
  for detection in found:
    labels.setdefault(tuple(round(float(v), 1) for v in detection['bbox']), []).append(detection)
  return [(box, ' / '.join(f"{d['class']} {d['score']:.2f}"
                           for d in sorted(same, key=lambda d: -d['score'])))
          for box, same in labels.items()]
