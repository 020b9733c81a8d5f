#include "model/tokenizer.h"

#include "core/check.h"
#include "model/tokenizer_impl.h"
#include "model/tokenizer_unicode.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace llamarl {
namespace {

using tokenizer_internal::TextPiece;

bool IsRegularFile(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LLAMARL_CHECK(in.good(), "cannot open '", path, "' for reading; check that it exists and is readable");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The vocabulary string of a non-added id, or nullptr when the vocabulary does not use that id.
const std::string* VocabToken(const Tokenizer::Impl& impl, int64_t id) {
  const auto& table = impl.bpe->id_to_token();
  if (id < 0 || static_cast<size_t>(id) >= table.size() || table[static_cast<size_t>(id)].empty()) return nullptr;
  return &table[static_cast<size_t>(id)];
}

// Pre-tokenizes and BPE-encodes normalized text that holds no added token.
void EncodeNormalized(const Tokenizer::Impl& impl, std::string_view normalized, std::vector<int64_t>* ids) {
  for (const std::string& word : impl.pipeline.Split(normalized)) impl.bpe->EncodeWord(word, ids);
}

}  // namespace

Tokenizer MakeTokenizer(std::shared_ptr<const Tokenizer::Impl> impl) { return Tokenizer(std::move(impl)); }

void Tokenizer::Impl::Finalize(const std::string& source) {
  int64_t max_id = static_cast<int64_t>(bpe->id_to_token().size()) - 1;
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (size_t i = 0; i < added_tokens.size(); ++i) {
    const AddedToken& token = added_tokens[i];
    LLAMARL_CHECK(token.id >= 0 && token.id < (int64_t{1} << 31), source, ": added token '", token.content,
                  "' has id ", token.id, "; expected an id in [0, 2^31)");
    LLAMARL_CHECK(added_by_id.emplace(token.id, i).second, source, ": added tokens '",
                  added_tokens[added_by_id[token.id]].content, "' and '", token.content, "' share id ",
                  token.id, "; each added token needs its own id");
    added_by_content.emplace(token.content, token.id);
    max_id = std::max(max_id, token.id);
    if (token.normalized && pipeline.nfc) {
      normalized.push_back(token);
      normalized_patterns.push_back(pipeline.Normalize(tokenizer_internal::Utf8Lossy(token.content)));
    } else {
      raw.push_back(token);
      raw_patterns.push_back(token.content);
    }
  }
  raw_matcher = tokenizer_internal::AddedTokenMatcher(raw, raw_patterns);
  normalized_matcher = tokenizer_internal::AddedTokenMatcher(normalized, normalized_patterns);
  vocab_size = max_id + 1;
}

Tokenizer Tokenizer::FromDirectory(const std::string& dir) {
  const std::string json_path = dir + "/tokenizer.json";
  if (IsRegularFile(json_path)) {
    const std::string config_path = dir + "/tokenizer_config.json";
    const std::string config = IsRegularFile(config_path) ? ReadTextFile(config_path) : std::string();
    return FromTokenizerJson(ReadTextFile(json_path), config);
  }
  const std::string encoder_path = dir + "/encoder.json", merges_path = dir + "/vocab.bpe";
  if (IsRegularFile(encoder_path) && IsRegularFile(merges_path))
    return FromGpt2Files(ReadTextFile(encoder_path), ReadTextFile(merges_path));
  LLAMARL_FAIL("no tokenizer found in '", dir, "': looked for ", json_path, ", then for ", encoder_path,
               " together with ", merges_path, "; point --model at a directory holding one of them");
}

std::vector<int64_t> Tokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  const Impl& impl = *impl_;
  std::string repaired;
  if (!tokenizer_internal::IsValidUtf8(text)) {
    repaired = tokenizer_internal::Utf8Lossy(text);
    text = repaired;
  }
  std::vector<int64_t> ids(impl.post_prefix_ids.begin(),
                           options.add_special_tokens ? impl.post_prefix_ids.end() : impl.post_prefix_ids.begin());
  for (const TextPiece& piece : impl.raw_matcher.Split(text, options.split_special_tokens)) {
    if (piece.id) {
      ids.push_back(*piece.id);
      continue;
    }
    const std::string normalized = impl.pipeline.Normalize(piece.text);
    if (impl.normalized_matcher.empty()) {
      EncodeNormalized(impl, normalized, &ids);
      continue;
    }
    for (const TextPiece& sub : impl.normalized_matcher.Split(normalized, options.split_special_tokens)) {
      if (sub.id) ids.push_back(*sub.id);
      else EncodeNormalized(impl, sub.text, &ids);
    }
  }
  if (options.add_special_tokens) ids.insert(ids.end(), impl.post_suffix_ids.begin(), impl.post_suffix_ids.end());
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int64_t>& ids, const DecodeOptions& options) const {
  const Impl& impl = *impl_;
  const auto& alphabet = tokenizer_internal::ByteLevelAlphabet::Get();
  std::string result, pending_bytes;
  // Byte-level tokens accumulate as raw bytes and become UTF-8 in one lossy pass, so a character split
  // over several tokens survives; an added token ends the run (HF decodes added tokens verbatim).
  auto flush = [&] {
    result += tokenizer_internal::Utf8Lossy(pending_bytes);
    pending_bytes.clear();
  };
  for (int64_t id : ids) {
    LLAMARL_CHECK(id >= 0 && id < impl.vocab_size, "Decode: token id ", id, " is out of range for a vocabulary of ",
                  impl.vocab_size, " tokens; expected ids in [0, ", impl.vocab_size, ")");
    auto added = impl.added_by_id.find(id);
    if (added != impl.added_by_id.end()) {
      const AddedToken& token = impl.added_tokens[added->second];
      if (options.skip_special_tokens && token.special) continue;
      flush();
      result += token.content;
      continue;
    }
    const std::string* vocab_token = VocabToken(impl, id);
    LLAMARL_CHECK(vocab_token != nullptr, "Decode: token id ", id, " is not used by this vocabulary of ",
                  impl.vocab_size, " tokens; it cannot come from this tokenizer");
    const std::string& token = *vocab_token;
    // HF's ByteLevel decoder: a token whose characters are all in the byte alphabet becomes those
    // bytes; any other token is kept as its UTF-8 text.
    std::string bytes;
    bool all_mapped = true;
    for (size_t pos = 0; pos < token.size() && all_mapped;) {
      const size_t n = tokenizer_internal::ValidSequenceLength(token, pos);
      const int byte = n == 0 ? -1 : alphabet.Decode(tokenizer_internal::DecodeCodePoint(token, pos, n));
      all_mapped = byte >= 0;
      bytes.push_back(static_cast<char>(byte));
      pos += n;
    }
    pending_bytes += all_mapped ? bytes : token;
  }
  flush();
  return result;
}

int64_t Tokenizer::VocabSize() const { return impl_->vocab_size; }

std::optional<int64_t> Tokenizer::TokenToId(std::string_view token) const {
  const std::string key(token);
  auto added = impl_->added_by_content.find(key);
  if (added != impl_->added_by_content.end()) return added->second;
  auto it = impl_->bpe->vocab().find(key);
  if (it != impl_->bpe->vocab().end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::IdToToken(int64_t id) const {
  LLAMARL_CHECK(id >= 0 && id < impl_->vocab_size, "IdToToken: token id ", id,
                " is out of range for a vocabulary of ", impl_->vocab_size, " tokens");
  auto added = impl_->added_by_id.find(id);
  if (added != impl_->added_by_id.end()) return impl_->added_tokens[added->second].content;
  const std::string* token = VocabToken(*impl_, id);
  LLAMARL_CHECK(token != nullptr, "IdToToken: token id ", id, " is not used by this vocabulary of ",
                impl_->vocab_size, " tokens");
  return *token;
}

bool Tokenizer::IsSpecial(int64_t id) const {
  auto added = impl_->added_by_id.find(id);
  return added != impl_->added_by_id.end() && impl_->added_tokens[added->second].special;
}

const SpecialTokenIds& Tokenizer::special_ids() const { return impl_->special_ids; }
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added_tokens; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }

}  // namespace llamarl
