// llamarl generate --model DIR (--prompt TEXT | --prompt-tokens 1,2,3) [--max-new-tokens N]
//                  [--temperature T] [--top-p P] [--top-k K] [--seed S] [--samples N] [--dtype D] [--reference]
//                  [--json]
// --dtype float8_e4m3 holds the decoder layers' projections as e4m3fn with per-row scales and computes
// in bfloat16 (EngineOptions::fp8_weights); the engine only.
// Runs the batched engine (generator/engine.h): one request of N samples, prompt prefilled once.
// --reference runs the full-recompute decode (model/reference_generate.h) instead: the engine's
// oracle in tests, kept here so a user can compare the two on a checkpoint. Log-probs are those of the
// chosen tokens under softmax(logits / temperature) (temperature 1 when greedy), f32.
// A padded vocabulary (more model rows than tokenizer ids, as Qwen2.5's 151,936 rows for 151,665
// ids) is reported on stderr; the engine never samples the padded ids and its log-probs are over the
// decodable ids only. --reference samples the full vocabulary: padded ids it emits are listed on
// stderr and left out of the text.
#include "cli/args.h"
#include "cli/commands.h"
#include "core/check.h"
#include "core/config.h"
#include "core/device.h"
#include "generator/engine.h"
#include "model/llama.h"
#include "model/llama_checkpoint.h"
#include "model/llama_weights.h"
#include "model/reference_generate.h"
#include "model/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

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

// One request of `samples` samples through the engine, sized to the request. A request the engine
// rejects (a token outside the vocabulary, a prompt longer than the context) is the user's error.
// The weights are read from the mapped checkpoint straight into `weight_options` (dtype, device): the
// f32 model is never built.
std::vector<Completion> GenerateWithEngine(const LlamaWeightSource& weights, const at::TensorOptions& weight_options,
                                           const std::vector<int64_t>& prompt, const ReferenceGenerateOptions& options,
                                           int64_t samples, int64_t sampled_vocab_size, bool fp8_weights) {
  const LlamaConfig& config = weights.config();
  EngineOptions engine_options;
  engine_options.max_slots = samples;
  engine_options.sampled_vocab_size = sampled_vocab_size;
  engine_options.fp8_weights = fp8_weights;
  engine_options.max_seq_len = std::min<int64_t>(config.max_position_embeddings,
                                                 int64_t(prompt.size()) + options.max_new_tokens);
  Engine engine(config, weights, weight_options, engine_options);
  GenerationRequest request;
  request.prompt = prompt;
  request.num_samples = samples;
  request.sampling.temperature = options.sampling.temperature;
  request.sampling.top_k = options.sampling.top_k;
  request.sampling.top_p = options.sampling.top_p;
  request.sampling.seed = options.seed;
  request.sampling.max_new_tokens = options.max_new_tokens;
  request.sampling.eos_ids = options.eos_ids.value_or(config.eos_token_ids);
  engine.Submit(std::move(request));
  std::vector<Completion> done = engine.RunUntilDone();
  for (const Completion& c : done)
    LLAMARL_CHECK(c.finish_reason != FinishReason::kRejected, "the request was rejected: ", c.error);
  std::sort(done.begin(), done.end(),
            [](const Completion& a, const Completion& b) { return a.sample_index < b.sample_index; });
  return done;
}

// Ids in [0, tokenizer size) the model can produce; says so on stderr when the model pads its vocabulary.
int64_t DecodableVocab(const LlamaConfig& config, const std::optional<Tokenizer>& tokenizer) {
  if (!tokenizer || tokenizer->VocabSize() >= config.vocab_size) return config.vocab_size;
  const int64_t ids = tokenizer->VocabSize();
  std::fprintf(stderr,
               "note: the model has %lld vocabulary rows but its tokenizer decodes %lld ids; ids %lld..%lld are "
               "padding: the engine never samples them (its log-probs are over the first %lld ids)\n",
               static_cast<long long>(config.vocab_size), static_cast<long long>(ids), static_cast<long long>(ids),
               static_cast<long long>(config.vocab_size - 1), static_cast<long long>(ids));
  return ids;
}

// The text of `tokens`, leaving out (and listing on stderr) ids the tokenizer cannot decode.
std::string DecodeText(const Tokenizer& tokenizer, const std::vector<int64_t>& tokens) {
  std::vector<int64_t> decodable;
  std::string padded;
  for (int64_t id : tokens) {
    if (id < tokenizer.VocabSize()) {
      decodable.push_back(id);
    } else {
      padded += (padded.empty() ? "" : ", ") + std::to_string(id);
    }
  }
  if (!padded.empty()) {
    std::fprintf(stderr, "warning: ids the tokenizer cannot decode (padded vocabulary) left out of the text: %s\n",
                 padded.c_str());
  }
  return tokenizer.Decode(decodable);
}

}  // namespace

int RunGenerate(const CommandArgs& argv) {
  Args args("generate",
            "llamarl generate --model DIR (--prompt TEXT | --prompt-tokens 1,2,3) [--max-new-tokens N] "
            "[--temperature T] [--top-p P] [--top-k K] [--seed S] [--dtype float32|bfloat16|float8_e4m3] [--json]");
  args.Option("model", "HF checkpoint directory (config.json + safetensors, tokenizer optional)")
      .Option("prompt", "prompt text (needs tokenizer files in --model)")
      .Option("prompt-tokens", "prompt token ids, comma-separated")
      .Option("max-new-tokens", "tokens to generate at most", "64")
      .Option("temperature", "sampling temperature; 0 = greedy", "1")
      .Option("top-p", "nucleus mass kept", "1")
      .Option("top-k", "keep the k most likely tokens; 0 = all", "0")
      .Option("seed", "sampling seed", "0")
      .Option("dtype",
              "weights, compute and KV cache dtype: float32, bfloat16, or float8_e4m3 (the layers' projections in "
              "e4m3fn with per-row scales, computing in bfloat16)",
              "float32")
      .Option("device", "auto (cuda when built with CUDA and a GPU is visible), cpu or cuda", "auto")
      .Flag("ignore-eos", "do not stop at the end-of-sequence tokens of config.json")
      .Option("samples", "independent samples of the prompt (a GRPO-style group, prefilled once)", "1")
      .Flag("reference", "decode with the full-recompute reference instead of the engine")
      .Flag("json", "print one JSON object per sample: tokens, logprobs, versions, text, finish_reason");
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

  const std::string dtype_name = args.Get("dtype");
  LLAMARL_CHECK(dtype_name == "float32" || dtype_name == "bfloat16" || dtype_name == "float8_e4m3",
                "--dtype must be float32, bfloat16 or float8_e4m3, got '", dtype_name, "'");
  const bool fp8 = dtype_name == "float8_e4m3";
  LLAMARL_CHECK(!fp8 || !args.GetFlag("reference"), "--reference decodes in float32 or bfloat16; --dtype float8_e4m3 ",
                "is the engine's");
  const at::TensorOptions weight_options = at::TensorOptions()
                                               .dtype(fp8 ? at::kBFloat16 : TorchDtypeFromName(dtype_name))
                                               .device(ResolveDevice(args.Get("device"), "--device"));
  LlamaWeightSource weights = LlamaWeightSource::FromCheckpoint(dir.string());
  if (args.GetFlag("ignore-eos")) options.eos_ids = std::vector<int64_t>{};
  const int64_t samples = args.GetInt("samples");
  LLAMARL_CHECK(samples >= 1, "--samples must be >= 1, got ", samples);
  LLAMARL_CHECK(samples == 1 || !args.GetFlag("reference"), "--reference decodes one sample; drop --samples ",
                samples);
  std::vector<Json> outputs;
  const int64_t sampled_vocab = DecodableVocab(weights.config(), tokenizer);
  if (args.GetFlag("reference")) {
    LlamaForCausalLM model = MaterializeLlama(weights, weight_options);
    GenerationResult r = ReferenceGenerate(*model, prompt, options);
    outputs.push_back({{"tokens", r.tokens}, {"logprobs", r.logprobs}, {"finish_reason", r.finish_reason}});
  } else {
    for (const Completion& c : GenerateWithEngine(weights, weight_options, prompt, options, samples, sampled_vocab, fp8))
      outputs.push_back({{"tokens", c.tokens},
                         {"logprobs", c.logprobs},
                         {"versions", c.versions},
                         {"finish_reason", FinishReasonName(c.finish_reason)}});
  }
  for (Json& out : outputs) {
    Json text = nullptr;
    if (tokenizer) text = DecodeText(*tokenizer, out["tokens"].get<std::vector<int64_t>>());
    out["text"] = text;
    if (args.GetFlag("json")) {
      std::printf("%s\n", out.dump().c_str());
    } else if (tokenizer) {
      std::printf("%s\n", text.get<std::string>().c_str());
    } else {
      const auto tokens = out["tokens"].get<std::vector<int64_t>>();
      for (size_t i = 0; i < tokens.size(); ++i) std::printf(i ? " %lld" : "%lld", static_cast<long long>(tokens[i]));
      std::printf("\n");
    }
  }
  return 0;
}

}  // namespace llamarl::cli
