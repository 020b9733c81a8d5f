// llamarl eval --model DIR|RUN_DIR --data FILE.jsonl [--reward NAME] [--samples K] [--json]
// Greedy pass@1 and, with K samples per prompt, mean@K and the unbiased pass@j (controller/offline_eval.h).
// Progress goes to stderr (a bar on a terminal, a line per tenth otherwise), so --json output stays
// one parseable line.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "controller/offline_eval.h"
#include "core/check.h"

namespace llamarl::cli {
namespace {

void ShowProgress(int64_t done, int64_t total) {
  if (isatty(STDERR_FILENO)) {
    const int width = 30, filled = int(width * done / std::max<int64_t>(total, 1));
    std::fprintf(stderr, "\r[eval] [%s%s] %lld/%lld", std::string(size_t(filled), '#').c_str(),
                 std::string(size_t(width - filled), '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total));
    if (done == total) std::fprintf(stderr, "\n");
  } else if (done == total || (done * 10 / total) != ((done - 1) * 10 / total)) {
    std::fprintf(stderr, "[eval] %lld/%lld prompt passes\n", static_cast<long long>(done), static_cast<long long>(total));
  }
}

}  // namespace

int RunEval(const CommandArgs& argv) {
  const char* usage = "llamarl eval --model DIR|RUN_DIR --data FILE.jsonl [--reward NAME] [--samples K] [--json]";
  Args args("eval", usage);
  controller::OfflineEvalOptions o;
  args.Option("model", "HF directory, run directory, or RUN_DIR/checkpoints/step_N")
      .Option("data", "JSONL file of prompts and answers")
      .Option("reward", "reward name (arithmetic, gsm8k, countdown, format, ...); default: the run's")
      .Option("samples", "K samples per prompt for mean@K and pass@j (0 = greedy only)", "0")
      .Option("temperature", "sampling temperature of the K samples", "1.0")
      .Option("max-new-tokens", "longest response (0 = the run's rollout.max_new_tokens, else 256)", "0")
      .Option("pass-threshold", "a sample passes when its reward is at least this", "1.0")
      .Option("prompt-field", "the JSONL field holding the prompt", o.prompt_field)
      .Option("answer-field", "the JSONL field holding the answer given to the reward", o.answer_field)
      .Option("prompt-style", "HF directories: raw, plain or chat (a run uses its recipe's)", o.prompt.style)
      .Option("limit", "evaluate the first N prompts (0 = all)", "0")
      .Option("seed", "seed of the sampled responses", "0")
      .Flag("json", "print the result as one JSON object");
  if (!args.Parse(argv)) return 0;
  o.model = args.Get("model");
  o.data = args.Get("data");
  o.reward = args.Has("reward") ? args.Get("reward") : "";
  o.samples = args.GetInt("samples");
  o.temperature = args.GetDouble("temperature");
  o.max_new_tokens = args.GetInt("max-new-tokens");
  o.pass_threshold = args.GetDouble("pass-threshold");
  o.prompt_field = args.Get("prompt-field");
  o.answer_field = args.Get("answer-field");
  o.prompt.style = args.Get("prompt-style");
  o.limit = args.GetInt("limit");
  o.seed = uint64_t(args.GetInt("seed"));
  o.progress = ShowProgress;
  const Json result = controller::RunOfflineEval(o);
  if (args.GetFlag("json")) {
    std::printf("%s\n", result.dump().c_str());
    return 0;
  }
  for (auto it = result.begin(); it != result.end(); ++it)
    std::printf("%-20s %s\n", it.key().c_str(), it.value().dump().c_str());
  return 0;
}

}  // namespace llamarl::cli
