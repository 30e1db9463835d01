"""Using a trained run elsewhere: jax.export artifacts and classifying image files."""
