// llamarl generate --model DIR (--prompt TEXT | --prompt-tokens 1,2,3) [--max-new-tokens N]
//                  [--temperature T] [--top-p P] [--top-k K] [--seed S] [--json]
// The full-recompute reference decode (model/reference_generate.h), which stays the oracle of the
// batched engine. Log-probs are those of the chosen tokens under the temperature-1 distribution, f32.
#include "cli/args.h"
#include "cli/commands.h"
#include "core/check.h"
#include "core/config.h"
#include "model/llama.h"
#include "model/llama_checkpoint.h"
#include "model/reference_generate.h"
#include "model/tokenizer.h"

#include <cstdio>
#include <filesystem>
#include <optional>

namespace llamarl::cli {
namespace {

bool HasTokenizerFiles(const std::filesystem::path& dir) {
  return std::filesystem::exists(dir / "tokenizer.json") ||
         (std::filesystem::exists(dir / "encoder.json") && std::filesystem::exists(dir / "vocab.bpe"));
}

ReferenceGenerateOptions ReadSamplingOptions(const Args& args) {
  ReferenceGenerateOptions o;
  o.max_new_tokens = args.GetInt("max-new-tokens");
  SamplingOptions& s = o.sampling;
  s.temperature = args.GetDouble("temperature");
  s.top_k = args.GetInt("top-k");
  s.top_p = args.GetDouble("top-p");
  o.seed = uint64_t(args.GetInt("seed"));
  LLAMARL_CHECK(o.max_new_tokens > 0, "--max-new-tokens must be positive, got ", o.max_new_tokens);
  LLAMARL_CHECK(s.temperature >= 0, "--temperature must be >= 0 (0 = greedy), got ", s.temperature);
  LLAMARL_CHECK(s.top_p > 0 && s.top_p <= 1, "--top-p must be in (0, 1], got ", s.top_p);
  LLAMARL_CHECK(s.top_k >= 0, "--top-k must be >= 0 (0 = off), got ", s.top_k);
  return o;
}

}  // namespace

int RunGenerate(const CommandArgs& argv) {
  Args args("generate",
            "llamarl generate --model DIR (--prompt TEXT | --prompt-tokens 1,2,3) [--max-new-tokens N] "
            "[--temperature T] [--top-p P] [--top-k K] [--seed S] [--json]");
  args.Option("model", "HF checkpoint directory (config.json + safetensors, tokenizer optional)")
      .Option("prompt", "prompt text (needs tokenizer files in --model)")
      .Option("prompt-tokens", "prompt token ids, comma-separated")
      .Option("max-new-tokens", "tokens to generate at most", "64")
      .Option("temperature", "sampling temperature; 0 = greedy", "1")
      .Option("top-p", "nucleus mass kept", "1")
      .Option("top-k", "keep the k most likely tokens; 0 = all", "0")
      .Option("seed", "sampling seed", "0")
      .Flag("ignore-eos", "do not stop at the end-of-sequence tokens of config.json")
      .Flag("json", "print {\"tokens\", \"logprobs\", \"text\", \"finish_reason\"} as JSON");
  if (!args.Parse(argv)) return 0;
  std::filesystem::path dir = args.Get("model");
  ReferenceGenerateOptions options = ReadSamplingOptions(args);

  std::optional<Tokenizer> tokenizer;
  if (HasTokenizerFiles(dir)) tokenizer = Tokenizer::FromDirectory(dir.string());
  std::vector<int64_t> prompt;
  if (args.RequireOneOf({"prompt", "prompt-tokens"}) == "prompt") {
    LLAMARL_CHECK(tokenizer, "--prompt needs a tokenizer (tokenizer.json, or encoder.json + vocab.bpe) in ",
                  dir.string(), "; give --prompt-tokens instead");
    prompt = tokenizer->Encode(args.Get("prompt"));
  } else {
    prompt = args.GetIntList("prompt-tokens");
  }

  LlamaForCausalLM model = LoadLlama(dir.string());
  if (args.GetFlag("ignore-eos")) options.eos_ids = std::vector<int64_t>{};
  GenerationResult result = ReferenceGenerate(*model, prompt, options);

  Json text = nullptr;
  if (tokenizer) text = tokenizer->Decode(result.tokens);
  if (args.GetFlag("json")) {
    Json out = {{"tokens", result.tokens}, {"logprobs", result.logprobs}, {"text", text},
                {"finish_reason", result.finish_reason}};
    std::printf("%s\n", out.dump().c_str());
  } else if (tokenizer) {
    std::printf("%s\n", text.get<std::string>().c_str());
  } else {
    for (size_t i = 0; i < result.tokens.size(); ++i)
      std::printf(i ? " %lld" : "%lld", static_cast<long long>(result.tokens[i]));
    std::printf("\n");
  }
  return 0;
}

}  // namespace llamarl::cli
