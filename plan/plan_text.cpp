// PlanToText: the human-readable side of plan/plan_report.h.
#include "plan/plan_report.h"

#include <cstdio>
#include <sstream>

namespace llamarl {
namespace {

std::string Format(const char* format, double x) { return FormatNumber(format, x); }
std::string Seconds(double s) { return Format(s < 10 ? "%.2f s" : "%.1f s", s); }
std::string Gb(double bytes) { return Format("%.1f", bytes / 1e9); }

std::string WithCommas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

void Row(std::ostringstream& out, const std::string& label, const std::string& async, const std::string& sync) {
  char line[512];
  std::snprintf(line, sizeof(line), "  %-24s %-34s %s\n", label.c_str(), async.c_str(), sync.c_str());
  out << line;
}

std::string GeneratorMemory(const GeneratorCost& g) {
  return Gb(g.weight_bytes_per_gpu) + " w + " + Gb(g.kv_budget_bytes_per_gpu) + " KV GB";
}
std::string TrainerMemory(const TrainerCost& t) {
  return Gb(t.state_bytes_per_gpu) + " st + " + Gb(t.activation_bytes_per_gpu) + " act = " +
         Gb(t.total_bytes_per_gpu) + " GB";
}
std::string Batch(const GeneratorCost& g) {
  return std::to_string(g.concurrent_sequences) + " of " + std::to_string(g.sequences_per_replica) + " seqs, " +
         Format("%.1f ms/step", g.decode_step_s * 1e3);
}

void Table(std::ostringstream& out, const PlanResult& r) {
  const AsyncPlan* a = r.async ? &*r.async : nullptr;
  const SyncPlan* s = r.sync ? &*r.sync : nullptr;
  auto both = [&](const char* label, auto async_value, auto sync_value) {
    Row(out, label, a ? async_value(*a) : "does not fit", s ? sync_value(*s) : "does not fit");
  };
  Row(out, "", "async (split)", "sync (colocated)");
  both("step", [](const AsyncPlan& p) { return Seconds(p.step_s); }, [](const SyncPlan& p) { return Seconds(p.step_s); });
  both("  generate", [](const AsyncPlan& p) { return Seconds(p.generator.time_s); },
       [](const SyncPlan& p) { return Seconds(p.generator.time_s); });
  both("  train", [](const AsyncPlan& p) { return Seconds(p.trainer.time_s); },
       [](const SyncPlan& p) { return Seconds(p.trainer.time_s); });
  both("  weight push/reshard", [](const AsyncPlan& p) { return Seconds(p.weight_sync.ddma_s) + " (DDMA)"; },
       [](const SyncPlan& p) { return Seconds(p.reshard_s); });
  both("  offload+reload", [](const AsyncPlan&) { return std::string("-"); },
       [](const SyncPlan& p) { return Seconds(p.offload_s); });
  both("generator TP, dtype", [](const AsyncPlan& p) { return "TP=" + std::to_string(p.generator_setup.tp) + " " +
                                                              WeightDtypeName(p.generator_setup.dtype); },
       [](const SyncPlan& p) { return "TP=" + std::to_string(p.generator_setup.tp) + " " +
                                      WeightDtypeName(p.generator_setup.dtype); });
  both("generator batch", [](const AsyncPlan& p) { return Batch(p.generator); },
       [](const SyncPlan& p) { return Batch(p.generator); });
  both("generator mem/GPU", [](const AsyncPlan& p) { return GeneratorMemory(p.generator); },
       [](const SyncPlan& p) { return GeneratorMemory(p.generator); });
  both("trainer mem/GPU", [](const AsyncPlan& p) { return TrainerMemory(p.trainer); },
       [](const SyncPlan& p) { return TrainerMemory(p.trainer); });
}

}  // namespace

std::string PlanToText(const PlanRequest& request, const PlanResult& result) {
  std::ostringstream out;
  out << "llamarl plan: " << request.model.name << " (" << WithCommas(request.model.num_params)
      << " parameters, counted on the meta device) on " << request.num_gpus << " x " << request.hardware.name << "\n";
  if (result.async) out << "  async placement: " << result.async->Describe() << "\n";
  if (result.sync) out << "  sync placement:  " << result.sync->Describe() << "\n";
  Table(out, result);
  if (result.Speedup() > 0) out << "speedup of async over sync: " << Format("%.2fx", result.Speedup()) << "\n";
  if (result.async)
    out << "weight sync of " << Gb(result.async->weight_sync.bytes) << " GB: DDMA " << Seconds(result.async->weight_sync.ddma_s)
        << ", gather-and-broadcast " << Seconds(result.async->weight_sync.gather_broadcast_s) << "\n";
  if (!result.async_runners_up.empty()) out << "next fastest split placements:\n";
  for (const auto& p : result.async_runners_up) out << "  " << Seconds(p.step_s) << "  " << p.Describe() << "\n";
  out << "rejected (" << result.num_candidates << " candidates evaluated):\n";
  for (const auto& r : result.rejections) out << "  " << r.count << " x " << r.kind << "; e.g. " << r.example << "\n";
  if (!result.Fits()) out << "NO PLACEMENT FITS on " << request.num_gpus << " x " << request.hardware.name << "\n";
  for (const auto& line : result.advice) out << "advice: " << line << "\n";
  out << "assumptions:\n";
  for (const auto& line : AssumptionLines(request)) out << "  - " << line << "\n";
  Json recipe = RecipeSkeleton(request, result);
  if (!recipe.is_null()) out << "recipe skeleton:\n" << recipe.dump(2) << "\n";
  return out.str();
}

}  // namespace llamarl
