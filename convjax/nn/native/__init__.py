"""convjax's native code: the oneDNN extension and its build (build.py).

onednn_conv.cc: convolutions; onednn_norm.cc: batch normalisation; onednn_gelu.cc: GELU;
onednn_dense.cc: matrix products; fused_sgd.cc and fused_adamw.cc: the optimiser updates in one
pass. Headers: engine.h (the one oneDNN engine and how a primitive runs), guarded.h (the overrun
check), team.h (the threads of the fused updates)."""
