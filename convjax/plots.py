"""Figures as PNG files: comparison curves and scatters, image grids, matrices.

Every function builds a matplotlib Figure, writes it to `path` and returns it closed, so callers
and tests can inspect its axes (one line or point series per model, say) without a display.
"""
import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use('Agg')  # Files only: no display is needed or opened.
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
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
           ylabel: str, title: str, path: str, log_x: bool = False):
  """One line per name: series maps name -> (x values, y values)."""
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for name, (x, y) in series.items():
    ax.plot(x, y, marker='o', markersize=3, label=name)
  if log_x:
    ax.set_xscale('log')
  _finish(ax, xlabel, ylabel, title)
  return save(fig, path)


def scatter(points: Mapping[str, tuple[float, float]], xlabel: str, ylabel: str, title: str,
            path: str, log_x: bool = True):
  """One labelled point per name: points maps name -> (x, y)."""
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for name, (x, y) in points.items():
    ax.scatter([x], [y], s=40, label=name)
    ax.annotate(name, (x, y), textcoords='offset points', xytext=(5, 5), fontsize=8)
  if log_x:
    ax.set_xscale('log')
  _finish(ax, xlabel, ylabel, title)
  return save(fig, path)


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
  if suptitle:
    fig.suptitle(suptitle, fontsize=10)
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
