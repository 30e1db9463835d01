// Batch normalisation forward (training) and backward through oneDNN, as XLA FFI handlers.
//
// x is channels-last of any rank, so oneDNN sees it as a matrix [rows, C] (format nc): each
// channel is normalised over the rows (batch and spatial positions).
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
// direction, relu) and cached; each call gets its own scratchpad, and with relu its own
// workspace (the ReLU's mask, which only oneDNN's own backward would read).
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

const auto kFlags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

dnnl::normalization_flags Flags(bool relu) {
  return relu ? kFlags | dnnl::normalization_flags::fuse_norm_relu : kFlags;
}

struct NormKey {
  int64_t rows, channels;
  float epsilon;
  int64_t threads;
  bool backward, relu;
  bool operator<(const NormKey& o) const {
    return std::tie(rows, channels, epsilon, threads, backward, relu) <
           std::tie(o.rows, o.channels, o.epsilon, o.threads, o.backward, o.relu);
  }
};

struct NormPrimitive {
  dnnl::primitive primitive;
  memory::desc data, channel, scratchpad, workspace;  // [rows, C], [C], and oneDNN's own
};

dnnl::batch_normalization_forward::primitive_desc ForwardDesc(const NormKey& k) {
  memory::desc data({k.rows, k.channels}, memory::data_type::f32, memory::format_tag::nc);
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
    memory::desc data({k.rows, k.channels}, memory::data_type::f32, memory::format_tag::nc);
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
    Guarded scratch(p.scratchpad.get_size(), guard), workspace(p.workspace.get_size(), guard);
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(p.scratchpad, Engine(), scratch.data()));
    if (p.workspace.get_size()) {
      args.emplace(DNNL_ARG_WORKSPACE, memory(p.workspace, Engine(), workspace.data()));
    }
    dnnl::stream stream(Engine());
    p.primitive.execute(stream, args);
    stream.wait();
    if (overrun) *overrun += scratch.Overrun() + workspace.Overrun();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn_norm: ") + e.what());
  }
  return ffi::Error::Success();
}

NormKey Key(ffi::Buffer<ffi::F32> x, float epsilon, int64_t threads, bool backward, bool relu) {
  const auto dims = x.dimensions();
  const int64_t channels = dims.back();
  return {channels ? static_cast<int64_t>(x.element_count()) / channels : 0, channels, epsilon,
          threads, backward, relu};
}

ffi::Error NormForward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> scale,
                       ffi::Buffer<ffi::F32> shift, ffi::ResultBuffer<ffi::F32> y,
                       ffi::ResultBuffer<ffi::F32> mean, ffi::ResultBuffer<ffi::F32> var,
                       float epsilon, int64_t threads, int64_t relu) {
  return Run(Key(x, epsilon, threads, false, relu != 0),
             {{DNNL_ARG_SRC, {x.typed_data(), true}}, {DNNL_ARG_DST, {y->typed_data(), true}},
              {DNNL_ARG_SCALE, {scale.typed_data(), false}},
              {DNNL_ARG_SHIFT, {shift.typed_data(), false}},
              {DNNL_ARG_MEAN, {mean->typed_data(), false}},
              {DNNL_ARG_VARIANCE, {var->typed_data(), false}}});
}

ffi::Error NormBackward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                        ffi::Buffer<ffi::F32> scale, ffi::Buffer<ffi::F32> mean,
                        ffi::Buffer<ffi::F32> var, ffi::ResultBuffer<ffi::F32> dx,
                        ffi::ResultBuffer<ffi::F32> dscale, ffi::ResultBuffer<ffi::F32> dshift,
                        float epsilon, int64_t threads) {
  return Run(Key(x, epsilon, threads, true, false),
             {{DNNL_ARG_SRC, {x.typed_data(), true}}, {DNNL_ARG_DIFF_DST, {dy.typed_data(), true}},
              {DNNL_ARG_SCALE, {scale.typed_data(), false}},
              {DNNL_ARG_MEAN, {mean.typed_data(), false}},
              {DNNL_ARG_VARIANCE, {var.typed_data(), false}},
              {DNNL_ARG_DIFF_SRC, {dx->typed_data(), true}},
              {DNNL_ARG_DIFF_SCALE, {dscale->typed_data(), false}},
              {DNNL_ARG_DIFF_SHIFT, {dshift->typed_data(), false}}});
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxBatchNormForward, NormForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon")
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("relu"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxBatchNormBackward, NormBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon")
                                  .Attr<int64_t>("threads"));

// Runs batch norm forward (backward = 0, with the fused ReLU where relu = 1) or backward (1) on
// [rows, channels] float32 buffers of its own, each between kGuard bytes of kPattern, as are
// the scratchpad and workspace; returns how many guard bytes oneDNN changed (0: it stayed inside
// every buffer), or -1 when oneDNN refuses.
extern "C" int64_t ConvjaxNormOverrunBytes(int64_t rows, int64_t channels, float epsilon,
                                           int64_t threads, int64_t backward, int64_t relu) {
  const NormKey k{rows, channels, epsilon, threads, backward != 0, relu != 0 && !backward};
  const size_t data = sizeof(float) * rows * channels, channel = sizeof(float) * channels;
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
    float* values = static_cast<float*>(buffers.back().data());
    // Positive variances, small finite values elsewhere: a real run.
    for (size_t j = 0; j < (is_data ? data : channel) / sizeof(float); ++j) {
      values[j] = args[i] == DNNL_ARG_VARIANCE ? 1.0f : 0.01f * (j % 7) - 0.03f;
    }
    pointers[args[i]] = {buffers.back().data(), is_data};
  }
  int64_t overrun = 0;
  if (Run(k, pointers, kGuard, &overrun).failure()) return -1;
  for (const Guarded& buffer : buffers) overrun += buffer.Overrun();
  return overrun;
}
