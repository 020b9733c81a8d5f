// llamarl plan --model 8b|70b|405b|CONFIG.json --gpus N [--gpu h100|h200|a100|PROFILE.json] [--json]
// Placement, parallel degrees, per-GPU memory, projected weight-sync and step times of the
// asynchronous split design against the synchronous colocated one (plan/plan_search.h).
// Exit status: 0 when a placement fits, 2 when none does (the report says what would), 1 on errors.
#include "cli/args.h"
#include "cli/commands.h"
#include "plan/plan_report.h"
#include "core/check.h"

#include <cstdio>

namespace llamarl::cli {
namespace {

std::vector<WeightDtype> ParseDtypes(const std::string& value) {
  if (value == "auto") return {};
  if (value == "bf16") return {WeightDtype::kBf16};
  if (value == "fp8") return {WeightDtype::kFp8};
  LLAMARL_FAIL("llamarl plan: --generator-dtype expects auto, bf16 or fp8; got '", value, "'");
}

// Command-line batch options override the --assumptions file, which overrides the defaults.
PlanAssumptions ReadAssumptions(const Args& args) {
  PlanAssumptions a;
  if (args.Has("assumptions")) a = PlanAssumptions::FromJson(ReadJsonFile(args.Get("assumptions")), args.Get("assumptions"), a);
  if (args.Has("prompts")) a.num_prompts = args.GetInt("prompts");
  if (args.Has("samples")) a.samples_per_prompt = args.GetInt("samples");
  if (args.Has("prompt-tokens")) a.prompt_tokens = args.GetInt("prompt-tokens");
  if (args.Has("response-mean")) a.response_tokens_mean = args.GetInt("response-mean");
  if (args.Has("response-max")) a.response_tokens_max = args.GetInt("response-max");
  if (args.Has("mfu")) a.train_mfu = args.GetDouble("mfu");
  a.Validate();
  return a;
}

}  // namespace

int RunPlan(const CommandArgs& argv) {
  Args args("plan", "llamarl plan --model 8b|70b|405b|CONFIG.json --gpus N [--gpu h100] [--json]");
  args.Option("model", "preset (8b, 70b, 405b, qwen2.5-0.5b, qwen2.5-1.5b, llama3.2-1b, tiny) or an HF config.json (or its directory)")
      .Option("gpus", "GPUs in the cluster")
      .Option("gpu", "GPU profile: h100, h200, a100, or a JSON file {\"base\": \"h100\", ...overrides}", "h100")
      .Option("generator-dtype", "generator weights: auto (search bf16 and fp8), bf16 or fp8", "auto")
      .Option("assumptions", "JSON file overriding the cost model's assumptions (printed with the plan)")
      .Option("prompts", "prompts per RL step")
      .Option("samples", "samples per prompt")
      .Option("prompt-tokens", "tokens per prompt")
      .Option("response-mean", "mean response length in tokens")
      .Option("response-max", "longest response (max_new_tokens)")
      .Option("mfu", "trainer FLOPs utilisation in (0, 1]")
      .Flag("json", "print the plan as JSON");
  if (!args.Parse(argv)) return 0;
  PlanRequest request;
  request.model = LoadPlanModel(args.Get("model"));
  request.hardware = LoadHardwareProfile(args.Get("gpu"));
  request.assumptions = ReadAssumptions(args);
  request.num_gpus = args.GetInt("gpus");
  request.generator_dtypes = ParseDtypes(args.Get("generator-dtype"));
  LLAMARL_CHECK(request.num_gpus >= 1, "llamarl plan: --gpus expects a positive count, got ", request.num_gpus);
  bool fp8_asked = request.generator_dtypes.size() == 1 && request.generator_dtypes[0] == WeightDtype::kFp8;
  LLAMARL_CHECK(!fp8_asked || request.hardware.fp8, "llamarl plan: --generator-dtype fp8 needs a GPU with fp8 "
                "tensor cores; '", request.hardware.name, "' has none (use bf16, or --gpu h100)");

  PlanResult result = SearchPlan(request);
  if (args.GetFlag("json")) {
    std::printf("%s\n", PlanToJson(request, result).dump(2).c_str());
  } else {
    std::printf("%s", PlanToText(request, result).c_str());
  }
  return result.Fits() ? 0 : 2;
}

}  // namespace llamarl::cli
