#include "reward/overlong.h"

#include "core/check.h"

namespace llamarl::reward {

double OverlongPenalty(int64_t length, int64_t max_length, int64_t buffer) {
  LLAMARL_CHECK(buffer >= 1 && buffer <= max_length, "overlong penalty: the buffer (", buffer,
                " tokens) must be in [1, ", max_length, "] (the longest response)");
  const int64_t expected = max_length - buffer;
  if (length <= expected) return 0.0;
  if (length <= max_length) return double(expected - length) / double(buffer);
  return -1.0;
}

}  // namespace llamarl::reward
