// End-to-end tests of the llamarl program: each runs the built binary as a user would.
#include "core/config.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <utility>

namespace llamarl {
namespace {

using testing::FixturePath;
using testing::LlamarlBinary;
using testing::MakeTempDir;
using testing::RunCommand;

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// Runs `llamarl ARGS`; returns the exit status, stdout in *out (stderr too when merge).
int Llamarl(const std::string& args, std::string* out, bool merge = false) {
  return RunCommand(LlamarlBinary() + " " + args, out, merge);
}

std::string JoinIds(const at::Tensor& ids) {
  std::string s;
  for (int64_t i = 0; i < ids.numel(); ++i) s += (i ? "," : "") + std::to_string(ids[i].item<int64_t>());
  return s;
}

TEST(CliTest, UnknownCommandAndOptionAreErrorsThatSayWhatExists) {
  std::string out;
  EXPECT_EQ(Llamarl("frobnicate", &out, true), 1);
  EXPECT_NE(out.find("unknown command 'frobnicate'"), std::string::npos) << out;
  EXPECT_NE(out.find("generate"), std::string::npos) << out;
  EXPECT_EQ(Llamarl("tokenize --modle x --text hi", &out, true), 1);
  EXPECT_NE(out.find("unknown option --modle; known: --model"), std::string::npos) << out;
}

// Every command and every benchmark answers --help with its usage and options, exit status 0, and
// no work done (bench weight-sync would otherwise need MPI ranks).
TEST(CliTest, EveryCommandAndSubcommandHasHelp) {
  const std::pair<const char*, const char*> cases[] = {
      {"--help", "commands:"},
      {"train --help", "--resume"},
      {"init --help", "--hidden-size"},
      {"tokenize --help", "--text"},
      {"generate --help", "--max-new-tokens"},
      {"plan --help", "--gpus"},
      {"report --help", "--out"},
      {"export --help", "--dtype"},
      {"eval --help", "--samples"},
      {"bench --help", "weight-sync"},
      {"bench logprobs --help", "--vocab"},
      {"bench weight-sync --help", "--bucket-bytes"},
      {"bench generate --help", "--batches"},
      {"bench train --help", "--micro-batch-tokens"},
      {"bench async --help", "--recipe"},
  };
  for (const auto& [args, expected] : cases) {
    std::string out;
    EXPECT_EQ(Llamarl(args, &out, true), 0) << args << "\n" << out;
    EXPECT_NE(out.find("usage"), std::string::npos) << args << "\n" << out;
    EXPECT_NE(out.find(expected), std::string::npos) << args << "\n" << out;
  }
  std::string out;
  EXPECT_EQ(Llamarl("tokenize --model x --model y --text hi", &out, true), 1);
  EXPECT_NE(out.find("--model given twice"), std::string::npos) << out;
  EXPECT_EQ(Llamarl("export", &out, true), 1);
  EXPECT_NE(out.find("expected one RUN_DIR"), std::string::npos) << out;
}

// The greedy continuation of the Python reference (scripts/fixtures/make_llama_fixture.py), on a
// model directory that holds only config.json and sharded safetensors: no tokenizer is needed.
TEST(CliTest, GenerateWithPromptTokensMatchesIndependentReference) {
  for (const char* name : {"llama3", "qwen2"}) {
    std::string dir = FixturePath(std::string("llama/") + name);
    auto expected = SafetensorsFile::Open(dir + "/expected.safetensors");
    for (int i = 0; i < 2; ++i) {
      at::Tensor prompt = expected->Get("gen_prompt_" + std::to_string(i));
      at::Tensor tokens = expected->Get("gen_tokens_" + std::to_string(i));
      at::Tensor logprobs = expected->Get("gen_logprobs_" + std::to_string(i));
      std::string out;
      ASSERT_EQ(Llamarl("generate --model " + Quote(dir) + " --prompt-tokens " + JoinIds(prompt) +
                            " --max-new-tokens " + std::to_string(tokens.numel()) +
                            " --temperature 0 --ignore-eos --json",
                        &out),
                0)
          << out;
      Json result = Json::parse(out);
      ASSERT_EQ(result["tokens"].size(), size_t(tokens.numel())) << out;
      for (int64_t t = 0; t < tokens.numel(); ++t) {
        EXPECT_EQ(result["tokens"][t].get<int64_t>(), tokens[t].item<int64_t>()) << name << " prompt " << i << " step " << t;
        EXPECT_NEAR(result["logprobs"][t].get<double>(), logprobs[t].item<double>(), 1e-4) << name << " step " << t;
      }
      EXPECT_TRUE(result["text"].is_null()) << "no tokenizer in " << dir;
    }
  }
}

TEST(CliTest, InitWritesACheckpointThatTokenizesAndGenerates) {
  std::string dir = MakeTempDir("cli-init") + "/tiny";
  std::string out;
  ASSERT_EQ(Llamarl("init --model tiny --out " + Quote(dir) + " --seed 3", &out, true), 0) << out;
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                        "generation_config.json"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f)) << f;

  ASSERT_EQ(Llamarl("tokenize --model " + Quote(dir) + " --text 'ab 12' --json", &out), 0) << out;
  // Byte-level with no merges: one token per byte, ids are the byte values.
  EXPECT_EQ(Json::parse(out)["ids"], Json::parse("[97, 98, 32, 49, 50]"));

  ASSERT_EQ(Llamarl("generate --model " + Quote(dir) + " --prompt 'Hello' --max-new-tokens 5 --temperature 0.7 "
                    "--seed 11 --json", &out), 0) << out;
  Json first = Json::parse(out);
  ASSERT_EQ(Llamarl("generate --model " + Quote(dir) + " --prompt 'Hello' --max-new-tokens 5 --temperature 0.7 "
                    "--seed 11 --json", &out), 0) << out;
  EXPECT_EQ(Json::parse(out), first) << "the same seed must give the same sample";
  EXPECT_LE(first["tokens"].size(), 5u);
  EXPECT_EQ(first["tokens"].size(), first["logprobs"].size());
  EXPECT_TRUE(first["text"].is_string());
  for (const auto& lp : first["logprobs"]) EXPECT_LE(lp.get<double>(), 0.0);
}

TEST(CliTest, InitRefusesToOverwriteAndRejectsBadSizes) {
  std::string dir = MakeTempDir("cli-init-twice") + "/m";
  std::string out;
  ASSERT_EQ(Llamarl("init --model tiny --out " + Quote(dir), &out, true), 0) << out;
  EXPECT_EQ(Llamarl("init --model tiny --out " + Quote(dir), &out, true), 1);
  EXPECT_NE(out.find("already"), std::string::npos) << out;
  EXPECT_EQ(Llamarl("init --model tiny --out " + Quote(dir + "2") + " --heads 3 --hidden-size 64", &out, true), 1);
  EXPECT_NE(out.find("num_heads (3)"), std::string::npos) << out;
  EXPECT_EQ(Llamarl("init --model huge --out " + Quote(dir + "3"), &out, true), 1);
  EXPECT_NE(out.find("tiny"), std::string::npos) << out;
}

TEST(CliTest, GenerateRejectsBadInputWithAReason) {
  std::string dir = FixturePath("llama/llama3");
  std::string out;
  EXPECT_EQ(Llamarl("generate --model " + Quote(dir) + " --prompt-tokens 1,2,999", &out, true), 1);
  EXPECT_NE(out.find("999"), std::string::npos) << out;
  EXPECT_EQ(Llamarl("generate --model " + Quote(dir) + " --prompt hello", &out, true), 1);
  EXPECT_NE(out.find("tokenizer"), std::string::npos) << out;
  EXPECT_EQ(Llamarl("generate --model " + Quote(dir) + " --prompt-tokens 1,2 --top-p 1.5", &out, true), 1);
  EXPECT_NE(out.find("top-p"), std::string::npos) << out;
  EXPECT_EQ(Llamarl("generate --model /nonexistent/dir --prompt-tokens 1", &out, true), 1);
  EXPECT_NE(out.find("/nonexistent/dir"), std::string::npos) << out;
}

}  // namespace
}  // namespace llamarl
