// Helpers shared by the Communicator suites (local, mpi, gpu). Expected values are worked out by
// hand from rank numbers and chosen to be exact in every dtype the suites use (bf16 holds integers
// up to 256 exactly), so results are compared for equality.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace llamarl::testing {

// Sets or clears an environment variable for one scope, restoring it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnv() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Long enough for an oversubscribed 2-core machine; short enough that a hang fails with the name of
// the operation instead of the CTest timeout.
inline constexpr std::chrono::milliseconds kTestTimeout{120000};

inline std::vector<double> Generate(int64_t n, const std::function<double(int64_t)>& value_at) {
  std::vector<double> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = value_at(i);
  return values;
}

inline at::Tensor Values(const std::vector<double>& values, at::ScalarType dtype,
                         at::Device device = at::Device(at::kCPU)) {
  return at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(device, dtype);
}

inline void ExpectValues(const at::Tensor& t, const std::vector<double>& expected, const std::string& what) {
  at::Tensor flat = t.to(at::Device(at::kCPU), at::kDouble).contiguous().view(-1);
  ASSERT_EQ(flat.numel(), int64_t(expected.size())) << what;
  const double* got = flat.data_ptr<double>();
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(got[i], expected[i]) << what << ", element " << i;
}

// Runs `body` and expects an exception whose message holds every one of `parts`.
template <typename Exception = std::exception>
void ExpectThrowsWith(const std::function<void()>& body, const std::vector<std::string>& parts) {
  try {
    body();
    ADD_FAILURE() << "expected an exception mentioning '" << (parts.empty() ? "" : parts[0]) << "'";
  } catch (const Exception& e) {
    std::string message = e.what();
    for (const auto& part : parts) EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  }
}

}  // namespace llamarl::testing
