// The project's one error family, LibTorch-free so that the parsers built on it can be fuzzed
// without LibTorch, and used by all of the project's code, LibTorch-facing or not:
//   LLAMARL_CHECK(cond, parts...)   something a user can cause (bad file, bad value); throws Error.
//   LLAMARL_FAIL(parts...)          the same, for a branch that a check has already ruled out.
//   LLAMARL_ASSERT(cond, parts...)  our own invariant; throws InternalError with file:line.
// Every exception the project throws is an llamarl::Error: InternalError (a broken invariant) and
// core/communicator.h's CommTimeoutError (a peer that did not answer) derive from it, and so do the
// CUDA launchers' errors (kernels/cuda_common.cuh), so one `catch (const llamarl::Error&)` sees them
// all and a narrower catch can still tell them apart.
// Messages say what was expected and what was got (the value, the limit, the fix), the parts streamed
// like TORCH_CHECK's. TORCH_CHECK itself, which throws c10::Error with a C++ backtrace in what(), is
// not used (scripts/check_errors.sh, CTest layers/errors); LibTorch's own ops still throw c10::Error,
// so a catch site turns any exception into a message with core/error_text.h's ErrorText.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace llamarl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InternalError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Parts>
std::string StrCat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
[[noreturn]] void ThrowError(const char* file, int line, const std::string& message);
[[noreturn]] void ThrowInternal(const char* file, int line, const char* cond, const std::string& message);
}  // namespace detail

}  // namespace llamarl

#define LLAMARL_CHECK(cond, ...)                                                             \
  do {                                                                                       \
    if (!(cond)) ::llamarl::detail::ThrowError(__FILE__, __LINE__,                           \
                                               ::llamarl::detail::StrCat(__VA_ARGS__));      \
  } while (0)

#define LLAMARL_ASSERT(cond, ...)                                                            \
  do {                                                                                       \
    if (!(cond)) ::llamarl::detail::ThrowInternal(__FILE__, __LINE__, #cond,                 \
                                                  ::llamarl::detail::StrCat(__VA_ARGS__));   \
  } while (0)

// Always fails, with the message; for branches that a check has already ruled out.
#define LLAMARL_FAIL(...) ::llamarl::detail::ThrowError(__FILE__, __LINE__, ::llamarl::detail::StrCat(__VA_ARGS__))
