// kmsfleetd: the per-node agent. Loads its config, serves kmsfleet.v1.Agent
// and stops cleanly on SIGTERM or SIGINT.
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <prometheus/exposer.h>
#include <iostream>

#include "absl/synchronization/mutex.h"
#include "cli/usage_exit.h"
#include "daemon/agent_config.h"
#include "daemon/agent_metrics.h"
#include "daemon/event_metrics.h"
#include "daemon/failed_start.h"
#include "daemon/agent_server.h"
#include "daemon/cluster_runtime.h"
#include "daemon/sd_notifier.h"
#include "daemon/state_dir_lock.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/apiserver_restart.h"
#include "kmsfleet/node/clock.h"
#include "kmsfleet/node/executor.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/node/static_pod_service.h"
#ifdef KMSFLEETD_CRASH_HOOK
#include "crash_hook.h"  // tests/integration: kmsfleetd_crashtest only
#endif

namespace kmsfleet {
namespace {

// How long running calls may finish after a stop signal.
constexpr std::chrono::milliseconds kShutdownGrace{5000};

PodContainerSelector PodOf(const AgentConfig& config) {
  return {config.static_pod.pod_name, config.static_pod.pod_namespace,
          config.static_pod.container};
}

ExecutorOptions MakeExecutorOptions(const AgentConfig& config) {
  const ExecutorConfig& e = config.executor;
  ExecutorOptions o;
  o.node = config.node;
  o.state_dir = config.state_dir;
  o.unit = config.provider_unit;
  o.install_path = config.provider.binary;
  o.registry_path = e.registry_path;
  o.artifacts.state_dir = config.state_dir;
  o.artifacts.public_key_files = e.public_keys;
  o.artifacts.allow_unsigned = e.allow_unsigned;
  o.artifacts.fetch.ca_file = e.download_ca_file;
  o.artifacts.fetch.total_timeout = e.download_timeout;
  o.artifacts.allowed_url_prefixes = e.allowed_url_prefixes;
  // No memo given: the executor's provider CLI keeps one of its own.
  o.preflight = {config.provider_config, config.encryption_config,
                 e.doctor_timeout, e.run_as, {}, nullptr};
  o.unit_timeout = e.unit_timeout;
  o.ready_timeout = e.ready_timeout;
  o.poll_interval = e.poll_interval;
  o.default_stabilization_ms = e.stabilization.count();
  o.rollback_steps = static_cast<size_t>(e.rollback_steps);
  if (config.provider_mode == ProviderMode::kStaticPod) {
    o.static_pod = ExecutorOptions::StaticPod{config.static_pod.manifest,
                                              config.static_pod.container};
    o.unit = StaticPodName(PodOf(config));
    o.preflight.doctor_command = config.static_pod.doctor_command;
  }
  return o;
}

// The provider's runtime seams: systemd over D-Bus, or (static pod) the
// kubelet seen through the CRI.
struct ProviderRuntime {
  std::unique_ptr<ContainerRuntime> cri;  // static pod only
  std::unique_ptr<ServiceManager> services;
  // kube-apiserver restarts always go through systemd.
  std::unique_ptr<ServiceManager> systemd;
};

// `stopping` ends a static pod's wait for its new container (Start).
ProviderRuntime MakeProviderRuntime(const AgentConfig& config, const MonotonicClock& steady,
                                    std::function<bool()> stopping) {
  ProviderRuntime r;
  r.systemd = NewSystemdServiceManager(config.executor.bus_address);
  if (config.provider_mode != ProviderMode::kStaticPod) return r;
  r.cri = NewCriClient({.socket_path = config.static_pod.cri_socket,
                        .pull_timeout = config.static_pod.pull_timeout});
  r.services = NewStaticPodServiceManager(
      {.manifest_path = config.static_pod.manifest, .pod = PodOf(config),
       .poll_interval = config.executor.poll_interval, .stopping = std::move(stopping)},
      *r.cri, steady);
  return r;
}

std::string ProviderModeName(const AgentConfig& config) {
  return config.provider_mode == ProviderMode::kStaticPod ? "static pod" : "systemd";
}

// How this agent admits disruptive commands; GetNodeState reports it and
// `kmsfleetctl status` shows it.
std::string AgentMode(const AgentConfig& config) {
  if (config.cluster.enabled) return "cluster member";
  return config.standalone ? "standalone" : "refusing";
}

// Starts the election shell when the config has a `cluster:` section;
// returns null when it has none. A member's executor then needs the
// coordinator's fence for every swap and rollback; any other executor
// admits unfenced commands only when the node is declared standalone.
absl::StatusOr<std::unique_ptr<ClusterRuntime>> MaybeStartCluster(
    const AgentConfig& config, Executor& executor, grpc::Service* agent_service,
    EventMetrics& events) {
  if (!config.cluster.enabled) {
    executor.SetFenceCheck(NoElectionFenceCheck(config.node, config.standalone));
    if (!config.standalone) {
      Log(LogLevel::kWarn,
          "no cluster: section and not standalone: true, so swap and rollback are "
          "refused (STANDALONE_NOT_CONFIGURED)",
          {{"node", config.node}});
    }
    return std::unique_ptr<ClusterRuntime>();
  }
  // The checks are in place before the cluster listener takes the first
  // call: a swap arriving earlier would find none.
  return ClusterRuntime::Start(
      config, [&executor](const v1::Fence& fence) { return executor.HandoffOutcome(fence); },
      agent_service, [&events](std::string_view reason) { events.CountRefusal(reason); },
      [&executor](ClusterRuntime& runtime) {
        executor.SetFenceWait(runtime.fence_wait());
        executor.SetFenceCheck(runtime.fence_check());
        executor.SetPlanCheck(runtime.plan_check());
        executor.SetReleaseCheck(runtime.release_check());
      });
}

// Serves /metrics on `listen` (metrics.listen). The exposer (civetweb)
// reports a port it cannot bind by exception; it stops here.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetrics(
    const std::string& listen, const std::shared_ptr<AgentMetrics>& collectable,
    const EventMetrics& events) {
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(listen, 2);
    exposer->RegisterCollectable(collectable);
    exposer->RegisterCollectable(events.registry());
    return exposer;
  } catch (const std::exception& e) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     "metrics.listen " + listen + ": cannot serve /metrics: " + e.what(),
                     {{"key", "metrics.listen"}, {"address", listen}});
  }
}

int Serve(const AgentConfig& config, const sigset_t& stop_signals) {
  // Before anything reads the journals or the election state.
  absl::StatusOr<StateDirLock> state_dir_lock = LockStateDir(config.state_dir, getpid());
  if (!state_dir_lock.ok()) {
    Log(LogLevel::kError, std::string(state_dir_lock.status().message()),
        {{"node", config.node}, {"reason", ReasonOf(state_dir_lock.status())}});
    return 1;
  }
  if (int removed = RemoveStaleTemps(config.state_dir, *state_dir_lock); removed > 0) {
    Log(LogLevel::kInfo, "removed temp files a stopped agent left",
        {{"node", config.node}, {"count", std::to_string(removed)}});
  }
  SystemClock clock;
  // GetNodeState reports the facts of the registry the executor guards.
  ProviderEndpoints endpoints = config.provider;
  endpoints.registry_path = config.executor.registry_path;
  endpoints.run_as = config.executor.run_as;
  std::unique_ptr<ProviderProbe> probe =
      NewProviderProbe(config.node, std::move(endpoints), clock);
  SteadyClock steady;
  // A static pod's wait for its new container ends with the executor's
  // Stop, as a verify wait does. Only the executor's worker asks, and it
  // starts after `stopping_executor` is set.
  Executor* stopping_executor = nullptr;
  ProviderRuntime provider_runtime =
      MakeProviderRuntime(config, steady, [&stopping_executor] {
        return stopping_executor != nullptr && stopping_executor->Stopping();
      });
  ServiceManager& services =
      provider_runtime.services ? *provider_runtime.services : *provider_runtime.systemd;
  // Counted whether or not metrics.listen is set; declared before the
  // executor, whose worker reports to it until the executor is gone.
  EventMetrics events;
  Executor executor(MakeExecutorOptions(config), *probe, services, clock,
                    provider_runtime.cri.get());
  stopping_executor = &executor;
  executor.SetPhaseObserver([&events](std::string_view phase, double seconds) {
    events.ObservePhase(phase, seconds);
  });
  auto count_refusal = [&events](std::string_view reason) { events.CountRefusal(reason); };
#ifdef KMSFLEETD_CRASH_HOOK
  executor.SetStepHook(CrashHookFromEnvironment());
#endif
  // The cluster listener serves before the local socket and /metrics,
  // whose start can still fail: no command is admitted until all serve.
  executor.RefuseNewCommandsUntilStarted();
  // Open journals of a previous run are finished or rolled back first, on
  // the executor's worker; new operations are refused until that is done.
  executor.StartRecovery();
  // From here a failed start waits out that recovery (failed_start.h).
  auto failed_start = [&executor, &stop_signals, &config] {
    const FailedStartEnd end = WaitOutRecovery(
        [&executor] { return executor.Busy(); }, stop_signals,
        [] { sd_notify(0, "EXTEND_TIMEOUT_USEC=5000000"); });
    if (end == FailedStartEnd::kStopRequested) {
      Log(LogLevel::kWarn, "stopping with recovery unfinished; the next start recovers it",
          {{"node", config.node}});
      _exit(1);  // as a kill: every phase is on disk before it runs
    }
    return 1;
  };
  ApiServerRestartOptions apiserver_options = config.apiserver;
  apiserver_options.poll_interval = config.executor.poll_interval;
  apiserver_options.record_file = config.state_dir + "/apiserver-restart";
  ApiServerRestarter apiserver(std::move(apiserver_options),
                               {.services = *provider_runtime.systemd, .steady = steady});
  std::string mode = AgentMode(config);
  // A member stages coordinator:// sources by fetching them from the node
  // that holds the operator's upload.
  FetchUpload fetch_upload;
  if (config.cluster.enabled) {
    absl::StatusOr<FetchUpload> fetch = UploadFetchOf(config);
    if (!fetch.ok()) {
      Log(LogLevel::kError, std::string(fetch.status().message()), {{"node", config.node}});
      return failed_start();
    }
    fetch_upload = *std::move(fetch);
  }
  const v1::CallBounds call_bounds = CallBoundsOf(config);
  AgentServer server(*probe, &executor,
                     AgentServiceOptions{.mode = mode, .provider_mode = ProviderModeName(config),
                                         .apiserver = &apiserver,
                                         .fetch_upload = fetch_upload,
                                         .state_dir = config.state_dir,
                                         .call_bounds = call_bounds,
                                         .default_stabilization_ms =
                                             config.executor.stabilization.count(),
                                         .on_refusal = count_refusal});
  std::unique_ptr<grpc::Service> remote_agent =
      config.cluster.enabled
          ? NewAgentService(*probe, &executor,
                            {.policy = CallerPolicyOf(config), .mode = mode,
                             .provider_mode = ProviderModeName(config),
                             .apiserver = &apiserver, .fetch_upload = fetch_upload,
                             .state_dir = config.state_dir,
                             .call_bounds = call_bounds,
                             .default_stabilization_ms =
                                 config.executor.stabilization.count(),
                             .on_refusal = count_refusal})
          : nullptr;
  // Before server.Start: that turns on health and reflection for every
  // server built later, and the cluster listener must serve only services
  // that check their callers.
  absl::StatusOr<std::unique_ptr<ClusterRuntime>> cluster =
      MaybeStartCluster(config, executor, remote_agent.get(), events);
  if (!cluster.ok()) {
    Log(LogLevel::kError, std::string(cluster.status().message()),
        {{"node", config.node}});
    return failed_start();
  }
  if (*cluster) server.AddService((*cluster)->local_fleet_service());
  if (!config.listen_tcp.empty()) {
    Log(LogLevel::kWarn,
        "listen.tcp serves the Agent API on plain TCP (listen.insecure: true): "
        "every local user can stage and swap through it; local demos only",
        {{"tcp", config.listen_tcp}});
  }
  if (absl::Status s = server.Start({.unix_socket = config.listen_unix,
                                     .unix_mode = config.listen_unix_mode,
                                     .unix_group = config.listen_unix_group,
                                     .tcp = config.listen_tcp});
      !s.ok()) {
    if (*cluster) (*cluster)->Stop(std::chrono::milliseconds(0));
    Log(LogLevel::kError, std::string(s.message()), {{"node", config.node}});
    return failed_start();
  }
  std::unique_ptr<prometheus::Exposer> metrics;
  std::shared_ptr<AgentMetrics> agent_metrics;
  if (!config.metrics_listen.empty()) {
    ClusterRuntime* runtime = cluster->get();
    agent_metrics = std::make_shared<AgentMetrics>(
        [&probe] { return probe->Observe(); },
        [runtime]() -> std::optional<v1::LeaderView> {
          if (runtime == nullptr) return std::nullopt;
          return runtime->View();
        },
        [runtime]() -> std::optional<bool> {
          if (runtime == nullptr) return std::nullopt;
          return runtime->FleetParity();
        });
    absl::StatusOr<std::unique_ptr<prometheus::Exposer>> exposer =
        StartMetrics(config.metrics_listen, agent_metrics, events);
    if (!exposer.ok()) {
      server.Shutdown(std::chrono::milliseconds(0));
      if (*cluster) (*cluster)->Stop(std::chrono::milliseconds(0));
      Log(LogLevel::kError, std::string(exposer.status().message()), {{"node", config.node}});
      return failed_start();
    }
    metrics = *std::move(exposer);
    std::vector<int> ports = metrics->GetListeningPorts();
    Log(LogLevel::kInfo, "metrics serving",
        {{"node", config.node},
         {"listen", config.metrics_listen},
         {"metrics_port", ports.empty() ? "" : std::to_string(ports.front())}});
  }
  Log(LogLevel::kInfo, "agent serving",
      {{"node", config.node},
       {"mode", mode},
       {"unix", config.listen_unix},
       {"tcp_port", std::to_string(server.tcp_port())}});
  ServiceNotifierOptions notify{.node = config.node, .mode = mode,
                                .agent_target = "unix:" + config.listen_unix,
                                .cluster = *cluster != nullptr};
  if (ClusterRuntime* runtime = cluster->get(); runtime != nullptr) {
    notify.counters = {{"election_ticks", [runtime] { return runtime->election_ticks(); }},
                       {"plan_loop", [runtime] { return runtime->plan_rounds(); }}};
  }
  ServiceNotifier notifier(std::move(notify));
  executor.Started();
  notifier.Ready();
  int signal_number = 0;
  // SIGHUP's default would end the agent at once, mid-swap, and systemd's
  // Restart=on-failure counts that as a clean exit: the provider could stay
  // down. There is nothing to reload (the config is read at start).
  while (sigwait(&stop_signals, &signal_number) == 0 && signal_number == SIGHUP) {
    Log(LogLevel::kWarn, "SIGHUP ignored: the config is read only at start; restart to read it",
        {{"node", config.node}});
  }
  Log(LogLevel::kInfo, "stopping",
      {{"node", config.node}, {"signal", strsignal(signal_number)}});
  executor.RefuseNewCommands();
  apiserver.StopWaiting();
  if (apiserver.Running()) {
    // A restart command runs (up to apiserver restart_timeout_ms): cut
    // short by systemd's stop timeout, kube-apiserver could stay down.
    // systemd is asked for its time; one cut all the same is answered
    // "cut short" when asked again (apiserver_restart.h). Asked first:
    // the notifier's stop below waits for a probe in flight, and that
    // time counts against TimeoutStopSec= too (found in review).
    const auto extend = apiserver.options().restart_timeout + std::chrono::seconds(10);
    sd_notify(0, ("EXTEND_TIMEOUT_USEC=" +
                  std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(extend)
                                     .count()))
                     .c_str());
  }
  notifier.Stopping();
  // A watch never ends by itself: left open, it would take each
  // listener's whole grace.
  if (*cluster) (*cluster)->EndWatches();
  server.Shutdown(kShutdownGrace);
  if (*cluster) (*cluster)->HandOverAndStop(kShutdownGrace);
  executor.Stop();
  if (executor.LeftAnOperationOpen()) {
    // Exit 0 would read as a clean stop, and Restart=on-failure would not
    // start the agent again after a SIGTERM systemd did not send: the
    // operation would wait, unverified, for someone to start it by hand.
    Log(LogLevel::kWarn, "stopped with an operation open; the next start recovers it",
        {{"node", config.node}});
    return 1;
  }
  Log(LogLevel::kInfo, "stopped", {{"node", config.node}});
  return 0;
}

int Main(int argc, char** argv) {
  CLI::App app{"kmsfleetd: the kmsfleet agent for one control-plane node"};
  std::string config_path = "/etc/kmsfleet/config.yaml";
  bool check_only = false;
  app.add_option("--config", config_path, "agent configuration file")
      ->capture_default_str();
  app.add_flag("--check-config", check_only,
               "validate the configuration file and exit");
  app.set_version_flag("--version", std::string("kmsfleetd ") + KMSFLEET_VERSION);
  if (std::optional<int> exit = ParseCommandLine(app, argc, argv)) return *exit;
  // Debian builds Abseil without NDEBUG, which turns on absl::Mutex's
  // deadlock detector: every lock taken (gRPC takes many per call) also
  // takes one process-wide lock to update a lock graph. That is a
  // debugging aid, and measurable on the agent's calls (bench/README.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Block the stop signals (and SIGHUP) in every thread (gRPC's included)
  // so that only sigwait() in Serve() receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);  // ignored in Serve()
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<AgentConfig> config = LoadAgentConfig(config_path);
  if (!config.ok()) {
    std::cerr << "kmsfleetd: " << config.status().message() << "\n";
    return 2;
  }
  SetLogTarget(config->log_target);
  if (check_only) {
    std::cout << config_path << ": ok (node " << config->node << ")\n";
    return 0;
  }
  return Serve(*config, stop_signals);
}

}  // namespace
}  // namespace kmsfleet

int main(int argc, char** argv) { return kmsfleet::Main(argc, argv); }
