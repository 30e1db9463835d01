// The one oneDNN CPU engine that every primitive of the extension is built and run on (shared by
// onednn_conv.cc, onednn_norm.cc, onednn_gelu.cc and onednn_dense.cc; inline, so the process
// holds a single one).
#ifndef CONVJAX_NN_NATIVE_ENGINE_H_
#define CONVJAX_NN_NATIVE_ENGINE_H_

#include "oneapi/dnnl/dnnl.hpp"

namespace convjax {

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

}  // namespace convjax

#endif  // CONVJAX_NN_NATIVE_ENGINE_H_
