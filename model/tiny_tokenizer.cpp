#include "model/tiny_tokenizer.h"

#include "model/tokenizer_unicode.h"

#include <string>

namespace llamarl {
namespace {

// Qwen2's pre-tokenizer: single digits, letters with one leading non-letter, punctuation runs,
// newlines, and whitespace that does not precede a non-space.
constexpr const char* kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

Json AddedTokenJson(int64_t id, const char* content) {
  return {{"id", id},         {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},  {"normalized", false}, {"special", true}};
}

}  // namespace

Json MakeTinyTokenizerJson() {
  Json vocab = Json::object();
  const auto& alphabet = tokenizer_internal::ByteLevelAlphabet::Get();
  for (int b = 0; b < 256; ++b) vocab[alphabet.Encode(uint8_t(b))] = b;
  vocab["<|endoftext|>"] = TinyTokenizerIds::kEndOfText;
  vocab["<|im_start|>"] = TinyTokenizerIds::kImStart;
  vocab["<|im_end|>"] = TinyTokenizerIds::kImEnd;
  Json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", Json::array({AddedTokenJson(TinyTokenizerIds::kEndOfText, "<|endoftext|>"),
                                    AddedTokenJson(TinyTokenizerIds::kImStart, "<|im_start|>"),
                                    AddedTokenJson(TinyTokenizerIds::kImEnd, "<|im_end|>")})},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", Json::array({{{"type", "Split"},
                                        {"pattern", {{"Regex", kQwen2Pattern}}},
                                        {"behavior", "Isolated"},
                                        {"invert", false}},
                                       byte_level})}}},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", Json::array()}}},
  };
}

Json MakeTinyTokenizerConfigJson() {
  return {
      {"tokenizer_class", "Qwen2Tokenizer"},
      {"bos_token", nullptr},
      {"eos_token", "<|im_end|>"},
      {"pad_token", "<|endoftext|>"},
      {"model_max_length", 2048},
      {"chat_template",
       "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
       "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
  };
}

}  // namespace llamarl
