// llamarl tokenize --model DIR (--text TEXT | --file F) [--json] [--add-special-tokens]
#include "cli/args.h"
#include "cli/commands.h"
#include "core/check.h"
#include "core/config.h"
#include "model/tokenizer.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace llamarl::cli {

int RunTokenize(const CommandArgs& argv) {
  Args args("tokenize", "llamarl tokenize --model DIR (--text TEXT | --file F) [--json]");
  args.Option("model", "directory with tokenizer.json, or GPT-2's encoder.json + vocab.bpe")
      .Option("text", "the text to encode")
      .Option("file", "a file whose whole content is encoded")
      .Flag("add-special-tokens", "add what the tokenizer's post-processor adds (e.g. Llama 3's BOS)")
      .Flag("json", "print {\"ids\": [...]} instead of space-separated ids");
  if (!args.Parse(argv)) return 0;
  Tokenizer tokenizer = Tokenizer::FromDirectory(args.Get("model"));
  std::string text;
  if (args.RequireOneOf({"text", "file"}) == "text") {
    text = args.Get("text");
  } else {
    std::ifstream in(args.Get("file"), std::ios::binary);
    LLAMARL_CHECK(in.good(), "cannot open --file ", args.Get("file"));
    std::stringstream buffer;
    buffer << in.rdbuf();
    text = buffer.str();
  }
  EncodeOptions options;
  options.add_special_tokens = args.GetFlag("add-special-tokens");
  std::vector<int64_t> ids = tokenizer.Encode(text, options);
  if (args.GetFlag("json")) {
    std::printf("%s\n", Json{{"ids", ids}}.dump().c_str());
  } else {
    for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %lld" : "%lld", static_cast<long long>(ids[i]));
    std::printf("\n");
  }
  return 0;
}

}  // namespace llamarl::cli
