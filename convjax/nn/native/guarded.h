// Guarded buffers: how the extension checks that oneDNN writes only inside what it is given
// (ConvjaxOverrunBytes, ConvjaxNormOverrunBytes). Shared by onednn_conv.cc and onednn_norm.cc.
#ifndef CONVJAX_NN_NATIVE_GUARDED_H_
#define CONVJAX_NN_NATIVE_GUARDED_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace convjax {

// Bytes on each side of each buffer that a checked run fills with kPattern and reads back:
// oneDNN 3.2 has kernels that write past the buffers they are given (see onednn.py).
inline constexpr size_t kGuard = 4096;
inline constexpr unsigned char kPattern = 0x5a;

// A buffer of `size` bytes for one call, between two runs of `guard` bytes of kPattern.
class Guarded {
 public:
  Guarded(size_t size, size_t guard)
      : size_(size), guard_(guard), bytes_(size + 2 * guard, kPattern) {}
  void* data() { return bytes_.data() + guard_; }
  // How many guard bytes (before or after the buffer) no longer hold kPattern.
  int64_t Overrun() const {
    int64_t changed = 0;
    for (size_t i = 0; i < bytes_.size(); ++i) {
      changed += (i < guard_ || i >= guard_ + size_) && bytes_[i] != kPattern;
    }
    return changed;
  }

 private:
  size_t size_, guard_;
  std::vector<unsigned char> bytes_;
};

}  // namespace convjax

#endif  // CONVJAX_NN_NATIVE_GUARDED_H_
