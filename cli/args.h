// Command-line options of one subcommand: `--name value`, `--name=value` and boolean `--flag`.
// Every option a subcommand accepts is declared with its help line, so that an unknown option is
// an error listing the known ones and `--help` prints them all.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace llamarl::cli {

class Args {
 public:
  // `usage` is the one-line synopsis ("llamarl tokenize --model DIR (--text T | --file F) [--json]").
  Args(std::string command, std::string usage);

  // Declarations, in the order --help lists them. Flags take no value; repeated options collect.
  Args& Option(const std::string& name, const std::string& help, const std::string& default_value = "");
  Args& Flag(const std::string& name, const std::string& help);
  Args& Repeated(const std::string& name, const std::string& help);

  // Parses argv after the subcommand name. Returns false when --help was asked (help is printed).
  bool Parse(const std::vector<std::string>& argv);

  bool Has(const std::string& name) const;  // given on the command line (or has a default)
  bool GetFlag(const std::string& name) const;
  std::string Get(const std::string& name) const;  // error when absent and without default
  std::vector<std::string> GetAll(const std::string& name) const;
  int64_t GetInt(const std::string& name) const;
  double GetDouble(const std::string& name) const;
  std::vector<int64_t> GetIntList(const std::string& name) const;  // "1,2,3"
  const std::vector<std::string>& Positional() const { return positional_; }
  // Exactly one of `names` must be given.
  std::string RequireOneOf(const std::vector<std::string>& names) const;
  std::string Help() const;

 private:
  struct Spec {
    std::string help, default_value;
    bool flag = false, repeated = false;
  };
  const Spec& Find(const std::string& name) const;

  std::string command_, usage_;
  std::vector<std::string> order_;
  std::map<std::string, Spec> specs_;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

}  // namespace llamarl::cli
