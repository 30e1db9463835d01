"""Mixup and CutMix: batch-level augmentation inside the jitted train step.

Mixup (Zhang et al. 2018) blends each image with another, x = lam x_i + (1 - lam) x_j; CutMix
(Yun et al. 2019) pastes a box of x_j into x_i covering 1 - lam of its area. Either way the
target becomes lam onehot(y_i) + (1 - lam) onehot(y_j). As in timm's `Mixup` (mode 'batch'):
- the partner of example i is example n - 1 - i of the same (per-device) batch;
- one lam ~ Beta(alpha, alpha) per batch, and with probability 1 - mix_prob no mixing (lam = 1);
- with both alphas set, CutMix is chosen with probability switch_prob, else Mixup;
- CutMix's lam is corrected to the area the clipped box really covers.

Mixing runs on each device's share of the batch with the device's own key, so the result
depends on how a batch is split over devices, as timm's does on the number of GPUs.
"""
import dataclasses

import jax
import jax.numpy as jnp
import optax

from convjax.data import augment


@dataclasses.dataclass(frozen=True)
class Mixing:
  """mixup_alpha, cutmix_alpha: the Beta distributions' alpha (0 = that kind off).
  prob: the chance that a batch is mixed at all. switch_prob: with both kinds on, the chance of
  CutMix rather than Mixup."""
  mixup_alpha: float = 0.0
  cutmix_alpha: float = 0.0
  prob: float = 1.0
  switch_prob: float = 0.5

  @property
  def enabled(self) -> bool:
    return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


def mix(key: jax.Array, images: jnp.ndarray, mixing: Mixing) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Mixes a batch with its reverse: images float [n, h, w, c] -> (mixed [n, h, w, c], lam []).

  lam is the weight of each example's own label; its partner's (`partners`) gets 1 - lam.
  """
  mix_key, switch_key, lam_key, box_key = jax.random.split(key, 4)
  use_cutmix = _choose_cutmix(switch_key, mixing)
  alpha = jnp.where(use_cutmix, mixing.cutmix_alpha, mixing.mixup_alpha)
  lam = jax.random.beta(lam_key, jnp.maximum(alpha, 1e-6), jnp.maximum(alpha, 1e-6))
  lam = jnp.where(jax.random.bernoulli(mix_key, mixing.prob), lam, 1.0)
  partner_images = images[::-1]
  inside, box_lam = cutmix_box(box_key, images.shape[1:3], lam)
  cut = jnp.where(inside[None, :, :, None], partner_images, images)
  blended = lam * images + (1 - lam) * partner_images
  mixed = jnp.where(use_cutmix, cut, blended.astype(images.dtype))
  return mixed, jnp.where(use_cutmix, box_lam, lam).astype(jnp.float32)


def _choose_cutmix(key: jax.Array, mixing: Mixing) -> jnp.ndarray:
  if mixing.cutmix_alpha > 0 and mixing.mixup_alpha > 0:
    return jax.random.bernoulli(key, mixing.switch_prob)
  return jnp.asarray(mixing.cutmix_alpha > 0)


def cutmix_box(key: jax.Array, size: tuple[int, int], lam: jnp.ndarray):
  """A box of about (1 - lam) of an image of `size` (h, w), centred uniformly and clipped at
  the borders (Yun et al. 2019): (inside bool [h, w], the corrected lam = 1 - its area share)."""
  height, width = size
  cut = jnp.sqrt(1.0 - lam)
  cut_h, cut_w = (cut * height).astype(jnp.int32), (cut * width).astype(jnp.int32)
  centre = jax.random.randint(key, (2,), 0, jnp.array([height, width]))
  top, bottom = jnp.clip(centre[0] - cut_h // 2, 0, height), jnp.clip(centre[0] + cut_h // 2, 0, height)
  left, right = jnp.clip(centre[1] - cut_w // 2, 0, width), jnp.clip(centre[1] + cut_w // 2, 0, width)
  inside = augment.rectangle((height, width), top, left, bottom - top, right - left)
  return inside, 1.0 - (bottom - top) * (right - left) / (height * width)


def partners(labels: jnp.ndarray) -> jnp.ndarray:
  """The label each example was mixed with: labels [n] reversed."""
  return labels[::-1]


def mixed_targets(labels: jnp.ndarray, partner_labels: jnp.ndarray, lam: jnp.ndarray,
                  num_classes: int, label_smoothing: float = 0.0) -> jnp.ndarray:
  """Soft targets [n, num_classes] of a mixed batch, each row summing to 1: lam [n] of
  onehot(labels [n]) plus 1 - lam of onehot(partner_labels [n]), then smoothed (timm's values)."""
  lam = lam[:, None]
  targets = (lam * jax.nn.one_hot(labels, num_classes)
             + (1 - lam) * jax.nn.one_hot(partner_labels, num_classes))
  return optax.smooth_labels(targets, label_smoothing) if label_smoothing else targets
