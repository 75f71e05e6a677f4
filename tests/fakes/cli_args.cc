#include "cli_args.h"

#include <algorithm>
#include <set>
#include <string_view>

namespace kmsfleet::fake {
namespace {

constexpr char kRootName[] = "bao-kms-provider";

// Persistent flags of the real root (reference §2.1) plus the fake's own.
const std::set<std::string>& PersistentValueFlags() {
  static const std::set<std::string> flags = {
      "config", "log-level", "metrics-address", "health-address",
      "fake-version", "scenario", "fake-set"};
  return flags;
}

// Local value flags per subcommand; the real binary has more, but these are
// the ones kmsfleet passes.
std::set<std::string> LocalValueFlags(const std::string& command) {
  if (command == "doctor") return {"encryption-config", "output"};
  if (command == "verify-key" || command == "rotation-plan" ||
      command == "verify-rotation") {
    return {"output"};
  }
  if (command == "probe") {
    return {"socket", "timeout", "expected-key-id", "output"};
  }
  if (command == "serve") return {"listen-info"};
  return {};
}

struct Parser {
  std::vector<std::string> args;
  size_t next = 0;
  ParsedArgs out;

  std::string CommandPath() const {
    std::string path = kRootName;
    for (const auto& part : out.command) path += " " + part;
    return path;
  }

  void Fail(std::string message) {
    if (!out.usage_error) out.usage_error = std::move(message);
  }

  bool IsValueFlag(const std::string& name) const {
    if (PersistentValueFlags().count(name) != 0) return true;
    if (out.command.empty()) return false;
    return LocalValueFlags(out.command.front()).count(name) != 0;
  }

  void HandleLongFlag(const std::string& token);
  void HandleShortFlag(const std::string& token);
  void HandleWord(const std::string& word);
  void Run();
};

void Parser::HandleLongFlag(const std::string& token) {
  std::string body = token.substr(2);
  std::optional<std::string> value;
  if (auto eq = body.find('='); eq != std::string::npos) {
    value = body.substr(eq + 1);
    body.resize(eq);
  }
  if (body == "help") {
    out.help = true;
    return;
  }
  if (body == "version" && out.command.empty()) {
    out.version_flag = true;
    return;
  }
  if (!IsValueFlag(body)) {
    Fail("unknown flag: --" + body);
    return;
  }
  if (!value) {
    if (next >= args.size()) {
      Fail("flag needs an argument: --" + body);
      return;
    }
    value = args[next++];
  }
  if (body == "fake-set") {
    out.fake_sets.push_back(*value);
  } else {
    out.flags[body] = *value;
  }
}

void Parser::HandleShortFlag(const std::string& token) {
  if (token == "-h") {
    out.help = true;
    return;
  }
  Fail("unknown shorthand flag: '" + token.substr(1, 1) + "' in " + token);
}

void Parser::HandleWord(const std::string& word) {
  // The only nesting the real tree has that matters here: `config schema`.
  if (out.command.empty()) {
    if (!IsKnownCommand(word)) {
      Fail("unknown command \"" + word + "\" for \"" + kRootName + "\"");
    }
    out.command.push_back(word);
    return;
  }
  if (out.command.size() == 1 && out.command.front() == "config" &&
      word == "schema") {
    out.command.push_back(word);
    return;
  }
  // Leaf commands take no positional arguments (cobra.NoArgs).
  Fail("unknown command \"" + word + "\" for \"" + CommandPath() + "\"");
}

void Parser::Run() {
  bool only_words = false;
  while (next < args.size()) {
    const std::string token = args[next++];
    if (!only_words && token == "--") {
      only_words = true;
    } else if (!only_words && token.rfind("--", 0) == 0) {
      HandleLongFlag(token);
    } else if (!only_words && token.size() > 1 && token[0] == '-') {
      HandleShortFlag(token);
    } else {
      HandleWord(token);
    }
  }
}

}  // namespace

std::string ParsedArgs::Flag(const std::string& name,
                             const std::string& fallback) const {
  auto it = flags.find(name);
  return it == flags.end() ? fallback : it->second;
}

bool IsKnownCommand(const std::string& command) {
  static const std::set<std::string> known = {
      "version",         "config",          "serve",   "doctor",
      "probe",           "verify-key",      "benchmark", "rotation-plan",
      "verify-rotation", "retire-versions", "restore-versions",
      "policy",          "init",            "completion", "help"};
  return known.count(command) != 0;
}

ParsedArgs ParseArgs(int argc, const char* const* argv) {
  Parser parser;
  for (int i = 1; i < argc; ++i) parser.args.emplace_back(argv[i]);
  parser.Run();
  return std::move(parser.out);
}

}  // namespace kmsfleet::fake
