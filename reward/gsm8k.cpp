#include "reward/gsm8k.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "core/check.h"

namespace llamarl::reward {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view RestOfLine(std::string_view text, size_t from) {
  size_t nl = text.find('\n', from);
  return text.substr(from, nl == std::string_view::npos ? std::string_view::npos : nl - from);
}

std::optional<ParsedNumber> FirstNumber(std::string_view text) {
  std::vector<ParsedNumber> numbers = FindNumbers(text);
  if (numbers.empty()) return std::nullopt;
  return numbers.front();
}

// The braces' content after the last "\boxed{", with nesting, or nullopt.
std::optional<std::string> LastBoxed(std::string_view text) {
  size_t at = text.rfind("\\boxed{");
  if (at == std::string_view::npos) return std::nullopt;
  size_t i = at + 7;
  int depth = 1;
  std::string content;
  for (; i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}' && --depth == 0) return content;
    content.push_back(text[i]);
  }
  return std::nullopt;
}

std::optional<ParsedNumber> ParseBoxed(const std::string& content) {
  // \frac{a}{b} and \dfrac{a}{b}, possibly signed: rewrite to "a/b" and parse that.
  std::string text = content;
  for (const char* frac : {"\\dfrac{", "\\frac{"}) {
    size_t at = text.find(frac);
    if (at == std::string::npos) continue;
    size_t mid = text.find("}{", at);
    size_t end = mid == std::string::npos ? std::string::npos : text.find('}', mid + 2);
    if (end == std::string::npos) break;
    size_t num_begin = at + std::char_traits<char>::length(frac);
    text = text.substr(0, at) + text.substr(num_begin, mid - num_begin) + "/" +
           text.substr(mid + 2, end - mid - 2) + text.substr(end + 1);
  }
  for (const char* noise : {"\\$", "\\%", "\\,", "\\!", "{,}", "\\text{", "}"}) {
    for (size_t at; (at = text.find(noise)) != std::string::npos;) text.erase(at, std::strlen(noise));
  }
  if (auto whole = ParseNumber(text)) return whole;
  std::vector<ParsedNumber> numbers = FindNumbers(text);
  if (numbers.empty()) return std::nullopt;
  return numbers.back();
}

std::optional<ExtractedAnswer> AnswerIs(std::string_view response) {
  std::string lower = Lower(response);
  size_t best = std::string::npos, best_len = 0;
  for (const char* phrase : {"answer is", "answer:"}) {
    size_t at = lower.rfind(phrase);
    if (at != std::string::npos && (best == std::string::npos || at > best)) {
      best = at;
      best_len = std::strlen(phrase);
    }
  }
  if (best == std::string::npos) return std::nullopt;
  auto n = FirstNumber(RestOfLine(response, best + best_len));
  if (!n) return std::nullopt;
  return ExtractedAnswer{*n, "answer_is"};
}

}  // namespace

Gsm8kConfig Gsm8kConfig::FromJson(const Json& j, const std::string& path) {
  Gsm8kConfig c;
  ConfigReader r(j, path);
  r.Read("correct_score", &c.correct_score, {}, "score of a correct answer");
  r.Read("incorrect_score", &c.incorrect_score, {}, "score of a wrong answer");
  r.Read("no_answer_score", &c.no_answer_score, {}, "score when no answer can be read");
  r.Read("require_marker", &c.require_marker,
         "only '#### N', \\boxed{N} or 'answer is N' count; the last number alone does not");
  r.Read("relative_tolerance", &c.relative_tolerance, Range::AtLeast(0),
         "numbers within tol * max(1, |want|) are equal");
  r.Finish();
  return c;
}

std::optional<ExtractedAnswer> ExtractFinalAnswer(std::string_view response, bool allow_last_number) {
  size_t hashes = response.rfind("####");
  if (hashes != std::string_view::npos) {
    if (auto n = FirstNumber(RestOfLine(response, hashes + 4))) return ExtractedAnswer{*n, "####"};
  }
  if (auto boxed = LastBoxed(response)) {
    if (auto n = ParseBoxed(*boxed)) return ExtractedAnswer{*n, "boxed"};
  }
  if (auto stated = AnswerIs(response)) return stated;
  if (!allow_last_number) return std::nullopt;
  std::vector<ParsedNumber> numbers = FindNumbers(response);
  if (numbers.empty()) return std::nullopt;
  return ExtractedAnswer{numbers.back(), "last_number"};
}

double ParseGsm8kReference(const Json& answer, const std::string& where) {
  if (answer.is_number()) return answer.get<double>();
  LLAMARL_CHECK(answer.is_string(), where, ": gsm8k expects the reference answer as a string ",
                "(GSM8K's answer field ending in '#### N') or a number, got ", DescribeJson(answer));
  std::string text = answer.get<std::string>();
  size_t hashes = text.rfind("####");
  std::string_view tail =
      hashes == std::string::npos ? std::string_view(text) : std::string_view(text).substr(hashes + 4);
  std::optional<ParsedNumber> n = ParseNumber(tail);
  LLAMARL_CHECK(n.has_value(), where, ": gsm8k reference answer ", DescribeJson(answer),
                hashes == std::string::npos ? " is not a number" : " has no single number after '####'",
                "; expected a number or a worked solution ending in '#### N' (check the dataset's ",
                "answer_field)");
  return n->value;
}

RewardResult Gsm8kReward::Score(const std::vector<RewardItem>& items) {
  RewardResult result;
  for (size_t i = 0; i < items.size(); ++i) {
    double want = ParseGsm8kReference(items[i].answer, "item " + std::to_string(i));
    Json info = {{"reference", FormatNumber(want)}};
    std::optional<ExtractedAnswer> got = ExtractFinalAnswer(items[i].response, !config_.require_marker);
    double score = config_.no_answer_score;
    if (got) {
      info["parsed"] = FormatNumber(got->number.value);
      info["source"] = got->source;
      bool correct = NumbersMatch(got->number.value, want, config_.relative_tolerance);
      info["correct"] = correct;
      score = correct ? config_.correct_score : config_.incorrect_score;
    }
    result.scores.push_back(score);
    result.info.push_back(std::move(info));
  }
  return result;
}

}  // namespace llamarl::reward
