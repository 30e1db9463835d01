"""LeNet family (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning Applied to Document
Recognition").

What LeNet-5 introduced: local receptive fields, weights shared across positions (convolution) and
spatial subsampling, trained end to end by backpropagation; the template of every CNN since.

`LeNet5_1998` is the paper's network, layer for layer (Section II.B):

  input 32x32x1 (28x28 images are centred in a 32x32 field, as the paper did for MNIST)
  C1  conv 5x5, 6 maps                  -> 28x28x6     156 params
  S2  subsampling 2x2, 6 maps           -> 14x14x6      12 params  (coefficient + bias per map)
  C3  conv 5x5, 16 maps, Table I        -> 10x10x16  1,516 params  (60 of the 96 map pairs)
  S4  subsampling 2x2, 16 maps          -> 5x5x16       32 params
  C5  conv 5x5, 120 maps                -> 1x1x120  48,120 params
  F6  fully connected, 84 units         -> 84       10,164 params
  output: 10 Euclidean RBF units, y_i = sum_j (x_j - w_ij)^2, fixed prototypes w_i in {-1, +1}^84
  (stylised 7x12 bitmaps of the digits); not trained.          total 60,000 trainable parameters

Every layer up to F6 is squashed by the scaled tanh 1.7159 tanh(2a/3). The logits are -y: the
closest prototype wins, and softmax cross-entropy on -y is the paper's MAP criterion (eq. 9)
without its constant "rubbish class" term.

`LeNet5` is the modern variant that textbooks and tutorials call LeNet-5: ReLU instead of scaled
tanh, max pooling instead of trainable subsampling, full C3 connectivity and a softmax classifier
instead of RBF units. On 28x28x1 input, C1's padding of 2 gives the 28x28 maps the paper gets
from 32x32 input. Parameters at 28x28x1 and 10 classes: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706.

`lenet5_elu` (the registry) is that network with the exponential linear unit (Clevert et al.
2016) in place of ReLU: the same layers and 61,706 parameters. A ReLU unit whose input stays
negative passes no gradient and stops learning, a real loss when C1 has only six maps; ELU's
negative side keeps every unit learning. On Fashion-MNIST it fits the training set better and
scores ~0.3 points higher (configs/lenet5_fashion_mnist.py).
"""
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from convjax import errors
from convjax.nn import layers
from convjax.models import common


class LeNet5(nn.Module):
  """[b, 28, 28, 1] -> logits [b, num_classes]; features: F6 [b, 84].

  pool_first: pool each convolution's maps before the activation instead of after. With max
  pooling and a non-decreasing activation f this is the same function, since the largest of
  f(a), f(b), ... is f(max(a, b, ...)), with the same gradient, but f runs on a quarter of the
  values. It would change the function for average pooling, so only max pooling takes it.
  """
  num_classes: int = 10
  activation: Callable[[jnp.ndarray], jnp.ndarray] = nn.relu
  pool: Callable[[jnp.ndarray], jnp.ndarray] = layers.max_pool_2x2
  pool_first: bool = False
  dtype: Any = jnp.float32

  def _activate_and_pool(self, x: jnp.ndarray) -> jnp.ndarray:
    """A convolution's maps [b, h, w, c] -> [b, h // 2, w // 2, c]."""
    if not self.pool_first:
      return self.pool(self.activation(x))
    if self.pool is not layers.max_pool_2x2:
      raise ValueError('LeNet5: pool_first needs max pooling (layers.max_pool_2x2); '
                       'pooling before the activation changes any other pool.')
    return self.activation(self.pool(x))

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    del train  # No dropout or batch norm: train and eval are the same function.
    conv = lambda features, padding: layers.conv2d(features, 5, padding=padding, dtype=self.dtype)
    taps = common.FeatureTaps(feature_indices, 2)  # Taps: S2 and S4.
    x = self._activate_and_pool(conv(6, 2)(x))        # C1, S2
    if taps.take(x):
      return taps.maps
    x = self._activate_and_pool(conv(16, 'VALID')(x))  # C3, S4
    if taps.take(x):
      return taps.maps
    x = layers.flatten(x)
    x = self.activation(layers.dense(120, dtype=self.dtype)(x))  # C5 (a 5x5 conv on 5x5 maps)
    x = self.activation(layers.dense(84, dtype=self.dtype)(x))   # F6
    return common.classify(x, self.num_classes, return_features, self.dtype)


# Table I: the S2 maps each C3 map sees. Six maps see 3 neighbouring maps, six see 4 neighbours,
# three see 4 non-neighbours and one sees all six. Breaking symmetry this way forces maps to
# extract different features, and keeps connections at 60 of 96.
C3_TABLE = ((0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
            (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
            (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
            (0, 1, 2, 3, 4, 5))


class Subsampling(nn.Module):
  """S2/S4: each map's 2x2 sums times a trainable coefficient plus a trainable bias.

  [b, h, w, c] -> [b, h // 2, w // 2, c]; 2c parameters. The coefficient starts at 1/4, an average.
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    coefficient = self.param('coefficient', nn.initializers.constant(0.25), (channels,))
    bias = self.param('bias', nn.initializers.zeros, (channels,))
    sums = layers.sum_pool(x, window=2)
    return (sums * coefficient + bias).astype(self.dtype)


class PartialConv(nn.Module):
  """A VALID convolution where output map o sees only input maps table[o] (C3).

  Only the connected kernel slices are parameters: kernel [k, k, connections], bias [outputs].
  They are scattered into a dense [k, k, inputs, outputs] kernel whose other entries stay zero.
  """
  table: Sequence[Sequence[int]]
  kernel_size: int = 5
  dtype: Any = jnp.float32

  def _connections(self) -> tuple[np.ndarray, np.ndarray]:
    inputs = np.array([i for maps in self.table for i in maps])
    outputs = np.array([o for o, maps in enumerate(self.table) for _ in maps])
    return inputs, outputs

  @nn.compact
  def __call__(self, x):
    inputs, outputs = self._connections()
    k = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2),
                        (k, k, len(inputs)))
    bias = self.param('bias', nn.initializers.zeros, (len(self.table),))
    dense = jnp.zeros((k, k, x.shape[-1], len(self.table))).at[:, :, inputs, outputs].set(kernel)
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), dense.astype(self.dtype), (1, 1),
                                     'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias.astype(self.dtype)

  def multiply_adds(self, output_shape: tuple[int, ...]) -> int:
    """Per image: output positions x connections x kernel taps (the zero entries are not work)."""
    positions = int(np.prod(output_shape[1:-1]))
    return positions * len(self._connections()[0]) * self.kernel_size ** 2


# The RBF prototypes: 7x12 bitmaps of the digits 0-9, '#' = +1, '.' = -1 (the paper's Fig. 3).
_DIGIT_BITMAPS = (
    ('..###..', '.#...#.', '#.....#', '#.....#', '#.....#', '#.....#', '#.....#', '#.....#',
     '#.....#', '#.....#', '.#...#.', '..###..'),
    ('...#...', '..##...', '.#.#...', '...#...', '...#...', '...#...', '...#...', '...#...',
     '...#...', '...#...', '...#...', '.#####.'),
    ('.####..', '#....#.', '.....#.', '.....#.', '....#..', '...#...', '..#....', '.#.....',
     '#......', '#......', '#......', '######.'),
    ('.####..', '#....#.', '.....#.', '.....#.', '....#..', '..##...', '....#..', '.....#.',
     '.....#.', '.....#.', '#....#.', '.####..'),
    ('....#..', '...##..', '..#.#..', '.#..#..', '#...#..', '#...#..', '#######', '....#..',
     '....#..', '....#..', '....#..', '....#..'),
    ('######.', '#......', '#......', '#......', '#####..', '.....#.', '......#', '......#',
     '......#', '......#', '#....#.', '.####..'),
    ('..###..', '.#.....', '#......', '#......', '#.###..', '##...#.', '#.....#', '#.....#',
     '#.....#', '#.....#', '.#...#.', '..###..'),
    ('#######', '......#', '.....#.', '.....#.', '....#..', '....#..', '...#...', '...#...',
     '..#....', '..#....', '..#....', '..#....'),
    ('..###..', '.#...#.', '#.....#', '.#...#.', '..###..', '.#...#.', '#.....#', '#.....#',
     '#.....#', '#.....#', '.#...#.', '..###..'),
    ('..###..', '.#...#.', '#.....#', '#.....#', '#.....#', '.#...##', '..###.#', '......#',
     '......#', '.....#.', '....#..', '.###...'),
)


def rbf_prototypes(num_classes: int) -> np.ndarray:
  """The fixed RBF centres, float32 [num_classes, 84] in {-1, +1}.

  The first ten are the digit bitmaps; for more classes, the rest are fixed pseudo-random codes
  (seed 0), since the paper only drew digits (and ASCII characters, which we do not have).
  """
  digits = np.array([[1.0 if pixel == '#' else -1.0 for row in bitmap for pixel in row]
                     for bitmap in _DIGIT_BITMAPS], np.float32)
  extra = np.random.default_rng(0).choice([-1.0, 1.0], size=(max(num_classes - 10, 0), 84))
  return np.concatenate([digits, extra.astype(np.float32)])[:num_classes]


class LeNet5_1998(nn.Module):  # pylint: disable=invalid-name
  """[b, h, w, 1] with h, w <= 32 -> logits -y [b, num_classes]; features: F6 [b, 84]."""
  num_classes: int = 10
  activation: Callable[[jnp.ndarray], jnp.ndarray] = layers.scaled_tanh
  field_size: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False,
               feature_indices: Sequence[int] | str | None = None):
    del train  # No dropout or batch norm.
    # C1 to C5 are convolutional and take any larger image; only F6 needs C5's maps to be 1x1.
    x = _centre_in_field(x, self.field_size, larger_ok=feature_indices is not None)
    conv = lambda features: layers.conv2d(features, 5, padding='VALID', dtype=self.dtype)
    taps = common.FeatureTaps(feature_indices, 3)  # Taps: C1, C3 and C5.
    x = self.activation(conv(6)(x))                                            # C1
    if taps.take(x):
      return taps.maps
    x = self.activation(Subsampling(self.dtype, name='S2')(x))                 # S2
    x = self.activation(PartialConv(C3_TABLE, dtype=self.dtype, name='C3')(x))  # C3
    if taps.take(x):
      return taps.maps
    x = self.activation(Subsampling(self.dtype, name='S4')(x))                 # S4
    x = self.activation(conv(120)(x))                                          # C5
    if taps.take(x):
      return taps.maps
    features = self.activation(layers.dense(84, dtype=self.dtype, name='F6')(layers.flatten(x)))
    prototypes = jnp.asarray(rbf_prototypes(self.num_classes))
    distances = jnp.sum(jnp.square(features.astype(jnp.float32)[:, None, :] - prototypes), -1)
    return common.outputs(-distances, features, return_features)


def _centre_in_field(x: jnp.ndarray, size: int, larger_ok: bool = False) -> jnp.ndarray:
  """Pads [b, h, w, c] to [b, size, size, c] by repeating the border (the background); a side
  already longer than size stays as it is where larger_ok."""
  pad_h, pad_w = size - x.shape[1], size - x.shape[2]
  if larger_ok:
    pad_h, pad_w = max(pad_h, 0), max(pad_w, 0)
  if pad_h < 0 or pad_w < 0:
    raise errors.InvalidValueError(f'LeNet-5 (1998) takes images up to {size}x{size}, got '
                                   f'{x.shape[1]}x{x.shape[2]}')
  return jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                     (0, 0)), mode='edge')
