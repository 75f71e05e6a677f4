// `serve` (reference §2.10, §3, §4): wait out the simulated bootstrap with
// nothing bound, then serve the KMS socket and the two HTTP listeners until
// SIGTERM/SIGINT, following the live scenario as it changes.
#include <unistd.h>

#include <cstdio>
#include <thread>

#include <boost/json.hpp>

#include "commands.h"
#include "event_log.h"
#include "http_server.h"
#include "kms_service.h"
#include "kmsfleet/node/key_id_hash.h"
#include "live_state.h"
#include "serve_runtime.h"
#include "stop_signal.h"

namespace kmsfleet::fake {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kLoopInterval{50};

// Everything bound after bootstrap; destroyed in reverse order of binding.
struct Runtime {
  std::unique_ptr<FakeKmsService> service;
  std::unique_ptr<grpc::Server> grpc_server;
  HttpServer http;
  std::string metrics_address;  // bound host:port, "" when disabled
  std::string health_address;
};

// The crash a scenario asks for: like a Go runtime failure it skips every
// cleanup, so the socket file stays behind as a stale socket.
void MaybeCrash(const Scenario& scenario, Clock::time_point started) {
  if (!scenario.crash_after_ms) return;
  if (Clock::now() - started < std::chrono::milliseconds(*scenario.crash_after_ms)) return;
  LogEvent("error", "fake.crash", {{"crash_after_ms", *scenario.crash_after_ms}});
  std::fprintf(stderr, "Error: provider runtime failure: fake crash_after_ms=%d elapsed\n",
               *scenario.crash_after_ms);
  std::fflush(stderr);
  ::_exit(kExitRuntime);
}

// Returns true when stopped (by signal) before the delay ran out.
bool WaitOutBootstrap(StopSignal& stop, LiveState& state, Clock::time_point started) {
  const auto bind_at =
      started + std::chrono::milliseconds(state.CurrentScenario()->startup_delay_ms);
  while (Clock::now() < bind_at) {
    MaybeCrash(*state.CurrentScenario(), started);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(bind_at - Clock::now());
    if (stop.WaitFor(std::min(left, kLoopInterval))) return true;
  }
  return false;
}

absl::Status ListenHttp(const ProviderConfig& config, LiveState& state, Runtime& rt) {
  if (!config.metrics_address.empty()) {
    auto bound = rt.http.Listen(config.metrics_address, [&state](auto method, auto target) {
      return HandleMetricsRequest(method, target, state);
    });
    if (!bound.ok()) return bound.status();
    rt.metrics_address = *bound;
  }
  if (!config.health_address.empty()) {
    auto bound = rt.http.Listen(config.health_address, [&state](auto method, auto target) {
      return HandleHealthRequest(method, target, state);
    });
    if (!bound.ok()) return bound.status();
    rt.health_address = *bound;
  }
  rt.http.Start();
  return absl::OkStatus();
}

// Binds socket and listeners. Returns the exit code on failure.
std::optional<int> BindAll(CommandContext& ctx, const ProviderConfig& config,
                           LiveState& state, Runtime& rt) {
  bool reclaimed = false;
  if (absl::Status s = ReclaimStaleSocket(config.socket_path, &reclaimed); !s.ok()) {
    return ctx.Fail(s.code() == absl::StatusCode::kInvalidArgument ? kExitConfig
                                                                     : kExitRuntime,
                    std::string(s.message()));
  }
  if (reclaimed) {
    state.RecordSocketReclaim();
    LogEvent("warn", "socket.stale_removed", {{"socket", config.socket_path}});
  }
  rt.service = std::make_unique<FakeKmsService>(state);
  auto server = StartKmsServer(config.socket_path, config.socket_mode, *rt.service);
  if (!server.ok()) return ctx.Fail(kExitRuntime, std::string(server.status().message()));
  rt.grpc_server = std::move(*server);
  if (absl::Status s = ListenHttp(config, state, rt); !s.ok()) {
    return ctx.Fail(kExitRuntime, std::string(s.message()));
  }
  return std::nullopt;
}

void WriteListenInfo(const std::string& path, const ProviderConfig& config,
                     const Runtime& rt) {
  if (path.empty()) return;
  boost::json::object info{{"metrics", rt.metrics_address},
                           {"health", rt.health_address},
                           {"socket", config.socket_path},
                           {"pid", ::getpid()}};
  if (absl::Status s = WriteFileAtomically(path, boost::json::serialize(info) + "\n");
      !s.ok()) {
    LogEvent("error", "fake.listen_info_failed", {{"error", std::string(s.message())}});
  }
}

void SyncState(const ProviderConfig& config, const Scenario& scenario) {
  if (absl::Status s = SyncRegistryState(config, scenario); !s.ok()) {
    LogEvent("warn", "fake.state_write_failed", {{"error", std::string(s.message())}});
  }
}

void Shutdown(const ProviderConfig& config, const std::string& listen_info, Runtime& rt) {
  rt.http.Stop();
  // The real provider drains for up to 15 s; tests want a prompt exit.
  rt.grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  ::unlink(config.socket_path.c_str());
  if (!listen_info.empty()) ::unlink(listen_info.c_str());
}

}  // namespace

int RunServe(CommandContext& ctx) {
  const Clock::time_point started = Clock::now();
  int exit_code = kExitOk;
  std::optional<ProviderConfig> config = ctx.LoadConfig(&exit_code);
  if (!config) return exit_code;
  const std::string listen_info = ctx.args.Flag("listen-info");
  // A leftover file from an earlier run would hand a test stale ports.
  if (!listen_info.empty()) ::unlink(listen_info.c_str());
  StopSignal stop;  // before any thread exists
  LiveState state(ctx.scenario, ctx.version);
  LogEvent("info", "serve.starting",
           {{"version", ctx.version.version}, {"config", config->path}, {"pid", ::getpid()}});
  if (state.CurrentScenario()->exit_on_start) {
    return ctx.Fail(kExitRuntime, "bootstrap status probe did not succeed within " +
                                      config->bootstrap_grace +
                                      ": openbao_unavailable");
  }
  if (WaitOutBootstrap(stop, state, started)) return kExitOk;
  Runtime rt;
  if (std::optional<int> failed = BindAll(ctx, *config, state, rt)) {
    if (rt.grpc_server) ::unlink(config->socket_path.c_str());  // ours, now dead
    return *failed;
  }
  SyncState(*config, *state.CurrentScenario());
  WriteListenInfo(listen_info, *config, rt);
  const std::string key_id = state.CurrentScenario()->ActiveKeyId();
  LogEvent("info", "serve.ready",
           {{"socket", config->socket_path}, {"metrics", rt.metrics_address},
            {"health", rt.health_address},
            {"key_id_hash", key_id.empty() ? "" : kmsfleet::KeyIdHash(key_id)}});
  while (!stop.WaitFor(kLoopInterval)) {
    std::shared_ptr<const Scenario> scenario = state.CurrentScenario();
    MaybeCrash(*scenario, started);
    SyncState(*config, *scenario);
  }
  LogEvent("info", "serve.stopping", {{"signal", stop.signal_number()}});
  Shutdown(*config, listen_info, rt);
  LogEvent("info", "serve.stopped");
  return kExitOk;
}

}  // namespace kmsfleet::fake
