// Failover and idle load of the election on loopback with default timings
// (issue 3 benchmark), and the hand-over of a coordinator stopped with
// SIGTERM (issue 11: leadership transfer) measured in the same run, next
// to the crash (SIGKILL) figure. Figures are printed next to, and as
// ratios of, the configured election timeout; this program asserts
// nothing.
//   kmsfleet_failover_bench [--rounds 50] [--idle-seconds 10]
// KMSFLEET_BENCH_SAMPLES=1 prints every sample; KMSFLEET_BENCH_SLOW_MS=N
// prints the agents' log tails after each round slower than N ms.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "election_cluster.h"

namespace kmsfleet::testing {
namespace {

using Clock = std::chrono::steady_clock;

bool ProposeOn(ElectionCluster& c, int i, const std::string& payload) {
  auto stub = c.LocalFleet(i);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::ProposePlanRequest request;
  request.set_payload(payload);
  v1::ProposePlanReply reply;
  return stub->ProposePlan(&context, request, &reply).ok();
}

// For diagnosis: each agent's last log lines after a slow round, to read
// the role changes and refusals that made it slow.
void PrintLogTails(ElectionCluster& c, int round, double ms) {
  std::printf("slow round %d: %.0f ms; the agents' last log lines:\n", round, ms);
  for (int i = 0; i < c.size(); ++i) {
    std::string log = c.Log(i);
    size_t from = log.size() > 2500 ? log.size() - 2500 : 0;
    std::printf("--- %s\n%s\n", c.Name(i).c_str(), log.substr(from).c_str());
  }
}

struct FailoverRound {
  double ms = -1;        // signal -> new leader committed; -1 if not in 10 s
  uint64_t elections = 0;  // terms the failover took: 1 unless a vote split
};

// Times one failover: from `signal_number` (SIGKILL: a crash; SIGTERM: a
// stop, which hands leadership over first) to the leader until a new
// leader has committed a plan change.
FailoverRound OneFailover(ElectionCluster& c, int round, int signal_number) {
  std::vector<int> all;
  for (int i = 0; i < c.size(); ++i) all.push_back(i);
  int leader = c.WaitForLeader(all);
  if (leader < 0) return {};
  uint64_t old_term = c.View(leader)->term();
  Clock::time_point t0 = Clock::now();
  if (signal_number == SIGKILL) {
    c.Kill(leader);
  } else {
    c.Signal(leader, signal_number);  // it exits once it handed over
  }
  FailoverRound out;
  double& elapsed = out.ms;
  while (Clock::now() - t0 < std::chrono::seconds(10) && elapsed < 0) {
    for (int i : all) {
      if (i == leader) continue;
      std::optional<v1::LeaderView> v = c.View(i);
      if (!v || v->role() != "Leader" || v->term() <= old_term) continue;
      if (ProposeOn(c, i, "round-" + std::to_string(round))) {
        elapsed = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        out.elections = v->term() - old_term;
        break;
      }
    }
    if (elapsed < 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (const char* slow = std::getenv("KMSFLEET_BENCH_SLOW_MS");
      slow != nullptr && out.ms > std::atof(slow)) {
    PrintLogTails(c, round, out.ms);
  }
  c.WaitExit(leader, std::chrono::seconds(10));
  c.Start(leader);
  return out;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct Figures {
  std::vector<double> samples;
  int failed = 0;
  int split = 0;
  double p50 = 0, p99 = 0, max = 0;
  void Add(const FailoverRound& one) {
    if (one.ms < 0) {
      ++failed;
    } else {
      samples.push_back(one.ms);
      split += one.elections > 1;
    }
  }
  bool Summarize() {
    if (samples.empty()) return false;
    if (std::getenv("KMSFLEET_BENCH_SAMPLES")) {
      std::vector<double> sorted = samples;
      std::sort(sorted.begin(), sorted.end());
      for (double ms : sorted) std::printf("%.0f ", ms);
      std::printf("\n");
    }
    p50 = Percentile(samples, 0.5);
    p99 = Percentile(samples, 0.99);
    max = *std::max_element(samples.begin(), samples.end());
    return true;
  }
};

// Alternates crashes and stops of the leader of one group, so that both
// figures come from the same agents, machine load and run.
void Failover(int rounds, double timeout_ms) {
  TempDir dir;
  ElectionCluster c(dir, 3);
  c.StartAll();
  Figures kill;
  Figures term;
  for (int r = 0; r < rounds; ++r) {
    kill.Add(OneFailover(c, 2 * r, SIGKILL));
    term.Add(OneFailover(c, 2 * r + 1, SIGTERM));
  }
  if (!kill.Summarize() || !term.Summarize()) {
    std::cout << "failover: no successful round\n";
    return;
  }
  std::printf(
      "failover, 3 voters, %d SIGKILLs (%d without a new commit in 10 s):\n"
      "  kill -> new leader committed a plan change: p50 %.0f ms, p99 %.0f ms, max %.0f ms\n"
      "  configured election timeout %.0f ms (randomized %.0f-%.0f ms):"
      " p50 = %.2fx, p99 = %.2fx of it\n"
      "  failovers that took more than one election (a split vote): %d\n",
      rounds, kill.failed, kill.p50, kill.p99, kill.max, timeout_ms, timeout_ms,
      1.9 * timeout_ms, kill.p50 / timeout_ms, kill.p99 / timeout_ms, kill.split);
  std::printf(
      "hand-over, same group, %d SIGTERMs (%d without a new commit in 10 s):\n"
      "  SIGTERM -> new leader committed a plan change: p50 %.0f ms, p99 %.0f ms,"
      " max %.0f ms (goal: under 100 ms)\n"
      "  SIGTERM / SIGKILL: p50 %.3f, p99 %.3f; rounds that took more than one"
      " election: %d\n",
      rounds, term.failed, term.p50, term.p99, term.max, term.p50 / kill.p50,
      term.p99 / kill.p99, term.split);
}

double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(f);  // utime, stime
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

void Idle(int seconds, double heartbeat_ms) {
  TempDir dir;
  ElectionCluster c(dir, 5);
  c.StartAll();
  std::vector<int> all = {0, 1, 2, 3, 4};
  if (c.WaitForLeader(all) < 0) {
    std::cout << "idle: no leader\n";
    return;
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto snapshot = [&](uint64_t& sent, double& cpu) {
    sent = 0;
    cpu = 0;
    for (int i : all) {
      std::optional<v1::LeaderView> v = c.View(i);
      if (v) sent += v->messages_sent();
      cpu += CpuSeconds(c.Pid(i));
    }
  };
  uint64_t sent0 = 0, sent1 = 0;
  double cpu0 = 0, cpu1 = 0;
  snapshot(sent0, cpu0);
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  snapshot(sent1, cpu1);
  double rate = static_cast<double>(sent1 - sent0) / seconds;
  std::printf(
      "idle, 5 voters, %d s: %.0f messages/s for the group (%.1f per heartbeat interval"
      " of %.0f ms; 8 = one APPEND and one answer per follower), CPU %.2f%% of one core"
      " for all 5 agents together\n",
      seconds, rate, rate * heartbeat_ms / 1000.0, heartbeat_ms,
      100.0 * (cpu1 - cpu0) / seconds);
}

}  // namespace
}  // namespace kmsfleet::testing

int main(int argc, char** argv) {
  int rounds = 50;
  int idle_seconds = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--rounds") rounds = std::atoi(argv[i + 1]);
    if (flag == "--idle-seconds") idle_seconds = std::atoi(argv[i + 1]);
  }
  // The timings ElectionCluster writes into every agent's config.
  double timeout_ms = kmsfleet::testing::kElectionTimeoutMs;
  double heartbeat_ms = kmsfleet::testing::kHeartbeatMs;
  kmsfleet::testing::Failover(rounds, timeout_ms);
  kmsfleet::testing::Idle(idle_seconds, heartbeat_ms);
  return 0;
}
