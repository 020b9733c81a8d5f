// A compiled PCRE2 pattern (UTF-8), for the format and countdown rewards. PCRE2 rather than
// std::regex: libstdc++'s regex recurses per character and overflows the stack on long responses.
//
// Thread-safety: a Regex may be shared between threads; each call allocates its own match data.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llamarl::reward {

struct RegexOptions {
  bool dotall = true;  // '.' also matches newlines (responses are multi-line)
  bool case_insensitive = false;
};

class Regex {
 public:
  // Throws naming `what` (the config field), the pattern and PCRE2's message with the offset.
  Regex(const std::string& pattern, RegexOptions options, const std::string& what);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Capture groups (group 0 = the whole match) of the first match at or after `start`, or nullopt.
  // An unset group is "".
  std::optional<std::vector<std::string>> Search(std::string_view text, size_t start = 0) const;
  // Groups of every non-overlapping match, in order.
  std::vector<std::vector<std::string>> SearchAll(std::string_view text) const;
  // True when the pattern matches the whole text.
  bool FullMatch(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::optional<std::vector<std::string>> Match(std::string_view text, size_t start, bool anchored,
                                                size_t* match_end) const;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llamarl::reward
