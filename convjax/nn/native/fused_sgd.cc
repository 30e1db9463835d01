// SGD with momentum (heavy ball or Nesterov) and L2 weight decay as one pass over a parameter,
// as an XLA FFI handler: what optax.chain(add_decayed_weights(wd), sgd(rate,
// momentum, nesterov)) followed by apply_updates computes, in the same float32 operations in the
// same order, element by element:
//
//   g  = grad + wd * p                      (add_decayed_weights; skipped where wd is 0)
//   t' = g + momentum * t                   (trace)
//   u  = nesterov ? g + momentum * t' : t'
//   p' = p + (-rate) * u                    (scale_by_learning_rate, apply_updates)
//
// XLA:CPU computes the same in separate loops over the parameter (and, for a parameter it must
// also keep, copies), each reading it from memory again; here p, t and grad are read once and
// p', t' written once, over `threads` OpenMP threads. It also returns sum(grad^2) (accumulated in
// double, rounded to float32 once), which the train step checks for finiteness instead of
// reading every gradient again.
#include <omp.h>

#include <cstdint>

#include "team.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

ffi::Error SgdMomentum(ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> trace,
                       ffi::Buffer<ffi::F32> grads, ffi::Buffer<ffi::F32> rate,
                       ffi::ResultBuffer<ffi::F32> new_params,
                       ffi::ResultBuffer<ffi::F32> new_trace,
                       ffi::ResultBuffer<ffi::F32> grad_squares, float momentum,
                       float weight_decay, int64_t nesterov, int64_t threads) {
  const int64_t n = static_cast<int64_t>(params.element_count());
  if (static_cast<int64_t>(trace.element_count()) != n ||
      static_cast<int64_t>(grads.element_count()) != n || rate.element_count() != 1) {
    return ffi::Error::InvalidArgument(
        "fused_sgd: params, trace and grads must have one size, and rate one element");
  }
  const float* p = params.typed_data();
  const float* t = trace.typed_data();
  const float* g = grads.typed_data();
  float* p_out = new_params->typed_data();  // Element i is written after p[i] is read, so p_out
  float* t_out = new_trace->typed_data();   // may be p (and t_out t) if a caller aliases them.
  const float step = -rate.typed_data()[0];
  const bool decay = weight_decay != 0.0f;
  const int team = convjax::Team(n, threads);
  double squares = 0;
#pragma omp parallel for simd num_threads(team) schedule(static) reduction(+ : squares)
  for (int64_t i = 0; i < n; ++i) {
    const float grad = g[i];
    squares += static_cast<double>(grad) * grad;
    const float decayed = decay ? grad + weight_decay * p[i] : grad;
    const float traced = decayed + momentum * t[i];
    const float update = nesterov ? decayed + momentum * traced : traced;
    t_out[i] = traced;
    p_out[i] = p[i] + step * update;
  }
  grad_squares->typed_data()[0] = static_cast<float>(squares);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxSgdMomentum, SgdMomentum,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("momentum")
                                  .Attr<float>("weight_decay")
                                  .Attr<int64_t>("nesterov")
                                  .Attr<int64_t>("threads"));
