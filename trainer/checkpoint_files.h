// Reading a trainer checkpoint directory (trainer/trainer_checkpoint.cpp has the layout) without a
// Trainer: checking that it is whole, and assembling a flat vector from its shards, for resume
// planning and for export. Also the tokenizer files an HF export carries.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace llamarl {

// What is wrong with the trainer checkpoint at `dir`, "" when it is whole: trainer_state.json
// readable and of the supported format, every shard file present with an intact header (a truncated
// file fails there) holding each tensor of its range at the size the shard geometry gives. Reads
// headers only; not collective; never throws. A checkpoint with a separate critic (critic/) is whole
// only when that is too.
std::string CheckpointProblem(const std::string& dir);

// One flat float32 vector of a checkpoint, assembled from every shard: "param" (the policy's master
// parameters in the flat layout: AssignFlat with LlamaParamSpecs puts them in a model) or
// "reference" (the KL reference policy, saved when kl.coef > 0). Not collective.
at::Tensor ReadCheckpointVector(const std::string& dir, const std::string& name);

// Copies the tokenizer files found in `from` (tokenizer.json, tokenizer_config.json with its chat
// template, special_tokens_map.json, GPT-2's encoder.json + vocab.bpe, ...) into `to`; throws when
// `from` is not a directory or holds none of them.
void CopyTokenizerFiles(const std::string& from, const std::string& to);

}  // namespace llamarl
