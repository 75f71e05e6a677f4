// `kmsfleetctl node stage|preflight|swap|rollback|operation`: drive one
// node's executor by hand (docs/cli.md, docs/node-swap.md).
#ifndef KMSFLEET_CLI_NODE_COMMANDS_H_
#define KMSFLEET_CLI_NODE_COMMANDS_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "cli/plan_commands.h"

namespace CLI {
class App;
}

namespace kmsfleet {

struct NodeFlags {
  std::string agent = "unix:/run/kmsfleet/agent.sock";
  std::string version, source, checksums, signature, artifact_name;
  std::string image, image_ref;  // static-pod nodes (issue 10)
  std::string expected_key_id_hash, operation_id, of_operation_id;
  std::string expected_staged_digest;  // swap: the staged digest to insist on
  std::vector<std::string> acknowledge;  // swap: STATE_CHECKPOINT_NOT_CURRENT
  int64_t stabilization_ms = 0;
  std::string fence;  // TERM/INDEX/NODE from `plan commit`; "" for none
  int timeout_ms = 600000;  // the whole command, including the watch
  // Set by RunNodeCommand from timeout_ms: every call of the command ends
  // by then (found in review: each call had timeout_ms of its own).
  std::chrono::system_clock::time_point deadline{};
  bool no_wait = false;
  // Every subcommand prints its result as JSON, the only output it has:
  // --output takes "json" alone, for scripts that pass it everywhere.
  std::string output = "json";
  FleetTls tls;  // for a TCP agent (the cluster listener)
};

// Adds the `node` subcommand tree to `app`; returns it.
CLI::App* AddNodeCommands(CLI::App& app, NodeFlags& flags);

// Runs the parsed `node` subcommand. Exit codes: 0 success (staged,
// preflight passed, operation Stable); 1 the node refused or the operation
// ended otherwise (stderr: "[REASON] message"); 2 usage (a bad --fence, a
// missing TLS flag); 3 the agent could not be reached ([AGENT_UNREACHABLE])
// or answered UNAVAILABLE or UNIMPLEMENTED; 4 the operation still runs when
// --timeout-ms ends the wait for it, or a swap's or rollback's start call
// got no answer within it (the operation may have started).
int RunNodeCommand(const CLI::App& node, const NodeFlags& flags);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_NODE_COMMANDS_H_
