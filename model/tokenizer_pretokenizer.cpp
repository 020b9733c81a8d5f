#include "model/tokenizer_pretokenizer.h"

#include "core/check.h"
#include "model/tokenizer_unicode.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

namespace llamarl::tokenizer_internal {
namespace {

std::string Pcre2Message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

// JIT matching needs a stack; the default 32 KiB overflows on long runs of one class (a megabyte of
// spaces), so each thread keeps a larger one. Thread-safety: one stack per thread, never shared.
class ThreadJitStack {
 public:
  ThreadJitStack()
      : stack_(pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr)),
        context_(pcre2_match_context_create(nullptr)) {
    if (stack_ && context_) pcre2_jit_stack_assign(context_, nullptr, stack_);
  }
  ~ThreadJitStack() {
    pcre2_match_context_free(context_);
    pcre2_jit_stack_free(stack_);
  }
  pcre2_match_context* context() const { return context_; }

 private:
  pcre2_jit_stack* stack_;
  pcre2_match_context* context_;
};

struct Span {
  size_t begin, end;
  bool is_match;
};

// The whole text as alternating non-match / match spans (HF's Pattern::find_matches).
std::vector<Span> Partition(std::string_view text, const std::vector<std::pair<size_t, size_t>>& matches,
                            bool invert) {
  std::vector<Span> spans;
  size_t prev = 0;
  for (const auto& [begin, end] : matches) {
    if (prev < begin) spans.push_back({prev, begin, invert});
    spans.push_back({begin, end, !invert});
    prev = end;
  }
  if (prev < text.size()) spans.push_back({prev, text.size(), invert});
  return spans;
}

// Applies HF's SplitDelimiterBehavior to the partition; returns the spans to keep.
std::vector<Span> ApplyBehavior(const std::vector<Span>& spans, SplitBehavior behavior) {
  std::vector<Span> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      return spans;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans)
        if (!s.is_match) out.push_back(s);
      return out;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (!out.empty() && s.is_match == previous_match) out.back().end = s.end;
        else out.push_back(s);
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (!out.empty() && s.is_match && !previous_match) out.back().end = s.end;
        else out.push_back(s);
        previous_match = s.is_match;
      }
      return out;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (!out.empty() && it->is_match && !previous_match) out.back().begin = it->begin;
        else out.push_back(*it);
        previous_match = it->is_match;
      }
      return {out.rbegin(), out.rend()};
  }
  return out;
}

class SplitStep : public PreTokenizerStep {
 public:
  explicit SplitStep(const SplitOptions& options) : options_(options) {
    if (options.is_regex) regex_ = std::make_unique<Regex>(options.pattern, options.source);
  }

  void Apply(std::string_view piece, std::vector<std::string>* out) const override {
    const std::vector<Span> spans = ApplyBehavior(Partition(piece, Find(piece), options_.invert),
                                                  options_.behavior);
    for (const Span& s : spans)
      if (s.end > s.begin) out->emplace_back(piece.substr(s.begin, s.end - s.begin));
  }

 private:
  std::vector<std::pair<size_t, size_t>> Find(std::string_view piece) const {
    if (regex_) return regex_->FindAll(piece);
    std::vector<std::pair<size_t, size_t>> matches;
    if (options_.pattern.empty()) return matches;
    for (size_t pos = piece.find(options_.pattern); pos != std::string_view::npos;
         pos = piece.find(options_.pattern, pos + options_.pattern.size())) {
      matches.emplace_back(pos, pos + options_.pattern.size());
    }
    return matches;
  }

  SplitOptions options_;
  std::unique_ptr<Regex> regex_;
};

class ByteLevelStep : public PreTokenizerStep {
 public:
  explicit ByteLevelStep(const ByteLevelOptions& options) : options_(options) {
    if (options.use_regex) regex_ = std::make_unique<Regex>(kGpt2SplitPattern, "ByteLevel pre_tokenizer");
  }

  void Apply(std::string_view piece, std::vector<std::string>* out) const override {
    std::string prefixed;
    if (options_.add_prefix_space && (piece.empty() || piece.front() != ' ')) {
      prefixed = " ";
      prefixed.append(piece);
      piece = prefixed;
    }
    const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
    auto emit = [&](std::string_view word) {
      if (word.empty()) return;
      std::string mapped;
      alphabet.EncodeBytes(word, &mapped);
      out->push_back(std::move(mapped));
    };
    if (!regex_) {
      emit(piece);
      return;
    }
    for (const Span& s : Partition(piece, regex_->FindAll(piece), false))
      emit(piece.substr(s.begin, s.end - s.begin));
  }

 private:
  ByteLevelOptions options_;
  std::unique_ptr<Regex> regex_;
};

}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

Regex::Regex(const std::string& pattern, const std::string& source)
    : code_(std::make_unique<Code>()), source_(source) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  LLAMARL_CHECK(code_->code != nullptr, source, ": regex ", pattern, " does not compile at offset ",
                error_offset, ": ", Pcre2Message(error_code),
                "; the pattern must be a PCRE2-compatible regex");
  code_->jit = pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;

std::vector<std::pair<size_t, size_t>> Regex::FindAll(std::string_view text) const {
  thread_local ThreadJitStack jit_stack;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(code_->code, nullptr), &pcre2_match_data_free);
  LLAMARL_ASSERT(data != nullptr, "out of memory creating PCRE2 match data");
  std::vector<std::pair<size_t, size_t>> matches;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    // Text is validated UTF-8 before it reaches any regex, so PCRE2's own check is skipped.
    const int rc = code_->jit
                       ? pcre2_jit_match(code_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                                         data.get(), jit_stack.context())
                       : pcre2_match(code_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                                     data.get(), jit_stack.context());
    if (rc == PCRE2_ERROR_NOMATCH) break;
    LLAMARL_CHECK(rc >= 0, source_, ": regex matching failed on a text of ", text.size(),
                  " bytes: ", Pcre2Message(rc), "; split the text into smaller pieces");
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const size_t begin = ovector[0], end = ovector[1];
    if (end > begin) {
      matches.emplace_back(begin, end);
      pos = end;
    } else {
      // An empty match splits nothing (HF drops empty pieces); step over one character.
      if (begin >= text.size()) break;
      const size_t n = ValidSequenceLength(text, begin);
      pos = begin + (n == 0 ? 1 : n);
    }
  }
  return matches;
}

std::unique_ptr<PreTokenizerStep> MakeSplitStep(const SplitOptions& options) {
  return std::make_unique<SplitStep>(options);
}

std::unique_ptr<PreTokenizerStep> MakeByteLevelStep(const ByteLevelOptions& options) {
  return std::make_unique<ByteLevelStep>(options);
}

std::string PreTokenizerPipeline::Normalize(std::string_view text) const {
  return nfc ? NormalizeNfc(text) : std::string(text);
}

std::vector<std::string> PreTokenizerPipeline::Split(std::string_view normalized) const {
  std::vector<std::string> pieces{std::string(normalized)};
  for (const auto& step : steps) {
    std::vector<std::string> next;
    next.reserve(pieces.size());
    for (const std::string& piece : pieces) step->Apply(piece, &next);
    pieces = std::move(next);
  }
  pieces.erase(std::remove_if(pieces.begin(), pieces.end(), [](const std::string& p) { return p.empty(); }),
               pieces.end());
  return pieces;
}

}  // namespace llamarl::tokenizer_internal
