// Guarded buffers: how the extension checks that oneDNN writes only inside what it is given
// (ConvjaxOverrunBytes and the other *OverrunBytes functions). Shared by the extension's files.
#ifndef CONVJAX_NN_NATIVE_GUARDED_H_
#define CONVJAX_NN_NATIVE_GUARDED_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
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
  // Fills the buffer with small finite values, as float32 or bfloat16: halfwords 0x3f00 + j % 13
  // are bfloat16 numbers in [0.5, 0.6), and pairs of them float32 numbers near 0.5.
  void FillSmall() {
    for (size_t j = 0; j + 1 < size_; j += 2) {
      const uint16_t half = 0x3f00 + (j / 2) % 13;
      std::memcpy(bytes_.data() + guard_ + j, &half, 2);
    }
  }
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
