// One function per subcommand; each takes the arguments after its name and returns the exit code.
#pragma once

#include <string>
#include <vector>

namespace llamarl::cli {

using CommandArgs = std::vector<std::string>;

int RunInit(const CommandArgs& args);
int RunTokenize(const CommandArgs& args);
int RunGenerate(const CommandArgs& args);
int RunBench(const CommandArgs& args);
int RunPlan(const CommandArgs& args);
int RunTrain(const CommandArgs& args);
int RunReport(const CommandArgs& args);
int RunExport(const CommandArgs& args);
int RunEval(const CommandArgs& args);

}  // namespace llamarl::cli
