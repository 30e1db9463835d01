"""Datasets and input pipelines: the catalogue, loading, sampling, augmentation, batching."""
