// llamarl report RUN_DIR [RUN_B] [--out FILE]
// Writes one self-contained HTML page about a run (report/report.h): open it in any browser,
// offline. Merges RUN_DIR/trace/rank_<r>.jsonl into RUN_DIR/trace.json first when that is missing.
// With two run directories, the page draws both on shared charts (RUN_DIR/compare.html).
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/check.h"
#include "report/report.h"

namespace llamarl::cli {

int RunReport(const CommandArgs& argv) {
  Args args("report", "llamarl report RUN_DIR [RUN_B] [--out FILE]");
  args.Option("out", "where to write the HTML page (default RUN_DIR/report.html, or RUN_DIR/compare.html with RUN_B)");
  if (!args.Parse(argv)) return 0;
  const auto& positional = args.Positional();
  LLAMARL_CHECK(positional.size() == 1 || positional.size() == 2,
                "expected one RUN_DIR (the directory `llamarl train` wrote) or two to compare, got ",
                positional.size(), " positional arguments; usage: llamarl report RUN_DIR [RUN_B] [--out FILE]");
  const std::string out = args.Has("out") ? args.Get("out") : "";
  std::string path = positional.size() == 2 ? WriteComparison(positional[0], positional[1], out)
                                            : WriteReport(positional[0], out);
  std::printf("wrote %s\n", path.c_str());
  return 0;
}

}  // namespace llamarl::cli
