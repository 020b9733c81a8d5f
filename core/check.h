// Errors that do not need LibTorch, for the code that must stay fuzzable without it (safetensors
// header, tokenizer, JSON config). Code that already includes LibTorch uses TORCH_CHECK and
// TORCH_INTERNAL_ASSERT; the two families mean the same thing:
//   LLAMARL_CHECK(cond, parts...)   something a user can cause (bad file, bad value); throws Error.
//   LLAMARL_ASSERT(cond, parts...)  our own invariant; throws InternalError with file:line.
// Messages say what was expected and what was got, and the parts are streamed like TORCH_CHECK's.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace llamarl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
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
