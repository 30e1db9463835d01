"""Optimisers and learning-rate schedules, built from the config with optax."""
import jax
import optax

from convjax import errors, models
from convjax.training import fused_adamw, fused_sgd

OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'adamw')
SCHEDULES = ('constant', 'cosine', 'linear', 'step', 'onecycle')
FREEZE = ('none', 'backbone')


def create_schedule(config, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  """Learning rate as a function of step.

  `warmup_epochs` of linear warmup from 0, then:
    constant: `learning_rate` throughout;
    cosine: cosine decay to 0 at `total_steps`;
    linear: linear decay to 0 at `total_steps`;
    step: multiply by `lr_decay_factor` at each epoch in `lr_decay_epochs`;
    onecycle: no warmup; a triangle from learning_rate / onecycle_div_factor up to learning_rate
      at onecycle_pct_start of total_steps, then down to 0 at total_steps.
  """
  if config.lr_schedule == 'onecycle':
    return _triangle(config.learning_rate, config.learning_rate / config.onecycle_div_factor,
                     max(1, round(config.onecycle_pct_start * total_steps)), total_steps)
  base = config.learning_rate
  warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
  decay_steps = max(total_steps - warmup_steps, 1)
  if config.lr_schedule == 'constant':
    main = optax.constant_schedule(base)
  elif config.lr_schedule == 'cosine':
    main = optax.cosine_decay_schedule(base, decay_steps)
  elif config.lr_schedule == 'linear':
    main = optax.linear_schedule(base, 0.0, decay_steps)
  elif config.lr_schedule == 'step':
    boundaries = {int(e * steps_per_epoch) - warmup_steps: config.lr_decay_factor
                  for e in config.lr_decay_epochs}
    main = optax.piecewise_constant_schedule(base, boundaries)
  else:
    raise errors.InvalidValueError(
        f"unknown lr_schedule '{config.lr_schedule}'; valid schedules are: "
        f"{', '.join(SCHEDULES)}")
  if not warmup_steps:
    return main
  warmup = optax.linear_schedule(0.0, base, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def _triangle(peak: float, start: float, peak_step: int, total_steps: int) -> optax.Schedule:
  """start at step 0, rising linearly to peak at peak_step, then falling to 0 at total_steps."""
  return optax.join_schedules(
      [optax.linear_schedule(start, peak, peak_step),
       optax.linear_schedule(peak, 0.0, max(total_steps - peak_step, 1))], [peak_step])


def _decay_kernels_only(params):
  """Weight decay applies to conv and dense kernels, not to biases or norm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(config, schedule: optax.Schedule) -> optax.GradientTransformation:
  """The config's optimiser, split between head and backbone as config.freeze and
  config.backbone_lr_scale ask (`partition_optimizer`)."""
  return partition_optimizer(config, _base_optimizer(config, schedule))


def partition_optimizer(config, tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """tx for the head (models.ModelSpec.head); for the backbone, no update at all with
  freeze='backbone', else tx's updates times backbone_lr_scale, which scales its learning rate
  (and with it adamw's decoupled decay, as a PyTorch parameter group's lr would)."""
  # Configs saved before fine-tuning existed lack both fields.
  freeze, scale = config.get('freeze', 'none'), config.get('backbone_lr_scale', 1.0)
  if freeze == 'none' and scale == 1:
    return tx
  backbone = (optax.set_to_zero() if freeze == 'backbone' else
              optax.chain(tx, optax.scale(scale)))
  head = models.get_spec(config.model).head
  labels = lambda params: jax.tree.map(lambda in_head: 'head' if in_head else 'backbone',
                                       models.head_mask(head, params))
  return optax.multi_transform({'head': tx, 'backbone': backbone}, labels)


def _base_optimizer(config, schedule: optax.Schedule) -> optax.GradientTransformation:
  """The optimiser config.optimizer names, for every parameter alike.

  `weight_decay` is decoupled (Loshchilov & Hutter) for adamw and an L2 term added to the
  gradient for the others, as in PyTorch's SGD and Adam. Either way it skips biases and norms.
  adamw, momentum and nesterov are `fused_adamw` and `fused_sgd` (the same optimisers, updated
  in one pass) where config.fused_update is set.
  """
  name, decay = config.optimizer, config.weight_decay
  if name == 'adamw' and config.get('fused_update', False):
    return fused_adamw.fused_adamw(schedule, config.adam_b1, config.adam_b2, config.adam_eps,
                                   decay, _decay_kernels_only)
  if name == 'adamw':
    return optax.adamw(schedule, config.adam_b1, config.adam_b2, config.adam_eps,
                       weight_decay=decay, mask=_decay_kernels_only)
  if name == 'adam':
    base = optax.adam(schedule, config.adam_b1, config.adam_b2, config.adam_eps)
  elif name == 'sgd':
    base = optax.sgd(schedule)
  elif name in ('momentum', 'nesterov') and config.get('fused_update', False):
    return fused_sgd.fused_sgd(schedule, config.momentum, name == 'nesterov', decay,
                               _decay_kernels_only)
  elif name in ('momentum', 'nesterov'):
    base = optax.sgd(schedule, momentum=config.momentum, nesterov=name == 'nesterov')
  else:
    raise errors.InvalidValueError(
        f"unknown optimizer '{name}'; valid optimizers are: {', '.join(OPTIMIZERS)}")
  if not decay:
    return base
  return optax.chain(optax.add_decayed_weights(decay, mask=_decay_kernels_only), base)
