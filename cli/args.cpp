#include "cli/args.h"

#include "core/check.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

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

bool Args::Parse(const std::vector<std::string>& argv) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s", Help().c_str());
      return false;
    }
    if (a.rfind("--", 0) != 0) {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    size_t eq = name.find('=');
    bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const Spec& spec = Find(name);
    if (spec.flag) {
      LLAMARL_CHECK(!inline_value, "llamarl ", command_, ": --", name, " is a flag and takes no value");
      value = "1";
    } else if (!inline_value) {
      LLAMARL_CHECK(i + 1 < argv.size(), "llamarl ", command_, ": --", name, " needs a value");
      value = argv[++i];
    }
    auto& slot = values_[name];
    LLAMARL_CHECK(spec.repeated || slot.empty(), "llamarl ", command_, ": --", name, " given twice");
    slot.push_back(value);
  }
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
  std::string out = "usage: " + usage_ + "\n\noptions:\n";
  for (const auto& name : order_) {
    const Spec& s = specs_.at(name);
    std::string left = "  --" + name + (s.flag ? "" : " V");
    if (left.size() < 26) left.resize(26, ' ');
    out += left + " " + s.help;
    if (!s.default_value.empty()) out += " (default " + s.default_value + ")";
    out += "\n";
  }
  return out;
}

}  // namespace llamarl::cli
