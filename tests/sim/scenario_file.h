// The scenario transcript format (scenario_main.cc, explore_main.cc): blocks
// of a command line, a "----" line and the expected events, separated by
// blank lines; lines starting with '#' are comments. Internal to tests/sim.
#ifndef KMSFLEET_TESTS_SIM_SCENARIO_FILE_H_
#define KMSFLEET_TESTS_SIM_SCENARIO_FILE_H_

#include <istream>
#include <string>
#include <utility>
#include <vector>

namespace kmsfleet::sim {

struct Block {
  std::vector<std::string> comments;  // verbatim, before the command
  std::string command;
  std::string expected;  // "" when the file has no transcript for it yet
  int line = 0;          // of the command, for messages
};

inline std::vector<Block> ParseScenario(std::istream& in) {
  std::vector<Block> blocks;
  Block current;
  std::string line;
  int number = 0;
  bool in_output = false;
  while (std::getline(in, line)) {
    ++number;
    if (in_output) {
      if (!line.empty()) {
        current.expected += line + "\n";
        continue;
      }
      blocks.push_back(std::move(current));
      current = Block();
      in_output = false;
      continue;
    }
    if (line.empty() || line[0] == '#') {
      // A comment after a command that has no transcript yet starts the
      // next block; blank lines are only separators.
      if (!current.command.empty()) {
        blocks.push_back(std::move(current));
        current = Block();
      }
      if (!line.empty()) current.comments.push_back(line);
    } else if (line == "----" && !current.command.empty()) {
      in_output = true;
    } else if (current.command.empty()) {
      current.command = line;
      current.line = number;
    } else {
      // A command without a transcript, followed by the next command.
      blocks.push_back(std::move(current));
      current = Block();
      current.command = line;
      current.line = number;
    }
  }
  if (!current.command.empty() || !current.comments.empty()) blocks.push_back(current);
  return blocks;
}

}  // namespace kmsfleet::sim

#endif  // KMSFLEET_TESTS_SIM_SCENARIO_FILE_H_
