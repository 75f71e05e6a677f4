// kmsfleetctl's fleet plan commands, through the coordinator's Fleet API
// (docs/cli.md, docs/runbooks/): upgrade, rollback, pause, resume, abort,
// ack-break-glass, plan, watch and history. Any agent may be asked: a
// follower's answer names the coordinator, which is asked once more when
// the TLS flags allow it.
// Thread-compatible.
#ifndef KMSFLEET_CLI_FLEET_COMMANDS_H_
#define KMSFLEET_CLI_FLEET_COMMANDS_H_

#include <chrono>
#include <string>
#include <vector>

#include "cli/plan_commands.h"

namespace CLI {
class App;
}

namespace kmsfleet {

struct FleetFlags {
  std::string agent = "unix:/run/kmsfleet/agent.sock";
  FleetTls tls;
  std::string output = "table";
  // upgrade
  std::string to, artifact, checksums, signature, policy, changelog;
  std::string image, image_ref;  // static-pod nodes (issue 10)
  std::string soak = "0s", stabilization;
  int parity_observations = 0;  // 0: the plan's default (3)
  std::vector<std::string> acknowledge, order;
  bool auto_rollback = false;
  bool dry_run = false;
  bool watch = false;
  // upgrade: --artifact/--checksums/--signature name paths on every node,
  // as before uploads existed; otherwise a local file is uploaded.
  bool remote_paths = false;
  std::string nonce;  // ack-break-glass
  // watch: a stream without a view this long is taken for dead (the agent
  // sends one every second). Not a flag; tests shorten it.
  std::chrono::milliseconds watch_silence{10000};
};

// Adds the commands to `app`; each returned command is one of them.
std::vector<CLI::App*> AddFleetCommands(CLI::App& app, FleetFlags& flags);

// Runs the parsed command `command` (one of AddFleetCommands'). Exit codes:
// 0 done (watch: the plan completed or rolled back); 1 refused, or the
// plan stopped (Halted, BreakGlass, Aborted): the reason is printed in
// brackets; 2 usage errors (a bad flag value, an unreadable file);
// 3 no agent answered.
int RunFleetCommand(const CLI::App& command, const FleetFlags& flags);

// `plan commit` takes --agent, --output and the TLS flags both after
// `commit` (its own, in `commit_flags`) and before it (`plan`'s, in
// `plan_flags`, which AddFleetCommands binds). Copies into `commit_flags`
// each one given only before `commit`. Errors: InvalidArgument
// INVALID_CONFIG naming the flag when it is given on both sides with
// different values. `plan` is the parsed `plan` command.
absl::Status ResolvePlanCommitFlags(const CLI::App& plan, const FleetFlags& plan_flags,
                                    PlanCommitFlags& commit_flags);

// Parses "90s", "5m", "1h", "1500ms" or a bare number of seconds into
// milliseconds. Errors: InvalidArgument INVALID_CONFIG naming `flag`.
absl::StatusOr<int64_t> ParseDurationFlag(const std::string& flag, const std::string& text);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_FLEET_COMMANDS_H_
