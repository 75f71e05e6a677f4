// kmsfleet_scenarios: replays scripted election scenarios and compares
// each command's events with the transcript checked in below it.
//   kmsfleet_scenarios FILE...            what CI runs; exit 1 on a difference
//   kmsfleet_scenarios --rewrite FILE...  write the actual events back
// A file is blocks of a command line, a "----" line and the expected
// events, separated by blank lines; lines starting with '#' are comments.
// Only commit a rewritten transcript whose every changed line you can
// explain (style.md §13).
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "scenario.h"
#include "scenario_file.h"

namespace {

using kmsfleet::sim::Block;

// Returns true when every transcript matched (or was rewritten).
bool RunFile(const std::string& path, bool rewrite) {
  std::ifstream in(path);
  if (!in) {
    std::cerr << path << ": cannot be read\n";
    return false;
  }
  std::vector<Block> blocks = kmsfleet::sim::ParseScenario(in);
  kmsfleet::sim::ScenarioWorld world;
  std::ostringstream rewritten;
  bool ok = true;
  for (const Block& b : blocks) {
    for (const std::string& c : b.comments) rewritten << c << "\n";
    if (b.command.empty()) {
      if (!b.comments.empty()) rewritten << "\n";
      continue;
    }
    std::string actual = world.Run(b.command);
    rewritten << b.command << "\n----\n" << actual << "\n";
    if (!rewrite && actual != b.expected) {
      std::cerr << path << ":" << b.line << ": " << b.command << "\n--- expected\n"
                << b.expected << "--- actual\n" << actual;
      ok = false;
    }
  }
  if (rewrite) {
    std::string text = rewritten.str();
    while (text.size() > 1 && text.substr(text.size() - 2) == "\n\n") text.pop_back();
    std::ofstream(path) << text;
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  bool rewrite = false;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--rewrite") {
      rewrite = true;
    } else {
      files.push_back(arg);
    }
  }
  if (files.empty()) {
    std::cerr << "usage: " << argv[0] << " [--rewrite] SCENARIO_FILE...\n";
    return 2;
  }
  bool ok = true;
  for (const std::string& f : files) ok = RunFile(f, rewrite) && ok;
  if (ok) std::cout << files.size() << " scenario file(s) " << (rewrite ? "rewritten" : "match") << "\n";
  return ok ? 0 : 1;
}
