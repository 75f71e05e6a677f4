// The CRI client (node/cri_client.h) against fake-cri over a real unix
// socket (issue 10): staging by digest only, the pulled digest checked, and
// the static pod's containers found by the kubelet's labels.
#include "kmsfleet/node/cri_client.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using std::chrono::milliseconds;
using testing::ChildOptions;
using testing::ChildProcess;
using testing::PathExists;
using testing::ReadFile;
using testing::TempDir;
using testing::WaitUntil;
using testing::WriteFile;

const std::string kRepo = "ghcr.io/dc-tec/bao-kms-provider";
const std::string kDigestA = "sha256:" + std::string(64, 'a');
const std::string kDigestB = "sha256:" + std::string(64, 'b');
const std::string kImageIdA = "sha256:" + std::string(64, '1');
const std::string kRefA = kRepo + "@" + kDigestA;

std::string Contains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos ? "" : text;
}

class CriClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ChildOptions options;
    options.out_path = dir_.File("fake-cri.log");
    fake_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{FAKE_CRI_PATH, "--socket", socket_, "--state-dir", dir_.path()},
        options);
    ASSERT_TRUE(WaitUntil([&] { return PathExists(socket_); }, milliseconds(5000)))
        << fake_->Output();
  }

  std::unique_ptr<ContainerRuntime> Client(milliseconds pull_timeout = milliseconds(5000)) {
    return NewCriClient({.socket_path = socket_,
                         .call_timeout = milliseconds(2000),
                         .pull_timeout = pull_timeout});
  }

  void Images(const std::string& entries) {
    WriteFile(dir_.File("images.json"), "{\"images\":[" + entries + "]}");
  }

  TempDir dir_;
  std::string socket_ = dir_.File("cri.sock");
  std::unique_ptr<ChildProcess> fake_;
};

TEST_F(CriClientTest, PullOfAPinnedImageReturnsTheImageTheRuntimeHolds) {
  Images(R"({"ref":")" + kRefA + R"(","digest":")" + kDigestA + R"(","image_id":")" +
         kImageIdA + R"("})");
  absl::StatusOr<CriImage> image = Client()->PullImage(kRefA);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->id, kImageIdA);
  EXPECT_EQ(image->repo_digests, std::vector<std::string>{kRefA});
  EXPECT_NE(ReadFile(dir_.File("pulled.json")).find(kRefA), std::string::npos);
  absl::StatusOr<std::optional<CriImage>> status = Client()->ImageStatus(kRefA);
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(status->has_value());
  EXPECT_EQ((*status)->id, kImageIdA);
}

// Upstream `init` refuses a tag; a tag never reaches the runtime either.
TEST_F(CriClientTest, TagOnlyReferenceIsRefusedBeforeAnyCall) {
  Images(R"({"ref":")" + kRepo + R"(:0.2.0","digest":")" + kDigestA + R"("})");
  absl::Status status = Client()->PullImage(kRepo + ":0.2.0").status();
  EXPECT_EQ(ReasonOf(status), reason::kImageRefNotPinned);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Contains(status, kRepo + ":0.2.0"), "");
  EXPECT_EQ(ReadFile(dir_.File("calls.log")), "");  // no call at all
  EXPECT_FALSE(PathExists(dir_.File("pulled.json")));
}

// The registry served other bytes than the digest asked for.
TEST_F(CriClientTest, PulledDigestMismatchIsRefused) {
  Images(R"({"ref":")" + kRefA + R"(","digest":")" + kDigestB + R"("})");
  absl::Status status = Client()->PullImage(kRefA).status();
  EXPECT_EQ(ReasonOf(status), reason::kImageDigestMismatch);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Contains(status, kRepo + "@" + kDigestB), "");
  EXPECT_EQ(Contains(status, socket_), "");
  EXPECT_EQ(MetadataOf(status, "expected_digest"), kDigestA);
  // Nothing else was done: one pull, one status read.
  EXPECT_EQ(ReadFile(dir_.File("calls.log")),
            "PullImage " + kRefA + "\nImageStatus " + kRefA + "\n");
}

// The pull answered one image id while the runtime lists another.
TEST_F(CriClientTest, PullAnsweringAnotherImageIdIsRefused) {
  Images(R"({"ref":")" + kRefA + R"(","digest":")" + kDigestA + R"(","image_id":")" +
         kImageIdA + R"(","pull_answer":"sha256:)" + std::string(64, '2') + R"("})");
  absl::Status status = Client()->PullImage(kRefA).status();
  EXPECT_EQ(ReasonOf(status), reason::kImageDigestMismatch);
  EXPECT_EQ(Contains(status, kImageIdA), "");
}

// CRI-O answers a pull with the image's first repo digest, not its id
// (server/image_pull.go): that names the same image.
TEST_F(CriClientTest, PullAnsweringTheRepoDigestAsCriODoesIsAccepted) {
  Images(R"({"ref":")" + kRefA + R"(","digest":")" + kDigestA + R"(","image_id":")" +
         kImageIdA + R"(","pull_answer":")" + kRefA + R"("})");
  absl::StatusOr<CriImage> image = Client()->PullImage(kRefA);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->id, kImageIdA);
}

// Found in review: a familiar name (busybox@D) was refused after its pull,
// since containerd lists it as docker.io/library/busybox@D, the same image.
TEST_F(CriClientTest, AShortNameIsTheQualifiedNameTheRuntimeLists) {
  const std::string short_ref = "busybox@" + kDigestA;
  Images(R"({"ref":")" + short_ref + R"(","digest":")" + kDigestA + R"(","image_id":")" +
         kImageIdA + R"("})");
  absl::StatusOr<CriImage> image = Client()->PullImage(short_ref);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->repo_digests,
            std::vector<std::string>{"docker.io/library/busybox@" + kDigestA});
  absl::StatusOr<std::optional<CriImage>> status = Client()->ImageStatus(short_ref);
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(status->has_value());
  EXPECT_EQ((*status)->id, kImageIdA);
}

TEST_F(CriClientTest, PullFailureCarriesTheRuntimeMessageAndChangesNothing) {
  Images(R"({"ref":")" + kRefA + R"(","digest":")" + kDigestA +
         R"(","fail":"registry answered 503"})");
  absl::Status status = Client()->PullImage(kRefA).status();
  EXPECT_EQ(ReasonOf(status), reason::kImagePullFailed);
  EXPECT_EQ(Contains(status, "registry answered 503"), "");
  EXPECT_EQ(Contains(status, "PullImage"), "");
  EXPECT_EQ(Contains(status, socket_), "");
  EXPECT_FALSE(PathExists(dir_.File("pulled.json")));
}

TEST_F(CriClientTest, PullOfAnImageTheRegistryLacksFails) {
  absl::Status status = Client()->PullImage(kRefA).status();
  EXPECT_EQ(ReasonOf(status), reason::kImagePullFailed);
}

TEST_F(CriClientTest, SlowPullHitsTheDeadline) {
  Images(R"({"ref":")" + kRefA + R"(","digest":")" + kDigestA + R"(","pull_delay_ms":5000})");
  auto start = std::chrono::steady_clock::now();
  absl::Status status = Client(milliseconds(300))->PullImage(kRefA).status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(3000));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ReasonOf(status), reason::kTimeout);
  EXPECT_EQ(Contains(status, "PullImage"), "");
  EXPECT_EQ(Contains(status, socket_), "");
  // The fake abandons the pull when its caller gives up.
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(PathExists(dir_.File("pulled.json")));
}

TEST_F(CriClientTest, ImageStatusOfAnImageNotHeldIsEmpty) {
  absl::StatusOr<std::optional<CriImage>> status = Client()->ImageStatus(kRefA);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_FALSE(status->has_value());
}

// An image pulled before kmsfleet ran (the previous release's, kept for a
// rollback) is found by its reference and reports its repository digest.
TEST_F(CriClientTest, ImageStatusFindsAnImageHeldBeforeAnyPull) {
  Images(R"({"ref":")" + kRepo + ":0.1.0@" + kDigestA + R"(","digest":")" + kDigestA +
         R"(","image_id":")" + kImageIdA + R"(","present":true})");
  absl::StatusOr<std::optional<CriImage>> status =
      Client()->ImageStatus(kRepo + ":0.1.0@" + kDigestA);
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(status->has_value());
  EXPECT_EQ((*status)->id, kImageIdA);
  EXPECT_EQ((*status)->repo_digests, std::vector<std::string>{kRefA});
  EXPECT_EQ((*status)->repo_tags, std::vector<std::string>{kRepo + ":0.1.0"});
  EXPECT_EQ(ReasonOf(Client()->ImageStatus(kRepo + ":0.1.0").status()),
            reason::kImageRefNotPinned);
}

std::string ContainerJson(const std::string& id, const std::string& pod,
                          const std::string& state, int64_t created, const std::string& digest) {
  return R"({"id":")" + id + R"(","pod_name":")" + pod +
         R"(","pod_namespace":"kube-system","container_name":"bao-kms-provider",)" +
         R"("image_ref":")" + kRepo + "@" + digest + R"(","image_id":")" + kImageIdA +
         R"(","state":")" + state + R"(","created_at_ns":)" + std::to_string(created) +
         R"(,"started_at_ns":)" + std::to_string(created + 1) + R"(,"attempt":0})";
}

TEST_F(CriClientTest, ListContainersFindsThePodsContainersNewestFirst) {
  WriteFile(dir_.File("containers.json"),
            "{\"containers\":[" +
                ContainerJson("old", "bao-kms-provider-node1", "CONTAINER_EXITED", 100, kDigestA) +
                "," +
                ContainerJson("other", "bao-kms-provider-node2", "CONTAINER_RUNNING", 300,
                              kDigestA) +
                "," +
                ContainerJson("new", "bao-kms-provider-node1", "CONTAINER_RUNNING", 200, kDigestB) +
                "]}");
  absl::StatusOr<std::vector<CriContainer>> list = Client()->ListContainers(
      {"bao-kms-provider-node1", "kube-system", "bao-kms-provider"});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "new");
  EXPECT_EQ((*list)[0].state, CriContainerState::kRunning);
  EXPECT_EQ((*list)[0].image, kRepo + "@" + kDigestB);
  EXPECT_EQ((*list)[0].pod_name, "bao-kms-provider-node1");
  EXPECT_EQ((*list)[0].container_name, "bao-kms-provider");
  EXPECT_EQ((*list)[1].id, "old");
  EXPECT_EQ((*list)[1].state, CriContainerState::kExited);

  absl::StatusOr<CriContainer> status = Client()->ContainerStatus("new");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->state, CriContainerState::kRunning);
  EXPECT_EQ(status->image_ref, kRepo + "@" + kDigestB);
  EXPECT_EQ(status->image_digest, kDigestB);
  EXPECT_EQ(status->image_id, kImageIdA);
  EXPECT_EQ(status->created_at_ns, 200);
  EXPECT_EQ(status->started_at_ns, 201);
  EXPECT_EQ(CriStateName(status->state), "CONTAINER_RUNNING");
}

TEST_F(CriClientTest, ListContainersOfAPodWithoutContainersIsEmpty) {
  absl::StatusOr<std::vector<CriContainer>> list =
      Client()->ListContainers({"bao-kms-provider-node1", "kube-system", ""});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE(list->empty());
}

TEST_F(CriClientTest, ContainerStatusOfAnUnknownIdIsNotFound) {
  absl::Status status = Client()->ContainerStatus("gone").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReasonOf(status), reason::kCriContainerNotFound);
  EXPECT_EQ(Contains(status, "gone"), "");
}

TEST_F(CriClientTest, RuntimeErrorNamesTheCallAndTheSocket) {
  WriteFile(dir_.File("containers.json"), "{\"containers\": 7}");
  absl::Status status = Client()->ListContainers({"p", "kube-system", ""}).status();
  EXPECT_EQ(ReasonOf(status), reason::kCriCallFailed);
  EXPECT_EQ(Contains(status, "ListContainers"), "");
  EXPECT_EQ(Contains(status, socket_), "");
  EXPECT_EQ(Contains(status, "containers.json"), "");
}

TEST_F(CriClientTest, MissingSocketGivesAClearError) {
  std::string absent = dir_.File("absent.sock");
  auto client = NewCriClient({.socket_path = absent});
  absl::Status status = client->ListContainers({"p", "kube-system", ""}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(status), reason::kCriUnreachable);
  EXPECT_EQ(Contains(status, absent), "");
  EXPECT_EQ(Contains(status, "ListContainers"), "");
  EXPECT_EQ(MetadataOf(status, "socket"), absent);
  EXPECT_EQ(ReasonOf(client->PullImage(kRefA).status()), reason::kCriUnreachable);
}

TEST_F(CriClientTest, StoppedRuntimeIsUnreachable) {
  fake_->Signal(SIGKILL);
  ASSERT_TRUE(fake_->Wait(milliseconds(5000)).has_value());
  // The killed fake leaves its socket file behind, with nobody listening.
  absl::Status status = Client()->ContainerStatus("c1").status();
  EXPECT_EQ(ReasonOf(status), reason::kCriUnreachable);
  EXPECT_EQ(Contains(status, "ContainerStatus"), "");
}

}  // namespace
}  // namespace kmsfleet
