"""convjax: convolutional networks in JAX/Flax, as pure functions trained data-parallel."""
