// The python3-torch loss fixtures (tests/fixtures/trainer/*.json, scripts/fixtures/trainer_*.py)
// share one layout: hidden states [N, D], an LM-head weight [V, D], target tokens [N], and per case
// ("results") the loss value and its gradients in the hidden states and the weight.
#pragma once

#include "core/config.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace llamarl::testing {

class LossFixture {
 public:
  explicit LossFixture(const std::string& name) : fx_(ReadJsonFile(FixturePath(name))) {
    n_ = fx_["N"], d_ = fx_["D"], v_ = fx_["V"];
    hidden_ = F32("hidden").view({n_, d_});
    weight_ = F32("weight").view({v_, d_});
    targets_ = at::tensor(fx_["targets"].get<std::vector<int64_t>>(), at::kLong);
  }

  const Json& json() const { return fx_; }
  int64_t n() const { return n_; }
  const at::Tensor& targets() const { return targets_; }
  at::Tensor F32(const std::string& key) const { return at::tensor(fx_[key].get<std::vector<float>>(), at::kFloat); }

  // For each case: total = loss(case, hidden, weight) (a scalar), then its value and the gradients of
  // fresh leaf copies of hidden and weight against the fixture's.
  void ExpectEveryCase(const std::function<at::Tensor(const Json&, const at::Tensor&, const at::Tensor&)>& loss) const {
    for (const Json& result : fx_["results"]) {
      SCOPED_TRACE(result["case"].dump());
      at::Tensor hidden = hidden_.clone().requires_grad_(true), weight = weight_.clone().requires_grad_(true);
      at::Tensor total = loss(result["case"], hidden, weight);
      total.backward();
      EXPECT_NEAR(total.item<double>(), result["loss"].get<double>(), 1e-5);
      const auto gh = at::tensor(result["grad_hidden"].get<std::vector<float>>()).view({n_, d_});
      const auto gw = at::tensor(result["grad_weight"].get<std::vector<float>>()).view({v_, d_});
      EXPECT_TRUE(at::allclose(hidden.grad(), gh, 1e-4, 1e-6)) << (hidden.grad() - gh).abs().max().item<float>();
      EXPECT_TRUE(at::allclose(weight.grad(), gw, 1e-4, 1e-6)) << (weight.grad() - gw).abs().max().item<float>();
    }
  }

 private:
  Json fx_;
  int64_t n_ = 0, d_ = 0, v_ = 0;
  at::Tensor hidden_, weight_, targets_;
};

}  // namespace llamarl::testing
