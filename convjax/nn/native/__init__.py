"""convjax's native code: the oneDNN convolution extension (onednn_conv.cc) and its build."""
