// llamarl: the one program of the framework. Dispatches to one function per subcommand
// (DESIGN.md, "The command line"); every error a user can cause ends here, in the one catch of the
// program, as one line on stderr (core/error_text.h: no C++ backtrace) and exit status 1. (The one
// other report is `llamarl train`'s failing rank, which must abort the whole MPI job while its
// communicator is still alive: cli/cmd_train.cpp.)
#include "cli/commands.h"
#include "core/error_text.h"
#include "core/host_allocator.h"

#include <cstdio>
#include <cstring>
#include <exception>

namespace {

struct Command {
  const char* name;
  int (*run)(const llamarl::cli::CommandArgs&);
  const char* help;
};

const Command kCommands[] = {
    {"train", llamarl::cli::RunTrain, "run a recipe: SFT warm start, then async or sync RL (under mpirun for split placement)"},
    {"init", llamarl::cli::RunInit, "write a small random HF-format checkpoint (config, safetensors, tokenizer)"},
    {"tokenize", llamarl::cli::RunTokenize, "print the token ids of a text"},
    {"generate", llamarl::cli::RunGenerate, "sample a continuation from a checkpoint"},
    {"bench", llamarl::cli::RunBench, "measure a figure and its baseline in the same run (logprobs, ...)"},
    {"plan", llamarl::cli::RunPlan, "placement, memory and step time of a model on a GPU cluster"},
    {"eval", llamarl::cli::RunEval, "greedy pass@1, pass@k and mean@k of a model or run on a JSONL dataset"},
    {"export", llamarl::cli::RunExport, "write a run's policy (a checkpoint) as a Hugging Face directory"},
    {"report", llamarl::cli::RunReport, "write a self-contained HTML report of a run directory (curves, step times, timeline)"},
};

void PrintUsage(FILE* out) {
  std::fprintf(out, "usage: llamarl COMMAND [options]   (llamarl COMMAND --help for its options)\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.help);
}

}  // namespace

int main(int argc, char** argv) {
  llamarl::TuneHostAllocator();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    PrintUsage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 1 : 0;
  }
  for (const auto& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.run(llamarl::cli::CommandArgs(argv + 2, argv + argc));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "llamarl %s: error: %s\n", c.name, llamarl::ErrorText(e).c_str());
    }
    return 1;
  }
  std::fprintf(stderr, "llamarl: unknown command '%s'\n", argv[1]);
  PrintUsage(stderr);
  return 1;
}
