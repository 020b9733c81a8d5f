// Loading GPT-2's original files: encoder.json ({token: id}) and vocab.bpe (ranked merges, one
// "left right" pair a line after a "#version" header), with the pipeline HF's GPT2TokenizerFast uses:
// ByteLevel pre-tokenizer with GPT-2's regex and no prefix space, BPE, ByteLevel decoder.
#include "core/check.h"
#include "core/config.h"
#include "model/tokenizer.h"
#include "model/tokenizer_impl.h"

namespace llamarl {
namespace {

constexpr const char* kEndOfText = "<|endoftext|>";

std::unordered_map<std::string, int64_t> ReadEncoder(std::string_view text) {
  const Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  LLAMARL_CHECK(!j.is_discarded(), "encoder.json: not valid JSON; expected GPT-2's {token: id} object");
  LLAMARL_CHECK(j.is_object(), "encoder.json: expected an object {token: id}, got ", DescribeJson(j));
  std::unordered_map<std::string, int64_t> vocab;
  vocab.reserve(j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    LLAMARL_CHECK(it.value().is_number_integer(), "encoder.json: token '", it.key(),
                  "': expected an integer id, got ", DescribeJson(it.value()));
    vocab.emplace(it.key(), it.value().get<int64_t>());
  }
  return vocab;
}

std::vector<std::pair<std::string, std::string>> ReadMerges(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> merges;
  size_t line_number = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_number == 1 && line.substr(0, 8) == "#version")) continue;
    const size_t space = line.find(' ');
    LLAMARL_CHECK(space != std::string_view::npos && space > 0 && space + 1 < line.size() &&
                      line.find(' ', space + 1) == std::string_view::npos,
                  "vocab.bpe: line ", line_number, " is '", line,
                  "'; expected two tokens separated by one space");
    merges.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
  }
  return merges;
}

}  // namespace

Tokenizer Tokenizer::FromGpt2Files(std::string_view encoder_json_text, std::string_view vocab_bpe_text) {
  auto impl = std::make_shared<Impl>();
  std::unordered_map<std::string, int64_t> vocab = ReadEncoder(encoder_json_text);
  auto end_of_text = vocab.find(kEndOfText);
  LLAMARL_CHECK(end_of_text != vocab.end(), "encoder.json: has no '", kEndOfText,
                "' entry; expected GPT-2's encoder.json, where it is the last token");
  AddedToken eot;
  eot.id = end_of_text->second;
  eot.content = kEndOfText;
  eot.special = true;
  impl->added_tokens.push_back(eot);
  impl->special_ids.bos = impl->special_ids.eos = eot.id;

  tokenizer_internal::BpeOptions options;
  options.source = "vocab.bpe";
  impl->bpe = std::make_unique<tokenizer_internal::BpeModel>(std::move(vocab), ReadMerges(vocab_bpe_text), options);
  tokenizer_internal::ByteLevelOptions byte_level;
  byte_level.add_prefix_space = false;
  byte_level.use_regex = true;
  impl->pipeline.steps.push_back(tokenizer_internal::MakeByteLevelStep(byte_level));
  impl->pipeline.has_byte_level = true;
  impl->Finalize("encoder.json");
  return MakeTokenizer(std::move(impl));
}

}  // namespace llamarl
