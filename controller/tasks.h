// Generated task datasets with exact answers, for the tiny CPU demo and the async benchmark:
//   arithmetic  "12 + 5 * 3 =" -> answer {"target": 27, ...}, checked by reward "arithmetic";
//   countdown   numbers and a target -> answer {"numbers": [...], "target": N}, reward "countdown".
// Each item also carries a reference_response (a correct answer) for SFT warm-starts. A fraction of
// the items (steps_fraction) asks to "show your steps", and its reference response writes out every
// intermediate result; with operand_tail > 0 the number of operands has a geometric tail. Together
// they give the long-tailed response lengths that make synchronous RL batches wait.
//
// Generation is a function of the config alone (mt19937_64 with our own bounded draws), so every
// rank generates the same items.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controller/dataset.h"

namespace llamarl::controller {

struct ArithmeticTaskConfig {
  int64_t num_items = 1000;  // items generated (the eval split is taken from their front)
  int64_t seed = 0;
  int min_operands = 2;
  int max_operands = 3;
  double operand_tail = 0;  // 0: operands uniform in [min, max]; else P(one more operand), capped
  int min_digits = 1;       // digits of each operand
  int max_digits = 2;
  std::string operators = "+-*";  // drawn from these ('+', '-', '*')
  double steps_fraction = 0;      // fraction of items asking for (and answered with) every step

  static ArithmeticTaskConfig FromJson(const Json& j, const std::string& path);
};

struct CountdownTaskConfig {
  int64_t num_items = 1000;
  int64_t seed = 0;
  int min_numbers = 3;
  int max_numbers = 4;
  int64_t max_number = 25;       // given numbers are drawn from [1, max_number]
  int64_t max_target = 100;      // targets lie in [1, max_target]
  bool use_all_numbers = false;  // the reference solution (and the prompt) use every number once
  double steps_fraction = 0;     // fraction of items whose reference response lists the steps

  static CountdownTaskConfig FromJson(const Json& j, const std::string& path);
};

std::vector<DatasetItem> GenerateArithmeticTasks(const ArithmeticTaskConfig& config,
                                                 const PromptConfig& prompt);
std::vector<DatasetItem> GenerateCountdownTasks(const CountdownTaskConfig& config,
                                                const PromptConfig& prompt);

}  // namespace llamarl::controller
