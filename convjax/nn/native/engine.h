// The one oneDNN CPU engine that every primitive of the extension is built and run on (shared by
// onednn_conv.cc, onednn_norm.cc, onednn_gelu.cc and onednn_dense.cc; inline, so the process
// holds a single one), and how they run a primitive.
#ifndef CONVJAX_NN_NATIVE_ENGINE_H_
#define CONVJAX_NN_NATIVE_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "guarded.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace convjax {

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Runs `primitive` on `args` plus a scratchpad of `scratchpad`'s size (between `guard` bytes of
// kPattern when guard > 0) and waits for it; returns how many of those guard bytes oneDNN
// changed (0 without guards).
inline int64_t Execute(const dnnl::primitive& primitive,
                       std::unordered_map<int, dnnl::memory> args,
                       const dnnl::memory::desc& scratchpad, size_t guard = 0) {
  Guarded scratch(scratchpad.get_size(), guard);
  args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(scratchpad, Engine(), scratch.data()));
  dnnl::stream stream(Engine());
  primitive.execute(stream, args);
  stream.wait();
  return scratch.Overrun();
}

}  // namespace convjax

#endif  // CONVJAX_NN_NATIVE_ENGINE_H_
