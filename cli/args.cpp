#include "cli/args.h"

#include "core/check.h"

#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <memory>

namespace llamarl::cli {

Args::Args(std::string command, std::string usage) : command_(std::move(command)), usage_(std::move(usage)) {}

Args& Args::Option(const std::string& name, const std::string& help, const std::string& default_value) {
  order_.push_back(name);
  specs_[name] = Spec{help, default_value, false, false};
  return *this;
}

Args& Args::Flag(const std::string& name, const std::string& help) {
  order_.push_back(name);
  specs_[name] = Spec{help, "", true, false};
  return *this;
}

Args& Args::Repeated(const std::string& name, const std::string& help) {
  order_.push_back(name);
  specs_[name] = Spec{help, "", false, true};
  return *this;
}

const Args::Spec& Args::Find(const std::string& name) const {
  auto it = specs_.find(name);
  if (it != specs_.end()) return it->second;
  std::string known;
  for (const auto& n : order_) known += (known.empty() ? "--" : ", --") + n;
  LLAMARL_FAIL("llamarl ", command_, ": unknown option --", name, "; known: ", known.empty() ? "(none)" : known);
}

namespace {

struct Declared {
  std::string name, help;
  bool flag, repeated;
};

// A CLI11 application declaring `options` in order, bound to `values` (option name -> the values
// given, in order), `flags` (name -> times given) and `positional`.
std::unique_ptr<CLI::App> MakeApp(const std::string& name, const std::vector<Declared>& options,
                                  std::map<std::string, std::vector<std::string>>* values,
                                  std::map<std::string, int64_t>* flags, std::vector<std::string>* positional) {
  auto app = std::make_unique<CLI::App>("", "llamarl " + name);
  app->set_help_flag("-h,--help", "print this help and exit");
  for (const Declared& s : options) {
    const std::string& n = s.name;
    const std::string& help = s.help;
    if (s.flag) {
      app->add_flag("--" + n, (*flags)[n], help);
      continue;
    }
    // One value per occurrence; repeated options collect them, others reject a second one below.
    app->add_option("--" + n, (*values)[n], help + (s.repeated ? " (repeatable)" : ""))
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
        ->type_name("V");
  }
  app->add_option("args", *positional, "positional arguments (see usage)");
  return app;
}

// The declarations in --help order, defaults in their help line. (A template so that it can take the
// private Args::Spec map without naming the type.)
template <typename SpecMap>
std::vector<Declared> DeclarationsOf(const std::vector<std::string>& order, const SpecMap& specs) {
  std::vector<Declared> out;
  for (const std::string& n : order) {
    const auto& s = specs.at(n);
    out.push_back({n, s.help + (s.default_value.empty() ? "" : " (default " + s.default_value + ")"), s.flag, s.repeated});
  }
  return out;
}

}  // namespace

bool Args::Parse(const std::vector<std::string>& argv) {
  // Our check first: an unknown option is named with the known ones (CLI11 only calls it unexpected).
  for (const std::string& a : argv) {
    if (a == "--") break;
    if (a.rfind("--", 0) == 0 && a != "--help") Find(a.substr(2, a.find('=') - std::min(a.find('='), size_t(2))));
  }
  std::map<std::string, std::vector<std::string>> values;
  std::map<std::string, int64_t> flags;
  auto app = MakeApp(command_, DeclarationsOf(order_, specs_), &values, &flags, &positional_);
  std::vector<std::string> reversed(argv.rbegin(), argv.rend());  // CLI11 parses a reversed vector
  try {
    app->parse(reversed);
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", Help().c_str());
    return false;
  } catch (const CLI::ParseError& e) {
    LLAMARL_FAIL("llamarl ", command_, ": ", e.what(), "\nusage: ", usage_);
  }
  for (const auto& [name, given] : values) {
    if (given.empty()) continue;
    LLAMARL_CHECK(specs_.at(name).repeated || given.size() == 1, "llamarl ", command_, ": --", name, " given twice");
    values_[name] = given;
  }
  for (const auto& [name, count] : flags)
    if (count > 0) values_[name] = {"1"};
  return true;
}

bool Args::Has(const std::string& name) const {
  return values_.count(name) > 0 || !Find(name).default_value.empty();
}

bool Args::GetFlag(const std::string& name) const {
  LLAMARL_ASSERT(Find(name).flag, "--", name, " is not declared as a flag");
  return values_.count(name) > 0;
}

std::string Args::Get(const std::string& name) const {
  const Spec& spec = Find(name);
  auto it = values_.find(name);
  if (it != values_.end()) return it->second.back();
  LLAMARL_CHECK(!spec.default_value.empty(), "llamarl ", command_, ": missing --", name, " (", spec.help,
                ")\nusage: ", usage_);
  return spec.default_value;
}

std::vector<std::string> Args::GetAll(const std::string& name) const {
  Find(name);
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

int64_t Args::GetInt(const std::string& name) const {
  std::string text = Get(name);
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  LLAMARL_CHECK(!text.empty() && *end == '\0' && errno == 0, "llamarl ", command_, ": --", name,
                " expects an integer, got '", text, "'");
  return v;
}

double Args::GetDouble(const std::string& name) const {
  std::string text = Get(name);
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  LLAMARL_CHECK(!text.empty() && *end == '\0', "llamarl ", command_, ": --", name, " expects a number, got '",
                text, "'");
  return v;
}

std::vector<int64_t> Args::GetIntList(const std::string& name) const {
  std::string text = Get(name);
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    LLAMARL_CHECK(!item.empty() && *end == '\0' && errno == 0, "llamarl ", command_, ": --", name,
                  " expects comma-separated integers (like 1,2,3), got '", text, "'");
    out.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string Args::RequireOneOf(const std::vector<std::string>& names) const {
  std::string found, list;
  int count = 0;
  for (const auto& n : names) {
    list += (list.empty() ? "--" : " or --") + n;
    if (values_.count(n)) {
      found = n;
      ++count;
    }
  }
  LLAMARL_CHECK(count == 1, "llamarl ", command_, ": give exactly one of ", list, "\nusage: ", usage_);
  return found;
}

std::string Args::Help() const {
  std::map<std::string, std::vector<std::string>> values;
  std::map<std::string, int64_t> flags;
  std::vector<std::string> positional;
  auto app = MakeApp(command_, DeclarationsOf(order_, specs_), &values, &flags, &positional);
  return "usage: " + usage_ + "\n\n" + app->help();
}

}  // namespace llamarl::cli
