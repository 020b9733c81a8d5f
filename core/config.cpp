#include "core/config.h"

#include "core/check.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

namespace llamarl {
namespace {

std::string FormatNumber(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // Integral bounds print exactly (int limits would otherwise show as 2.14748e+09).
  if (v == std::floor(v) && std::fabs(v) < 9.0e15) return std::to_string(int64_t(v));
  std::ostringstream out;
  out << v;
  return out.str();
}

const Json& EmptyObject() {
  static const Json empty = Json::object();
  return empty;
}

}  // namespace

bool Range::Contains(double v) const {
  if (std::isnan(v)) return false;
  if (lo && (lo_open ? !(v > *lo) : !(v >= *lo))) return false;
  if (hi && (hi_open ? !(v < *hi) : !(v <= *hi))) return false;
  return true;
}

std::string Range::ToString() const {
  return (lo && !lo_open ? "[" : "(") + (lo ? FormatNumber(*lo) : "-inf") + ", " +
         (hi ? FormatNumber(*hi) : "inf") + (hi && !hi_open ? "]" : ")");
}

std::string DescribeJson(const Json& value) {
  if (value.is_null()) return "null";
  std::string text = value.dump();
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  if (value.is_string()) return text;
  if (value.is_number() || value.is_boolean()) return text;
  return std::string(value.type_name()) + " " + text;
}

ConfigReader::ConfigReader(const Json& object, std::string path)
    : object_(object.is_null() ? EmptyObject() : object), path_(std::move(path)) {
  LLAMARL_CHECK(object_.is_object(), path_.empty() ? "config" : path_, ": expected an object, got ",
                DescribeJson(object));
}

std::string ConfigReader::PathOf(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

void ConfigReader::Fail(const std::string& key, const std::string& expected, const Json& got) const {
  LLAMARL_FAIL(PathOf(key), ": expected ", expected, ", got ", DescribeJson(got));
}

const Json* ConfigReader::Find(const char* key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);  // read twice, listed once
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool ConfigReader::Has(const char* key) const {
  auto it = object_.find(key);
  return it != object_.end() && !it->is_null();
}

void ConfigReader::RequirePresent(const char* key) const {
  LLAMARL_CHECK(Has(key), PathOf(key), ": missing (a required field)");
}

void ConfigReader::Read(const char* key, bool* out, const char*) {
  const Json* v = Find(key);
  if (!v) return;
  if (!v->is_boolean()) Fail(key, "true or false", *v);
  *out = v->get<bool>();
}

void ConfigReader::Read(const char* key, int64_t* out, Range range, const char*) {
  const Json* v = Find(key);
  if (!v) return;
  std::string expected = "an integer" + (range.lo || range.hi ? " in " + range.ToString() : "");
  if (v->is_number_integer()) {
    int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)
                    ? (Fail(key, expected, *v), 0)
                    : v->get<int64_t>();
    if (!range.Contains(double(x))) Fail(key, expected, *v);
    *out = x;
    return;
  }
  // 3.0 is accepted as 3 (JSON writers often emit integral floats); 3.5 is not.
  if (v->is_number_float()) {
    double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15 && range.Contains(d)) {
      *out = int64_t(d);
      return;
    }
  }
  Fail(key, expected, *v);
}

void ConfigReader::Read(const char* key, int* out, Range range, const char* help) {
  int64_t x = *out;
  Range r = range;
  if (!r.lo) r.lo = double(std::numeric_limits<int>::min());
  if (!r.hi) r.hi = double(std::numeric_limits<int>::max());
  Read(key, &x, r, help);
  *out = int(x);
}

void ConfigReader::Read(const char* key, double* out, Range range, const char*) {
  const Json* v = Find(key);
  if (!v) return;
  std::string expected = "a number" + (range.lo || range.hi ? " in " + range.ToString() : "");
  if (!v->is_number() || !range.Contains(v->get<double>())) Fail(key, expected, *v);
  *out = v->get<double>();
}

void ConfigReader::Read(const char* key, float* out, Range range, const char* help) {
  double x = *out;
  Read(key, &x, range, help);
  *out = float(x);
}

void ConfigReader::Read(const char* key, std::string* out, const std::vector<std::string>& choices,
                        const char*) {
  const Json* v = Find(key);
  if (!v) return;
  std::string expected = "a string";
  if (!choices.empty()) {
    expected = "one of";
    for (size_t i = 0; i < choices.size(); ++i) expected += (i ? ", '" : " '") + choices[i] + "'";
  }
  if (!v->is_string()) Fail(key, expected, *v);
  std::string s = v->get<std::string>();
  if (!choices.empty()) {
    bool ok = false;
    for (const auto& c : choices) ok = ok || c == s;
    if (!ok) Fail(key, expected, *v);
  }
  *out = std::move(s);
}

void ConfigReader::Read(const char* key, std::vector<int64_t>* out, const char*) {
  const Json* v = Find(key);
  if (!v) return;
  // A single integer is accepted where a list is expected (HF writes eos_token_id both ways).
  if (v->is_number_integer()) {
    *out = {v->get<int64_t>()};
    return;
  }
  if (!v->is_array()) Fail(key, "an integer or a list of integers", *v);
  std::vector<int64_t> xs;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_number_integer()) Fail(key + ("[" + std::to_string(i) + "]"), "an integer", (*v)[i]);
    xs.push_back((*v)[i].get<int64_t>());
  }
  *out = std::move(xs);
}

void ConfigReader::Read(const char* key, std::vector<std::string>* out, const char*) {
  const Json* v = Find(key);
  if (!v) return;
  if (!v->is_array()) Fail(key, "a list of strings", *v);
  std::vector<std::string> xs;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) Fail(key + ("[" + std::to_string(i) + "]"), "a string", (*v)[i]);
    xs.push_back((*v)[i].get<std::string>());
  }
  *out = std::move(xs);
}

const Json& ConfigReader::Raw(const char* key) {
  const Json* v = Find(key);
  static const Json null_value;
  return v ? *v : null_value;
}

ConfigReader ConfigReader::Child(const char* key) { return ConfigReader(Raw(key), PathOf(key)); }

void ConfigReader::Finish() const {
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    bool known = false;
    for (const auto& k : known_) known = known || k == it.key();
    if (known) continue;
    std::string list;
    for (size_t i = 0; i < known_.size(); ++i) list += (i ? ", " : "") + known_[i];
    LLAMARL_FAIL(path_.empty() ? "config" : path_, ": unknown key '", it.key(), "'; known: ",
                 list.empty() ? "(none)" : list);
  }
}

void ApplyOverride(Json& root, const std::string& assignment) {
  size_t eq = assignment.find('=');
  LLAMARL_CHECK(eq != std::string::npos && eq > 0, "--set expects key=value (for example ",
                "trainer.lr=1e-5), got '", assignment, "'");
  std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;
  Json* node = &root;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    LLAMARL_CHECK(!part.empty(), "--set ", assignment, ": empty key segment in '", key, "'");
    if (node->is_null()) *node = Json::object();
    LLAMARL_CHECK(node->is_object(), "--set ", assignment, ": '", key.substr(0, start ? start - 1 : 0),
                  "' is not an object");
    node = &(*node)[part];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  *node = std::move(value);
}

Json ReadJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LLAMARL_CHECK(in.good(), "cannot open ", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return Json::parse(buffer.str());
  } catch (const Json::parse_error& e) {
    LLAMARL_FAIL(path, ": invalid JSON: ", e.what());
  }
}

}  // namespace llamarl
