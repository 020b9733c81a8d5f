// libFuzzer target: arbitrary bytes as a whole safetensors file. llamarl::Error is the documented
// answer to malformed input; any other exception, a sanitizer report, or a result that breaks the
// parser's promises (checked below) is a bug.
#include "core/check.h"
#include "model/safetensors_header.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace {

// What callers rely on when ParseSafetensorsHeader returns: offsets inside the data section,
// sizes consistent with shapes, the entries tiling the data section exactly.
void CheckPromises(const llamarl::SafetensorsHeader& header, size_t size) {
  if (header.data_offset > size || header.data_offset + header.data_size != size) abort();
  uint64_t total = 0;
  for (const auto& e : header.entries) {
    if (e.begin > e.end || e.end > header.data_size) abort();
    uint64_t bytes = llamarl::SafetensorsDtypeSize(e.dtype);
    for (int64_t d : e.shape) {
      if (d < 0) abort();
      bytes *= uint64_t(d);  // cannot overflow: the parser checked the product
    }
    if (bytes != e.end - e.begin) abort();
    total += bytes;
  }
  if (total != header.data_size) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    CheckPromises(llamarl::ParseSafetensorsHeader(data, size, "fuzz-input"), size);
  } catch (const llamarl::Error&) {
    // Rejected input, as documented.
  }
  return 0;
}
