#include "reward/regex.h"

#include "core/check.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace llamarl::reward {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  ~Impl() { pcre2_code_free(code); }
};

Regex::Regex(const std::string& pattern, RegexOptions options, const std::string& what)
    : pattern_(pattern), impl_(std::make_unique<Impl>()) {
  uint32_t flags = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
  if (options.dotall) flags |= PCRE2_DOTALL;
  if (options.case_insensitive) flags |= PCRE2_CASELESS;
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), flags,
                              &error_code, &error_offset, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof message);
    LLAMARL_FAIL(what, ": invalid regular expression '", pattern,
                 "': ", reinterpret_cast<const char*>(message), " at offset ", error_offset,
                 " (PCRE2 syntax; escape literal characters such as '\\\\(')");
  }
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

std::optional<std::vector<std::string>> Regex::Match(std::string_view text, size_t start, bool anchored,
                                                     size_t* match_end) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(impl_->code, nullptr), &pcre2_match_data_free);
  LLAMARL_ASSERT(data != nullptr, "pcre2_match_data_create_from_pattern failed");
  uint32_t flags = anchored ? (PCRE2_ANCHORED | PCRE2_ENDANCHORED) : 0;
  int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start, flags,
                       data.get(), nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
  // Resource limits (pathological backtracking) count as no match: the response is then scored
  // as not following the format, which is the safe reading.
  if (rc < 0) return std::nullopt;
  PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
  uint32_t num_groups = pcre2_get_ovector_count(data.get());
  std::vector<std::string> groups;
  for (uint32_t g = 0; g < num_groups; ++g) {
    if (ovector[2 * g] == PCRE2_UNSET) {
      groups.emplace_back();
    } else {
      groups.emplace_back(text.substr(ovector[2 * g], ovector[2 * g + 1] - ovector[2 * g]));
    }
  }
  if (match_end) *match_end = ovector[1] > ovector[0] ? ovector[1] : ovector[0] + 1;
  return groups;
}

std::optional<std::vector<std::string>> Regex::Search(std::string_view text, size_t start) const {
  return Match(text, start, /*anchored=*/false, nullptr);
}

std::vector<std::vector<std::string>> Regex::SearchAll(std::string_view text) const {
  std::vector<std::vector<std::string>> matches;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = 0;
    auto groups = Match(text, start, /*anchored=*/false, &end);
    if (!groups) break;
    matches.push_back(std::move(*groups));
    start = end;
  }
  return matches;
}

bool Regex::FullMatch(std::string_view text) const {
  return Match(text, 0, /*anchored=*/true, nullptr).has_value();
}

}  // namespace llamarl::reward
