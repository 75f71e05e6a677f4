#include "daemon/sd_notifier.h"

#include "kmsfleet/node/clock.h"

#include <grpc/grpc.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <vector>

#include "kmsfleet/core/service_notify.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/v1/agent.grpc.pb.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"

namespace kmsfleet {
namespace {

using Millis = std::chrono::milliseconds;

// A call the server answered, whatever the answer: only a transport
// failure or a missed deadline says that nobody is there.
bool Answered(const grpc::Status& s) {
  return s.error_code() != grpc::StatusCode::UNAVAILABLE &&
         s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
         s.error_code() != grpc::StatusCode::CANCELLED;
}

// A channel with a connection of its own: a probe over it proves the
// listener still accepts, not only that an old connection still answers.
std::shared_ptr<grpc::Channel> FreshChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

ServiceNotifier::ServiceNotifier(ServiceNotifierOptions options)
    : options_(std::move(options)) {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_ = std::chrono::microseconds(usec);
}

ServiceNotifier::~ServiceNotifier() { StopThread(); }

void ServiceNotifier::Notify(const std::string& message) {
  // Outside systemd there is no socket; that is not an error.
  sd_notify(0, message.c_str());
}

void ServiceNotifier::Ready() {
  Round round = Probe(options_.status_period);
  Record(round);
  last_status_ = ServiceStatusText(options_.mode, round.view, round.election_answered);
  Notify("READY=1\nSTATUS=" + last_status_);
  if (watchdog_.count() > 0) {
    Log(LogLevel::kInfo, "systemd watchdog on",
        {{"node", options_.node},
         {"interval_ms", std::to_string(std::chrono::duration_cast<Millis>(watchdog_).count())}});
  }
  thread_ = std::thread([this] { Loop(); });
}

void ServiceNotifier::Stopping() {
  StopThread();
  Notify("STOPPING=1\nSTATUS=stopping");
}

void ServiceNotifier::StopThread() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

ServiceNotifier::Round ServiceNotifier::Probe(Millis deadline) {
  Round round;
  std::shared_ptr<grpc::Channel> channel = FreshChannel(options_.agent_target);
  {
    auto stub = v1::Agent::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    v1::GetOperationRequest request;  // no id: refused at once, by a server thread
    v1::Operation reply;
    round.agent_answered = Answered(stub->GetOperation(&context, request, &reply));
  }
  if (options_.cluster) {
    auto stub = v1::Fleet::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    v1::LeaderView view;
    grpc::Status s = stub->GetLeader(&context, v1::GetLeaderRequest(), &view);
    round.election_answered = s.ok();
    if (s.ok()) round.view = std::move(view);
    else round.view = v1::LeaderView();  // a member, whose election did not answer
  }
  return round;
}

int64_t ServiceNotifier::Record(const Round& round) {
  const int64_t now = SteadyClock().NowSteadyMillis();
  if (round.agent_answered) agent_ms_ = now;
  if (round.election_answered) election_ms_ = now;
  counter_values_.resize(options_.counters.size(), 0);
  counter_ms_.resize(options_.counters.size(), 0);
  for (size_t i = 0; i < options_.counters.size(); ++i) {
    const uint64_t value = options_.counters[i].read();
    // The first reading counts as progress: the loop was just started.
    if (counter_ms_[i] == 0 || value != counter_values_[i]) counter_ms_[i] = now;
    counter_values_[i] = value;
  }
  return now;
}

void ServiceNotifier::Loop() {
  const int64_t interval_ms = std::chrono::duration_cast<Millis>(watchdog_).count();
  Millis period = options_.status_period;
  if (interval_ms > 0) period = std::min(period, Millis(std::max<int64_t>(interval_ms / 4, 1)));
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
    lock.unlock();
    Round round = Probe(period);
    const int64_t now = Record(round);
    std::string status = ServiceStatusText(options_.mode, round.view, round.election_answered);
    if (status != last_status_) Notify("STATUS=" + status);
    last_status_ = std::move(status);
    if (interval_ms > 0) {
      std::vector<LoopProgress> loops{{"agent_api", agent_ms_}};
      if (options_.cluster) loops.push_back({"election", election_ms_});
      for (size_t i = 0; i < options_.counters.size(); ++i) {
        loops.push_back({options_.counters[i].name, counter_ms_[i]});
      }
      WatchdogDecision d = DecideWatchdogPing(now, interval_ms, loops);
      // Every skipped ping is logged: there are a few at most before
      // systemd's timer runs out, and they say which loop was stuck.
      if (d.ping) Notify("WATCHDOG=1");
      else Log(LogLevel::kWarn, "systemd watchdog ping skipped",
               {{"node", options_.node}, {"error", d.why}});
    }
    lock.lock();
  }
}

}  // namespace kmsfleet
