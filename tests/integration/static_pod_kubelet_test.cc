// The static-pod installer against fake-kubelet running the fake provider:
// a new manifest restarts the provider on the new version, the kubelet
// never sees a temp file or a partial manifest, and restoring the capture
// brings the old version back byte-identical. The fake's own checks are
// shown to catch a careless writer, so the rule is tested, not assumed.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <set>
#include <thread>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/static_pod_installer.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using namespace std::chrono_literals;
using ::kmsfleet::testing::ChildOptions;
using ::kmsfleet::testing::ChildProcess;
using ::kmsfleet::testing::HttpRequest;
using ::kmsfleet::testing::ReadFile;
using ::kmsfleet::testing::TempDir;
using ::kmsfleet::testing::WaitUntil;
using ::kmsfleet::testing::WriteFile;

const std::string kRepo = "ghcr.io/dc-tec/bao-kms-provider";
const std::string kOldDigest = "sha256:" + std::string(64, 'a');
const std::string kNewDigest = "sha256:" + std::string(64, 'b');

std::string Manifest(const std::string& digest) {
  return "# bao-kms-provider (reference 8.7); upgrade = change the digest only\n"
         "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bao-kms-provider\n"
         "  namespace: kube-system\nspec:\n  hostNetwork: true\n  containers:\n"
         "    - name: bao-kms-provider\n      image: " +
         kRepo + "@" + digest + "  # pinned\n      args: [serve]\n";
}

std::vector<boost::json::object> Events(const std::string& path) {
  std::vector<boost::json::object> out;
  std::string text = ReadFile(path);
  for (size_t pos = 0, nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    out.push_back(boost::json::parse(text.substr(pos, nl - pos)).as_object());
  }
  return out;
}

std::vector<boost::json::object> EventsNamed(const std::string& path, const std::string& name) {
  std::vector<boost::json::object> out;
  for (auto& e : Events(path)) {
    if (e.at("event").as_string() == name) out.push_back(e);
  }
  return out;
}

// A node: the manifest directory and kmsfleetd's state on one filesystem,
// fake-kubelet watching, the fake provider's release table.
class StaticPodKubeletTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string& d : {manifests_, state_, cri_, evidence_}) {
      ASSERT_EQ(system(("mkdir -p " + d).c_str()), 0);
    }
    WriteFile(dir_.File("digests.txt"), "# digest version\n" + kOldDigest + " 0.2.0\n" +
                                            kNewDigest + " 0.3.0\n");
    WriteFile(dir_.File("config.yaml"),
              "configVersion: v1alpha1\nserver:\n  socketPath: " + dir_.File("kms.sock") +
                  "\n  metricsAddress: 127.0.0.1:0\n  healthAddress: 127.0.0.1:0\n");
    WriteFile(scenario_, Scenario());
    ASSERT_TRUE(WriteFileAtomic(live_, Manifest(kOldDigest), 0600).ok());
    kubelet_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{FAKE_KUBELET_PATH, "--manifest-dir", manifests_,
                                 "--cri-state-dir", cri_, "--digest-table",
                                 dir_.File("digests.txt"), "--node", "cp1",
                                 "--provider-binary", FAKE_PROVIDER_PATH, "--provider-config",
                                 dir_.File("config.yaml"), "--provider-listen-info",
                                 dir_.File("listen.json"), "--provider-log",
                                 dir_.File("provider.log"), "--event-log", events_,
                                 "--provider-scenario", scenario_, "--poll-ms", "10",
                                 "--restart-backoff-ms", "50"},
        ChildOptions{dir_.File("kubelet.out")});
  }

  // The fake provider's scenario (tests/fakes/README.md) at the first start.
  virtual std::string Scenario() { return "{}\n"; }

  // The version the provider's metrics show now ("" when none answers).
  std::string ServedVersion() {
    std::string info = ReadFile(dir_.File("listen.json"));
    if (info.empty()) return "";
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(info, ec);
    if (ec || !v.is_object() || !v.as_object().contains("metrics")) return "";
    std::string metrics(v.at("metrics").as_string());
    testing::HttpReply r = HttpRequest(metrics, "GET", "/metrics");
    size_t at = r.body.find("openbao_kms_build_info{");
    if (r.status != 200 || at == std::string::npos) return "";
    size_t v0 = r.body.find("version=\"", at);
    if (v0 == std::string::npos) return "";
    v0 += 9;
    return r.body.substr(v0, r.body.find('"', v0) - v0);
  }

  bool Serves(const std::string& version) {
    return WaitUntil([&] { return ServedVersion() == version; }, 20s);
  }

  boost::json::array Containers() {
    return boost::json::parse(ReadFile(cri_ + "/containers.json")).at("containers").as_array();
  }

  TempDir dir_;
  std::string manifests_ = dir_.File("manifests"), state_ = dir_.File("state");
  std::string cri_ = dir_.File("cri"), evidence_ = state_ + "/operations/op1";
  std::string live_ = manifests_ + "/bao-kms-provider.yaml";
  std::string events_ = dir_.File("events.jsonl");
  std::string scenario_ = dir_.File("scenario.yaml");
  std::unique_ptr<ChildProcess> kubelet_;
};

TEST_F(StaticPodKubeletTest, InstallRestartsTheProviderAndRestoreBringsTheOldOneBack) {
  ASSERT_TRUE(Serves("0.2.0")) << ReadFile(events_);
  auto installer =
      NewStaticPodInstaller({live_, kDefaultProviderContainer, nullptr});
  absl::StatusOr<CapturedRelease> previous = installer->Capture(evidence_);
  ASSERT_TRUE(previous.ok()) << previous.status();
  ASSERT_EQ(system(("mkdir -p " + state_ + "/artifacts/0.3.0").c_str()), 0);
  const std::string release = state_ + "/artifacts/0.3.0/bao-kms-provider.yaml";
  absl::StatusOr<std::string> sha = RenderReleaseManifest(live_, kRepo + "@" + kNewDigest, release);
  ASSERT_TRUE(sha.ok()) << sha.status();

  ASSERT_TRUE(installer->Install(release, *sha).ok());
  ASSERT_TRUE(Serves("0.3.0")) << ReadFile(events_);
  ASSERT_TRUE(WaitUntil([&] { return Containers().size() == 2; }, 5s));
  boost::json::array containers = Containers();
  EXPECT_EQ(containers[0].at("state").as_string(), "CONTAINER_EXITED");
  EXPECT_EQ(containers[1].at("state").as_string(), "CONTAINER_RUNNING");
  EXPECT_EQ(containers[1].at("image_ref").as_string(), kRepo + "@" + kNewDigest);
  EXPECT_EQ(containers[1].at("image_id").as_string(), kNewDigest);
  EXPECT_EQ(containers[1].at("pod_name").as_string(), "bao-kms-provider-cp1");
  EXPECT_EQ(containers[1].at("pod_namespace").as_string(), "kube-system");
  EXPECT_NE(containers[0].at("id"), containers[1].at("id"));

  ASSERT_TRUE(installer->Install(previous->path, previous->sha256).ok());
  ASSERT_TRUE(Serves("0.2.0")) << ReadFile(events_);
  EXPECT_EQ(ReadFile(live_), Manifest(kOldDigest));

  kubelet_->Signal(SIGTERM);
  ASSERT_EQ(kubelet_->Wait(10s), 0);
  // The kubelet only ever read whole manifests, and nothing else.
  EXPECT_TRUE(EventsNamed(events_, "foreign_file").empty()) << ReadFile(events_);
  std::set<std::string> seen;
  for (auto& e : EventsNamed(events_, "file_seen")) seen.insert(std::string(e.at("sha256").as_string()));
  EXPECT_EQ(seen, (std::set<std::string>{Sha256Hex(Manifest(kOldDigest)), *sha}));
  std::vector<std::string> versions;
  for (auto& e : EventsNamed(events_, "container_started")) {
    versions.emplace_back(e.at("version").as_string());
  }
  EXPECT_EQ(versions, (std::vector<std::string>{"0.2.0", "0.3.0", "0.2.0"}));
}

// What the installer must never do, done by hand: the fake must notice, or
// the test above would pass whatever the installer did.
TEST_F(StaticPodKubeletTest, TheFakeCatchesATempFileAndATornWrite) {
  ASSERT_TRUE(Serves("0.2.0")) << ReadFile(events_);
  // A temp file beside the manifest, renamed over it (fs_util's
  // WriteFileAtomic, which is right anywhere but here).
  ASSERT_TRUE(WriteFileAtomic(live_, Manifest(kNewDigest), 0600).ok());
  ASSERT_TRUE(WaitUntil([&] { return !EventsNamed(events_, "foreign_file").empty(); }, 5s));
  ASSERT_TRUE(Serves("0.3.0"));
  // A hidden name is not a pod to the kubelet: never read, whatever it holds.
  WriteFile(manifests_ + "/.hidden.yaml", "not: [a pod");

  // An in-place rewrite, paused half-way: the kubelet reads the half.
  int fd = open(live_.c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  const std::string whole = Manifest(kOldDigest);
  const size_t half = whole.find("image:");
  ASSERT_EQ(write(fd, whole.data(), half), static_cast<ssize_t>(half));
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(write(fd, whole.data() + half, whole.size() - half),
            static_cast<ssize_t>(whole.size() - half));
  close(fd);
  ASSERT_TRUE(Serves("0.2.0"));
  bool partial_seen = false;
  for (auto& e : EventsNamed(events_, "file_seen")) {
    partial_seen |= e.at("bytes").to_number<int64_t>() == static_cast<int64_t>(half);
  }
  EXPECT_TRUE(partial_seen) << ReadFile(events_);
  EXPECT_FALSE(EventsNamed(events_, "manifest_invalid").empty()) << ReadFile(events_);
  for (auto& e : EventsNamed(events_, "file_seen")) {
    EXPECT_NE(e.at("name").as_string(), ".hidden.yaml") << ReadFile(events_);
  }
}

// A provider that exits at start is restarted as a new container with the
// next attempt, as restartPolicy: Always does, until it stays up.
class CrashLoopTest : public StaticPodKubeletTest {
 protected:
  std::string Scenario() override { return "exit_on_start: true\n"; }
};

TEST_F(CrashLoopTest, AnExitedProviderIsRestartedAsANewContainer) {
  ASSERT_TRUE(WaitUntil([&] { return EventsNamed(events_, "container_exited").size() >= 2; }, 20s))
      << ReadFile(events_);
  WriteFile(scenario_, "exit_on_start: false\n");
  ASSERT_TRUE(Serves("0.2.0")) << ReadFile(events_);
  boost::json::array containers = Containers();
  ASSERT_GE(containers.size(), 3u);
  std::set<std::string> ids;
  for (size_t i = 0; i < containers.size(); ++i) {
    const boost::json::object& c = containers[i].as_object();
    ids.insert(std::string(c.at("id").as_string()));
    // Consecutive attempts (the oldest may have been dropped from the list).
    EXPECT_EQ(c.at("attempt").to_number<int>(),
              containers[0].at("attempt").to_number<int>() + static_cast<int>(i));
    EXPECT_EQ(c.at("image_id").as_string(), kOldDigest);
    EXPECT_EQ(c.at("state").as_string(),
              i + 1 == containers.size() ? "CONTAINER_RUNNING" : "CONTAINER_EXITED");
  }
  EXPECT_EQ(ids.size(), containers.size());
}

}  // namespace
}  // namespace kmsfleet
