"""Multi-scale features (convjax/models/features.py): shapes, reductions, the head's map, early
exit, imported weights and errors, on every image backbone."""
import numpy as np
import jax
import jax.numpy as jnp
import pytest

from convjax import errors, models
from convjax.models import features
from tests import test_models, test_weights


@pytest.mark.parametrize('name', test_models.edit_loop(features.backbones()))
def test_every_backbone_has_maps_of_non_decreasing_reduction(name):
  info = features.feature_info(name)
  assert [f.index for f in info] == list(range(len(info))) and len(info) >= 2
  reductions = [f.reduction for f in info]
  assert reductions == sorted(reductions) and reductions[-1] >= 4
  native = models.get_spec(name).input_shape
  for f, shape in zip(info, features.feature_shapes(models.create(name), native)):
    assert shape[-1] == f.channels and f.channels > 0


def test_resnet50_at_224_matches_timms_feature_info():
  info = features.feature_info('resnet50', (224, 224, 3))
  assert [(f.channels, f.reduction) for f in info] == [
      (64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)]


def test_small_inputs_get_the_small_stem_and_its_reductions():
  assert [f.reduction for f in features.feature_info('resnet18', (32, 32, 3))] == [1, 1, 2, 4, 8]
  assert [f.reduction for f in features.feature_info('resnet18', (128, 128, 3))] == [2, 4, 8, 16,
                                                                                    32]


def tiny(name):
  module = models.create(name, input_shape=test_models.tiny_input_shape(name),
                         **test_models.TINY.get(name, {}))
  x = jax.random.normal(jax.random.key(1), (2, *test_models.tiny_input_shape(name)))
  return module, module.init(jax.random.key(0), x, train=False), x


# Global-pool heads: the embedding is the pooled last map; flatten heads: its first dense layer
# reads the flattened last map.
POOLED = {'resnet18': jnp.mean, 'resnet20': jnp.mean, 'densenet121': jnp.mean,
          'googlenet_bn': jnp.mean, 'nin': jnp.mean, 'speednet': jnp.max}


@pytest.mark.parametrize('name', test_models.edit_loop(sorted(POOLED)))
def test_the_last_map_is_what_the_head_pools(name):
  module, variables, x = tiny(name)
  (last,) = module.apply(variables, x, train=False, feature_indices=(-1,))
  _, embedding = module.apply(variables, x, train=False, return_features=True)
  np.testing.assert_allclose(POOLED[name](last, axis=(1, 2)), embedding, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', test_models.edit_loop(['lenet5', 'lenet5_1998', 'alexnet',
                                                        'zfnet', 'vgg11_bn']))
def test_the_last_map_is_what_the_flattening_head_reads(name):
  module, variables, x = tiny(name)
  (last,) = module.apply(variables, x, train=False, feature_indices=(-1,))
  first_dense = {'lenet5': 'Dense_0', 'lenet5_1998': 'F6'}.get(name, 'Dense_0')
  assert variables['params'][first_dense]['kernel'].shape[0] == np.prod(last.shape[1:])


def test_maps_come_in_the_order_asked_and_negative_indices_count_from_the_end():
  module, variables, x = tiny('resnet18')
  every = module.apply(variables, x, train=False, feature_indices='all')
  picked = module.apply(variables, x, train=False, feature_indices=(-1, 1))
  np.testing.assert_array_equal(picked[0], every[-1])
  np.testing.assert_array_equal(picked[1], every[1])


def test_later_stages_are_neither_built_nor_run():
  module = models.create('resnet18', input_shape=(32, 32, 3), **test_models.TINY['resnet18'])
  x = jnp.zeros((1, 32, 32, 3))
  variables = module.init(jax.random.key(0), x, train=False, feature_indices=(1,))
  assert sorted(variables['params']) == ['BasicBlock_0', 'stem_conv', 'stem_norm']
  # The full model's variables serve too, and the maps of stage 1 cost less than stage 4's.
  full = module.init(jax.random.key(0), x, train=False)
  early = jax.jit(lambda v: module.apply(v, x, train=False, feature_indices=(1,))[0])
  late = jax.jit(lambda v: module.apply(v, x, train=False, feature_indices=(4,))[0])
  count = lambda f: f.lower(full).compile().cost_analysis()['flops']
  assert count(early) < count(late)


def test_imported_torchvision_weights_give_the_features_too():
  """A state dict with torchvision's names, through convjax's importer, serves features."""
  state = test_weights.tiny_state('resnet18')
  variables = test_weights.load_tiny('resnet18', state)
  module = models.create('resnet18', num_classes=7, **test_weights.TINY['resnet18'])
  x = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))
  maps = module.apply(variables, x, train=False, feature_indices='all')
  _, embedding = module.apply(variables, x, train=False, return_features=True)
  assert [m.shape[1] for m in maps] == [32, 16, 8, 4, 2]
  np.testing.assert_allclose(maps[-1].mean(axis=(1, 2)), embedding, rtol=1e-4, atol=1e-4)


def test_lenet5_1998_features_take_larger_images_while_its_classifier_refuses_them():
  module = models.create('lenet5_1998')
  x = jnp.zeros((1, 64, 64, 1))
  assert [s[1] for s in features.feature_shapes(module, (64, 64, 1))] == [60, 26, 9]
  with pytest.raises(errors.InvalidValueError, match='up to 32x32'):
    jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)


@pytest.mark.parametrize('indices, message', [
    ((5,), 'feature index 5 is out of range: this backbone has 5 feature maps, indices -5 to 4'),
    ((-6,), 'feature index -6 is out of range'),
    ((1, -4), r'feature indices \(1, -4\) name a map twice'),
])
def test_bad_indices_get_one_sentence(indices, message):
  module = models.create('resnet18')
  with pytest.raises(errors.InvalidValueError, match=message):
    features.feature_shapes(module, (64, 64, 3), indices)


def test_a_model_without_image_features_is_refused_by_name():
  with pytest.raises(errors.InvalidValueError, match="model 'm5' \\(audio\\) has no multi-scale"):
    features.feature_info('m5')
  with pytest.raises(models.UnknownModelError, match="unknown model .resnet5."):
    features.check_backbone('resnet5')
