// Normalizer and pre-tokenizer steps of a byte-level BPE pipeline, as HF tokenizers defines them.
// LibTorch-free. All types are immutable after construction and safe to share between threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llamarl::tokenizer_internal {

// GPT-2's word-splitting regex, used by the ByteLevel pre-tokenizer when use_regex is true.
inline constexpr const char* kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// A PCRE2 regex compiled with PCRE2_UTF | PCRE2_UCP (so \s, \p{L}, \w are Unicode-aware, as in the
// Oniguruma regexes HF uses), JIT-compiled when the library supports it.
class Regex {
 public:
  // `source` names the pattern in errors ("tokenizer.json: pre_tokenizer.pretokenizers[0]").
  Regex(const std::string& pattern, const std::string& source);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Byte ranges [begin, end) of the successive non-overlapping, non-empty matches in `text` (valid
  // UTF-8). Thread-safe: match data is per call.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  std::string source_;
};

// HF's SplitDelimiterBehavior: what happens to the matched delimiters.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// One pre-tokenizer step: splits each piece further and may rewrite it (ByteLevel maps bytes to the
// byte-level alphabet).
class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  // Appends the pieces of `piece` to *out; empty pieces are dropped.
  virtual void Apply(std::string_view piece, std::vector<std::string>* out) const = 0;
};

struct SplitOptions {
  std::string pattern;       // a regex, or a literal string when is_regex is false
  bool is_regex = true;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;       // the matches become the pieces between delimiters, and vice versa
  std::string source;        // names the step in errors
};
std::unique_ptr<PreTokenizerStep> MakeSplitStep(const SplitOptions& options);

struct ByteLevelOptions {
  bool add_prefix_space = false;  // prepend ' ' to a piece that does not start with one
  bool use_regex = true;          // split with kGpt2SplitPattern first
};
std::unique_ptr<PreTokenizerStep> MakeByteLevelStep(const ByteLevelOptions& options);

// The normalizer and the pre-tokenizer steps, applied in order.
class PreTokenizerPipeline {
 public:
  bool nfc = false;  // the only normalization byte-level BPE files use (null, NFC, Sequence of NFC)
  bool has_byte_level = false;  // a ByteLevel step maps text to the alphabet the vocabulary uses
  std::vector<std::unique_ptr<PreTokenizerStep>> steps;

  std::string Normalize(std::string_view text) const;
  // Splits normalized text into the words that BPE encodes one by one.
  std::vector<std::string> Split(std::string_view normalized) const;
};

}  // namespace llamarl::tokenizer_internal
