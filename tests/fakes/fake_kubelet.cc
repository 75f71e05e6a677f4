// fake-kubelet's loop (fake_kubelet.h): watch, read, reconcile, report.
#include "fake_kubelet.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <boost/json.hpp>

#include "kmsfleet/node/fs_util.h"

namespace kmsfleet::fake {
namespace {

// The kubelet reads manifests of any size; a fake only needs a bound.
constexpr size_t kMaxFileBytes = 1 << 20;
// Exited containers kept in containers.json besides the running one.
constexpr size_t kMaxContainersKept = 8;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Whole file, or nullopt when it vanished or is not a regular file.
std::optional<std::string> ReadWhole(const std::string& path) {
  absl::StatusOr<std::string> s = ReadBoundedFile(path, kMaxFileBytes, Symlinks::kFollow);
  if (!s.ok()) return std::nullopt;
  return *s;
}

// The running container: the newest, unless it exited.
FakeContainer* Current(std::vector<FakeContainer>& all) {
  if (all.empty() || all.back().state != "CONTAINER_RUNNING") return nullptr;
  return &all.back();
}

std::string DigestOf(const std::string& image) {
  size_t at = image.find("@sha256:");
  return at == std::string::npos ? "" : image.substr(at + 1);
}

}  // namespace

FakeKubelet::FakeKubelet(KubeletOptions options) : o_(std::move(options)) {}

FakeKubelet::~FakeKubelet() {
  if (watch_fd_ >= 0) close(watch_fd_);
}

int FakeKubelet::Run(const volatile int& stop) {
  watch_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (watch_fd_ < 0 ||
      inotify_add_watch(watch_fd_, o_.manifest_dir.c_str(),
                        IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE |
                            IN_MOVED_FROM) < 0) {
    std::fprintf(stderr, "fake-kubelet: cannot watch %s: %s\n", o_.manifest_dir.c_str(),
                 std::strerror(errno));
    return 1;
  }
  Event("kubelet_started", {{"manifest_dir", o_.manifest_dir}, {"node", o_.node}});
  while (stop == 0) {
    pollfd p{watch_fd_, POLLIN, 0};
    poll(&p, 1, o_.poll_ms);
    DrainWatch();
    Scan();
    ReapContainer();
    Reconcile();
    if (cri_dirty_) WriteCriState();
  }
  StopContainer("kubelet stopping");
  WriteCriState();
  Event("kubelet_stopped", {});
  return 0;
}

// Every entry event in the directory. Names starting with '.' are never
// read, as the kubelet's file source drops their events and its directory
// scan globs "[^.]*". Anything else but the provider's manifest is a file
// the real kubelet would try to run as a pod; the event stays in the log
// however briefly the file existed. The contents are read now, so a file
// still being written is seen half-written.
void FakeKubelet::DrainWatch() {
  alignas(inotify_event) char buf[16384];
  for (;;) {
    ssize_t n = read(watch_fd_, buf, sizeof buf);
    if (n <= 0) return;
    for (char* p = buf; p < buf + n;) {
      auto* e = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + e->len;
      if (e->len == 0) continue;
      const std::string name = e->name;
      if (name.starts_with(".")) continue;
      if (name != o_.manifest_name && (e->mask & (IN_CREATE | IN_MOVED_TO))) {
        Event("foreign_file", {{"name", name},
                               {"how", (e->mask & IN_CREATE) ? "create" : "moved_to"}});
      }
      if (e->mask & (IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_CLOSE_WRITE)) {
        if (std::optional<std::string> content = ReadWhole(o_.manifest_dir + "/" + name)) {
          SeeFile(name, *content);
        }
      }
    }
  }
}

// The periodic resync: the directory as it is now.
void FakeKubelet::Scan() {
  std::set<std::string> present;
  if (DIR* d = opendir(o_.manifest_dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name.starts_with(".")) continue;  // also "." and ".."
      present.insert(name);
      if (std::optional<std::string> content = ReadWhole(o_.manifest_dir + "/" + name)) {
        SeeFile(name, *content);
      }
    }
    closedir(d);
  }
  for (auto it = seen_.begin(); it != seen_.end();) {
    if (present.count(it->first) == 0) {
      Event("file_removed", {{"name", it->first}});
      if (it->first == o_.manifest_name) want_ = {};
      it = seen_.erase(it);
    } else {
      ++it;
    }
  }
}

// A file's content as read now; new content is logged, and the provider's
// manifest decides what should run.
void FakeKubelet::SeeFile(const std::string& name, const std::string& content) {
  const std::string sha = Sha256Hex(content);
  auto [it, added] = seen_.try_emplace(name, sha);
  if (!added && it->second == sha) return;
  it->second = sha;
  Event("file_seen", {{"name", name}, {"sha256", sha}, {"bytes", content.size()}});
  if (name != o_.manifest_name) {
    if (added) {
      Event("foreign_file", {{"name", name}, {"how", "read"}});
    }
    return;
  }
  // A manifest that fails to decode drops its pod at the next resync, as
  // the kubelet's directory source does: a torn write takes the provider
  // down. So the fake stops it at once.
  std::optional<PodSpec> spec = ParseProviderManifest(content);
  want_ = spec ? *spec : PodSpec{};
}

std::optional<FakeKubelet::PodSpec> FakeKubelet::ParseProviderManifest(
    const std::string& content) {
  try {
    // const: yaml-cpp's non-const operator[] inserts missing keys.
    const YAML::Node root = YAML::Load(content);
    if (!root.IsMap() || root["apiVersion"].as<std::string>("") != "v1" ||
        root["kind"].as<std::string>("") != "Pod") {
      Event("manifest_invalid", {{"why", "not a v1 Pod"}});
      return std::nullopt;
    }
    PodSpec spec;
    spec.pod_name = root["metadata"]["name"].as<std::string>("") + "-" + o_.node;
    spec.pod_namespace = root["metadata"]["namespace"].as<std::string>("default");
    for (const YAML::Node& c : root["spec"]["containers"]) {
      if (c["name"].as<std::string>("") == o_.container) {
        spec.image = c["image"].as<std::string>("");
      }
    }
    if (spec.image.empty()) {
      Event("manifest_invalid", {{"why", "no image for container " + o_.container}});
      return std::nullopt;
    }
    return spec;
  } catch (const YAML::Exception& e) {
    Event("manifest_unparseable", {{"error", e.what()}});
    return std::nullopt;
  }
}

// The running container must be the one the manifest asks for.
void FakeKubelet::Reconcile() {
  FakeContainer* running = Current(containers_);
  if (running != nullptr && running->image_ref != want_.image) {
    StopContainer(want_.image.empty() ? "pod removed" : "image changed");
    running = nullptr;
  }
  if (running != nullptr || want_.image.empty()) return;
  // Not running, but wanted: a restart after the provider exited on its
  // own (after the back-off), or a new pod.
  const bool restart = crashed_ && containers_.back().image_ref == want_.image;
  if (restart && NowNs() < restart_at_ns_) return;
  StartContainer(restart ? containers_.back().attempt + 1 : 0);
}

void FakeKubelet::StartContainer(int attempt) {
  std::optional<std::string> version = VersionOf(want_.image);
  if (!version) {
    if (unknown_image_ != want_.image) Event("image_unknown", {{"image", want_.image}});
    unknown_image_ = want_.image;
    return;
  }
  FakeContainer c;
  c.id = Sha256Hex(o_.node + "/" + std::to_string(getpid()) + "/" +
                   std::to_string(++next_id_) + "/" + std::to_string(NowNs()));
  c.image_ref = want_.image;
  c.image_id = DigestOf(want_.image);
  c.version = *version;
  c.attempt = attempt;
  c.created_at_ns = NowNs();
  std::vector<std::string> args = {o_.provider_binary, "serve", "--config", o_.provider_config,
                                   "--fake-version", *version};
  if (!o_.provider_listen_info.empty()) {
    args.insert(args.end(), {"--listen-info", o_.provider_listen_info});
  }
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // no provider outlives a killed kubelet
    int log = open(o_.provider_log.empty() ? "/dev/null" : o_.provider_log.c_str(),
                   O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    dup2(log, 1);
    dup2(log, 2);
    if (!o_.provider_scenario.empty()) setenv("FAKE_BAO_KMS_SCENARIO", o_.provider_scenario.c_str(), 1);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  c.pid = pid;
  c.started_at_ns = NowNs();
  crashed_ = false;
  c.state = pid > 0 ? "CONTAINER_RUNNING" : "CONTAINER_EXITED";
  Event("container_started", {{"id", c.id}, {"image", c.image_ref}, {"version", c.version},
                              {"pid", pid}, {"attempt", attempt}});
  containers_.push_back(std::move(c));
  if (containers_.size() > kMaxContainersKept) containers_.erase(containers_.begin());
  cri_dirty_ = true;
}

// SIGTERM, then SIGKILL after the stop timeout, as the kubelet does with
// the pod's grace period.
void FakeKubelet::StopContainer(const char* why) {
  FakeContainer* c = Current(containers_);
  if (c == nullptr) return;
  kill(c->pid, SIGTERM);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o_.stop_timeout_ms);
  while (waitpid(c->pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(c->pid, SIGKILL);
      waitpid(c->pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  c->state = "CONTAINER_EXITED";
  Event("container_stopped", {{"id", c->id}, {"version", c->version}, {"why", why}});
  cri_dirty_ = true;
}

// A provider that exited on its own is restarted after a back-off
// (restartPolicy: Always), as a new container with the next attempt.
void FakeKubelet::ReapContainer() {
  FakeContainer* c = Current(containers_);
  if (c == nullptr) return;
  int status = 0;
  if (waitpid(c->pid, &status, WNOHANG) != c->pid) return;
  c->state = "CONTAINER_EXITED";
  Event("container_exited", {{"id", c->id},
                             {"version", c->version},
                             {"status", WIFEXITED(status) ? WEXITSTATUS(status)
                                                          : 128 + WTERMSIG(status)}});
  restart_at_ns_ = NowNs() + int64_t{o_.restart_backoff_ms} * 1000000;
  crashed_ = true;
  cri_dirty_ = true;
}

// The digest table is read on every start, so a test may extend it.
std::optional<std::string> FakeKubelet::VersionOf(const std::string& image) {
  const std::string digest = DigestOf(image);
  std::ifstream in(o_.digest_table);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string d, version;
    // A digest, or a whole reference for an image named by tag (which a
    // kubelet runs as readily).
    if (fields >> d >> version && d[0] != '#' && (d == digest || d == image)) return version;
  }
  return std::nullopt;
}

// containers.json, written through a temp file and rename so fake-cri
// never reads half of it.
void FakeKubelet::WriteCriState() {
  boost::json::array list;
  for (const FakeContainer& c : containers_) {
    list.push_back({{"id", c.id},
                    {"pod_name", want_.pod_name.empty() ? "bao-kms-provider-" + o_.node
                                                        : want_.pod_name},
                    {"pod_namespace", want_.pod_namespace.empty() ? "kube-system"
                                                                  : want_.pod_namespace},
                    {"container_name", o_.container},
                    {"image_ref", c.image_ref},
                    {"image_id", c.image_id},
                    {"state", c.state},
                    {"created_at_ns", c.created_at_ns},
                    {"started_at_ns", c.started_at_ns},
                    {"attempt", c.attempt}});
  }
  const std::string path = o_.cri_state_dir + "/containers.json";
  absl::Status s = WriteFileAtomic(
      path, boost::json::serialize(boost::json::object{{"containers", list}}) + "\n", 0644);
  if (!s.ok()) std::fprintf(stderr, "fake-kubelet: %s\n", std::string(s.message()).c_str());
  cri_dirty_ = !s.ok();
}

void FakeKubelet::Event(const char* name, boost::json::object fields) {
  fields["ts_ns"] = NowNs();
  fields["event"] = name;
  const std::string line = boost::json::serialize(fields) + "\n";
  int fd = open(o_.event_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t n = write(fd, line.data(), line.size());
  (void)n;  // a test reading the log sees a missing line; nothing to do here
  close(fd);
}

}  // namespace kmsfleet::fake
