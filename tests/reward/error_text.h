// The message of the llamarl::Error a call throws, for tests that check what errors say.
#pragma once

#include <functional>
#include <string>

#include "core/check.h"

namespace llamarl::testing {

// e.what() of the llamarl::Error thrown by `f`, or "(no error)".
inline std::string ErrorText(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace llamarl::testing
