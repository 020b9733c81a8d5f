#include "plan/plan_rank_memory.h"

#include "core/check.h"
#include "plan/plan_cost.h"

#include <algorithm>
#include <sstream>
#include <utility>

namespace llamarl {
namespace {

std::string Gb(double bytes) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(2);
  s << bytes / 1e9 << " GB";
  return s.str();
}

// Parameters of the edges (embedding, LM head when untied, final norm) and of one decoder layer.
std::pair<double, double> EdgeAndLayerParams(const PlanModel& model) {
  const LlamaConfig& c = model.config;
  const double embedding = double(c.vocab_size) * double(c.hidden_size);
  const double edges = embedding * (c.tie_word_embeddings ? 1.0 : 2.0) + double(c.hidden_size);
  const double layer = (double(model.num_params) - edges) / double(std::max<int64_t>(1, c.num_hidden_layers));
  return {edges, layer};
}

std::vector<std::pair<const char*, double>> Parts(const RankMemoryPlan& m) {
  return {{"weights", m.weights},   {"optimizer state", m.optimizer}, {"KL reference", m.reference},
          {"KV cache", m.kv_cache}, {"activations", m.activations},   {"runtime", m.runtime},
          {"allocator reserve", m.allocator}};
}

std::string PartsText(const RankMemoryPlan& m) {
  std::string out;
  for (const auto& [name, bytes] : Parts(m)) {
    if (bytes <= 0) continue;
    out += (out.empty() ? "" : " + ") + std::string(name) + " " + Gb(bytes);
  }
  return out;
}

}  // namespace

Json RankMemoryPlan::ToJson() const {
  return Json{{"weights_bytes", weights},     {"optimizer_bytes", optimizer},     {"reference_bytes", reference},
              {"kv_cache_bytes", kv_cache},   {"activation_bytes", activations},  {"runtime_bytes", runtime},
              {"allocator_bytes", allocator}, {"total_bytes", Total()}};
}

RankMemoryPlan PlanRankMemory(const PlanModel& model, const RankMemoryInputs& in) {
  LLAMARL_CHECK(in.role == "trainer" || in.role == "generator" || in.role == "colocated", "unknown rank role '",
                in.role, "'; known: trainer, generator, colocated");
  LLAMARL_CHECK(in.trainer_ranks >= 1 && in.tp >= 1, "trainer_ranks and tp must be >= 1");
  RankMemoryPlan m;
  m.runtime = in.runtime_bytes;
  const auto [edges, layer] = EdgeAndLayerParams(model);
  const double n = double(model.num_params);
  if (in.role != "generator") {
    const int64_t group = in.zero3 ? in.trainer_ranks : 1;
    const double state = TrainerStateBytesPerGpu(model, group);  // 16 N / group
    const double unit = edges + layer;
    m.weights = state * 4.0 / 16.0;
    m.optimizer = state * 12.0 / 16.0;
    // zero3 gathers one unit at a time; replicated keeps a compute-dtype copy unless f32 (views) and
    // the whole gradient in the compute dtype and in f32.
    m.weights += in.zero3 ? (2.0 * double(in.compute_bytes) + 4.0) * unit
                          : (in.compute_bytes == 4 ? 0.0 : 2.0 * n) + (double(in.compute_bytes) + 4.0) * n;
    if (in.reference_bytes > 0) m.reference = double(in.reference_bytes) * n / double(group) + double(in.compute_bytes) * unit;
    // Replicated never recomputes; zero3 does unless activation_checkpointing is off.
    const bool checkpointing = in.zero3 && in.activation_checkpointing;
    m.activations = ActivationBytesPerToken(model.config, checkpointing) * double(in.micro_batch_tokens) *
                        double(in.compute_bytes) / 2.0 +
                    3.0 * 4.0 * double(in.logprob_token_chunk) * double(in.logprob_vocab_chunk);
    // The allocator keeps at most what a step frees: its activations and gathered units (zero3) or
    // its compute-dtype gradients (replicated), up to the threshold.
    const double step_freed = m.activations + (in.zero3 ? (2.0 * double(in.compute_bytes) + 4.0) * unit
                                                        : double(in.compute_bytes) * n);
    m.allocator = std::min(in.allocator_retained_bytes, step_freed);
  }
  if (in.role != "trainer") {
    const double split = n - edges;  // attention and MLP weights are divided over TP; edges replicated
    const double tp = double(in.tp), bytes = double(in.generator_weight_bytes);
    const double vocab_matrix = double(model.config.vocab_size) * double(model.config.hidden_size);
    if (!in.generator_fp8) {
      m.weights += (split / tp + edges) * bytes;
      // A push is received straight into the engine's weights; under TP the vocabulary rows arrive in
      // scratch (their share of the edges) and are all-gathered into one full [V, D] before the copy.
      if (in.tp > 1) m.weights += (edges / tp + vocab_matrix) * bytes;
    } else {
      // The layers' projections as e4m3fn bytes and a float32 scale per local row (column-parallel
      // rows divided over TP, row-parallel o/down rows whole), one layer of them decoded into the
      // compute dtype, the rest (norms, biases, edges) in the compute dtype.
      const LlamaConfig& c = model.config;
      const double linear = double(model.layer_linear_params);
      const double layers = double(std::max<int64_t>(1, c.num_hidden_layers));
      const double rows = layers * ((double(c.num_attention_heads + 2 * c.num_key_value_heads) * double(c.head_dim) +
                                     2.0 * double(c.intermediate_size)) / tp +
                                    2.0 * double(c.hidden_size));
      m.weights += linear / tp + 4.0 * rows + linear / (layers * tp) * bytes + ((split - linear) / tp + edges) * bytes;
      // An fp8 push writes the projections in place; the edges arrive as e4m3fn scratch and are decoded
      // into the weights (under TP into a temporary that is all-gathered into one full [V, D]).
      m.weights += in.tp > 1 ? edges / tp * (1.0 + bytes) + vocab_matrix * bytes : edges;
    }
    m.kv_cache = in.kv_budget_bytes;
    m.activations = std::max(m.activations, 3.0 * 4.0 * double(in.max_slots) * double(model.config.vocab_size));
  }
  return m;
}

std::string MemoryPlanText(const std::vector<PlannedRank>& ranks, double host_bytes) {
  std::ostringstream out;
  double total = 0;
  for (const PlannedRank& r : ranks) {
    out << "rank " << r.rank << " (" << r.role << "): " << Gb(r.memory.Total()) << " = " << PartsText(r.memory)
        << "\n";
    total += r.memory.Total();
  }
  out << "all " << ranks.size() << " rank(s) on this machine: " << Gb(total) << " of " << Gb(host_bytes) << "\n";
  return out.str();
}

std::string MemoryFitProblem(const std::vector<PlannedRank>& ranks, double host_bytes) {
  std::ostringstream out;
  double total = 0;
  for (const PlannedRank& r : ranks) {
    total += r.memory.Total();
    if (r.memory.Total() <= host_bytes) continue;
    auto parts = Parts(r.memory);
    auto largest = *std::max_element(parts.begin(), parts.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
    out << "rank " << r.rank << " (" << r.role << ") does not fit: it needs " << Gb(r.memory.Total()) << " ("
        << PartsText(r.memory) << ") but the machine has " << Gb(host_bytes) << ", "
        << Gb(r.memory.Total() - host_bytes) << " over; its largest part is the " << largest.first << " ("
        << Gb(largest.second) << ")\n";
  }
  if (total > host_bytes) {
    out << "the " << ranks.size() << " rank(s) together need " << Gb(total) << " but the machine has "
        << Gb(host_bytes) << ": " << Gb(total - host_bytes)
        << " over; use more trainer ranks on more machines (ZeRO-3 divides the weights, optimizer state and "
           "reference), a smaller model, or a machine with more memory\n";
  }
  return out.str();
}

}  // namespace llamarl
