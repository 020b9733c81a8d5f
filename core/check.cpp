#include "core/check.h"

namespace llamarl::detail {

// User-facing errors carry only the message: it already names the bad value and the fix, and a
// source location would only distract. Internal errors carry file:line, which is what a developer needs.
void ThrowError(const char* /*file*/, int /*line*/, const std::string& message) { throw Error(message); }

void ThrowInternal(const char* file, int line, const char* cond, const std::string& message) {
  throw InternalError(StrCat("internal error at ", file, ":", line, ": expected ", cond, ": ", message));
}

}  // namespace llamarl::detail
