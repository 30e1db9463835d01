// AdamW (Adam with decoupled weight decay) as one pass over a parameter, as an XLA FFI handler:
// what optax.adamw(rate, b1, b2, eps, weight_decay=wd) followed by apply_updates computes, in
// the same float32 operations in the same order, element by element:
//
//   m' = (1 - b1) * g + b1 * m              (first moment)
//   v' = (1 - b2) * (g * g) + b2 * v        (second moment)
//   u  = (m' / c1) / (sqrt(v' / c2 + 0) + eps)   (bias-corrected; eps_root is 0)
//   u  = u + wd * p                         (decoupled decay; skipped where wd is 0)
//   p' = p + (-rate) * u                    (scale_by_learning_rate, apply_updates)
//
// c1 = 1 - b1^t and c2 = 1 - b2^t come in as float32 scalars that XLA computed, as optax does,
// so the power rounds the same. Each operation rounds on its own, as optax's run op by op do,
// bit for bit (XLA's fused program of the same update rounds some elements differently). XLA:CPU
// computes this as several loops over each parameter, scheduled among the backward pass's oneDNN
// calls; here p, m, v and g are read once and p', m' and v' written once. It also returns
// sum(g^2) (accumulated in double, rounded to float32 once), which the train step checks for
// finiteness instead of reading every gradient again.
#include <omp.h>

#include <cmath>
#include <cstdint>

#include "team.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

ffi::Error AdamW(ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> mu, ffi::Buffer<ffi::F32> nu,
                 ffi::Buffer<ffi::F32> grads, ffi::Buffer<ffi::F32> scalars,
                 ffi::ResultBuffer<ffi::F32> new_params, ffi::ResultBuffer<ffi::F32> new_mu,
                 ffi::ResultBuffer<ffi::F32> new_nu, ffi::ResultBuffer<ffi::F32> grad_squares,
                 float b1, float one_minus_b1, float b2, float one_minus_b2, float eps,
                 float weight_decay, int64_t threads) {
  const int64_t n = static_cast<int64_t>(params.element_count());
  if (static_cast<int64_t>(mu.element_count()) != n ||
      static_cast<int64_t>(nu.element_count()) != n ||
      static_cast<int64_t>(grads.element_count()) != n || scalars.element_count() != 3) {
    return ffi::Error::InvalidArgument(
        "fused_adamw: params, mu, nu and grads must have one size, and scalars three elements "
        "(rate, 1 - b1^t, 1 - b2^t)");
  }
  const float* p = params.typed_data();
  const float* m = mu.typed_data();
  const float* v = nu.typed_data();
  const float* g = grads.typed_data();
  float* p_out = new_params->typed_data();  // Element i is written after element i is read, so
  float* m_out = new_mu->typed_data();      // each output may alias its input.
  float* v_out = new_nu->typed_data();
  const float step = -scalars.typed_data()[0];  // The schedule's rate, negated as optax does.
  const float c1 = scalars.typed_data()[1];
  const float c2 = scalars.typed_data()[2];
  const bool decay = weight_decay != 0.0f;
  const int team = convjax::Team(n, threads);
  double squares = 0;
#pragma omp parallel for simd num_threads(team) schedule(static) reduction(+ : squares)
  for (int64_t i = 0; i < n; ++i) {
    const float grad = g[i];
    squares += static_cast<double>(grad) * grad;
    const float first = one_minus_b1 * grad + b1 * m[i];
    const float second = one_minus_b2 * (grad * grad) + b2 * v[i];
    const float first_hat = first / c1;
    const float second_hat = second / c2;
    float update = first_hat / (std::sqrt(second_hat + 0.0f) + eps);
    if (decay) update = update + weight_decay * p[i];
    m_out[i] = first;
    v_out[i] = second;
    p_out[i] = p[i] + step * update;
  }
  grad_squares->typed_data()[0] = static_cast<float>(squares);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvjaxAdamw, AdamW,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("b1")
                                  .Attr<float>("one_minus_b1")
                                  .Attr<float>("b2")
                                  .Attr<float>("one_minus_b2")
                                  .Attr<float>("eps")
                                  .Attr<float>("weight_decay")
                                  .Attr<int64_t>("threads"));
