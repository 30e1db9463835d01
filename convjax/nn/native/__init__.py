"""convjax's native code: the oneDNN extension (onednn_conv.cc: convolutions; onednn_norm.cc:
batch normalisation; guarded.h: the overrun check both use) and its build."""
