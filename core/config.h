// Reading component Configs from JSON. Each component owns a `Config` struct with defaults in its
// members and a `FromJson` that reads it field by field through a ConfigReader:
//
//   SamplingConfig SamplingConfig::FromJson(const Json& j, const std::string& path) {
//     SamplingConfig c;
//     ConfigReader r(j, path);
//     r.Read("top_p", &c.top_p, Range::OpenClosed(0, 1), "nucleus mass kept when sampling");
//     r.Finish();  // rejects keys that were not read, listing the known ones
//     return c;
//   }
//
// Errors name the full path of the bad field, what was expected and what was got:
//   generator.sampling.top_p: expected a number in (0, 1], got 1.5
// This header is LibTorch-free so that parsers built on it can be fuzzed with clang alone.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llamarl {

using Json = nlohmann::json;

// A closed, open or half-open interval of allowed numbers; unbounded by default.
struct Range {
  std::optional<double> lo, hi;
  bool lo_open = false, hi_open = false;

  static Range Closed(double lo, double hi) { return {lo, hi, false, false}; }
  static Range Open(double lo, double hi) { return {lo, hi, true, true}; }
  static Range OpenClosed(double lo, double hi) { return {lo, hi, true, false}; }
  static Range ClosedOpen(double lo, double hi) { return {lo, hi, false, true}; }
  static Range AtLeast(double lo) { return {lo, std::nullopt, false, false}; }
  static Range Positive() { return {0.0, std::nullopt, true, false}; }

  bool Contains(double v) const;
  std::string ToString() const;  // "(0, 1]", "[1, inf)"
};

class ConfigReader {
 public:
  // `object` must be a JSON object (or null, read as empty); `path` names it in errors ("" = root).
  ConfigReader(const Json& object, std::string path);

  // Optional fields: when the key is absent, *out keeps its default. `help` is the field's one-line
  // meaning, kept for `ListFields` (the schema a user can print).
  void Read(const char* key, bool* out, const char* help = "");
  void Read(const char* key, int* out, Range range = {}, const char* help = "");
  void Read(const char* key, int64_t* out, Range range = {}, const char* help = "");
  void Read(const char* key, double* out, Range range = {}, const char* help = "");
  void Read(const char* key, float* out, Range range = {}, const char* help = "");
  void Read(const char* key, std::string* out, const std::vector<std::string>& choices = {},
            const char* help = "");
  void Read(const char* key, std::vector<int64_t>* out, const char* help = "");
  void Read(const char* key, std::vector<std::string>* out, const char* help = "");

  // Fields without a default: absence is an error naming the field.
  template <typename T, typename... Rest>
  void Require(const char* key, T* out, Rest&&... rest) {
    RequirePresent(key);
    Read(key, out, std::forward<Rest>(rest)...);
  }

  bool Has(const char* key) const;
  // The raw value (null when absent), marked as read; for fields a component parses itself.
  const Json& Raw(const char* key);
  // A reader for a nested object; an absent key gives an empty object (all defaults).
  ConfigReader Child(const char* key);
  // "generator.sampling.top_p"
  std::string PathOf(const std::string& key) const;
  const std::string& path() const { return path_; }

  // Throws on any key that was never read: "<path>: unknown key 'x'; known: a, b, c".
  void Finish() const;

 private:
  void RequirePresent(const char* key) const;
  const Json* Find(const char* key);
  [[noreturn]] void Fail(const std::string& key, const std::string& expected, const Json& got) const;

  const Json& object_;
  std::string path_;
  std::vector<std::string> known_;
};

// Short rendering of a JSON value for error messages (long values are cut).
std::string DescribeJson(const Json& value);

// Applies a command-line override `a.b.c=value` to `root`. The value is parsed as JSON when it is
// valid JSON (numbers, true/false, arrays, quoted strings) and taken as a bare string otherwise.
void ApplyOverride(Json& root, const std::string& assignment);

// Reads a JSON file; the error names the file and the parse position.
Json ReadJsonFile(const std::string& path);

}  // namespace llamarl
