// `llamarl export`: a run's policy as a Hugging Face directory that `llamarl generate`, LoadLlama and
// Hugging Face's own loaders read.
//
// Source: a checkpoint directory (RUN_DIR/checkpoints/step_N) or a run directory, which means its
// newest whole checkpoint (damaged ones are skipped with a warning, as a resume does). The model's
// shape and tokenizer come from RUN_DIR/recipe.json; the weights are the checkpoint's float32 master
// parameters, read from every trainer shard (any number of ranks saved it). Written into OUT.tmp and
// renamed to OUT: config.json, generation_config.json, model.safetensors (or model-0000i-of-0000n
// shards with model.safetensors.index.json once over max_shard_bytes), and the tokenizer files with
// the chat template (tokenizer_config.json): the tiny byte tokenizer's, or those of tokenizer.path
// (model.path). Not collective; needs no MPI.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controller/recipe.h"
#include "model/llama.h"

namespace llamarl::controller {

// A run's policy in memory: the recipe it was trained with, its model config and the float32
// weights of one checkpoint.
struct RunPolicy {
  RecipeConfig recipe;
  LlamaConfig config;
  LlamaForCausalLM model{nullptr};
  std::string checkpoint;  // the checkpoint read
  int64_t rl_step = 0;     // the RL step it was saved before
};

// `source` is RUN_DIR (its newest whole checkpoint) or RUN_DIR/checkpoints/step_N.
RunPolicy LoadRunPolicy(const std::string& source);

struct ExportOptions {
  std::string source;                          // RUN_DIR or RUN_DIR/checkpoints/step_N
  std::string out;                             // must not exist, or be empty
  std::string dtype = "bf16";                  // stored dtype: bf16 or f32
  int64_t max_shard_bytes = int64_t(5) << 30;  // HF's "5GB"
};

struct ExportResult {
  std::string checkpoint;          // the checkpoint exported
  int64_t rl_step = 0;             // the RL step it was saved before
  std::vector<std::string> files;  // the safetensors files written
};

ExportResult ExportRun(const ExportOptions& options);

}  // namespace llamarl::controller
