// Batch normalisation forward (training) and backward through oneDNN, as XLA FFI handlers.
//
// x is channels-last of any rank, so oneDNN sees it as a matrix [rows, C] (format nc): each
// channel is normalised over the rows (batch and spatial positions). x, y, dy and dx are float32
// or bfloat16, all four the same; scale, shift, mean, var and their gradients are float32, and
// oneDNN accumulates the statistics in float32 either way.
//
//   forward:  mean, var = batch mean and biased variance of x per channel
//             y = (x - mean) / sqrt(var + epsilon) * scale + shift, then max(y, 0) with relu
//             (oneDNN's fuse_norm_relu: the ReLU in the same pass, not one of its own)
//   backward: dx, dscale, dshift from x, dy, scale and the forward's mean and var (the gradient
//             through the batch statistics included, as differentiating the formula gives)
//
// The backward takes dy as it reaches the normalised value: with relu the caller has already
// zeroed it where the output was clipped, from the output it keeps anyway for the next layer.
//
// Attributes: epsilon (float), threads (OpenMP threads for this call, as for the convolutions),
// relu (forward only, 0 or 1). Primitives are built once per (rows, C, epsilon, threads,
// direction, relu, dtype) and cached; each call gets its own scratchpad, and with relu its own
// workspace (the ReLU's mask, which only oneDNN's own backward would read).
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
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

const auto kFlags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

dnnl::normalization_flags Flags(bool relu) {
  return relu ? kFlags | dnnl::normalization_flags::fuse_norm_relu : kFlags;
}

struct NormKey {
  int64_t rows, channels;
  float epsilon;
  int64_t threads;
  bool backward, relu, bf16;
  bool operator<(const NormKey& o) const {
    return std::tie(rows, channels, epsilon, threads, backward, relu, bf16) <
           std::tie(o.rows, o.channels, o.epsilon, o.threads, o.backward, o.relu, o.bf16);
  }
};

// The [rows, C] activations' descriptor: float32 or bfloat16.
memory::desc DataDesc(const NormKey& k) {
  return memory::desc({k.rows, k.channels},
                      k.bf16 ? memory::data_type::bf16 : memory::data_type::f32,
                      memory::format_tag::nc);
}

struct NormPrimitive {
  dnnl::primitive primitive;
  memory::desc data, channel, scratchpad, workspace;  // [rows, C], [C], and oneDNN's own
};

dnnl::batch_normalization_forward::primitive_desc ForwardDesc(const NormKey& k) {
  const memory::desc data = DataDesc(k);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return {Engine(), dnnl::prop_kind::forward_training, data, data, k.epsilon, Flags(k.relu),
          attr};
}

const NormPrimitive& Cached(const NormKey& k) {
  static std::mutex mutex;
  static std::map<NormKey, std::unique_ptr<NormPrimitive>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& entry = cache[k];
  if (!entry) {
    const memory::desc data = DataDesc(k);
    memory::desc channel({k.channels}, memory::data_type::f32, memory::format_tag::a);
    auto forward = ForwardDesc(k);
    if (!k.backward) {
      entry.reset(new NormPrimitive{dnnl::batch_normalization_forward(forward), data, channel,
                                    forward.scratchpad_desc(), forward.workspace_desc()});
    } else {
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::batch_normalization_backward::primitive_desc pd(
          Engine(), dnnl::prop_kind::backward, data, data, data, k.epsilon, kFlags, forward, attr);
      entry.reset(new NormPrimitive{dnnl::batch_normalization_backward(pd), data, channel,
                                    pd.scratchpad_desc(), memory::desc()});
    }
  }
  return *entry;  // Entries are never erased, so the reference stays valid after unlocking.
}

// Runs k's primitive with {argument: (pointer, is it [rows, C] data or a [C] channel vector)}.
// With guard > 0 the scratchpad carries guard bytes, and *overrun counts those oneDNN changed.
ffi::Error Run(const NormKey& k, const std::map<int, std::pair<void*, bool>>& buffers,
               size_t guard = 0, int64_t* overrun = nullptr) {
  try {
    omp_set_num_threads(static_cast<int>(k.threads));  // Before the build, as for convolutions.
    const NormPrimitive& p = Cached(k);
    std::unordered_map<int, memory> args;
    for (const auto& [arg, buffer] : buffers) {
      args.emplace(arg, memory(buffer.second ? p.data : p.channel, Engine(), buffer.first));
    }
    Guarded workspace(p.workspace.get_size(), guard);
    if (p.workspace.get_size()) {
      args.emplace(DNNL_ARG_WORKSPACE, memory(p.workspace, Engine(), workspace.data()));
    }
    const int64_t changed = convjax::Execute(p.primitive, std::move(args), p.scratchpad, guard);
    if (overrun) *overrun += changed + workspace.Overrun();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn_norm: ") + e.what());
  }
  return ffi::Error::Success();
}

NormKey Key(const ffi::AnyBuffer& x, float epsilon, int64_t threads, bool backward, bool relu) {
  const auto dims = x.dimensions();
  const int64_t channels = dims.back();
  return {channels ? static_cast<int64_t>(x.element_count()) / channels : 0, channels, epsilon,
          threads, backward, relu, x.element_type() == ffi::DataType::BF16};
}

// Whether the activations are all float32 or all bfloat16, the pairs of kernels there are.
bool SameFloatType(std::initializer_list<ffi::DataType> types) {
  const ffi::DataType first = *types.begin();
  if (first != ffi::DataType::F32 && first != ffi::DataType::BF16) return false;
  for (ffi::DataType type : types) {
    if (type != first) return false;
  }
  return true;
}

const char kTypeError[] = "onednn_norm: x, y, dy and dx must be all float32 or all bfloat16";

ffi::Error NormForward(ffi::AnyBuffer x, ffi::Buffer<ffi::F32> scale,
                       ffi::Buffer<ffi::F32> shift, ffi::Result<ffi::AnyBuffer> y,
                       ffi::ResultBuffer<ffi::F32> mean, ffi::ResultBuffer<ffi::F32> var,
                       float epsilon, int64_t threads, int64_t relu) {
  if (!SameFloatType({x.element_type(), y->element_type()})) {
    return ffi::Error::InvalidArgument(kTypeError);
  }
  return Run(Key(x, epsilon, threads, false, relu != 0),
             {{DNNL_ARG_SRC, {x.untyped_data(), true}}, {DNNL_ARG_DST, {y->untyped_data(), true}},
              {DNNL_ARG_SCALE, {scale.typed_data(), false}},
              {DNNL_ARG_SHIFT, {shift.typed_data(), false}},
              {DNNL_ARG_MEAN, {mean->typed_data(), false}},
              {DNNL_ARG_VARIANCE, {var->typed_data(), false}}});
}

ffi::Error NormBackward(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Buffer<ffi::F32> scale,
                        ffi::Buffer<ffi::F32> mean, ffi::Buffer<ffi::F32> var,
                        ffi::Result<ffi::AnyBuffer> dx, ffi::ResultBuffer<ffi::F32> dscale,
                        ffi::ResultBuffer<ffi::F32> dshift, float epsilon, int64_t threads) {
  if (!SameFloatType({x.element_type(), dy.element_type(), dx->element_type()})) {
    return ffi::Error::InvalidArgument(kTypeError);
  }
  return Run(Key(x, epsilon, threads, true, false),
             {{DNNL_ARG_SRC, {x.untyped_data(), true}},
              {DNNL_ARG_DIFF_DST, {dy.untyped_data(), true}},
              {DNNL_ARG_SCALE, {scale.typed_data(), false}},
              {DNNL_ARG_MEAN, {mean.typed_data(), false}},
              {DNNL_ARG_VARIANCE, {var.typed_data(), false}},
              {DNNL_ARG_DIFF_SRC, {dx->untyped_data(), true}},
              {DNNL_ARG_DIFF_SCALE, {dscale->typed_data(), false}},
              {DNNL_ARG_DIFF_SHIFT, {dshift->typed_data(), false}}});
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxBatchNormForward, NormForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon")
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("relu"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxBatchNormBackward, NormBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon")
                                  .Attr<int64_t>("threads"));

// Whether this processor's oneDNN has batch norm kernels, forward (with and without the ReLU)
// and backward, for bfloat16 activations (bf16 = 1) or float32 ones (0): where it has none,
// building the primitive fails, and XLA computes the layer.
extern "C" int64_t ConvjaxNormSupports(int64_t bf16) {
  try {
    // Forward without and with the ReLU, then backward (which never fuses it).
    for (int kind = 0; kind < 3; ++kind) {
      Cached(NormKey{16, 16, 1e-5f, 1, kind == 2, kind == 1, bf16 != 0});
    }
  } catch (const dnnl::error&) {
    return 0;
  }
  return 1;
}

// Runs batch norm forward (backward = 0, with the fused ReLU where relu = 1) or backward (1) on
// [rows, channels] float32 (bf16 = 0) or bfloat16 (1) activations in buffers of its own, each
// between kGuard bytes of kPattern, as are the float32 channel vectors, the scratchpad and the
// workspace; returns how many guard bytes oneDNN changed (0: it stayed inside every buffer), or
// -1 when oneDNN refuses.
extern "C" int64_t ConvjaxNormOverrunBytes(int64_t rows, int64_t channels, float epsilon,
                                           int64_t threads, int64_t backward, int64_t relu,
                                           int64_t bf16) {
  const NormKey k{rows, channels, epsilon, threads, backward != 0, relu != 0 && !backward,
                  bf16 != 0};
  const size_t data = (bf16 ? 2 : 4) * rows * channels, channel = sizeof(float) * channels;
  std::vector<Guarded> buffers;
  const int forward_args[] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_SCALE, DNNL_ARG_SHIFT,
                              DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
  const int backward_args[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC, DNNL_ARG_SCALE,
                               DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_DIFF_SCALE,
                               DNNL_ARG_DIFF_SHIFT};
  const int* args = backward ? backward_args : forward_args;
  const int count = backward ? 8 : 6, data_count = backward ? 3 : 2;
  buffers.reserve(count);
  std::map<int, std::pair<void*, bool>> pointers;
  for (int i = 0; i < count; ++i) {
    const bool is_data = i < data_count;
    buffers.emplace_back(is_data ? data : channel, kGuard);
    // Positive variances, small finite values elsewhere: a real run. A bfloat16 is a float32's
    // upper halfword.
    for (size_t j = 0; j < (is_data ? data : channel) / (is_data && bf16 ? 2 : 4); ++j) {
      const float value = args[i] == DNNL_ARG_VARIANCE ? 1.0f : 0.01f * (j % 7) - 0.03f;
      if (is_data && bf16) {
        uint32_t bits;
        std::memcpy(&bits, &value, sizeof(bits));
        static_cast<uint16_t*>(buffers.back().data())[j] = static_cast<uint16_t>(bits >> 16);
      } else {
        static_cast<float*>(buffers.back().data())[j] = value;
      }
    }
    pointers[args[i]] = {buffers.back().data(), is_data};
  }
  int64_t overrun = 0;
  if (Run(k, pointers, kGuard, &overrun).failure()) return -1;
  for (const Guarded& buffer : buffers) overrun += buffer.Overrun();
  return overrun;
}
