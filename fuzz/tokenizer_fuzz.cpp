// libFuzzer target for the tokenizer and chat templates. One input byte picks the mode (the last
// one: FuzzedDataProvider takes integers from the end):
//   0: encode the rest with the real Qwen3 tokenizer; for valid UTF-8, decode(encode(x)) must equal
//      NFC(x) (Qwen3 normalizes to NFC), and decoding arbitrary ids may only throw llamarl::Error.
//   1: load the rest as tokenizer.json (+ a tokenizer_config.json); a file that loads must encode
//      and round-trip a sample text without any other exception.
//   2: render the rest as chat messages in both formats.
// llamarl::Error is the documented answer to bad input; any other exception, a sanitizer report or a
// broken round trip (abort) is a bug.
// The Qwen3 files come from $LLAMARL_FUZZ_TOKENIZER_DIR, else ../shared/data/tokenizers/qwen3 beside
// the repository; without them mode 0 is skipped (with a note on stderr).
#include "core/check.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "model/tokenizer_unicode.h"

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <sys/stat.h>

namespace {

using llamarl::Tokenizer;

std::string QwenDirectory() {
  if (const char* dir = std::getenv("LLAMARL_FUZZ_TOKENIZER_DIR")) return dir;
  std::string source = __FILE__;  // <repo>/fuzz/tokenizer_fuzz.cpp (run_fuzzers.sh passes absolute paths)
  const size_t slash = source.rfind("/fuzz/");
  return (slash == std::string::npos ? std::string("..") : source.substr(0, slash) + "/..") +
         "/shared/data/tokenizers/qwen3";
}

// Loaded once; null when the files are absent.
const Tokenizer* Qwen3() {
  static const std::unique_ptr<Tokenizer> tokenizer = []() -> std::unique_ptr<Tokenizer> {
    const std::string dir = QwenDirectory();
    struct stat info {};
    if (::stat((dir + "/tokenizer.json").c_str(), &info) != 0) {
      std::fprintf(stderr, "tokenizer_fuzz: no %s/tokenizer.json; set LLAMARL_FUZZ_TOKENIZER_DIR. "
                   "Skipping the Qwen3 mode.\n", dir.c_str());
      return nullptr;
    }
    return std::make_unique<Tokenizer>(Tokenizer::FromDirectory(dir));
  }();
  return tokenizer.get();
}

void FuzzQwen3(FuzzedDataProvider& input) {
  const Tokenizer* tok = Qwen3();
  if (tok == nullptr) return;
  llamarl::EncodeOptions options;
  options.split_special_tokens = input.ConsumeBool();
  std::vector<int64_t> random_ids;
  for (int i = input.ConsumeIntegralInRange(0, 8); i > 0; --i)
    random_ids.push_back(input.ConsumeIntegralInRange<int64_t>(-2, tok->VocabSize() + 2));
  const std::string text = input.ConsumeRemainingBytesAsString();
  const std::vector<int64_t> ids = tok->Encode(text, options);
  for (int64_t id : ids)
    if (id < 0 || id >= tok->VocabSize()) std::abort();
  if (llamarl::tokenizer_internal::IsValidUtf8(text) &&
      tok->Decode(ids) != llamarl::tokenizer_internal::NormalizeNfc(text)) {
    std::abort();
  }
  try {
    tok->Decode(random_ids, {/*skip_special_tokens=*/random_ids.size() % 2 == 0});
  } catch (const llamarl::Error&) {
    // Out-of-range ids are rejected, as documented.
  }
}

void FuzzTokenizerJson(FuzzedDataProvider& input) {
  const std::string config = input.ConsumeRandomLengthString(256);
  const std::string json = input.ConsumeRemainingBytesAsString();
  const Tokenizer tok = Tokenizer::FromTokenizerJson(json, config);
  const std::string sample = "Hello world! 123 caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD";
  const std::vector<int64_t> ids = tok.Encode(sample);
  tok.Decode(ids);
}

void FuzzChatTemplate(FuzzedDataProvider& input) {
  static const char* kRoles[] = {"system", "user", "assistant", "tool", "narrator", ""};
  std::vector<llamarl::ChatMessage> messages;
  while (input.remaining_bytes() > 0 && messages.size() < 8) {
    llamarl::ChatMessage m;
    m.role = kRoles[input.ConsumeIntegralInRange<size_t>(0, 5)];
    m.content = input.ConsumeRandomLengthString(128);
    messages.push_back(std::move(m));
  }
  llamarl::ChatTemplateOptions options;
  options.add_generation_prompt = messages.size() % 2 == 0;
  options.enable_thinking = messages.size() % 3 != 0;
  for (auto format : {llamarl::ChatFormat::kLlama3, llamarl::ChatFormat::kChatML}) {
    try {
      llamarl::ApplyChatTemplate(format, messages, options);
    } catch (const llamarl::Error&) {
      // Empty conversations and unsupported roles are rejected, as documented.
    }
  }
}

}  // namespace

// Loads Qwen3 before fuzzing starts, so its few seconds do not count against the per-input timeout.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  Qwen3();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  const uint8_t mode = input.ConsumeIntegral<uint8_t>() % 3;
  try {
    if (mode == 0) FuzzQwen3(input);
    if (mode == 1) FuzzTokenizerJson(input);
    if (mode == 2) FuzzChatTemplate(input);
  } catch (const llamarl::Error&) {
    // Rejected input, as documented.
  }
  return 0;
}
