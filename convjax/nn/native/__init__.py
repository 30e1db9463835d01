"""convjax's native code: the oneDNN extension (onednn_conv.cc: convolutions; onednn_norm.cc: batch normalisation) and its build."""
