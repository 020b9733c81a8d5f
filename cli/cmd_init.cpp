// llamarl init --model tiny --out DIR [size options] [--seed S] [--dtype float32|bfloat16]
// llamarl init --preset NAME --out DIR [--seed S] [--dtype D] [--max-shard-mb N] [--tokenizers DIR]
// --model tiny writes a small random Hugging Face-format checkpoint: config.json,
// generation_config.json, model.safetensors, and a real byte-level BPE tokenizer.json with
// tokenizer_config.json (ChatML). --preset writes a published shape (model/llama_presets.h) with
// random weights, streamed one tensor at a time into sharded safetensors with an index, the fitting
// tokenizer from the shared tokenizers directory when there is one, and a README.md that says what
// the directory holds (and which tokenizer is missing).
#include "cli/args.h"
#include "cli/commands.h"
#include "core/check.h"
#include "core/logging.h"
#include "model/llama.h"
#include "model/llama_checkpoint.h"
#include "model/llama_presets.h"
#include "model/tiny_tokenizer.h"

#include <filesystem>
#include <fstream>

namespace llamarl::cli {
namespace {

namespace fs = std::filesystem;

void WriteJson(const fs::path& path, const Json& value) {
  std::ofstream out(path);
  out << value.dump(2) << "\n";
  LLAMARL_CHECK(out.good(), "cannot write ", path.string());
}

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  LLAMARL_CHECK(out.good(), "cannot write ", path.string());
}

at::ScalarType InitDtype(const Args& args, const std::string& fallback) {
  const std::string dtype = args.Has("dtype") ? args.Get("dtype") : fallback;
  LLAMARL_CHECK(dtype == "float32" || dtype == "bfloat16", "llamarl init: --dtype expects float32 or bfloat16, got '",
                dtype, "'");
  return TorchDtypeFromName(dtype);
}

int InitTiny(const Args& args, const std::string& model_name, const fs::path& out) {
  LLAMARL_CHECK(model_name == "tiny", "llamarl init: --model '", model_name,
                "' is not supported; known: tiny (published shapes: --preset NAME, one of ",
                [] {
                  std::string names;
                  for (const auto& n : LlamaPresetNames()) names += (names.empty() ? "" : ", ") + n;
                  return names;
                }(),
                ")");
  TinyLlamaOptions options;
  options.vocab_size = TinyTokenizerIds::kVocabSize;
  options.hidden_size = args.GetInt("hidden-size");
  options.num_layers = args.GetInt("layers");
  options.num_heads = args.GetInt("heads");
  options.num_kv_heads = args.GetInt("kv-heads");
  options.intermediate_size = args.GetInt("intermediate-size");
  options.max_position_embeddings = args.GetInt("max-positions");
  options.eos_token_ids = {TinyTokenizerIds::kImEnd, TinyTokenizerIds::kEndOfText};
  LlamaConfig config = TinyLlamaConfig(options);
  const at::ScalarType dtype = InitDtype(args, "float32");

  LlamaForCausalLM model(config);
  InitLlamaWeights(*model, args.GetInt("seed"));
  fs::create_directories(out);
  SaveLlamaOptions save;
  save.dtype = dtype;
  SaveLlama(out.string(), *model, config, save);
  WriteJson(out / "tokenizer.json", MakeTinyTokenizerJson());
  WriteJson(out / "tokenizer_config.json", MakeTinyTokenizerConfigJson());
  LogInfo("wrote ", out.string(), ": ", config.NumParameters(), " parameters (", config.num_hidden_layers,
          " layers, hidden ", config.hidden_size, ", vocab ", config.vocab_size, "), ", TorchDtypeName(dtype));
  return 0;
}

// Copies the preset's tokenizer files; returns the README line that says what was (not) written.
std::string CopyTokenizer(const LlamaPreset& preset, const fs::path& tokenizers, const fs::path& out) {
  if (preset.tokenizer.empty()) {
    LogWarning("llamarl init: preset ", preset.name, " has no tokenizer here: ", preset.tokenizer_note);
    return "No tokenizer: " + preset.tokenizer_note + ".";
  }
  const fs::path from = tokenizers / preset.tokenizer;
  LLAMARL_CHECK(fs::exists(from / "tokenizer.json"), "llamarl init: preset ", preset.name, " takes the ",
                preset.tokenizer, " tokenizer, but ", (from / "tokenizer.json").string(),
                " does not exist; point --tokenizers at the directory holding ", preset.tokenizer, "/tokenizer.json");
  for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
    if (fs::exists(from / file)) fs::copy_file(from / file, out / file, fs::copy_options::overwrite_existing);
  }
  return "Tokenizer: " + (from / "tokenizer.json").string() + ". " + preset.tokenizer_note + ".";
}

int InitPreset(const Args& args, const fs::path& out) {
  const LlamaPreset& preset = FindLlamaPreset(args.Get("preset"));
  LLAMARL_CHECK(preset.name != "tiny", "llamarl init: --preset tiny: use --model tiny, which also writes its tokenizer");
  const at::ScalarType dtype = InitDtype(args, "bfloat16");
  const int64_t shard_mb = args.GetInt("max-shard-mb");
  LLAMARL_CHECK(shard_mb > 0, "llamarl init: --max-shard-mb must be positive, got ", shard_mb);
  fs::create_directories(out);
  const int64_t params = preset.config.NumParameters();
  std::string weights;
  if (preset.writes_weights) {
    RandomLlamaOptions options;
    options.seed = uint64_t(args.GetInt("seed"));
    options.dtype = dtype;
    options.max_shard_bytes = shard_mb << 20;
    options.extra_config_fields = preset.extra_config_fields;
    const auto files = WriteRandomLlama(out.string(), preset.config, options);
    const size_t shards = files.size() > 1 ? files.size() - 1 : 1;  // the index is the last file when sharded
    weights = "Random weights (HF's initialisation, seed " + args.Get("seed") + "), " + TorchDtypeName(dtype) + ", in " +
              std::to_string(shards) + " safetensors file" + (shards > 1 ? "s" : "") + " of at most " +
              std::to_string(shard_mb) + " MiB" + (shards > 1 ? " with model.safetensors.index.json" : "") + ".";
  } else {
    LlamaConfig saved = preset.config;
    saved.torch_dtype = TorchDtypeName(dtype);
    Json config = saved.ToJson();
    config.update(preset.extra_config_fields);
    WriteJson(out / "config.json", config);
    WriteJson(out / "generation_config.json", saved.GenerationConfigJson());
    weights = "Config only: " + std::to_string(params) + " parameters are too many to write here; use it with "
              "`llamarl plan --model " + (out / "config.json").string() + "`.";
  }
  const std::string tokenizer = CopyTokenizer(preset, args.Get("tokenizers"), out);
  WriteText(out / "README.md", "# " + preset.name + " (shape of " + preset.hf_repo + ")\n\nWritten by `llamarl init --preset " +
                                   preset.name + "`: " + std::to_string(params) + " parameters, " +
                                   std::to_string(preset.config.num_hidden_layers) + " layers, hidden " +
                                   std::to_string(preset.config.hidden_size) + ", vocab " +
                                   std::to_string(preset.config.vocab_size) + " rows.\n\n" + weights + "\n\n" +
                                   tokenizer + "\n");
  LogInfo("wrote ", out.string(), ": ", preset.name, ", ", params, " parameters. ", weights, " ",
          preset.tokenizer.empty() ? tokenizer : "Tokenizer: " + preset.tokenizer + ".");
  return 0;
}

}  // namespace

int RunInit(const CommandArgs& argv) {
  Args args("init",
            "llamarl init (--model tiny [--hidden-size N] [--layers N] [--heads N] | --preset NAME) --out DIR "
            "[--seed S] [--dtype float32|bfloat16]");
  TinyLlamaOptions defaults;
  args.Option("model", "small random model: 'tiny' (the default when --preset is not given)")
      .Option("preset", "published shape with random weights: qwen2.5-0.5b, qwen2.5-1.5b, llama3.2-1b; 8b, 70b, "
                        "405b write config.json only")
      .Option("out", "directory to create (must not exist or be empty)")
      .Option("hidden-size", "tiny: hidden size D", std::to_string(defaults.hidden_size))
      .Option("layers", "tiny: number of decoder layers", std::to_string(defaults.num_layers))
      .Option("heads", "tiny: attention heads", std::to_string(defaults.num_heads))
      .Option("kv-heads", "tiny: key/value heads (GQA); must divide --heads", std::to_string(defaults.num_kv_heads))
      .Option("intermediate-size", "tiny: MLP width; 0 = Llama's 8/3 ratio", "0")
      .Option("max-positions", "tiny: max_position_embeddings", std::to_string(defaults.max_position_embeddings))
      .Option("dtype", "float32 or bfloat16 (default: float32 for tiny, bfloat16 for a preset)")
      .Option("max-shard-mb", "preset: largest safetensors shard in MiB", "512")
      .Option("tokenizers", "preset: directory holding the shared tokenizers (qwen3/, gpt2/)",
              "../shared/data/tokenizers")
      .Option("seed", "seed of the random weights", "0");
  if (!args.Parse(argv)) return 0;
  LLAMARL_CHECK(!args.Has("model") || !args.Has("preset"),
                "llamarl init: give --model tiny or --preset NAME, not both");
  fs::path out = args.Get("out");
  LLAMARL_CHECK(!fs::exists(out) || fs::is_empty(out), "llamarl init: ", out.string(),
                " already exists and is not empty; choose a new --out");
  if (args.Has("preset")) return InitPreset(args, out);
  return InitTiny(args, args.Has("model") ? args.Get("model") : "tiny", out);
}

}  // namespace llamarl::cli
