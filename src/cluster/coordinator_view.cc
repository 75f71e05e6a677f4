// Coordinator: what the Fleet API shows of the plan (View, WatchPlan) and
// the history of finished plans, kept by every agent from the committed
// records it sees.
#include "fleet_actions.h"
#include "kmsfleet/cluster/coordinator.h"
#include "kmsfleet/cluster/state_file.h"
#include "kmsfleet/core/plan_history.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/log.h"

namespace kmsfleet {
namespace {

// kMaxPlanHistory plans of at most kMaxPlanBytes each, plus framing.
constexpr size_t kMaxHistoryBytes = (kMaxPlanHistory + 1) * (kMaxPlanBytes + 64);

}  // namespace

void Coordinator::LoadHistory() {
  if (options_.history_path.empty()) return;
  absl::StatusOr<std::optional<std::string>> text =
      ReadStateFile(options_.history_path, kMaxHistoryBytes);
  v1::PlanHistory history;
  if (!text.ok() || (*text && !history.ParseFromString(**text))) {
    // The history decides nothing: say so and start a new one.
    Log(LogLevel::kWarn, "plan history unreadable; starting a new one",
        {{"path", options_.history_path},
         {"error", text.ok() ? "not a PlanHistory" : std::string(text.status().message())}});
    return;
  }
  std::lock_guard lock(mu_);
  history_ = std::move(history);
}

void Coordinator::RecordHistory(const v1::PlanRecord& committed) {
  if (committed.term() == history_term_ && committed.index() == history_index_) return;
  history_term_ = committed.term();
  history_index_ = committed.index();
  std::optional<v1::FleetPlan> plan = FleetPlanIn(committed.payload());
  if (!plan || !IsFinished(plan->phase())) return;
  std::string content;
  {
    std::lock_guard lock(mu_);
    std::optional<v1::PlanHistory> next = RecordFinishedPlan(history_, *plan, kMaxPlanHistory);
    if (!next) return;
    history_ = *std::move(next);
    content = history_.SerializeAsString();
  }
  if (options_.history_path.empty()) return;
  if (absl::Status s = WriteStateFile(options_.history_path, content); !s.ok()) {
    Log(LogLevel::kWarn, "plan history not saved",
        {{"path", options_.history_path}, {"error", std::string(s.message())}});
  }
}

void Coordinator::Publish(const v1::LeaderView& leader, const absl::Status& blocked) {
  v1::PlanView view;
  view.set_coordinator(leader.leader());
  if (std::optional<v1::FleetPlan> plan = FleetPlanIn(leader.committed().payload())) {
    *view.mutable_plan() = *std::move(plan);
  }
  if (!blocked.ok()) {
    view.set_blocked_reason(ReasonOf(blocked));
    view.set_blocked_message(std::string(blocked.message()));
  }
  std::lock_guard lock(mu_);
  v1::PlanView old = view_;
  old.clear_now_unix_ms();
  if (old.SerializeAsString() != view.SerializeAsString()) {
    ++view_version_;
    changed_.notify_all();
  }
  view.set_now_unix_ms(options_.now_unix_ms());
  view_ = std::move(view);
}

v1::PlanView Coordinator::View(uint64_t* version) {
  std::lock_guard lock(mu_);
  if (version != nullptr) *version = view_version_;
  v1::PlanView view = view_;
  view.set_now_unix_ms(options_.now_unix_ms());
  return view;
}

v1::PlanView Coordinator::CoordinatorView() {
  v1::LeaderView leader = node_.View();
  if (leader.role() == "Leader" || leader.leader().empty() || !actions_) return View();
  absl::StatusOr<v1::PlanView> remote = actions_->CoordinatorPlan(leader.leader());
  return remote.ok() ? *remote : View();
}

void Coordinator::WaitForChange(uint64_t version, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  changed_.wait_for(lock, timeout, [&] {
    return stopping_ || watches_ended_ || view_version_ != version;
  });
}

void Coordinator::EndWatches() {
  std::lock_guard lock(mu_);
  watches_ended_ = true;
  changed_.notify_all();
}

bool Coordinator::WatchesEnded() {
  std::lock_guard lock(mu_);
  return watches_ended_ || stopping_;
}

v1::PlanHistory Coordinator::History() {
  std::lock_guard lock(mu_);
  return history_;
}

}  // namespace kmsfleet
