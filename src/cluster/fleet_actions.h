// The coordinator's hands (coordinator.h): kmsfleet.v1.Agent calls to every
// voter over mTLS, turning the plan machine's actions into Agent commands
// and their answers into ActionResults. Every call is blocking and bounded
// by a deadline; following an operation polls until its journal closes.
//
// Thread-safe: stubs are created once; calls may run concurrently.
#ifndef KMSFLEET_CLUSTER_FLEET_ACTIONS_H_
#define KMSFLEET_CLUSTER_FLEET_ACTIONS_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/core/plan_types.h"
#include "kmsfleet/v1/agent.grpc.pb.h"
#include "kmsfleet/v1/agent.pb.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"
#include "kmsfleet/v1/peer.pb.h"

namespace kmsfleet {

// The most a node's own call_bounds can give one call: beyond what any
// agent config allows (each timeout at most an hour), so a member that
// reports more is not waited for longer than that.
inline constexpr std::chrono::hours kMaxPeerCallBound{3};

class FleetActions {
 public:
  // `addresses`: each voter's cluster listener; `credentials`: the member
  // certificate. Each voter's certificate must name the voter.
  FleetActions(const std::map<std::string, std::string>& addresses,
               std::shared_ptr<grpc::ChannelCredentials> credentials,
               std::chrono::milliseconds call_timeout,
               std::chrono::milliseconds observe_timeout,
               std::chrono::milliseconds stage_timeout,
               std::chrono::milliseconds preflight_timeout,
               const PeerKeepalive& keepalive = {});

  // Agent.GetNodeState on `node`, waiting up to `observe_timeout`. Its
  // answer also says whether later calls to `node` keep alive
  // (NodeStubs). Errors:
  // Unavailable AGENT_UNREACHABLE naming the node, or the agent's own
  // refusal. The state's call_bounds are kept for `node`: each later
  // stage or preflight of it waits for the larger of this coordinator's
  // timeout and the node's own (kMaxPeerCallBound at most). An
  // observation keeps `observe_timeout`: a round waits for every voter.
  absl::StatusOr<v1::NodeState> Observe(const std::string& node);

  // Fleet.GetPlan on `node` (the coordinator), as a member: what a
  // follower shows an operator, since only the coordinator knows why the
  // plan waits.
  absl::StatusOr<v1::PlanView> CoordinatorPlan(const std::string& node);

  // Agent.Preflight{installed_only} on `node` for an upgrade's dry run:
  // rotation-plan of what it runs now and whether it keeps that release,
  // nothing staged. Waits up to the preflight bound, at most `cap`, and is
  // cancelled once `keep_going()` turns false. Errors: AGENT_UNREACHABLE
  // naming the node, or the agent's own refusal.
  absl::StatusOr<v1::PreflightResponse> PreflightInstalled(
      const std::string& node, std::chrono::milliseconds cap,
      const std::function<bool()>& keep_going);

  // Carries out a kStage, kPreflight, kSwap, kRollbackNode or
  // kRestartApiServer action and returns its result. A stage, a preflight
  // and a restart are each one call (the restart under `fence`), cancelled
  // when `keep_going()` turns false. A restart's, swap's or rollback's
  // refusal that says nothing of the command (CommandRefusalForPlan) comes
  // back Unavailable (asked again). A swap or
  // rollback refused STALE_FENCE whose operation exists is followed (it ran
  // before the node's hand-off); one that does not exist comes back
  // STALE_FENCE: no command can ever be admitted under that fence, and the
  // caller must commit a fresh one. `fence` is the committed record that
  // authorises the action (swaps and rollbacks carry it). An operation is
  // followed until it closes, while `keep_going()` says so (else
  // Unavailable: the next coordinator asks again), or until its watch is
  // refused or stays silent (Unavailable with the reason, SetFollowFailed).
  // `settings` gives the artifact sources.
  ActionResult Run(const PlanAction& action, const v1::Fence& fence,
                   const v1::PlanSettings& settings,
                   const std::string& metric_rotation_state,
                   const std::function<bool()>& keep_going);

  // Cancels every call in flight and makes every later one fail at once
  // (CANCELLED or DEADLINE_EXCEEDED). The coordinator's stop: a Stage may
  // otherwise hold it for minutes, a Preflight for twice the doctor
  // timeout, an observation 16 s, past
  // systemd's TimeoutStopSec, before it can hand leadership over.
  void CancelAll();

 private:
  // Unregisters a call's context (CancelAll) and deletes it.
  struct CallEnd {
    FleetActions* owner;
    void operator()(grpc::ClientContext* context) const;
  };
  using CallContext = std::unique_ptr<grpc::ClientContext, CallEnd>;

  ActionResult Stage(const PlanAction& action, const v1::Fence& fence,
                     const v1::PlanSettings& settings,
                     const std::function<bool()>& keep_going);
  ActionResult Preflight(const PlanAction& action, const v1::Fence& fence,
                         const std::string& metric_state,
                         const std::function<bool()>& keep_going);
  ActionResult Operate(const PlanAction& action, const v1::Fence& fence,
                       const std::function<bool()>& keep_going);
  ActionResult RestartApiServer(const PlanAction& action, const v1::Fence& fence,
                                const std::function<bool()>& keep_going);
  ActionResult Follow(const PlanAction& action, v1::Operation operation,
                      const std::function<bool()>& keep_going);
  v1::Agent::StubInterface* Stub(const std::string& node);
  // The larger of `own` and the bound `node` last reported in `field`.
  std::chrono::milliseconds Bound(const std::string& node, std::chrono::milliseconds own,
                                  int64_t (v1::CallBounds::*field)() const);
  // A call context whose deadline is `timeout` (call_timeout_) from now,
  // registered for CancelAll while it lives.
  CallContext Context();
  CallContext Context(std::chrono::milliseconds timeout);

  // One voter's stubs. Its Agent stub without keepalive, then with it: a
  // node is called on the second once its NodeState has call_bounds, i.e.
  // it runs a kmsfleetd whose listener takes the pings
  // (AcceptPeerKeepalive); an older one closes a pinged connection
  // (too_many_pings), failing the long calls keepalive guards.
  struct NodeStubs {
    std::unique_ptr<v1::Agent::StubInterface> agent;
    std::unique_ptr<v1::Agent::StubInterface> agent_kept_alive;
    std::unique_ptr<v1::Fleet::StubInterface> fleet;  // on `agent`'s channel
  };
  const NodeStubs* StubsOf(const std::string& node) const;

  std::map<std::string, NodeStubs> nodes_;
  std::chrono::milliseconds call_timeout_;
  std::chrono::milliseconds observe_timeout_;
  std::chrono::milliseconds stage_timeout_;
  std::chrono::milliseconds preflight_timeout_;
  std::mutex bounds_mu_;
  std::map<std::string, v1::CallBounds> bounds_;  // guarded by bounds_mu_
  std::mutex calls_mu_;
  std::set<grpc::ClientContext*> calls_;  // guarded by calls_mu_
  bool cancelled_ = false;                // guarded by calls_mu_
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_FLEET_ACTIONS_H_
