// Trainer checkpoints and HF export.
//
// Checkpoint directory (written into DIR.tmp, then renamed to DIR; a previous DIR is moved to DIR.old
// first and removed after, so an interrupted save leaves either the old or the new checkpoint whole):
//   trainer_state.json                 step, policy version, schedule, extra, shard geometry
//   shard-<r>-of-<n>.safetensors       rank r's flat ranges: param, exp_avg, exp_avg_sq (float32), rng
//                                      (the rank's CPU generator state), reference (the frozen KL
//                                      reference policy's range in kl.reference_dtype, when kl.coef > 0: a resumed
//                                      run keeps the reference RL started with, the post-SFT weights,
//                                      not the weights its trainer was built from); shard 0 also the
//                                      ppo value head (shared mode)
//   critic/                            ppo's separate critic: a checkpoint of this layout of its own
//                                      (its flat shards, AdamW state and value head)
// Shards follow the ZeRO flat layout whatever the sharding mode, so a checkpoint saved by n ranks
// loads on any number of ranks (each reads the old shards overlapping its new range).
#include "trainer/trainer.h"

#include "core/check.h"
#include "core/communicator.h"
#include "core/error_text.h"
#include "model/llama_checkpoint.h"
#include "model/safetensors.h"
#include "trainer/adamw.h"
#include "trainer/checkpoint_files.h"
#include "trainer/flat_params.h"
#include "trainer/step_context.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <fstream>
#include <functional>

namespace llamarl {
namespace {

namespace fs = std::filesystem;
using trainer_detail::CollectiveTry;
constexpr int kCheckpointFormat = 1;

std::string ShardFile(const std::string& dir, int rank, int ranks) {
  return dir + "/shard-" + std::to_string(rank) + "-of-" + std::to_string(ranks) + ".safetensors";
}

// DIR.tmp -> DIR, keeping the previous DIR until the new one is in place.
void SwapIntoPlace(const std::string& tmp, const std::string& dir) {
  const std::string old = dir + ".old";
  fs::remove_all(old);
  if (fs::exists(dir)) fs::rename(dir, old);
  fs::rename(tmp, dir);
  fs::remove_all(old);
}

const char* const kTokenizerFiles[] = {"tokenizer.json",    "tokenizer_config.json", "special_tokens_map.json",
                                       "vocab.json",        "merges.txt",            "encoder.json",
                                       "vocab.bpe",         "added_tokens.json",     "chat_template.jinja"};

void WriteJson(const std::string& path, const Json& j) {
  std::ofstream f(path);
  LLAMARL_CHECK(f, "cannot write ", path, "; check that the directory is writable");
  f << j.dump(2) << "\n";
  LLAMARL_CHECK(f.good(), "writing ", path, " failed (disk full?)");
}

}  // namespace

void Trainer::SaveCheckpoint(const std::string& dir, const nlohmann::json& extra) {
  CheckResident("SaveCheckpoint");
  LLAMARL_CHECK(!dir.empty(), "SaveCheckpoint: the checkpoint directory is empty; pass a path");
  const std::string tmp = dir + ".tmp";
  const int rank = dp_.Rank(), ranks = dp_.Size();
  CollectiveTry(dp_, rank == 0, [&] {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
  }, "creating " + tmp);
  CollectiveTry(dp_, true, [&] {
    const int64_t lo = ShardBegin(), hi = ShardEnd();
    const int64_t off = zero3_ ? 0 : lo;  // where this rank's range starts in its own master/state
    NamedTensors tensors{{"param", master_.narrow(0, off, hi - lo)},
                         {"exp_avg", adam_->exp_avg().narrow(0, off, hi - lo)},
                         {"exp_avg_sq", adam_->exp_avg_sq().narrow(0, off, hi - lo)},
                         {"rng", at::detail::getDefaultCPUGenerator().get_state()}};
    if (reference_shard_.defined()) tensors.push_back({"reference", reference_shard_.narrow(0, off, hi - lo)});
    if (rank == 0 && value_master_.defined()) {
      tensors.push_back({"value_head", value_master_});
      tensors.push_back({"value_exp_avg", value_adam_->exp_avg()});
      tensors.push_back({"value_exp_avg_sq", value_adam_->exp_avg_sq()});
    }
    SaveSafetensors(ShardFile(tmp, rank, ranks), tensors);
    if (rank != 0) return;
    Json state{{"format", kCheckpointFormat},
               {"step", adam_->step()},
               {"value_step", value_adam_ ? value_adam_->step() : 0},
               {"policy_version", version_},
               {"skipped_steps", skipped_steps_},
               {"reference", reference_shard_.defined()},
               {"critic", bool(critic_)},
               {"num_shards", ranks},
               {"total_numel", total_numel_},
               {"lr", LearningRateAt(cfg_.schedule, cfg_.optimizer.lr, adam_->step())},
               {"trainer", cfg_.ToJson()},
               {"model", model_config_.ToJson()},
               {"extra", extra}};
    WriteJson(tmp + "/trainer_state.json", state);
  }, "writing checkpoint shards into " + tmp);
  if (critic_) critic_->SaveCheckpoint(tmp + "/critic");  // collective; inside DIR.tmp, so renamed with it
  CollectiveTry(dp_, rank == 0, [&] { SwapIntoPlace(tmp, dir); }, "moving " + tmp + " to " + dir);
}

nlohmann::json Trainer::LoadCheckpoint(const std::string& dir) {
  CheckResident("LoadCheckpoint");
  Json extra;
  CollectiveTry(dp_, true, [&] { extra = LoadCheckpointShards(dir); }, "loading checkpoint " + dir);
  if (critic_) {
    // LoadCheckpointShards read DIR, or DIR.old after a save interrupted between its renames.
    const std::string path = fs::exists(dir) ? dir : dir + ".old";
    CollectiveTry(dp_, true, [&] {
      LLAMARL_CHECK(fs::exists(path + "/critic/trainer_state.json"), "checkpoint '", dir, "' holds no critic (saved ",
                    "with trainer.critic.mode 'shared', or by an older llamarl); a trainer with a separate critic ",
                    "cannot resume from it: start the run again, or resume with trainer.critic.mode \"shared\"");
    }, "loading checkpoint " + dir);
    critic_->LoadCheckpoint(path + "/critic");
  }
  return extra;
}

nlohmann::json Trainer::LoadCheckpointShards(const std::string& dir) {
  // A save interrupted between its two renames leaves the previous checkpoint at DIR.old.
  std::string path = dir;
  if (!fs::exists(path) && fs::exists(dir + ".old")) path = dir + ".old";
  LLAMARL_CHECK(fs::exists(path + "/trainer_state.json"), "no trainer checkpoint at '", dir,
                "' (trainer_state.json missing); pass a directory written by SaveCheckpoint");
  const Json state = ReadJsonFile(path + "/trainer_state.json");
  LLAMARL_CHECK(state.value("format", 0) == kCheckpointFormat, path, "/trainer_state.json: format ",
                state.value("format", 0), " is not the supported ", kCheckpointFormat);
  const int64_t total = state.at("total_numel").get<int64_t>();
  LLAMARL_CHECK(total == total_numel_, "checkpoint '", dir, "' holds ", total, " parameters but this model has ",
                total_numel_, "; it was saved for another model config");
  const int shards = state.at("num_shards").get<int>();
  const std::vector<int64_t> old_bounds = EvenSplit(total, shards);
  const int64_t lo = zero3_ ? ShardBegin() : 0, hi = zero3_ ? ShardEnd() : total_numel_;
  if (reference_shard_.defined()) {
    LLAMARL_CHECK(state.value("reference", false), "checkpoint '", path, "' holds no KL reference policy (saved with ",
                  "trainer.kl.coef 0, or by an older llamarl); a trainer with trainer.kl.coef > 0 cannot resume from it ",
                  "without changing its reference: start the run again, or resume with the kl.coef it was saved with");
  }
  // The reference's range is read like the master's, from the old shards overlapping it.
  const char* names[] = {"param", "exp_avg", "exp_avg_sq", "reference"};
  at::Tensor* targets[] = {&master_, &adam_->exp_avg(), &adam_->exp_avg_sq(), &reference_shard_};
  const int num_targets = reference_shard_.defined() ? 4 : 3;
  const int rng_shard = std::min(dp_.Rank(), shards - 1);
  for (int s = 0; s < shards; ++s) {
    const int64_t a = std::max(lo, old_bounds[size_t(s)]), b = std::min(hi, old_bounds[size_t(s) + 1]);
    if (a >= b && s != 0 && s != rng_shard) continue;
    auto file = SafetensorsFile::Open(ShardFile(path, s, shards));
    for (int k = 0; k < num_targets && a < b; ++k)
      targets[k]->narrow(0, a - lo, b - a).copy_(file->Get(names[k]).narrow(0, a - old_bounds[size_t(s)], b - a));
    if (s == rng_shard) {
      at::Generator generator = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
      generator.set_state(file->Get("rng").clone());
    }
    if (s == 0 && value_master_.defined()) {
      LLAMARL_CHECK(file->Has("value_head"), "checkpoint '", dir, "' has no value head; it was not saved by a ppo trainer");
      value_master_.copy_(file->Get("value_head"));
      value_adam_->exp_avg().copy_(file->Get("value_exp_avg"));
      value_adam_->exp_avg_sq().copy_(file->Get("value_exp_avg_sq"));
      value_adam_->set_step(state.value("value_step", int64_t(0)));
    }
  }
  adam_->set_step(state.at("step").get<int64_t>());
  version_ = state.at("policy_version").get<int64_t>();
  skipped_steps_ = state.value("skipped_steps", int64_t(0));
  if (!zero3_ && work_->parameters()[0].scalar_type() == at::kFloat) BindParams(master_);
  return state.value("extra", Json());
}

at::Tensor ReadCheckpointVector(const std::string& dir, const std::string& name) {
  const Json state = ReadJsonFile(dir + "/trainer_state.json");
  const int shards = state.at("num_shards").get<int>();
  const int64_t total = state.at("total_numel").get<int64_t>();
  const std::vector<int64_t> bounds = EvenSplit(total, shards);
  at::Tensor full = at::empty({total}, at::kFloat);
  for (int s = 0; s < shards; ++s) {
    auto file = SafetensorsFile::Open(ShardFile(dir, s, shards));
    full.narrow(0, bounds[size_t(s)], bounds[size_t(s) + 1] - bounds[size_t(s)]).copy_(file->Get(name));
  }
  return full;
}

namespace {

// The problem with one shard file, "" when it holds every tensor its range needs.
std::string ShardProblem(const std::string& file, int64_t numel, bool reference) {
  if (!fs::exists(file)) return "missing " + fs::path(file).filename().string();
  std::shared_ptr<SafetensorsFile> f;
  try {
    f = SafetensorsFile::Open(file);
  } catch (const std::exception& e) {
    return ErrorText(e);
  }
  std::vector<std::string> names{"param", "exp_avg", "exp_avg_sq"};
  if (reference) names.push_back("reference");
  for (const std::string& name : names) {
    if (!f->Has(name)) return file + " has no tensor '" + name + "'";
    const std::vector<int64_t> shape = f->Shape(name);
    if (shape.size() != 1 || shape[0] != numel)
      return file + ": tensor '" + name + "' is not the " + std::to_string(numel) + " values of its range";
  }
  if (!f->Has("rng")) return file + " has no tensor 'rng'";
  return "";
}

}  // namespace

std::string CheckpointProblem(const std::string& dir) {
  const std::string state_path = dir + "/trainer_state.json";
  if (!fs::exists(state_path)) return "missing trainer_state.json";
  Json state;
  try {
    state = ReadJsonFile(state_path);
    if (state.value("format", 0) != kCheckpointFormat)
      return state_path + ": format " + state.value("format", Json(0)).dump() + " is not the supported " +
             std::to_string(kCheckpointFormat);
    const int shards = state.at("num_shards").get<int>();
    const int64_t total = state.at("total_numel").get<int64_t>();
    if (shards < 1 || total < 1) return state_path + ": num_shards and total_numel must be positive";
    const std::vector<int64_t> bounds = EvenSplit(total, shards);
    for (int s = 0; s < shards; ++s) {
      std::string problem = ShardProblem(ShardFile(dir, s, shards), bounds[size_t(s) + 1] - bounds[size_t(s)],
                                         state.value("reference", false));
      if (!problem.empty()) return problem;
    }
    if (state.value("critic", false)) {
      std::string problem = CheckpointProblem(dir + "/critic");
      if (!problem.empty()) return "critic/: " + problem;
    }
    // Files the caller adds beside the shards after the save, named with their sizes in extra.files
    // (the controller's parked groups): one missing or cut short makes the checkpoint incomplete.
    const Json extra = state.value("extra", Json());
    const Json added = extra.is_object() ? extra.value("files", Json::object()) : Json::object();
    for (const auto& [name, size] : added.items()) {
      const fs::path path = fs::path(dir) / name;
      if (!fs::exists(path)) return "missing " + path.string();
      if (fs::file_size(path) != size.get<uint64_t>())
        return path.string() + " holds " + std::to_string(fs::file_size(path)) + " bytes, not the " + size.dump() +
               " saved";
    }
  } catch (const std::exception& e) {
    return state_path + ": " + ErrorText(e);
  }
  return "";
}

void CopyTokenizerFiles(const std::string& from, const std::string& to) {
  LLAMARL_CHECK(fs::is_directory(from), "tokenizer directory '", from,
                "' does not exist; pass the model directory that holds tokenizer.json, or \"\" for none");
  int copied = 0;
  for (const char* name : kTokenizerFiles) {
    const fs::path src = fs::path(from) / name;
    if (!fs::exists(src)) continue;
    fs::copy_file(src, fs::path(to) / name, fs::copy_options::overwrite_existing);
    ++copied;
  }
  LLAMARL_CHECK(copied > 0, "tokenizer directory '", from,
                "' holds no tokenizer files (tokenizer.json, or GPT-2's encoder.json + vocab.bpe)");
}

void Trainer::ExportHf(const std::string& dir, const std::string& tokenizer_dir) {
  CheckResident("ExportHf");
  LLAMARL_CHECK(!dir.empty(), "ExportHf: the export directory is empty; pass a path");
  at::Tensor full = GatherFull();
  CollectiveTry(dp_, dp_.Rank() == 0, [&] {
    const std::string tmp = dir + ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    LlamaForCausalLM model(model_config_, at::TensorOptions().dtype(at::kFloat));
    AssignFlat(*model, specs_, full, /*bind=*/false);
    SaveLlama(tmp, *model, model_config_);
    if (!tokenizer_dir.empty()) CopyTokenizerFiles(tokenizer_dir, tmp);
    SwapIntoPlace(tmp, dir);
  }, "exporting the policy to " + dir);
}

}  // namespace llamarl
