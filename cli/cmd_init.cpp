// llamarl init --model tiny --out DIR [size options] [--seed S] [--dtype float32|bfloat16]
// Writes a small random Hugging Face-format checkpoint: config.json, generation_config.json,
// model.safetensors, and a real byte-level BPE tokenizer.json with tokenizer_config.json (ChatML).
#include "cli/args.h"
#include "cli/commands.h"
#include "core/check.h"
#include "core/logging.h"
#include "model/llama.h"
#include "model/llama_checkpoint.h"
#include "model/tiny_tokenizer.h"

#include <filesystem>
#include <fstream>

namespace llamarl::cli {
namespace {

void WriteJson(const std::filesystem::path& path, const Json& value) {
  std::ofstream out(path);
  out << value.dump(2) << "\n";
  LLAMARL_CHECK(out.good(), "cannot write ", path.string());
}

}  // namespace

int RunInit(const CommandArgs& argv) {
  Args args("init", "llamarl init --model tiny --out DIR [--hidden-size N] [--layers N] [--heads N] [--seed S]");
  TinyLlamaOptions defaults;
  args.Option("model", "model preset; only 'tiny' is small enough to write here", "tiny")
      .Option("out", "directory to create (must not exist or be empty)")
      .Option("hidden-size", "hidden size D", std::to_string(defaults.hidden_size))
      .Option("layers", "number of decoder layers", std::to_string(defaults.num_layers))
      .Option("heads", "attention heads", std::to_string(defaults.num_heads))
      .Option("kv-heads", "key/value heads (GQA); must divide --heads", std::to_string(defaults.num_kv_heads))
      .Option("intermediate-size", "MLP width; 0 = Llama's 8/3 ratio", "0")
      .Option("max-positions", "max_position_embeddings", std::to_string(defaults.max_position_embeddings))
      .Option("dtype", "float32 or bfloat16", "float32")
      .Option("seed", "seed of the random weights", "0");
  if (!args.Parse(argv)) return 0;
  LLAMARL_CHECK(args.Get("model") == "tiny", "llamarl init: --model '", args.Get("model"),
                "' is not supported; known: tiny (larger presets are for `llamarl plan`, not for writing here)");
  std::filesystem::path out = args.Get("out");
  LLAMARL_CHECK(!std::filesystem::exists(out) || std::filesystem::is_empty(out), "llamarl init: ", out.string(),
                " already exists and is not empty; choose a new --out");

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
  std::string dtype = args.Get("dtype");
  LLAMARL_CHECK(dtype == "float32" || dtype == "bfloat16", "llamarl init: --dtype expects float32 or bfloat16, got '",
                dtype, "'");

  LlamaForCausalLM model(config);
  InitLlamaWeights(*model, args.GetInt("seed"));
  std::filesystem::create_directories(out);
  SaveLlamaOptions save;
  save.dtype = TorchDtypeFromName(dtype);
  SaveLlama(out.string(), *model, config, save);
  WriteJson(out / "tokenizer.json", MakeTinyTokenizerJson());
  WriteJson(out / "tokenizer_config.json", MakeTinyTokenizerConfigJson());
  LogInfo("wrote ", out.string(), ": ", config.NumParameters(), " parameters (", config.num_hidden_layers,
          " layers, hidden ", config.hidden_size, ", vocab ", config.vocab_size, "), ", dtype);
  return 0;
}

}  // namespace llamarl::cli
