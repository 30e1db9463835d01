// How many OpenMP threads one elementwise pass of the fused optimiser updates (fused_sgd.cc,
// fused_adamw.cc) runs on.
#ifndef CONVJAX_NN_NATIVE_TEAM_H_
#define CONVJAX_NN_NATIVE_TEAM_H_

#include <cstdint>

namespace convjax {

// Below this many elements one thread is faster than waking another.
constexpr int64_t kMinPerThread = 1 << 15;

// The team for a pass over n elements, given `threads` allowed to each call: all of them once
// each has kMinPerThread elements, else one.
inline int Team(int64_t n, int64_t threads) {
  return static_cast<int>(n >= kMinPerThread * threads ? threads : 1);
}

}  // namespace convjax

#endif  // CONVJAX_NN_NATIVE_TEAM_H_
