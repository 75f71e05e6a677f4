// The static-pod installer: the kubelet's manifest directory only ever
// holds the old manifest or the new one, whole, and never a temp file.
#include "kmsfleet/node/static_pod_installer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <set>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using ::kmsfleet::testing::ReadFile;
using ::kmsfleet::testing::TempDir;

const std::string kOldImage = "ghcr.io/dc-tec/bao-kms-provider@sha256:" + std::string(64, 'a');
const std::string kNewImage = "ghcr.io/dc-tec/bao-kms-provider@sha256:" + std::string(64, 'b');

std::string Manifest(const std::string& image) {
  return "# the operator's comment\napiVersion: v1\nkind: Pod\nmetadata:\n"
         "  name: bao-kms-provider\n  namespace: kube-system\nspec:\n  hostNetwork: true\n"
         "  containers:\n  - name: bao-kms-provider\n    image: \"" +
         image + "\"   # pinned\n    args: [serve, --config=/etc/openbao-kms/config.yaml]\n";
}

void WriteRaw(const std::string& path, const std::string& content, mode_t mode) {
  ASSERT_TRUE(WriteFileAtomic(path, content, mode).ok()) << path;
}

std::vector<std::string> Entries(const std::string& dir, bool hidden_too = true) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (hidden_too || !name.starts_with(".")) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A node's layout: /etc/kubernetes/manifests and kmsfleetd's state
// directory on one filesystem, the live manifest at the old image.
class StaticPodInstallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(manifest_dir_);
    WriteRaw(live_, Manifest(kOldImage), 0644);
    std::filesystem::create_directories(state_ + "/artifacts/0.2.0");
    std::filesystem::create_directories(evidence_);
    auto sha = RenderReleaseManifest(live_, kNewImage, release_);
    ASSERT_TRUE(sha.ok()) << sha.status();
    release_sha_ = *sha;
  }

  std::unique_ptr<Installer> NewInstaller(std::function<void(std::string_view)> hook = nullptr) {
    return NewStaticPodInstaller({live_, kDefaultProviderContainer, std::move(hook)});
  }

  TempDir dir_;
  std::string manifest_dir_ = dir_.File("etc/kubernetes/manifests");
  std::string live_ = manifest_dir_ + "/bao-kms-provider.yaml";
  std::string state_ = dir_.File("var/lib/kmsfleet");
  std::string release_ = state_ + "/artifacts/0.2.0/bao-kms-provider.yaml";
  std::string evidence_ = state_ + "/operations/op1";
  std::string release_sha_;
};

TEST_F(StaticPodInstallerTest, RendersAReleaseThatDiffersOnlyInTheImage) {
  EXPECT_EQ(ReadFile(release_), Manifest(kNewImage));
  EXPECT_EQ(release_sha_, Sha256Hex(Manifest(kNewImage)));
  EXPECT_EQ(ReadFile(live_), Manifest(kOldImage));  // the live one untouched
}

TEST_F(StaticPodInstallerTest, InstallsThenRestoresTheCaptureByteIdentical) {
  auto installer = NewInstaller();
  absl::StatusOr<CapturedRelease> previous = installer->Capture(evidence_);
  ASSERT_TRUE(previous.ok()) << previous.status();
  EXPECT_EQ(previous->path, evidence_ + "/previous-manifest.yaml");
  EXPECT_EQ(previous->sha256, Sha256Hex(Manifest(kOldImage)));

  ASSERT_TRUE(installer->Install(release_, release_sha_).ok());
  EXPECT_EQ(ReadFile(live_), Manifest(kNewImage));
  absl::StatusOr<std::string> observed = installer->Observe();
  ASSERT_TRUE(observed.ok());
  EXPECT_EQ(*observed, release_sha_);
  struct stat st {};
  ASSERT_EQ(stat(live_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u) << "the live manifest's mode is kept";

  ASSERT_TRUE(installer->Install(previous->path, previous->sha256).ok());
  EXPECT_EQ(ReadFile(live_), Manifest(kOldImage));
  EXPECT_EQ(Entries(manifest_dir_), std::vector<std::string>{"bao-kms-provider.yaml"});
}

// Found in review: the live manifest was hashed whole, however large (at
// start-up, recovery and rollback planning), though every other read of a
// manifest is bounded.
TEST_F(StaticPodInstallerTest, AManifestLargerThanAnyReleaseIsRefusedNamingIt) {
  WriteRaw(live_, Manifest(kOldImage) + "# " + std::string(kMaxManifestBytes, 'x') + "\n", 0644);
  absl::StatusOr<std::string> seen = NewInstaller()->Observe();
  ASSERT_FALSE(seen.ok());
  EXPECT_EQ(ReasonOf(seen.status()), reason::kInputTooLarge) << seen.status();
  EXPECT_THAT(std::string(seen.status().message()), ::testing::HasSubstr(live_));
  absl::StatusOr<std::string> digest = NewInstaller()->Digest(live_);
  EXPECT_EQ(ReasonOf(digest.status()), reason::kInputTooLarge) << digest.status();
}

// Found in review: Install hashed the live manifest whole before replacing
// it, however large (or however long it kept growing). It reads no more
// than any release can be, and leaves a file that is not ours alone.
TEST_F(StaticPodInstallerTest, InstallRefusesALiveManifestLargerThanAnyReleaseNamingIt) {
  const std::string huge = Manifest(kOldImage) + "# " + std::string(kMaxManifestBytes, 'x') + "\n";
  WriteRaw(live_, huge, 0644);
  absl::Status s = NewInstaller()->Install(release_, release_sha_);
  EXPECT_EQ(ReasonOf(s), reason::kInputTooLarge) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(live_));
  EXPECT_EQ(ReadFile(live_), huge) << "the live manifest is as it was";
  EXPECT_EQ(Entries(manifest_dir_), std::vector<std::string>{"bao-kms-provider.yaml"});
}

TEST_F(StaticPodInstallerTest, InstallingWhatIsInPlaceTouchesNothing) {
  auto installer = NewInstaller();
  ASSERT_TRUE(installer->Install(release_, release_sha_).ok());
  struct stat before {}, after {};
  ASSERT_EQ(stat(live_.c_str(), &before), 0);
  ASSERT_TRUE(installer->Install(release_, release_sha_).ok());
  ASSERT_EQ(stat(live_.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino) << "no second rename";
}

TEST_F(StaticPodInstallerTest, ARefusedReleaseChangesNothing) {
  auto installer = NewInstaller();
  absl::Status wrong_digest = installer->Install(release_, std::string(64, '0'));
  EXPECT_EQ(ReasonOf(wrong_digest), reason::kChecksumMismatch) << wrong_digest;
  EXPECT_EQ(MetadataOf(wrong_digest, "file"), release_);

  const std::string not_a_pod = state_ + "/artifacts/0.2.0/deployment.yaml";
  const std::string deployment = "apiVersion: apps/v1\nkind: Deployment\n";
  WriteRaw(not_a_pod, deployment, 0600);
  absl::Status s = installer->Install(not_a_pod, Sha256Hex(deployment));
  EXPECT_EQ(ReasonOf(s), reason::kManifestNotAPod) << s;
  EXPECT_NE(s.message().find(not_a_pod), std::string::npos) << s;

  EXPECT_EQ(ReadFile(live_), Manifest(kOldImage));
  EXPECT_EQ(Entries(manifest_dir_), std::vector<std::string>{"bao-kms-provider.yaml"});
}

// Every entry that appears in the manifest directory, however briefly, as
// the kubelet's inotify watch sees it: events for names starting with '.'
// are dropped (pkg/kubelet/config/file_linux.go).
class DirectoryWatch {
 public:
  explicit DirectoryWatch(const std::string& dir) : fd_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    inotify_add_watch(fd_, dir.c_str(),
                      IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE);
  }
  ~DirectoryWatch() { close(fd_); }
  // "<event> <name>" for each event so far.
  std::vector<std::string> Drain() {
    std::vector<std::string> out;
    alignas(inotify_event) char buf[8192];
    for (;;) {
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return out;
      for (char* p = buf; p < buf + n;) {
        auto* e = reinterpret_cast<inotify_event*>(p);
        std::string what = (e->mask & IN_CREATE)        ? "create"
                           : (e->mask & IN_MOVED_TO)    ? "moved_to"
                           : (e->mask & IN_MODIFY)      ? "modify"
                           : (e->mask & IN_CLOSE_WRITE) ? "close_write"
                                                        : "delete";
        std::string name = e->len > 0 ? std::string(e->name) : "";
        if (!name.starts_with(".")) out.push_back(what + " " + name);
        p += sizeof(inotify_event) + e->len;
      }
    }
  }

 private:
  int fd_;
};

TEST_F(StaticPodInstallerTest, TheKubeletSeesNoTempFileInTheManifestDirectory) {
  auto installer = NewInstaller();
  absl::StatusOr<CapturedRelease> previous = installer->Capture(evidence_);
  ASSERT_TRUE(previous.ok());
  DirectoryWatch watch(manifest_dir_);
  // The only entry ever seen is the manifest, and only as a rename target:
  // never created, written or closed there. (Drained after each install:
  // inotify merges identical events still queued.)
  const std::vector<std::string> one_rename = {"moved_to bao-kms-provider.yaml"};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(installer->Install(release_, release_sha_).ok());
    EXPECT_EQ(watch.Drain(), one_rename);
    ASSERT_TRUE(installer->Install(previous->path, previous->sha256).ok());
    EXPECT_EQ(watch.Drain(), one_rename);
  }
}

// Under the shipped unit, ProtectSystem=strict makes each writable path a
// mount of its own (StateDirectory=, ReadWritePaths=): a rename between
// two of them fails with EXDEV, on one filesystem. The child process
// builds that layout in a mount namespace of its own and installs.
TEST_F(StaticPodInstallerTest, InstallsWhenTheStateAndManifestDirectoriesAreSeparateMounts) {
  const std::string outcome = dir_.File("outcome");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (unshare(CLONE_NEWNS) != 0) _exit(77);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(77);
    for (const std::string& d : {state_, manifest_dir_}) {
      if (mount(d.c_str(), d.c_str(), nullptr, MS_BIND, nullptr) != 0) _exit(77);
    }
    absl::Status s = NewInstaller()->CheckCanInstall();
    if (s.ok()) s = NewInstaller()->Install(release_, release_sha_);
    testing::WriteFile(outcome, s.ok() ? "ok" : std::string(ReasonOf(s)) + ": " + std::string(s.message()));
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "no mount namespace here (needs root)";
  EXPECT_EQ(ReadFile(outcome), "ok");
  EXPECT_EQ(ReadFile(live_), Manifest(kNewImage));
}

TEST_F(StaticPodInstallerTest, AManifestDirectoryThatIsGoneIsRefusedBeforeTheStop) {
  std::filesystem::remove_all(manifest_dir_);
  absl::Status s = NewInstaller()->CheckCanInstall();
  EXPECT_EQ(ReasonOf(s), reason::kArtifactIo) << s;
  EXPECT_NE(s.message().find(manifest_dir_), std::string::npos) << s;
}

// Runs Install in a child process whose step hook SIGKILLs it, as a crash
// of kmsfleetd there would leave the node.
void InstallAndDie(Installer& installer, const std::string& release, const std::string& sha,
                   bool& died) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    installer.Install(release, sha).IgnoreError();  // killed before it returns
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  died = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

TEST_F(StaticPodInstallerTest, ACrashLeavesTheOldOrTheNewManifestWhole) {
  for (const std::string step : {"staged", "renamed"}) {
    WriteRaw(live_, Manifest(kOldImage), 0644);
    auto dying = NewInstaller([&](std::string_view at) {
      if (at == step) raise(SIGKILL);
    });
    bool died = false;
    InstallAndDie(*dying, release_, release_sha_, died);
    ASSERT_TRUE(died) << step;
    EXPECT_EQ(ReadFile(live_), step == "staged" ? Manifest(kOldImage) : Manifest(kNewImage))
        << step;
    EXPECT_EQ(Entries(manifest_dir_, /*hidden_too=*/false),
              std::vector<std::string>{"bao-kms-provider.yaml"})
        << step << ": what the kubelet reads";

    // The next agent finishes the job and clears the dead one's temp file.
    ASSERT_TRUE(NewInstaller()->Install(release_, release_sha_).ok()) << step;
    EXPECT_EQ(ReadFile(live_), Manifest(kNewImage)) << step;
    EXPECT_EQ(Entries(manifest_dir_), std::vector<std::string>{"bao-kms-provider.yaml"})
        << step << ": the dead one's hidden temp file is gone";
  }
}

// The late check runs once the new manifest is written and fsynced, right
// before the rename: an edit made while it was written is judged, and a
// refusal leaves it in place with no temp file beside it.
TEST_F(StaticPodInstallerTest, ALateCheckSeesAnEditMadeWhileTheManifestWasWritten) {
  const std::string edited = Manifest(kOldImage) + "# edited by hand\n";
  auto installer = NewInstaller([&](std::string_view at) {
    if (at == "staged") WriteRaw(live_, edited, 0644);
  });
  int checks = 0;
  std::string seen;
  absl::Status s = installer->Install(release_, release_sha_, [&] {
    ++checks;
    seen = ReadFile(live_);
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kManifestChanged, "edited");
  });
  EXPECT_EQ(ReasonOf(s), reason::kManifestChanged) << s;
  EXPECT_EQ(checks, 1);
  EXPECT_EQ(seen, edited);
  EXPECT_EQ(ReadFile(live_), edited);
  EXPECT_EQ(Entries(manifest_dir_), std::vector<std::string>{"bao-kms-provider.yaml"});

  // A check that admits lets the install go on.
  ASSERT_TRUE(NewInstaller()->Install(release_, release_sha_, [] { return absl::OkStatus(); }).ok());
  EXPECT_EQ(ReadFile(live_), Manifest(kNewImage));
}

// Found in review: a release image tagged latest (pinned by digest too)
// rendered a manifest without imagePullPolicy, which the kubelet takes as
// Always; the live manifest's check refused only the next swap. The
// rendered one is refused as the live one would be, naming the live file
// the operator mends; an explicit IfNotPresent there lets it through.
TEST_F(StaticPodInstallerTest, ARenderedManifestTheKubeletWouldAlwaysPullIsRefused) {
  const std::string latest =
      "ghcr.io/dc-tec/bao-kms-provider:latest@sha256:" + std::string(64, 'c');
  const std::string dest = state_ + "/artifacts/0.2.0/latest.yaml";
  absl::StatusOr<std::string> sha = RenderReleaseManifest(live_, latest, dest);
  EXPECT_EQ(ReasonOf(sha.status()), reason::kImagePullPolicyAlways) << sha.status();
  EXPECT_THAT(std::string(sha.status().message()), ::testing::HasSubstr(latest));
  EXPECT_THAT(std::string(sha.status().message()), ::testing::HasSubstr(live_));
  EXPECT_FALSE(std::filesystem::exists(dest));
  EXPECT_EQ(ReasonOf(CheckReleaseManifestRenders(live_, latest)), reason::kImagePullPolicyAlways);

  std::string pinned = Manifest(kOldImage);
  pinned.replace(pinned.find("    args:"), 0, "    imagePullPolicy: IfNotPresent\n");
  WriteRaw(live_, pinned, 0644);
  EXPECT_TRUE(RenderReleaseManifest(live_, latest, dest).ok());
  EXPECT_TRUE(CheckReleaseManifestRenders(live_, latest).ok());
}

TEST_F(StaticPodInstallerTest, RenderRefusesALiveManifestItCannotEditAndWritesNothing) {
  WriteRaw(live_, "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: other\n", 0600);
  const std::string dest = state_ + "/artifacts/0.2.0/other.yaml";
  absl::StatusOr<std::string> sha = RenderReleaseManifest(live_, kNewImage, dest);
  EXPECT_EQ(ReasonOf(sha.status()), reason::kManifestContainerNotFound) << sha.status();
  EXPECT_EQ(MetadataOf(sha.status(), "file"), live_);
  EXPECT_FALSE(std::filesystem::exists(dest));
}

}  // namespace
}  // namespace kmsfleet
