// Who may call which agent method (issue 8 §3, architecture.md §7).
#include "kmsfleet/core/caller_auth.h"

#include <gtest/gtest.h>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

const std::vector<std::string> kMembers = {"cp-1", "cp-2", "cp-3"};
constexpr char kDomain[] = "fleet.example";
constexpr char kAlice[] = "spiffe://fleet.example/kmsfleet/operator/alice";

Caller Of(std::vector<std::string> sans) {
  return ClassifyCertificate(sans, kMembers, kDomain);
}

TEST(ClassifyCertificateTest, MemberNameMakesAMember) {
  Caller c = Of({"cp-2"});
  EXPECT_EQ(c.kind, CallerKind::kMember);
  EXPECT_EQ(c.name, "cp-2");
}

TEST(ClassifyCertificateTest, OperatorUriInTheTrustDomainMakesAnOperator) {
  Caller c = Of({kAlice});
  EXPECT_EQ(c.kind, CallerKind::kOperator);
  EXPECT_EQ(c.name, "alice");
}

TEST(ClassifyCertificateTest, OtherTrustDomainsAndMalformedUrisAreUnknown) {
  EXPECT_EQ(Of({"spiffe://other.example/kmsfleet/operator/alice"}).kind,
            CallerKind::kUnknown);
  EXPECT_EQ(Of({"spiffe://fleet.example/kmsfleet/operator/"}).kind, CallerKind::kUnknown);
  EXPECT_EQ(Of({"spiffe://fleet.example/kmsfleet/operator/a/b"}).kind,
            CallerKind::kUnknown);
  EXPECT_EQ(Of({"spiffe://fleet.example/kmsfleet/node/cp-1"}).kind, CallerKind::kUnknown);
  EXPECT_EQ(Of({"cp-9"}).kind, CallerKind::kUnknown);
  EXPECT_EQ(Of({}).kind, CallerKind::kAnonymous);
}

TEST(ClassifyCertificateTest, MemberAndOperatorInOneCertificateIsAmbiguous) {
  Caller c = Of({"cp-1", kAlice});
  EXPECT_EQ(c.kind, CallerKind::kAmbiguous);
  EXPECT_EQ(c.certified, std::string("cp-1,") + kAlice);
}

// One host holding such a certificate could vote under both names.
TEST(ClassifyCertificateTest, TwoMembersInOneCertificateIsAmbiguous) {
  Caller c = Of({"cp-1", "localhost", "cp-2"});
  EXPECT_EQ(c.kind, CallerKind::kAmbiguous);
  EXPECT_EQ(ReasonOf(AuthorizeCall("/kmsfleet.v1.Peer/Send", c)), reason::kAmbiguousCaller);
  Caller same = Of({"cp-1", "cp-1"});
  EXPECT_EQ(same.kind, CallerKind::kMember) << "one name twice is still one member";
}

TEST(ClassifyCertificateTest, InvalidTrustDomainNeverMakesAnOperator) {
  EXPECT_EQ(ClassifyCertificate({"spiffe:///kmsfleet/operator/alice"}, kMembers, "").kind,
            CallerKind::kUnknown);
  EXPECT_FALSE(IsValidTrustDomain("Fleet.Example"));
  EXPECT_FALSE(IsValidTrustDomain("a/b"));
  EXPECT_TRUE(IsValidTrustDomain("fleet.example"));
}

struct Case {
  const char* method;
  CallerKind kind;
  const char* reason;  // "" = allowed
};

TEST(AuthorizeCallTest, TableOfMethodsAndKinds) {
  const Case cases[] = {
      {"/kmsfleet.v1.Agent/GetNodeState", CallerKind::kMember, ""},
      {"/kmsfleet.v1.Agent/GetNodeState", CallerKind::kOperator, ""},
      {"/kmsfleet.v1.Agent/WatchOperation", CallerKind::kOperator, ""},
      {"/grpc.health.v1.Health/Check", CallerKind::kOperator, ""},
      {"/kmsfleet.v1.Fleet/GetLeader", CallerKind::kOperator, ""},
      {"/kmsfleet.v1.Agent/Stage", CallerKind::kMember, ""},
      {"/kmsfleet.v1.Agent/Swap", CallerKind::kMember, ""},
      {"/kmsfleet.v1.Agent/Swap", CallerKind::kOperator, ""},
      {"/kmsfleet.v1.Agent/Rollback", CallerKind::kOperator, ""},
      {"/kmsfleet.v1.Agent/RestartApiServer", CallerKind::kMember, ""},
      {"/kmsfleet.v1.Agent/RestartApiServer", CallerKind::kUnknown, reason::kUnknownCaller},
      {"/kmsfleet.v1.Peer/Send", CallerKind::kMember, ""},
      {"/kmsfleet.v1.Peer/Send", CallerKind::kOperator, reason::kMemberOnly},
      {"/kmsfleet.v1.Peer/Release", CallerKind::kOperator, reason::kMemberOnly},
      {"/kmsfleet.v1.Fleet/ProposePlan", CallerKind::kOperator, ""},
      {"/kmsfleet.v1.Fleet/ProposePlan", CallerKind::kMember, reason::kOperatorOnly},
      {"/kmsfleet.v1.Fleet/UploadArtifact", CallerKind::kOperator, ""},
      {"/kmsfleet.v1.Fleet/UploadArtifact", CallerKind::kMember, reason::kOperatorOnly},
      {"/kmsfleet.v1.Fleet/FetchArtifact", CallerKind::kMember, ""},
      {"/kmsfleet.v1.Fleet/FetchArtifact", CallerKind::kUnknown, reason::kUnknownCaller},
      {"/kmsfleet.v1.Agent/Swap", CallerKind::kUnknown, reason::kUnknownCaller},
      {"/kmsfleet.v1.Agent/GetNodeState", CallerKind::kUnknown, reason::kUnknownCaller},
      {"/kmsfleet.v1.Agent/GetNodeState", CallerKind::kAmbiguous, reason::kAmbiguousCaller},
      {"/kmsfleet.v1.Peer/Send", CallerKind::kAmbiguous, reason::kAmbiguousCaller},
      {"/kmsfleet.v1.Agent/Swap", CallerKind::kAnonymous, reason::kUnknownCaller},
      {"/kmsfleet.v1.Agent/Swap", CallerKind::kLocal, ""},
      {"/kmsfleet.v1.Fleet/ProposePlan", CallerKind::kLocal, ""},
      {"/kmsfleet.v1.Agent/Explode", CallerKind::kLocal, reason::kMethodNotAllowed},
      {"/kmsfleet.v1.Agent/Explode", CallerKind::kOperator, reason::kMethodNotAllowed},
  };
  for (const Case& c : cases) {
    Caller caller{.kind = c.kind, .name = "x", .certified = "x"};
    absl::Status s = AuthorizeCall(c.method, caller);
    SCOPED_TRACE(std::string(c.method) + " as " + std::string(CallerKindName(c.kind)));
    if (std::string(c.reason).empty()) {
      EXPECT_TRUE(s.ok()) << s;
    } else {
      EXPECT_EQ(ReasonOf(s), c.reason) << s;
      EXPECT_EQ(MetadataOf(s, "method"), c.method);
      // What the plan takes for "says nothing of the command" (operation_result.h).
      EXPECT_TRUE(IsCallerRefusal(ReasonOf(s)));
    }
  }
}

TEST(AuthorizeCallTest, RefusalNamesTheCallerAndTheMethod) {
  absl::Status s = AuthorizeCall("/kmsfleet.v1.Fleet/ProposePlan", Of({"cp-2"}));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(MetadataOf(s, "caller"), "cp-2");
  EXPECT_EQ(MetadataOf(s, "caller_kind"), "member");
  EXPECT_NE(s.message().find("/kmsfleet.v1.Fleet/ProposePlan refused for member cp-2"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(AuthorizeCall("/kmsfleet.v1.Agent/Swap", Of({})).code(),
            absl::StatusCode::kUnauthenticated);
}

// The refusal log tells senders apart by host: a port changes with every
// connection, and an address without one is kept whole.
TEST(PeerHostTest, DropsOnlyANumericPort) {
  EXPECT_EQ(PeerHost("ipv4:10.0.0.1:41234"), "ipv4:10.0.0.1");
  EXPECT_EQ(PeerHost("ipv6:[::1]:41234"), "ipv6:[::1]");
  EXPECT_EQ(PeerHost("ipv6:[::1]"), "ipv6:[::1]");
  EXPECT_EQ(PeerHost("unix:/run/kmsfleet/agent.sock"), "unix:/run/kmsfleet/agent.sock");
  EXPECT_EQ(PeerHost("ipv4:10.0.0.1:"), "ipv4:10.0.0.1:");
  EXPECT_EQ(PeerHost(""), "");
}

TEST(AuthorizeHandoffQueryTest, OnlyAVoterOrTheLocalSocketMayAsk) {
  const std::vector<std::string> voters = {"cp-1", "cp-2", "cp-3"};
  // cp-4 is a learner: a member, so let in by AuthorizeCall, but no voter.
  Caller learner = ClassifyCertificate({"cp-4"}, {"cp-1", "cp-2", "cp-3", "cp-4"}, kDomain);
  ASSERT_EQ(learner.kind, CallerKind::kMember);
  EXPECT_TRUE(AuthorizeCall("/kmsfleet.v1.Peer/Release", learner).ok());
  absl::Status s = AuthorizeHandoffQuery(learner, voters);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ReasonOf(s), reason::kVoterOnly);
  EXPECT_TRUE(IsCallerRefusal(ReasonOf(s)));
  EXPECT_NE(s.message().find("member cp-4"), std::string_view::npos) << s.message();
  EXPECT_TRUE(AuthorizeHandoffQuery(Of({"cp-2"}), voters).ok());
  EXPECT_TRUE(AuthorizeHandoffQuery(Caller{.kind = CallerKind::kLocal}, voters).ok());
  EXPECT_EQ(ReasonOf(AuthorizeHandoffQuery(Of({kAlice}), voters)), reason::kVoterOnly);
}

}  // namespace
}  // namespace kmsfleet
