// Byte-level BPE tokenizers as Hugging Face `tokenizers` runs them: Llama 3, Qwen2/3, GPT-2 and
// Mistral-Nemo style tokenizer.json files, and GPT-2's original encoder.json + vocab.bpe.
// LibTorch-free, so it builds into the fuzz targets.
//
// Encode: invalid UTF-8 -> U+FFFD (tokenizer_unicode.h states the rule) -> split around added
// tokens (longest match, with each token's special / lstrip / rstrip / single_word / normalized) ->
// normalizer (NFC) -> pre-tokenizer (Split regexes, ByteLevel) -> BPE -> optional post-processor
// special tokens (BOS). Decode: ids -> tokens -> ByteLevel decoder -> UTF-8, where bytes that are not
// valid UTF-8 become U+FFFD exactly as Rust's String::from_utf8_lossy does; added tokens are emitted
// verbatim.
//
// Thread-safety: a Tokenizer is immutable after loading; all const methods may be called from many
// threads at once (the BPE word cache inside takes a mutex). Copies share the loaded data.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llamarl {

struct EncodeOptions {
  // Adds what the post-processor's template adds around a single sequence (Llama 3's
  // <|begin_of_text|>), like HF's add_special_tokens=True. Off by default because chat templates
  // already write BOS into the text.
  bool add_special_tokens = false;
  // Encodes special added tokens that appear in the text as plain text instead of as their ids (HF's
  // split_special_tokens); use it for untrusted user content. Non-special added tokens still match.
  bool split_special_tokens = false;
};

struct DecodeOptions {
  // Drops added tokens marked special (<|im_end|>, <|endoftext|>, ...), like HF's skip_special_tokens.
  bool skip_special_tokens = false;
};

// One entry of tokenizer.json's added_tokens.
struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool special = false;      // special tokens can be skipped in Decode and split with split_special_tokens
  bool lstrip = false;       // the match also swallows the whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // matches only when not inside a word (no \w character on either side)
  bool normalized = false;   // matched against the normalized text instead of the raw text
};

// Ids of the tokens with a role, when the files name them.
struct SpecialTokenIds {
  std::optional<int64_t> bos, eos, pad;
};

class Tokenizer {
 public:
  // `dir` holds tokenizer.json (with tokenizer_config.json beside it when present), or GPT-2's
  // encoder.json + vocab.bpe. The error lists what was looked for.
  static Tokenizer FromDirectory(const std::string& dir);
  // `config_json_text` is tokenizer_config.json's text or empty; it supplies bos/eos/pad and the chat
  // template. Unsupported components are errors naming the component and listing what is supported.
  static Tokenizer FromTokenizerJson(std::string_view json_text, std::string_view config_json_text = {});
  // GPT-2's files; <|endoftext|> (in encoder.json) becomes a special added token and bos = eos.
  static Tokenizer FromGpt2Files(std::string_view encoder_json_text, std::string_view vocab_bpe_text);

  std::vector<int64_t> Encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Ids outside [0, VocabSize()) or unused by the vocabulary are errors naming the id.
  std::string Decode(const std::vector<int64_t>& ids, const DecodeOptions& options = {}) const;

  // One past the largest id of the vocabulary and the added tokens (HF's get_vocab_size(true)).
  int64_t VocabSize() const;
  // Looks up a vocabulary string (byte-level form, "Ġworld") or an added token's content.
  std::optional<int64_t> TokenToId(std::string_view token) const;
  // The vocabulary string or added token content of `id`; an error for unused or out-of-range ids.
  std::string IdToToken(int64_t id) const;
  bool IsSpecial(int64_t id) const;

  const SpecialTokenIds& special_ids() const;
  const std::vector<AddedToken>& added_tokens() const;
  // tokenizer_config.json's chat_template (Jinja source), or "" when none was given.
  const std::string& chat_template() const;

  struct Impl;  // defined in tokenizer_impl.h; public only so the loaders can build one

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  friend Tokenizer MakeTokenizer(std::shared_ptr<const Tokenizer::Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace llamarl
