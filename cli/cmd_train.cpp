// llamarl train RECIPE.json [--set key=value]... [--resume RUN_DIR]: runs one recipe on every rank of
// the job (mpirun -np N llamarl train ..., or one process for a colocated job of size 1).
// With --dry-run [--ranks N] it prints every rank's planned memory instead (cli/train_dry_run.h),
// loading no weights, and exits 2 when a rank or the machine's ranks together do not fit.
//
// A failure on any rank prints one line naming the rank, its role and its phase, then aborts the
// whole MPI job (MPI_Abort) with status 1, so that no other rank waits for the dead one; the last
// checkpoint stays intact (saves are atomic).
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/train_dry_run.h"
#include "controller/job.h"
#include "controller/loop.h"
#include "core/communicator.h"
#include "core/device.h"
#include "core/error_text.h"
#include "core/launcher.h"
#include "core/mpi.h"
#include "core/routed_communicator.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

namespace llamarl::cli {
namespace {

// Ranks share the machine's cores: one intra-op pool per rank sized to its share, unless
// LLAMARL_TORCH_THREADS says otherwise.
void SetTorchThreads(int world_size) {
  if (const char* threads = std::getenv("LLAMARL_TORCH_THREADS")) {
    at::set_num_threads(std::max(1, std::atoi(threads)));
    return;
  }
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(std::max(1, cores / std::max(1, world_size)));
}

}  // namespace

int RunTrain(const CommandArgs& argv) {
  Args args("train",
            "[mpirun -np N] llamarl train RECIPE.json [--set key=value]... [--resume RUN_DIR] [--json]\n"
            "llamarl train RECIPE.json --dry-run [--ranks N] [--json]");
  args.Repeated("set", "override a recipe value, e.g. --set rollout.group_size=8 (JSON values; repeatable)")
      .Option("resume", "continue the run in RUN_DIR from its latest checkpoint")
      .Flag("dry-run", "print each rank's planned memory and whether it fits this machine; load nothing, train nothing")
      .Option("ranks", "--dry-run: the number of ranks (mpirun -np) to plan for (default: the launcher's, else 1)")
      .Flag("json", "print the run summary as one JSON object (controller rank)");
  if (!args.Parse(argv)) return 0;
  const auto& positional = args.Positional();
  if (positional.size() != 1) {
    std::fprintf(stderr, "llamarl train: expected one recipe file, got %zu arguments\n%s", positional.size(),
                 args.Help().c_str());
    return 1;
  }
  controller::RecipeConfig recipe = controller::LoadRecipe(positional[0], args.GetAll("set"));
  if (args.GetFlag("dry-run")) {
    // Under mpirun every rank would plan the same job: rank 0 prints, the others only share its verdict.
    const int ranks = args.Has("ranks") ? int(args.GetInt("ranks")) : LauncherWorldSize();
    return TrainDryRun(recipe, ranks, args.GetFlag("json"), /*print=*/LauncherWorldRank() == 0);
  }
  controller::RunOptions options;
  if (args.Has("resume")) options.resume_dir = args.Get("resume");
  // The device first: an impossible one is an error before MPI starts or anything loads.
  options.device = ResolveDevice(recipe.device, "device");
  std::unique_ptr<Communicator> world = CreateJobCommunicator(options.device, recipe.comm.backend, "comm.backend");
  SetTorchThreads(world->Size());
  Json summary;
  try {
    summary = controller::RunTraining(*world, recipe, options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llamarl train: error: %s\n", ErrorText(e).c_str());
    std::fflush(stderr);
    // Peers may be blocked in a wait for this rank: end the whole job now, while this rank's
    // communicator is alive, rather than at their timeouts.
    if (world->Size() > 1 && MpiInitialized()) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  if (!summary.empty()) {
    if (args.GetFlag("json")) {
      std::printf("%s\n", summary.dump().c_str());
    } else {
      auto eval = [&](const char* key) {
        const Json& e = summary.value(key, Json());
        return e.is_object() && e.contains("eval_reward_mean") ? e["eval_reward_mean"].dump() : std::string("-");
      };
      std::printf("run %s: held-out reward %s at the start of RL, %s at the end\n",
                  summary.value("run_dir", std::string()).c_str(), eval("eval_start").c_str(), eval("eval_end").c_str());
    }
  }
  return 0;
}

}  // namespace llamarl::cli
