// The one way a caught exception becomes a message for a user. The project's own code throws
// llamarl::Error (core/check.h); LibTorch's own ops still throw c10::Error, whose what() ends in a
// C++ backtrace that says nothing to a user. Every catch site that reports an error (the one catch
// at the top of cli/main.cpp, the workers that report a rank's failure to the others, messages that
// wrap a lower error) goes through ErrorText.
#pragma once

#include <exception>
#include <string>

namespace llamarl {

// e.what(), without the backtrace when e is a c10::Error.
std::string ErrorText(const std::exception& e);

}  // namespace llamarl
