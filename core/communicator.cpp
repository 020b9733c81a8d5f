#include "core/communicator.h"

#include "core/check.h"
#include "core/launcher.h"

#include <map>
#include <mutex>

namespace llamarl {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, CommunicatorFactory> factories;
};

Registry& GetRegistry() {
  static Registry registry;
  return registry;
}

// Backends register themselves here rather than through static initialisers, which a static
// library would drop at link time.
void RegisterBuiltins();

}  // namespace

const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

void WaitAll(const std::vector<WorkPtr>& works, std::chrono::milliseconds timeout) {
  std::exception_ptr first;
  for (const auto& w : works) {
    if (!w) continue;
    try {
      w->Wait(timeout);
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

void RegisterCommunicator(const std::string& name, CommunicatorFactory factory) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.factories[name] = std::move(factory);
}

std::vector<std::string> CommunicatorNames() {
  RegisterBuiltins();
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [name, _] : r.factories) names.push_back(name);
  return names;
}

std::unique_ptr<Communicator> CreateCommunicator(const std::string& name) {
  RegisterBuiltins();
  CommunicatorFactory factory;
  {
    Registry& r = GetRegistry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.factories.find(name);
    if (it != r.factories.end()) factory = it->second;
  }
  if (!factory) {
    std::string known;
    for (const auto& n : CommunicatorNames()) known += (known.empty() ? "" : ", ") + n;
    LLAMARL_FAIL("unknown communicator backend '", name, "'; known: ", known);
  }
  return factory();
}

std::string DefaultCommunicatorName() {
  return LauncherWorldSize() > 1 ? "mpi" : "local";
}

// Defined by the backends' translation units.
std::unique_ptr<Communicator> CreateLocalCommunicator();
std::unique_ptr<Communicator> CreateMpiWorldCommunicator();
#ifdef LLAMARL_HAVE_NCCL
std::unique_ptr<Communicator> CreateNcclWorldCommunicator();
#endif

namespace {
void RegisterBuiltins() {
  static std::once_flag once;
  std::call_once(once, [] {
    RegisterCommunicator("local", CreateLocalCommunicator);
    RegisterCommunicator("mpi", CreateMpiWorldCommunicator);
#ifdef LLAMARL_HAVE_NCCL
    RegisterCommunicator("nccl", CreateNcclWorldCommunicator);
#endif
  });
}
}  // namespace

}  // namespace llamarl
