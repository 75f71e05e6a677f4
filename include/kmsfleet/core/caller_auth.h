// Who may call which method of the agent (architecture.md §7, issue 8 §3).
//
// A remote caller is known only by the certificate it presented on the
// cluster listener, which chains to the fleet CA. Two kinds of identity:
//   - a member: some SAN equals the name of a member of the election;
//   - an operator: some SAN is the URI
//     spiffe://<operator trust domain>/kmsfleet/operator/<name>.
// A certificate that is both is refused for everything, so that a node
// certificate can never act as an operator nor an operator's as a node.
// Callers on the local unix socket are let in by the socket's file mode.
//
// Pure: the shells extract the SANs and carry out the decision.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_CALLER_AUTH_H_
#define KMSFLEET_CORE_CALLER_AUTH_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace kmsfleet {

enum class CallerKind {
  kLocal,      // the unix socket (or an explicitly insecure loopback port)
  kMember,     // a member's node certificate
  kOperator,   // an operator certificate
  kUnknown,    // a verified certificate that names neither
  kAmbiguous,  // a certificate that names both, or two members
  kAnonymous,  // no verified certificate at all
};

std::string_view CallerKindName(CallerKind kind);

struct Caller {
  CallerKind kind = CallerKind::kAnonymous;
  // The member's node name or the operator's name; "" otherwise.
  std::string name{};
  // Every SAN of the certificate, comma-separated, for log lines.
  std::string certified{};
};

// The operator's SPIFFE-style URI prefix in `trust_domain`.
std::string OperatorUriPrefix(std::string_view trust_domain);

// True if `trust_domain` is a valid trust domain: 1-255 bytes of lower-case
// letters, digits, '.', '-' and '_'.
bool IsValidTrustDomain(std::string_view trust_domain);

// Classifies a verified certificate's subject alternative names.
Caller ClassifyCertificate(const std::vector<std::string>& sans,
                           const std::vector<std::string>& members,
                           std::string_view operator_trust_domain);

// How the table below treats a gRPC method.
enum class MethodClass {
  kRead,          // state, operations, health, Fleet.GetLeader: both kinds
  kDisruptive,    // Stage, Preflight, Swap, Rollback: both (the fence decides)
  kPeer,          // kmsfleet.v1.Peer/*: members only
  kOperatorOnly,  // Fleet.ProposePlan (changes the plan): operators only
  kUnlisted,      // anything else: refused
};

// `method` is gRPC's full name, e.g. "/kmsfleet.v1.Agent/Swap".
MethodClass ClassOfMethod(std::string_view method);

// Decides whether `caller` may call `method`. Errors: PermissionDenied with
// reason UNKNOWN_CALLER, AMBIGUOUS_CALLER, OPERATOR_ONLY, MEMBER_ONLY or
// METHOD_NOT_ALLOWED; Unauthenticated (UNKNOWN_CALLER) without a
// certificate. The message names the caller and the method.
absl::Status AuthorizeCall(std::string_view method, const Caller& caller);

// Decides whether `caller`, already let in by AuthorizeCall, may ask a
// hand-off query (Peer.Release). A released answer binds the node asked: it
// then refuses the coordinator's swaps at or below that fence. Only the
// coordinator asks, and only a voter can coordinate, so a learner's
// certificate may not keep a step refused by asking first. Errors:
// PermissionDenied with reason VOTER_ONLY, naming the caller.
absl::Status AuthorizeHandoffQuery(const Caller& caller, const std::vector<std::string>& voters);

// Whether `reason` is one AuthorizeCall or AuthorizeHandoffQuery refuses
// a caller with: it says who called, nothing of what was asked.
bool IsCallerRefusal(std::string_view reason);

// A gRPC peer address ("ipv4:10.0.0.1:41234", "ipv6:[::1]:41234") without
// its port, which changes with every connection; one without a numeric
// port ("unix:/run/kmsfleet/agent.sock", "") as it is.
std::string PeerHost(std::string_view peer);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_CALLER_AUTH_H_
