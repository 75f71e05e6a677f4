// fake-kubelet: see fake_kubelet.h and README.md ("fake-kubelet").
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "fake_kubelet.h"

namespace {

volatile int g_stop = 0;

void OnStop(int signal_number) { g_stop = signal_number; }

constexpr char kUsage[] =
    "usage: fake-kubelet --manifest-dir DIR --cri-state-dir DIR --digest-table FILE\n"
    "         --provider-binary PATH --provider-config FILE --event-log FILE\n"
    "         [--node NAME] [--manifest-name NAME] [--container NAME]\n"
    "         [--provider-scenario FILE] [--provider-listen-info FILE]\n"
    "         [--provider-log FILE] [--poll-ms N] [--stop-timeout-ms N]\n"
    "         [--restart-backoff-ms N]\n";

// "--flag value" or "--flag=value" into `flags`; false on anything else.
bool ParseFlags(int argc, char** argv, std::map<std::string, std::string>& flags) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) return false;
    size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      flags[arg.substr(2)] = argv[++i];
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> f;
  if (!ParseFlags(argc, argv, f)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  kmsfleet::fake::KubeletOptions o;
  std::map<std::string, std::string*> strings = {
      {"manifest-dir", &o.manifest_dir},         {"manifest-name", &o.manifest_name},
      {"container", &o.container},               {"cri-state-dir", &o.cri_state_dir},
      {"digest-table", &o.digest_table},         {"node", &o.node},
      {"provider-binary", &o.provider_binary},   {"provider-config", &o.provider_config},
      {"provider-scenario", &o.provider_scenario},
      {"provider-listen-info", &o.provider_listen_info},
      {"provider-log", &o.provider_log},         {"event-log", &o.event_log}};
  std::map<std::string, int*> ints = {{"poll-ms", &o.poll_ms},
                                      {"stop-timeout-ms", &o.stop_timeout_ms},
                                      {"restart-backoff-ms", &o.restart_backoff_ms}};
  for (const auto& [name, value] : f) {
    if (auto s = strings.find(name); s != strings.end()) {
      *s->second = value;
    } else if (auto n = ints.find(name); n != ints.end()) {
      *n->second = std::atoi(value.c_str());
    } else {
      std::fprintf(stderr, "fake-kubelet: unknown flag --%s\n%s", name.c_str(), kUsage);
      return 2;
    }
  }
  if (o.manifest_dir.empty() || o.cri_state_dir.empty() || o.digest_table.empty() ||
      o.provider_binary.empty() || o.provider_config.empty() || o.event_log.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = OnStop;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  kmsfleet::fake::FakeKubelet kubelet(o);
  return kubelet.Run(g_stop);
}
