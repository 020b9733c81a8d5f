// llamarl export RUN_DIR[/checkpoints/step_N] --out DIR [--dtype bf16|f32] [--max-shard-bytes N]
// Writes a run's policy as a Hugging Face directory (controller/hf_export.h).
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "controller/hf_export.h"
#include "core/check.h"

namespace llamarl::cli {

int RunExport(const CommandArgs& argv) {
  const char* usage = "llamarl export RUN_DIR[/checkpoints/step_N] --out DIR [--dtype bf16|f32]";
  Args args("export", usage);
  controller::ExportOptions o;
  args.Option("out", "the Hugging Face directory to write (new, or empty)")
      .Option("dtype", "stored dtype: bf16 or f32", o.dtype)
      .Option("max-shard-bytes", "largest safetensors file; bigger models are sharded with an index",
              std::to_string(o.max_shard_bytes));
  if (!args.Parse(argv)) return 0;
  LLAMARL_CHECK(args.Positional().size() == 1, "llamarl export: expected one RUN_DIR or checkpoint directory, got ",
                args.Positional().size(), " positional arguments; usage: ", usage);
  o.source = args.Positional()[0];
  o.out = args.Get("out");
  o.dtype = args.Get("dtype");
  o.max_shard_bytes = args.GetInt("max-shard-bytes");
  const controller::ExportResult r = controller::ExportRun(o);
  std::printf("exported %s (RL step %lld) to %s: %zu safetensors file(s), %s\n", r.checkpoint.c_str(),
              static_cast<long long>(r.rl_step), o.out.c_str(), r.files.size(), o.dtype.c_str());
  return 0;
}

}  // namespace llamarl::cli
