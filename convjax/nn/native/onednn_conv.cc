// 2-D convolution forward, backward-data and backward-weights through oneDNN, as XLA FFI handlers.
//
// Layouts are XLA's: activations NHWC [N, H, W, C], kernels HWIO [KH, KW, C / G, O], where output
// channel o belongs to group o / (O / G). oneDNN is told these layouts through explicit strides,
// so no buffer is copied on the way in or out.
//
// Attributes, shared by the three handlers:
//   strides   [sh, sw]
//   padding   [top, bottom, left, right]  (zeros added on each side)
//   dilation  [dh, dw]                    (1 = none)
//   groups    G
//   threads   OpenMP threads for this call (cores / XLA devices, so devices never oversubscribe)
//   layout    0: XLA's layouts throughout; 1: oneDNN picks the weights' layout; 2: and the
//             activations' (each chosen layout costs a reorder per call)
//
// Primitives are built once per (shapes, attributes, dtype) and kept in a mutex-guarded cache.
// Each call gets its own scratchpad and its own memory objects, which hold the buffers of that
// call only: no pointer outlives a call.
#include <omp.h>

#include <cstdint>
#include <cstring>
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

enum class Kind { kForward, kBackwardData, kBackwardWeights };

struct Geometry {
  memory::dims src;      // N, C, H, W (logical; the layout is NHWC)
  memory::dims weights;  // O, I, KH, KW, or G, O/G, I, KH, KW when grouped
  memory::dims dst;      // N, O, OH, OW
  memory::dims strides, dilation, pad_l, pad_r;  // oneDNN's dilation counts from 0
  int64_t groups;
  memory::data_type type;
  Kind kind;
  bool any_weights, any_activations;  // let oneDNN pick blocked layouts (and reorder to them)
  int64_t threads;       // the primitive's work is split for this many threads

  auto key() const {
    return std::tie(src, weights, dst, strides, dilation, pad_l, pad_r, groups, type, kind,
                    any_weights, any_activations, threads);
  }
  bool operator<(const Geometry& other) const { return key() < other.key(); }
};

memory::desc Activations(const memory::dims& nchw, memory::data_type type) {
  return memory::desc(nchw, type, memory::format_tag::nhwc);
}

// HWIO with the output channels split into (group, channel in group): strides of each oneDNN
// weight dimension in XLA's buffer.
memory::desc Weights(const Geometry& g) {
  const auto& w = g.weights;
  if (g.groups == 1) return memory::desc(w, g.type, memory::format_tag::hwio);
  const int64_t og = w[1], ig = w[2], kw = w[4], out = g.groups * og;
  return memory::desc(w, g.type, memory::dims{og, 1, out, kw * ig * out, ig * out});
}

// Every primitive takes its scratchpad from the caller, so one primitive serves concurrent calls.
dnnl::primitive_attr Attributes() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// What a primitive computes on: XLA's layout for each argument (`user`) and, where the layout
// policy lets oneDNN choose (format_tag::any), the blocked layout it chose (`inner`), which costs
// a reorder on the way in (inputs) or out (outputs).
struct Operand {
  int arg;
  bool output;
  memory::desc user, inner;
};

struct Primitive {
  dnnl::primitive primitive;
  memory::desc scratchpad;
  std::vector<Operand> operands;
};

memory::desc Any(const memory::desc& user, bool any) {
  return any ? memory::desc(user.get_dims(), user.get_data_type(), memory::format_tag::any) : user;
}

// The forward primitive; also the hint the backward primitives are built from. Training and
// evaluation share it, so both compute the same numbers.
dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return {Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
          Any(Activations(g.src, g.type), g.any_activations), Any(Weights(g), g.any_weights),
          Any(Activations(g.dst, g.type), g.any_activations), g.strides, g.dilation, g.pad_l,
          g.pad_r, Attributes()};
}

Primitive Build(const Geometry& g) {
  const auto src = Activations(g.src, g.type), dst = Activations(g.dst, g.type);
  const auto weights = Weights(g);
  if (g.kind == Kind::kForward) {
    auto pd = ForwardDesc(g);
    return {dnnl::convolution_forward(pd), pd.scratchpad_desc(),
            {{DNNL_ARG_SRC, false, src, pd.src_desc()},
             {DNNL_ARG_WEIGHTS, false, weights, pd.weights_desc()},
             {DNNL_ARG_DST, true, dst, pd.dst_desc()}}};
  }
  auto hint = ForwardDesc(g);
  dnnl::primitive_attr attr = Attributes();
  auto any_src = Any(src, g.any_activations), any_dst = Any(dst, g.any_activations);
  auto any_weights = Any(weights, g.any_weights);
  if (g.kind == Kind::kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, any_src, any_weights, any_dst, g.strides,
        g.dilation, g.pad_l, g.pad_r, hint, attr);
    return {dnnl::convolution_backward_data(pd), pd.scratchpad_desc(),
            {{DNNL_ARG_DIFF_DST, false, dst, pd.diff_dst_desc()},
             {DNNL_ARG_WEIGHTS, false, weights, pd.weights_desc()},
             {DNNL_ARG_DIFF_SRC, true, src, pd.diff_src_desc()}}};
  }
  dnnl::convolution_backward_weights::primitive_desc pd(
      Engine(), dnnl::algorithm::convolution_direct, any_src, any_weights, any_dst, g.strides,
      g.dilation, g.pad_l, g.pad_r, hint, attr);
  return {dnnl::convolution_backward_weights(pd), pd.scratchpad_desc(),
          {{DNNL_ARG_SRC, false, src, pd.src_desc()},
           {DNNL_ARG_DIFF_DST, false, dst, pd.diff_dst_desc()},
           {DNNL_ARG_DIFF_WEIGHTS, true, weights, pd.diff_weights_desc()}}};
}

const Primitive& Cached(const Geometry& g) {
  static std::mutex mutex;
  static std::map<Geometry, std::unique_ptr<Primitive>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& entry = cache[g];
  if (!entry) entry = std::make_unique<Primitive>(Build(g));
  return *entry;  // Entries are never erased, so the reference stays valid after unlocking.
}

ffi::Error TypeOf(ffi::DataType dtype, memory::data_type* type) {
  switch (dtype) {
    case ffi::DataType::F32: *type = memory::data_type::f32; return ffi::Error::Success();
    case ffi::DataType::BF16: *type = memory::data_type::bf16; return ffi::Error::Success();
    default: return ffi::Error::InvalidArgument("onednn_conv: only float32 and bfloat16");
  }
}

// Fills the geometry from the XLA shapes x [N, H, W, C], kernel [KH, KW, C/G, O], y [N, OH, OW, O].
ffi::Error Describe(ffi::AnyBuffer::Dimensions x, ffi::AnyBuffer::Dimensions k,
                    ffi::AnyBuffer::Dimensions y, ffi::DataType dtype,
                    ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
                    ffi::Span<const int64_t> dilation, int64_t groups, int64_t layout, Kind kind,
                    Geometry* g) {
  if (x.size() != 4 || k.size() != 4 || y.size() != 4 || strides.size() != 2 ||
      padding.size() != 4 || dilation.size() != 2 || groups < 1 || k[3] % groups != 0) {
    return ffi::Error::InvalidArgument("onednn_conv: expects 2-D NHWC/HWIO with valid groups");
  }
  if (auto error = TypeOf(dtype, &g->type); error.failure()) return error;
  g->src = {x[0], x[3], x[1], x[2]};
  g->dst = {y[0], y[3], y[1], y[2]};
  g->groups = groups;
  if (groups == 1) {
    g->weights = {k[3], k[2], k[0], k[1]};
  } else {
    g->weights = {groups, k[3] / groups, k[2], k[0], k[1]};
  }
  g->strides = {strides[0], strides[1]};
  g->dilation = {dilation[0] - 1, dilation[1] - 1};
  g->pad_l = {padding[0], padding[2]};
  g->pad_r = {padding[1], padding[3]};
  g->kind = kind;
  g->any_weights = layout >= 1;
  g->any_activations = layout >= 2;
  return ffi::Error::Success();
}

// Runs g's primitive on XLA's buffers, {oneDNN argument: pointer}, reordering operands whose
// layout oneDNN chose into temporary buffers of this call. With guard > 0 the temporaries and
// the scratchpad carry that many guard bytes, and *overrun counts those oneDNN changed.
ffi::Error Run(Geometry g, int64_t threads, const std::map<int, void*>& buffers,
               size_t guard = 0, int64_t* overrun = nullptr) {
  g.threads = threads;
  try {
    // Before the primitive is built: oneDNN plans its work split (and so its order of summation)
    // for the thread count it sees then, so a primitive is built and run with the same count.
    omp_set_num_threads(static_cast<int>(threads));  // This thread's next parallel regions only.
    const Primitive& p = Cached(g);
    dnnl::stream stream(Engine());
    std::vector<Guarded> temporaries;  // Moving one keeps its bytes where they are.
    std::vector<std::pair<memory, memory>> outputs;  // (inner, user) reordered after the call
    std::unordered_map<int, memory> args;
    for (const Operand& operand : p.operands) {
      memory user(operand.user, Engine(), buffers.at(operand.arg));
      if (operand.inner == operand.user) {
        args.emplace(operand.arg, user);
        continue;
      }
      temporaries.emplace_back(operand.inner.get_size(), guard);
      memory inner(operand.inner, Engine(), temporaries.back().data());
      if (operand.output) {
        outputs.emplace_back(inner, user);
      } else {
        dnnl::reorder(user, inner).execute(stream, user, inner);
      }
      args.emplace(operand.arg, inner);
    }
    temporaries.emplace_back(p.scratchpad.get_size(), guard);
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(p.scratchpad, Engine(), temporaries.back().data()));
    p.primitive.execute(stream, args);
    for (auto& [inner, user] : outputs) dnnl::reorder(inner, user).execute(stream, inner, user);
    stream.wait();
    if (overrun) {
      for (const Guarded& buffer : temporaries) *overrun += buffer.Overrun();
    }
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn_conv: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer kernel,
                   ffi::Result<ffi::AnyBuffer> y, ffi::Span<const int64_t> strides,
                   ffi::Span<const int64_t> padding, ffi::Span<const int64_t> dilation,
                   int64_t groups, int64_t threads, int64_t layout) {
  Geometry g;
  if (auto e = Describe(x.dimensions(), kernel.dimensions(), y->dimensions(), x.element_type(),
                        strides, padding, dilation, groups, layout, Kind::kForward, &g);
      e.failure()) {
    return e;
  }
  return Run(g, threads,
             {{DNNL_ARG_SRC, x.untyped_data()}, {DNNL_ARG_WEIGHTS, kernel.untyped_data()},
              {DNNL_ARG_DST, y->untyped_data()}});
}

ffi::Error BackwardData(ffi::AnyBuffer dy, ffi::AnyBuffer kernel, ffi::Result<ffi::AnyBuffer> dx,
                        ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
                        ffi::Span<const int64_t> dilation, int64_t groups, int64_t threads,
                        int64_t layout) {
  Geometry g;
  if (auto e = Describe(dx->dimensions(), kernel.dimensions(), dy.dimensions(), dy.element_type(),
                        strides, padding, dilation, groups, layout, Kind::kBackwardData, &g);
      e.failure()) {
    return e;
  }
  return Run(g, threads,
             {{DNNL_ARG_DIFF_DST, dy.untyped_data()}, {DNNL_ARG_WEIGHTS, kernel.untyped_data()},
              {DNNL_ARG_DIFF_SRC, dx->untyped_data()}});
}

ffi::Error BackwardWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dk,
                           ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
                           ffi::Span<const int64_t> dilation, int64_t groups, int64_t threads,
                           int64_t layout) {
  Geometry g;
  if (auto e = Describe(x.dimensions(), dk->dimensions(), dy.dimensions(), x.element_type(),
                        strides, padding, dilation, groups, layout, Kind::kBackwardWeights, &g);
      e.failure()) {
    return e;
  }
  return Run(g, threads,
             {{DNNL_ARG_SRC, x.untyped_data()}, {DNNL_ARG_DIFF_DST, dy.untyped_data()},
              {DNNL_ARG_DIFF_WEIGHTS, dk->untyped_data()}});
}

}  // namespace

#define CONV_ATTRS                                      \
  .Attr<ffi::Span<const int64_t>>("strides")            \
      .Attr<ffi::Span<const int64_t>>("padding")        \
      .Attr<ffi::Span<const int64_t>>("dilation")       \
      .Attr<int64_t>("groups")                          \
      .Attr<int64_t>("threads")                         \
      .Attr<int64_t>("layout")

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxConvForward, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxConvBackwardData, BackwardData,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxConvBackwardWeights, BackwardWeights,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() CONV_ATTRS);

// 1 when this processor's oneDNN builds all three convolution primitives in bfloat16 (a 3x3,
// 16 -> 16 channel convolution under the given layout policy), else 0. oneDNN 3.2 has bfloat16
// kernels for AVX-512 BF16 and AMX; where it finds neither (it ran AVX2 kernels on an AMD EPYC),
// every bfloat16 primitive descriptor fails, and convjax leaves bfloat16 convolutions to XLA.
extern "C" int ConvjaxConvolvesBfloat16(int64_t layout) {
  Geometry g;
  g.src = {1, 16, 8, 8};
  g.weights = {16, 16, 3, 3};
  g.dst = {1, 16, 8, 8};
  g.strides = {1, 1};
  g.dilation = {0, 0};
  g.pad_l = {1, 1};
  g.pad_r = {1, 1};
  g.groups = 1;
  g.type = memory::data_type::bf16;
  g.any_weights = layout >= 1;
  g.any_activations = layout >= 2;
  g.threads = 1;
  try {
    for (Kind kind : {Kind::kForward, Kind::kBackwardData, Kind::kBackwardWeights}) {
      g.kind = kind;
      Build(g);
    }
  } catch (const dnnl::error&) {
    return 0;
  }
  return 1;
}

// Which oneDNN this was built against, for the record (metrics.jsonl, benchmark JSON).
extern "C" const char* ConvjaxOnednnVersion() {
  static std::string version = [] {
    const dnnl_version_t* v = dnnl_version();
    return std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->patch);
  }();
  return version.c_str();
}

// Runs one convolution (kind 0 forward, 1 backward-data, 2 backward-weights) of the given XLA
// shapes (x [N, H, W, C], kernel [KH, KW, C/G, O], y [N, OH, OW, O]) and attributes on buffers of
// its own, each between kGuard bytes of kPattern, as are the call's temporaries and scratchpad.
// Returns how many guard bytes oneDNN changed (0: it stayed inside every buffer), or -1 when
// oneDNN refuses the convolution. Inputs are small finite numbers, so the run is a real one.
// `shortfall` bytes less are given to the output, so that its last writes land in the guard:
// how a test shows that an overrun is seen.
extern "C" int64_t ConvjaxOverrunBytes(int64_t kind, const int64_t* x, const int64_t* kernel,
                                       const int64_t* y, const int64_t* strides,
                                       const int64_t* padding, const int64_t* dilation,
                                       int64_t groups, int64_t threads, int64_t layout,
                                       int64_t shortfall) {
  using Span = ffi::Span<const int64_t>;
  Geometry g;
  const Kind k = static_cast<Kind>(kind);
  if (Describe(Span(x, 4), Span(kernel, 4), Span(y, 4), ffi::DataType::F32, Span(strides, 2),
               Span(padding, 4), Span(dilation, 2), groups, layout, k, &g)
          .failure()) {
    return -1;
  }
  size_t sizes[3] = {sizeof(float) * x[0] * x[1] * x[2] * x[3],
                           sizeof(float) * kernel[0] * kernel[1] * kernel[2] * kernel[3],
                           sizeof(float) * y[0] * y[1] * y[2] * y[3]};
  sizes[k == Kind::kForward ? 2 : k == Kind::kBackwardData ? 0 : 1] -= shortfall;
  std::vector<Guarded> user;
  for (size_t size : sizes) {
    user.emplace_back(size, kGuard);
    float* values = static_cast<float*>(user.back().data());
    for (size_t i = 0; i < size / sizeof(float); ++i) values[i] = 0.01f * (i % 7) - 0.03f;
  }
  void *xs = user[0].data(), *ks = user[1].data(), *ys = user[2].data();
  const std::map<int, void*> buffers =
      k == Kind::kForward ? std::map<int, void*>{{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, ks},
                                                 {DNNL_ARG_DST, ys}}
      : k == Kind::kBackwardData
          ? std::map<int, void*>{{DNNL_ARG_DIFF_DST, ys}, {DNNL_ARG_WEIGHTS, ks},
                                 {DNNL_ARG_DIFF_SRC, xs}}
          : std::map<int, void*>{{DNNL_ARG_SRC, xs}, {DNNL_ARG_DIFF_DST, ys},
                                 {DNNL_ARG_DIFF_WEIGHTS, ks}};
  int64_t overrun = 0;
  if (Run(g, threads, buffers, kGuard, &overrun).failure()) return -1;
  for (const Guarded& buffer : user) overrun += buffer.Overrun();
  return overrun;
}
