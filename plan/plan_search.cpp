#include "plan/plan_search.h"

#include "core/check.h"

#include <algorithm>
#include <map>
#include <sstream>

namespace llamarl {
namespace {

constexpr int64_t kMaxAdviceGpus = 1 << 16;
constexpr size_t kRunnersUp = 3;

class Rejections {
 public:
  void Add(const std::string& kind, const std::string& why) {
    auto [it, inserted] = by_kind_.try_emplace(kind, Rejection{kind, 0, why});
    if (inserted) order_.push_back(kind);
    ++it->second.count;
  }
  std::vector<Rejection> List() const {
    std::vector<Rejection> list;
    for (const auto& kind : order_) list.push_back(by_kind_.at(kind));
    return list;
  }

 private:
  std::map<std::string, Rejection> by_kind_;
  std::vector<std::string> order_;
};

std::vector<WeightDtype> Dtypes(const PlanRequest& request) {
  if (!request.generator_dtypes.empty()) return request.generator_dtypes;
  if (request.hardware.fp8) return {WeightDtype::kBf16, WeightDtype::kFp8};
  return {WeightDtype::kBf16};
}

struct TrainerChoice {
  TrainerSetup setup;
  TrainerCost cost;
};

// The fastest trainer configuration on `num_gpus` that fits, if any.
std::optional<TrainerChoice> BestTrainer(const PlanRequest& request, int64_t num_gpus, const std::string& kind,
                                         Rejections* rejections, int64_t* num_candidates) {
  std::optional<TrainerChoice> best;
  for (int64_t group : ShardGroupSizes(num_gpus, request.hardware)) {
    for (bool checkpointing : {false, true}) {
      TrainerSetup setup{num_gpus, group, checkpointing};
      TrainerCost cost = EstimateTrainer(request.model, request.hardware, request.assumptions, setup);
      ++*num_candidates;
      if (!cost.fits) {
        if (rejections) rejections->Add(kind, cost.why_not);
        continue;
      }
      if (!best || cost.time_s < best->cost.time_s) best = TrainerChoice{setup, cost};
    }
  }
  return best;
}

struct GeneratorChoice {
  GeneratorSetup setup;
  GeneratorCost cost;
};

std::vector<GeneratorChoice> FittingGenerators(const PlanRequest& request, int64_t num_gpus, double resident,
                                               const std::string& kind, Rejections* rejections,
                                               int64_t* num_candidates) {
  std::vector<GeneratorChoice> fitting;
  for (int64_t tp : TensorParallelSizes(request.model.config, request.hardware)) {
    if (num_gpus % tp != 0) continue;
    for (WeightDtype dtype : Dtypes(request)) {
      GeneratorSetup setup{num_gpus, tp, dtype, resident};
      GeneratorCost cost = EstimateGenerator(request.model, request.hardware, request.assumptions, setup);
      ++*num_candidates;
      if (cost.fits) {
        fitting.push_back({setup, cost});
      } else if (rejections) {
        rejections->Add(kind, cost.why_not);
      }
    }
  }
  return fitting;
}

std::vector<AsyncPlan> SearchAsync(const PlanRequest& request, Rejections* rejections, int64_t* num_candidates) {
  const int64_t n = request.num_gpus, node = request.hardware.gpus_per_node;
  // Across several nodes, generators and trainers get whole nodes.
  const int64_t step = n >= 2 * node ? node : 1;
  std::vector<AsyncPlan> plans;
  for (int64_t g = step; g < n; g += step) {
    std::optional<TrainerChoice> trainer =
        BestTrainer(request, n - g, "split trainer: states + activations exceed GPU memory", rejections,
                    num_candidates);
    auto generators = FittingGenerators(request, g, 0.0, "split generator: weights + one sequence's KV cache "
                                        "exceed GPU memory", rejections, num_candidates);
    if (!trainer) continue;
    for (const auto& gen : generators) {
      AsyncPlan plan{gen.setup, trainer->setup, gen.cost, trainer->cost, {}, 0.0};
      plan.weight_sync =
          EstimateWeightSync(request.model, request.hardware, request.assumptions, trainer->setup, gen.setup);
      plan.step_s = std::max(gen.cost.time_s, trainer->cost.time_s) + plan.weight_sync.ddma_s;
      plans.push_back(plan);
    }
  }
  std::sort(plans.begin(), plans.end(), [](const AsyncPlan& x, const AsyncPlan& y) { return x.step_s < y.step_s; });
  return plans;
}

std::optional<SyncPlan> SearchSync(const PlanRequest& request, int64_t n, Rejections* rejections,
                                   int64_t* num_candidates) {
  const PlanAssumptions& a = request.assumptions;
  std::optional<SyncPlan> best;
  for (int64_t group : ShardGroupSizes(n, request.hardware)) {
    for (bool checkpointing : {false, true}) {
      TrainerSetup trainer_setup{n, group, checkpointing};
      TrainerCost trainer = EstimateTrainer(request.model, request.hardware, a, trainer_setup);
      ++*num_candidates;
      if (!trainer.fits) {
        if (rejections) rejections->Add("colocated trainer: states + activations exceed GPU memory", trainer.why_not);
        continue;
      }
      for (bool offload : {false, true}) {
        double resident = offload ? 0.0 : trainer.state_bytes_per_gpu;
        for (const auto& gen : FittingGenerators(request, n, resident,
                                                 "colocated generator: weights + KV cache + resident trainer "
                                                 "state exceed GPU memory",
                                                 rejections, num_candidates)) {
          SyncPlan plan{gen.setup, trainer_setup, offload, gen.cost, trainer, 0.0, 0.0, 0.0};
          double bytes = GeneratorWeightBytes(request.model, gen.setup.dtype) / double(gen.setup.tp);
          plan.reshard_s = group > 1 ? bytes * double(group - 1) / double(group) /
                                           GroupBandwidth(request.hardware, a, group)
                                     : 0.0;
          plan.offload_s = offload ? 2.0 * trainer.state_bytes_per_gpu /
                                         (request.hardware.pcie_gbps * 1e9 * a.network_efficiency)
                                   : 0.0;
          plan.step_s = gen.cost.time_s + trainer.time_s + plan.reshard_s + plan.offload_s;
          if (!best || plan.step_s < best->step_s) best = plan;
        }
      }
    }
  }
  return best;
}

std::string Gpus(int64_t n) { return std::to_string(n) + (n == 1 ? " GPU" : " GPUs"); }

// Node-granular GPU counts: 1..node, then whole nodes.
int64_t NextCount(int64_t n, int64_t node) { return n < node ? n + 1 : (n / node + 1) * node; }

std::vector<std::string> Advice(const PlanRequest& request, const PlanResult& result);

}  // namespace

std::string AsyncPlan::Describe() const {
  std::ostringstream s;
  s << generator_setup.num_gpus << " generate (" << generator.replicas << " x TP=" << generator_setup.tp << " "
    << WeightDtypeName(generator_setup.dtype) << ") + " << trainer_setup.num_gpus << " train (ZeRO-3/"
    << trainer_setup.shard_group << (trainer_setup.checkpointing ? ", checkpointing" : "") << ")";
  return s.str();
}

std::string SyncPlan::Describe() const {
  std::ostringstream s;
  s << generator_setup.num_gpus << " colocated (generate " << generator.replicas << " x TP=" << generator_setup.tp
    << " " << WeightDtypeName(generator_setup.dtype) << "; train ZeRO-3/" << trainer_setup.shard_group
    << (trainer_setup.checkpointing ? ", checkpointing" : "") << (offload ? "; trainer state offloaded" : "")
    << ")";
  return s.str();
}

double PlanResult::Speedup() const { return async && sync ? sync->step_s / async->step_s : 0.0; }

std::vector<int64_t> TensorParallelSizes(const LlamaConfig& config, const HardwareProfile& hw) {
  std::vector<int64_t> sizes;
  for (int64_t tp = 1; tp <= hw.gpus_per_node; tp *= 2) {
    bool kv_ok = config.num_key_value_heads % tp == 0 || tp % config.num_key_value_heads == 0;
    if (config.num_attention_heads % tp == 0 && kv_ok) sizes.push_back(tp);
  }
  return sizes;
}

std::vector<int64_t> ShardGroupSizes(int64_t num_gpus, const HardwareProfile& hw) {
  std::vector<int64_t> sizes;
  int64_t unit = std::min(num_gpus, hw.gpus_per_node);
  for (int64_t s = unit; s < num_gpus; s *= 2)
    if (num_gpus % s == 0) sizes.push_back(s);
  sizes.push_back(num_gpus);
  return sizes;
}

PlanResult SearchPlan(const PlanRequest& request) {
  LLAMARL_CHECK(request.num_gpus >= 1, "llamarl plan: --gpus (", request.num_gpus, ") must be >= 1");
  request.assumptions.Validate();
  request.hardware.Validate();
  PlanResult result;
  Rejections rejections;
  if (request.num_gpus >= 2) {
    std::vector<AsyncPlan> plans = SearchAsync(request, &rejections, &result.num_candidates);
    if (!plans.empty()) result.async = plans.front();
    for (size_t i = 1; i < plans.size() && result.async_runners_up.size() < kRunnersUp; ++i)
      result.async_runners_up.push_back(plans[i]);
  } else {
    rejections.Add("split: needs at least 2 GPUs (one to generate, one to train)", "1 GPU given");
  }
  result.sync = SearchSync(request, request.num_gpus, &rejections, &result.num_candidates);
  result.rejections = rejections.List();
  result.advice = Advice(request, result);
  return result;
}

namespace {

// Smallest trainer that fits (ZeRO-3 over all of it, with checkpointing), or 0.
int64_t MinTrainerGpus(const PlanRequest& request) {
  int64_t unused = 0;
  for (int64_t t = 1; t <= kMaxAdviceGpus; t = NextCount(t, request.hardware.gpus_per_node))
    if (BestTrainer(request, t, "", nullptr, &unused)) return t;
  return 0;
}

// Smallest generator replica (its TP) that fits one sequence in `dtype`, or 0.
int64_t MinGeneratorGpus(const PlanRequest& request, WeightDtype dtype) {
  for (int64_t tp : TensorParallelSizes(request.model.config, request.hardware)) {
    GeneratorSetup setup{tp, tp, dtype, 0.0};
    if (EstimateGenerator(request.model, request.hardware, request.assumptions, setup).fits) return tp;
  }
  return 0;
}

int64_t MinColocatedGpus(const PlanRequest& request) {
  int64_t unused = 0;
  for (int64_t n = 1; n <= kMaxAdviceGpus; n = NextCount(n, request.hardware.gpus_per_node))
    if (SearchSync(request, n, nullptr, &unused)) return n;
  return 0;
}

std::string SplitAdvice(const PlanRequest& request) {
  const int64_t node = request.hardware.gpus_per_node;
  auto round = [&](int64_t n) { return request.num_gpus >= 2 * node ? (n + node - 1) / node * node : n; };
  int64_t trainer = MinTrainerGpus(request);
  if (trainer == 0) return "the split design: no trainer of up to " + Gpus(kMaxAdviceGpus) + " fits";
  std::ostringstream s;
  s << "the split design needs >= ";
  std::optional<std::pair<int64_t, WeightDtype>> best;
  for (WeightDtype dtype : Dtypes(request)) {
    int64_t tp = MinGeneratorGpus(request, dtype);
    if (tp && (!best || round(tp) < round(best->first))) best = std::make_pair(tp, dtype);
  }
  if (!best) {
    s << round(trainer) << " trainer GPUs, and no generator of TP <= " << node
      << " holds the weights and one sequence (shorter responses or larger GPUs would)";
    return s.str();
  }
  s << Gpus(round(trainer) + round(best->first)) << ": " << round(trainer) << " to train (ZeRO-3, checkpointing) + "
    << round(best->first) << " to generate (TP=" << best->first << " " << WeightDtypeName(best->second)
    << "); given " << request.num_gpus;
  if (best->second == WeightDtype::kFp8 && MinGeneratorGpus(request, WeightDtype::kBf16) != best->first)
    s << "; use fp8 generator weights (bf16 needs "
      << (MinGeneratorGpus(request, WeightDtype::kBf16) ? "TP=" + std::to_string(MinGeneratorGpus(request, WeightDtype::kBf16))
                                                        : std::string("more than one node"))
      << ")";
  return s.str();
}

std::vector<std::string> Advice(const PlanRequest& request, const PlanResult& result) {
  std::vector<std::string> advice;
  if (!result.async) advice.push_back(SplitAdvice(request));
  if (!result.sync) {
    int64_t n = MinColocatedGpus(request);
    advice.push_back(n ? "the colocated design needs >= " + Gpus(n) + "; given " + std::to_string(request.num_gpus)
                       : "the colocated design: nothing up to " + Gpus(kMaxAdviceGpus) + " fits");
  }
  return advice;
}

}  // namespace
}  // namespace llamarl
