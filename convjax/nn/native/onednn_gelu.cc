// GELU, x * Phi(x) with the normal CDF Phi(x) = (1 + erf(x / sqrt 2)) / 2 (eltwise_gelu_erf) or
// with Phi's tanh approximation (eltwise_gelu_tanh), forward and backward through oneDNN's
// element-wise primitive, as XLA FFI handlers, in float32 or bfloat16.
//
//   forward:  y = x * Phi(x)
//   backward: dx = dy * (Phi(x) + x * Phi'(x)), from x and dy
//
// Any shape: oneDNN sees the buffer as a vector of its n elements. Attributes: threads (OpenMP
// threads for this call, as for the convolutions), approximate (0: erf, 1: tanh). Primitives are
// built once per (n, dtype, threads, direction, form) and cached.
#include <omp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine.h"
#include "guarded.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using convjax::Engine;
using convjax::Guarded;
using convjax::kGuard;
using dnnl::memory;

namespace {

struct GeluKey {
  int64_t count, threads;
  bool backward, approximate, bf16;
  bool operator<(const GeluKey& o) const {
    return std::tie(count, threads, backward, approximate, bf16) <
           std::tie(o.count, o.threads, o.backward, o.approximate, o.bf16);
  }
};

struct GeluPrimitive {
  dnnl::primitive primitive;
  memory::desc data, scratchpad;
};

const GeluPrimitive& Cached(const GeluKey& k) {
  static std::mutex mutex;
  static std::map<GeluKey, std::unique_ptr<GeluPrimitive>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& entry = cache[k];
  if (!entry) {
    memory::desc data({k.count}, k.bf16 ? memory::data_type::bf16 : memory::data_type::f32,
                      memory::format_tag::a);
    const auto algorithm =
        k.approximate ? dnnl::algorithm::eltwise_gelu_tanh : dnnl::algorithm::eltwise_gelu_erf;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::eltwise_forward::primitive_desc forward(Engine(), dnnl::prop_kind::forward_training,
                                                  algorithm, data, data, 0.f, 0.f, attr);
    if (!k.backward) {
      entry.reset(new GeluPrimitive{dnnl::eltwise_forward(forward), data,
                                    forward.scratchpad_desc()});
    } else {
      dnnl::eltwise_backward::primitive_desc pd(Engine(), algorithm, data, data, data, 0.f, 0.f,
                                                forward, attr);
      entry.reset(new GeluPrimitive{dnnl::eltwise_backward(pd), data, pd.scratchpad_desc()});
    }
  }
  return *entry;  // Entries are never erased, so the reference stays valid after unlocking.
}

// Runs k's primitive on {argument: pointer to n floats}. With guard > 0 the scratchpad carries
// guard bytes, and *overrun counts those oneDNN changed.
ffi::Error Run(const GeluKey& k, const std::map<int, void*>& buffers, size_t guard = 0,
               int64_t* overrun = nullptr) {
  if (k.count == 0) return ffi::Error::Success();  // oneDNN refuses empty memory.
  try {
    omp_set_num_threads(static_cast<int>(k.threads));  // Before the build, as for convolutions.
    const GeluPrimitive& p = Cached(k);
    std::unordered_map<int, memory> args;
    for (const auto& [arg, pointer] : buffers) args.emplace(arg, memory(p.data, Engine(), pointer));
    const int64_t changed = convjax::Execute(p.primitive, std::move(args), p.scratchpad, guard);
    if (overrun) *overrun += changed;
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn_gelu: ") + e.what());
  }
  return ffi::Error::Success();
}

// Runs the GELU on x's buffers: float32 or bfloat16, which the Python side alone sends.
ffi::Error RunOn(const ffi::AnyBuffer& x, int64_t threads, bool backward, int64_t approximate,
                 const std::map<int, void*>& buffers) {
  const bool bf16 = x.element_type() == ffi::DataType::BF16;
  if (!bf16 && x.element_type() != ffi::DataType::F32) {
    return ffi::Error::InvalidArgument("onednn_gelu: x must be float32 or bfloat16");
  }
  return Run({static_cast<int64_t>(x.element_count()), threads, backward, approximate != 0, bf16},
             buffers);
}

ffi::Error GeluForward(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y, int64_t threads,
                       int64_t approximate) {
  return RunOn(x, threads, false, approximate,
               {{DNNL_ARG_SRC, x.untyped_data()}, {DNNL_ARG_DST, y->untyped_data()}});
}

ffi::Error GeluBackward(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dx,
                        int64_t threads, int64_t approximate) {
  return RunOn(x, threads, true, approximate,
               {{DNNL_ARG_SRC, x.untyped_data()}, {DNNL_ARG_DIFF_DST, dy.untyped_data()},
                {DNNL_ARG_DIFF_SRC, dx->untyped_data()}});
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxGeluForward, GeluForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("approximate"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxGeluBackward, GeluBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("approximate"));

// Whether this processor's oneDNN has GELU forward and backward kernels for bfloat16 (1) or
// float32 (0): where it has none, building the primitive fails, and XLA computes the GELU.
extern "C" int64_t ConvjaxGeluSupports(int64_t bf16) {
  try {
    for (bool backward : {false, true}) Cached(GeluKey{16, 1, backward, false, bf16 != 0});
  } catch (const dnnl::error&) {
    return 0;
  }
  return 1;
}

// Runs the GELU forward (backward = 0) or backward (1) on `count` float32 values (bf16 = 0) or
// bfloat16 ones (1) in buffers of its own, each between kGuard bytes of kPattern, as is the
// scratchpad; returns how many guard bytes oneDNN changed (0: it stayed inside every buffer), or
// -1 when oneDNN refuses.
extern "C" int64_t ConvjaxGeluOverrunBytes(int64_t count, int64_t threads, int64_t backward,
                                           int64_t approximate, int64_t bf16) {
  const GeluKey k{count, threads, backward != 0, approximate != 0, bf16 != 0};
  const size_t bytes = (bf16 ? 2 : 4) * count;
  const int forward_args[] = {DNNL_ARG_SRC, DNNL_ARG_DST};
  const int backward_args[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC};
  const int* args = backward ? backward_args : forward_args;
  const int arg_count = backward ? 3 : 2;
  std::vector<Guarded> buffers;
  buffers.reserve(arg_count);
  std::map<int, void*> pointers;
  for (int i = 0; i < arg_count; ++i) {
    buffers.emplace_back(bytes, kGuard);
    buffers.back().FillSmall();
    pointers[args[i]] = buffers.back().data();
  }
  int64_t overrun = 0;
  if (Run(k, pointers, kGuard, &overrun).failure()) return -1;
  for (const Guarded& buffer : buffers) overrun += buffer.Overrun();
  return overrun;
}
