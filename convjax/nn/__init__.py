"""Layers, convolution from first principles, and the backends that compute convolutions."""
