// Matrix products through oneDNN's matmul primitive, as an XLA FFI handler, in float32 or
// bfloat16: the dense (fully connected) layer forward and both of its gradients.
//
//   forward:          y [M, O]  = x [M, K]   @ w [K, O]
//   backward-data:    dx [M, K] = dy [M, O]  @ w^T          (w read as [O, K], trans_b)
//   backward-weights: dw [K, O] = x^T [K, M] @ dy [M, O]    (x read as [K, M], trans_a)
//
// One handler computes c [m, n] = op(a) [m, k] @ op(b) [k, n], where op transposes an operand
// when its attribute says so. oneDNN reads a transposed operand through its strides, so no
// transpose is ever written out (XLA:CPU copies AlexNet's 9216 x 4096 weights to transpose them).
// Attributes: threads (OpenMP threads of this call, as for the convolutions), trans_a, trans_b.
// Primitives are built once per (m, k, n, transposes, dtype, threads) and cached.
#include <omp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
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

struct MatmulKey {
  int64_t m, k, n, threads;
  bool trans_a, trans_b, bf16;
  bool operator<(const MatmulKey& o) const {
    return std::tie(m, k, n, threads, trans_a, trans_b, bf16) <
           std::tie(o.m, o.k, o.n, o.threads, o.trans_a, o.trans_b, o.bf16);
  }
};

struct MatmulPrimitive {
  dnnl::primitive primitive;
  memory::desc a, b, c, scratchpad;
};

// A row-major [rows, cols] matrix, or, transposed, the row-major [cols, rows] buffer read as
// [rows, cols] through its strides.
memory::desc Matrix(int64_t rows, int64_t cols, bool transposed, memory::data_type type) {
  return memory::desc({rows, cols}, type,
                      transposed ? memory::dims{1, rows} : memory::dims{cols, 1});
}

const MatmulPrimitive& Cached(const MatmulKey& k) {
  static std::mutex mutex;
  static std::map<MatmulKey, std::unique_ptr<MatmulPrimitive>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& entry = cache[k];
  if (!entry) {
    const auto type = k.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
    memory::desc a = Matrix(k.m, k.k, k.trans_a, type), b = Matrix(k.k, k.n, k.trans_b, type),
                 c = Matrix(k.m, k.n, false, type);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::matmul::primitive_desc pd(Engine(), a, b, c, attr);
    entry.reset(new MatmulPrimitive{dnnl::matmul(pd), a, b, c, pd.scratchpad_desc()});
  }
  return *entry;  // Entries are never erased, so the reference stays valid after unlocking.
}

// Runs k's product on a, b -> c. With guard > 0 the scratchpad carries guard bytes, and
// *overrun counts those oneDNN changed.
ffi::Error Run(const MatmulKey& k, void* a, void* b, void* c, size_t guard = 0,
               int64_t* overrun = nullptr) {
  if (k.m == 0 || k.n == 0) return ffi::Error::Success();  // Nothing to write.
  try {
    omp_set_num_threads(static_cast<int>(k.threads));  // Before the build, as for convolutions.
    const MatmulPrimitive& p = Cached(k);
    const int64_t changed = convjax::Execute(
        p.primitive,
        {{DNNL_ARG_SRC, memory(p.a, Engine(), a)},
         {DNNL_ARG_WEIGHTS, memory(p.b, Engine(), b)},
         {DNNL_ARG_DST, memory(p.c, Engine(), c)}},
        p.scratchpad, guard);
    if (overrun) *overrun += changed;
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn_dense: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error Matmul(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> c,
                  int64_t threads, int64_t trans_a, int64_t trans_b) {
  const auto type = a.element_type();
  if ((type != ffi::DataType::F32 && type != ffi::DataType::BF16) || b.element_type() != type ||
      c->element_type() != type) {
    return ffi::Error::InvalidArgument(
        "onednn_dense: a, b and c must all be float32 or all bfloat16");
  }
  const auto a_dims = a.dimensions(), b_dims = b.dimensions();
  if (a_dims.size() != 2 || b_dims.size() != 2) {
    return ffi::Error::InvalidArgument("onednn_dense: a and b must be matrices");
  }
  // The stored shapes are [m, k] (or [k, m] with trans_a) and [k, n] (or [n, k] with trans_b).
  const int64_t m = a_dims[trans_a ? 1 : 0], k = a_dims[trans_a ? 0 : 1];
  const int64_t n = b_dims[trans_b ? 0 : 1];
  if (b_dims[trans_b ? 1 : 0] != k) {
    return ffi::Error::InvalidArgument("onednn_dense: a and b disagree on the contracted size");
  }
  return Run({m, k, n, threads, trans_a != 0, trans_b != 0, type == ffi::DataType::BF16},
             a.untyped_data(), b.untyped_data(), c->untyped_data());
}

// Both gradients of y = x @ w in one call: dx = dy @ w^T and dw = x^T @ dy. One call, not two,
// so that every read of w precedes (in XLA's dataflow) the optimiser's update of w, which needs
// dw: XLA can then update w in place, where a separate dx call left XLA copying w each step.
ffi::Error DenseBackward(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer dy,
                         ffi::Result<ffi::AnyBuffer> dx, ffi::Result<ffi::AnyBuffer> dw,
                         int64_t threads) {
  if (ffi::Error error = Matmul(dy, w, dx, threads, 0, 1); error.failure()) return error;
  return Matmul(x, dy, dw, threads, 1, 0);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxDenseBackward, DenseBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxMatmul, Matmul,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("trans_a")
                                  .Attr<int64_t>("trans_b"));

// Whether this processor's oneDNN has matmul kernels for bfloat16 (1) or float32 (0), in each
// orientation the dense layer uses: where it has none, XLA computes the products.
extern "C" int64_t ConvjaxMatmulSupports(int64_t bf16) {
  try {
    for (bool trans_a : {false, true}) {
      for (bool trans_b : {false, true}) Cached(MatmulKey{16, 16, 16, 1, trans_a, trans_b, bf16 != 0});
    }
  } catch (const dnnl::error&) {
    return 0;
  }
  return 1;
}

// Runs one product c [m, n] = op(a) @ op(b) on buffers of its own, each between kGuard bytes of
// kPattern, as is the scratchpad; returns how many guard bytes oneDNN changed (0: it stayed
// inside every buffer), or -1 when oneDNN refuses.
extern "C" int64_t ConvjaxMatmulOverrunBytes(int64_t m, int64_t k, int64_t n, int64_t trans_a,
                                             int64_t trans_b, int64_t threads, int64_t bf16) {
  const size_t element = bf16 ? 2 : 4;
  std::vector<Guarded> buffers;
  buffers.reserve(3);
  for (int64_t count : {m * k, k * n, m * n}) {
    buffers.emplace_back(element * count, kGuard);
    buffers.back().FillSmall();
  }
  int64_t overrun = 0;
  const MatmulKey key{m, k, n, threads, trans_a != 0, trans_b != 0, bf16 != 0};
  if (Run(key, buffers[0].data(), buffers[1].data(), buffers[2].data(), kGuard, &overrun)
          .failure()) {
    return -1;
  }
  for (const Guarded& buffer : buffers) overrun += buffer.Overrun();
  return overrun;
}
