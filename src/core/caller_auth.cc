#include "kmsfleet/core/caller_auth.h"

#include <algorithm>
#include <array>
#include <utility>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxOperatorNameBytes = 128;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '-' || c == '_';
}

// The operator name in `san`, or "" when `san` is no operator URI.
std::string OperatorNameOf(const std::string& san, const std::string& prefix) {
  if (san.size() <= prefix.size() || san.compare(0, prefix.size(), prefix) != 0) return "";
  std::string name = san.substr(prefix.size());
  if (name.size() > kMaxOperatorNameBytes || !std::all_of(name.begin(), name.end(), IsNameChar)) {
    return "";
  }
  return name;
}

// Every method the agent serves remotely, and its class. Anything not
// listed is refused, so a new RPC must be placed here before it is reachable.
constexpr std::array<std::pair<std::string_view, MethodClass>, 24> kMethods = {{
    {"/kmsfleet.v1.Agent/GetNodeState", MethodClass::kRead},
    {"/kmsfleet.v1.Agent/GetOperation", MethodClass::kRead},
    {"/kmsfleet.v1.Agent/WatchOperation", MethodClass::kRead},
    {"/kmsfleet.v1.Agent/Stage", MethodClass::kDisruptive},
    {"/kmsfleet.v1.Agent/Preflight", MethodClass::kDisruptive},
    {"/kmsfleet.v1.Agent/Swap", MethodClass::kDisruptive},
    {"/kmsfleet.v1.Agent/Rollback", MethodClass::kDisruptive},
    {"/kmsfleet.v1.Agent/RestartApiServer", MethodClass::kDisruptive},
    {"/kmsfleet.v1.Fleet/GetLeader", MethodClass::kRead},
    {"/kmsfleet.v1.Fleet/ProposePlan", MethodClass::kOperatorOnly},
    {"/kmsfleet.v1.Fleet/GetPlan", MethodClass::kRead},
    {"/kmsfleet.v1.Fleet/WatchPlan", MethodClass::kRead},
    {"/kmsfleet.v1.Fleet/ListPlans", MethodClass::kRead},
    {"/kmsfleet.v1.Fleet/StartUpgrade", MethodClass::kOperatorOnly},
    {"/kmsfleet.v1.Fleet/CommandPlan", MethodClass::kOperatorOnly},
    {"/kmsfleet.v1.Fleet/UploadArtifact", MethodClass::kOperatorOnly},
    // Agents fetch uploads with their member certificate; an operator may
    // read back what it sent.
    {"/kmsfleet.v1.Fleet/FetchArtifact", MethodClass::kRead},
    {"/kmsfleet.v1.Peer/Send", MethodClass::kPeer},
    {"/kmsfleet.v1.Peer/Release", MethodClass::kPeer},
    {"/grpc.health.v1.Health/Check", MethodClass::kRead},
    {"/grpc.health.v1.Health/Watch", MethodClass::kRead},
    {"/grpc.health.v1.Health/List", MethodClass::kRead},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", MethodClass::kRead},
    {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", MethodClass::kRead},
}};

absl::Status Refuse(absl::StatusCode code, const char* reason, std::string_view method,
                    const Caller& caller, std::string_view why) {
  std::string who = std::string(CallerKindName(caller.kind)) +
                    (caller.name.empty() ? "" : " " + caller.name);
  return MakeError(code, reason,
                   std::string(method) + " refused for " + who + " (certificate names " +
                       (caller.certified.empty() ? "nothing" : caller.certified) +
                       "): " + std::string(why),
                   {{"method", std::string(method)},
                    {"caller_kind", std::string(CallerKindName(caller.kind))},
                    {"caller", caller.name},
                    {"certified", caller.certified}});
}

}  // namespace

std::string_view CallerKindName(CallerKind kind) {
  switch (kind) {
    case CallerKind::kLocal: return "local";
    case CallerKind::kMember: return "member";
    case CallerKind::kOperator: return "operator";
    case CallerKind::kUnknown: return "unknown";
    case CallerKind::kAmbiguous: return "ambiguous";
    case CallerKind::kAnonymous: return "anonymous";
  }
  return "unknown";
}

std::string OperatorUriPrefix(std::string_view trust_domain) {
  return "spiffe://" + std::string(trust_domain) + "/kmsfleet/operator/";
}

bool IsValidTrustDomain(std::string_view td) {
  return !td.empty() && td.size() <= 255 &&
         std::all_of(td.begin(), td.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '-' || c == '_';
         });
}

Caller ClassifyCertificate(const std::vector<std::string>& sans,
                           const std::vector<std::string>& members,
                           std::string_view operator_trust_domain) {
  Caller caller;
  std::string member, operator_name;
  // A node speaks only for itself: a certificate naming two members could
  // vote twice in a term, once under each name.
  bool two_members = false;
  std::string prefix = OperatorUriPrefix(operator_trust_domain);
  for (const std::string& san : sans) {
    if (!caller.certified.empty()) caller.certified += ",";
    caller.certified += san.substr(0, 253);
    if (std::find(members.begin(), members.end(), san) != members.end()) {
      if (member.empty()) member = san;
      two_members = two_members || san != member;
    }
    if (operator_name.empty() && IsValidTrustDomain(operator_trust_domain)) {
      operator_name = OperatorNameOf(san, prefix);
    }
  }
  if (sans.empty()) {
    caller.kind = CallerKind::kAnonymous;
  } else if ((!member.empty() && !operator_name.empty()) || two_members) {
    caller.kind = CallerKind::kAmbiguous;
  } else if (!member.empty()) {
    caller.kind = CallerKind::kMember;
    caller.name = member;
  } else if (!operator_name.empty()) {
    caller.kind = CallerKind::kOperator;
    caller.name = operator_name;
  } else {
    caller.kind = CallerKind::kUnknown;
  }
  return caller;
}

MethodClass ClassOfMethod(std::string_view method) {
  for (const auto& [name, cls] : kMethods) {
    if (name == method) return cls;
  }
  return MethodClass::kUnlisted;
}

absl::Status AuthorizeCall(std::string_view method, const Caller& caller) {
  MethodClass cls = ClassOfMethod(method);
  if (cls == MethodClass::kUnlisted) {
    return Refuse(absl::StatusCode::kPermissionDenied, reason::kMethodNotAllowed, method,
                  caller, "the method is not in the agent's authorisation table");
  }
  switch (caller.kind) {
    case CallerKind::kLocal:
      return absl::OkStatus();
    case CallerKind::kAnonymous:
      return Refuse(absl::StatusCode::kUnauthenticated, reason::kUnknownCaller, method,
                    caller, "no verified client certificate");
    case CallerKind::kUnknown:
      return Refuse(absl::StatusCode::kPermissionDenied, reason::kUnknownCaller, method,
                    caller, "the certificate names no member and no operator");
    case CallerKind::kAmbiguous:
      return Refuse(absl::StatusCode::kPermissionDenied, reason::kAmbiguousCaller, method,
                    caller, "the certificate names both a member and an operator, or two members");
    case CallerKind::kMember:
      if (cls == MethodClass::kOperatorOnly) {
        return Refuse(absl::StatusCode::kPermissionDenied, reason::kOperatorOnly, method,
                      caller, "only an operator certificate may change the plan");
      }
      return absl::OkStatus();
    case CallerKind::kOperator:
      if (cls == MethodClass::kPeer) {
        return Refuse(absl::StatusCode::kPermissionDenied, reason::kMemberOnly, method,
                      caller, "only members speak in the election");
      }
      return absl::OkStatus();
  }
  return Refuse(absl::StatusCode::kPermissionDenied, reason::kUnknownCaller, method, caller,
                "unclassified caller");
}

absl::Status AuthorizeHandoffQuery(const Caller& caller, const std::vector<std::string>& voters) {
  if (caller.kind == CallerKind::kLocal) return absl::OkStatus();
  if (caller.kind == CallerKind::kMember &&
      std::find(voters.begin(), voters.end(), caller.name) != voters.end()) {
    return absl::OkStatus();
  }
  return Refuse(absl::StatusCode::kPermissionDenied, reason::kVoterOnly,
                "/kmsfleet.v1.Peer/Release", caller,
                "only a voter can coordinate, so only a voter asks for a hand-off");
}

bool IsCallerRefusal(std::string_view reason) {
  return reason == reason::kUnknownCaller || reason == reason::kAmbiguousCaller ||
         reason == reason::kMemberOnly || reason == reason::kVoterOnly ||
         reason == reason::kOperatorOnly || reason == reason::kMethodNotAllowed;
}

std::string PeerHost(std::string_view peer) {
  const size_t colon = peer.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == peer.size() ||
      peer.find_first_not_of("0123456789", colon + 1) != std::string_view::npos) {
    return std::string(peer);
  }
  return std::string(peer.substr(0, colon));
}

}  // namespace kmsfleet
