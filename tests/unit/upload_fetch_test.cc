// UploadFetcher against an in-process Fleet service standing in for the
// node that holds an upload: how its refusals and a slow answer reach the
// agent that stages.
#include "kmsfleet/cluster/upload_fetch.h"

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>


#include <chrono>
#include <filesystem>
#include <thread>

#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;

const std::string kSha(64, 'c');

// Answers FetchArtifact with `refusal`; when it is OK, sends `bytes` in one
// chunk, or with none holds the call until the caller cancels it (a holder
// that never sends).
class HolderService final : public v1::Fleet::Service {
 public:
  explicit HolderService(absl::Status refusal, std::string bytes = "")
      : refusal_(std::move(refusal)), bytes_(std::move(bytes)) {}
  grpc::Status FetchArtifact(grpc::ServerContext* context, const v1::FetchArtifactRequest* request,
                             grpc::ServerWriter<v1::ArtifactChunk>* writer) override {
    if (!refusal_.ok()) return ToGrpcStatus(refusal_);
    if (!bytes_.empty()) {
      v1::ArtifactChunk chunk;
      chunk.set_name(request->name());
      chunk.set_data(bytes_);
      writer->Write(chunk);
      return grpc::Status::OK;
    }
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!context->IsCancelled() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return grpc::Status::CANCELLED;
  }

 private:
  absl::Status refusal_;
  std::string bytes_;
};

class UploadFetchTest : public ::testing::Test {
 protected:
  void Serve(absl::Status refusal, std::string bytes = "",
             uint64_t reserve_bytes = kStateFreeSpaceReserveBytes) {
    service_ = std::make_unique<HolderService>(std::move(refusal), std::move(bytes));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    fetcher_ = std::make_unique<UploadFetcher>(
        std::map<std::string, std::string>{{"cp-1", "127.0.0.1:" + std::to_string(port)}},
        grpc::InsecureChannelCredentials(), std::chrono::minutes(5), reserve_bytes);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }

  const std::string source_ = "coordinator://cp-1/" + kSha + "/bao-kms-provider";
  testing::TempDir dir_;
  std::unique_ptr<HolderService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<UploadFetcher> fetcher_;
};

// Found in review: the holder's "this agent holds no upload" reached the
// plan as if the staging agent had said it.
TEST_F(UploadFetchTest, TheHoldersRefusalKeepsItsReasonAndNamesTheHolder) {
  Serve(MakeError(absl::StatusCode::kNotFound, reason::kUploadNotFound,
                  "this agent holds no upload " + kSha + "/bao-kms-provider"));
  const std::string dest = dir_.File("fetched");
  absl::Status s = fetcher_->Fetch(source_, UploadKind::kBinary, dest);
  EXPECT_EQ(ReasonOf(s), reason::kUploadNotFound) << s;
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cp-1 answered: this agent holds no upload"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(source_));
  EXPECT_FALSE(std::filesystem::exists(dest));
}

// Found in review: a fetch waited up to its own 5 minutes while the Stage
// call it served had long ended (the coordinator gives it 30 s).
TEST_F(UploadFetchTest, AFetchEndsWithTheStageCallItServes) {
  Serve(absl::OkStatus());
  const std::string dest = dir_.File("fetched");
  const auto started = std::chrono::steady_clock::now();
  absl::Status s = fetcher_->Fetch(source_, UploadKind::kBinary, dest,
                                   std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(ReasonOf(s), reason::kArtifactFetchFailed) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("from cp-1"));
  EXPECT_LT(took, std::chrono::seconds(10));
  EXPECT_FALSE(std::filesystem::exists(dest));
}

// Found in review: a fetch served a Stage call whatever became of it: with
// Stage given the download timeout (minutes), a SIGTERM waited for it past
// systemd's TimeoutStopSec. A holder that sends nothing is left at once.
TEST_F(UploadFetchTest, AFetchEndsWhenItIsToldToStop) {
  Serve(absl::OkStatus());
  const std::string dest = dir_.File("fetched");
  const auto started = std::chrono::steady_clock::now();
  absl::Status s = fetcher_->Fetch(source_, UploadKind::kBinary, dest,
                                   UploadFetcher::Deadline::max(), [&]() -> absl::Status {
                                     if (std::chrono::steady_clock::now() - started <
                                         std::chrono::milliseconds(300)) {
                                       return absl::OkStatus();
                                     }
                                     return MakeError(absl::StatusCode::kUnavailable,
                                                      reason::kAgentStopping, "stopping");
                                   });
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(ReasonOf(s), reason::kAgentStopping) << s;
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_FALSE(std::filesystem::exists(dest));
}

// Found in review: bytes that did not hash to the source's digest were
// reported as an "upload ... refused: the 0 bytes received", naming
// neither the fetch, its source nor the holder.
TEST_F(UploadFetchTest, BytesThatDoNotMatchTheSourceNameTheFetchAndTheHolder) {
  Serve(absl::OkStatus(), "tampered");
  const std::string dest = dir_.File("fetched");
  absl::Status s = fetcher_->Fetch(source_, UploadKind::kBinary, dest);
  EXPECT_EQ(ReasonOf(s), reason::kUploadDigestMismatch) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("fetch of " + source_ + " from cp-1 refused: the 8 bytes received"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(kSha));
  EXPECT_EQ(MetadataOf(s, "node"), "cp-1");
  EXPECT_EQ(MetadataOf(s, "expected"), kSha);
  EXPECT_FALSE(std::filesystem::exists(dest));
}

// Found in review: a source naming a node this agent has no address for
// came back Unavailable, so the plan sent the Stage again for ever; asking
// again cannot help, so it is FailedPrecondition and the plan halts.
TEST_F(UploadFetchTest, ASourceOnANodeWithNoAddressIsNotAskedAgain) {
  Serve(absl::OkStatus());
  const std::string source = "coordinator://cp-9/" + kSha + "/bao-kms-provider";
  const std::string dest = dir_.File("fetched");
  absl::Status s = fetcher_->Fetch(source, UploadKind::kBinary, dest);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(ReasonOf(s), reason::kArtifactFetchFailed) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("cp-9"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("no cluster address"));
  EXPECT_FALSE(std::filesystem::exists(dest));
}

// Found in review: an agent's fetch of an upload wrote into its state
// directory with no regard for what was left free there.
TEST_F(UploadFetchTest, AFetchThatWouldEatIntoTheFreeSpaceReserveIsRefused) {
  Serve(absl::OkStatus(), "tampered", uint64_t{1} << 62);
  const std::string dest = dir_.File("fetched");
  absl::Status s = fetcher_->Fetch(source_, UploadKind::kBinary, dest);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(ReasonOf(s), reason::kArtifactIo) << s;
  EXPECT_EQ(MetadataOf(s, "needed_bytes"), "8") << s;
  EXPECT_FALSE(std::filesystem::exists(dest));
}

// Found in review: a fetch whose file could not be created or written
// (a read-only or failing disk) came back Unavailable, so the plan sent
// the Stage again for ever, fetching the whole file each time; runbook
// upgrade.md says disk problems halt the plan.
TEST_F(UploadFetchTest, ALocalDiskErrorIsNotAskedAgain) {
  Serve(absl::OkStatus(), "tampered");
  const std::string gone = dir_.File("gone/fetched");  // its directory is absent
  absl::Status create = fetcher_->Fetch(source_, UploadKind::kBinary, gone);
  EXPECT_EQ(create.code(), absl::StatusCode::kFailedPrecondition) << create;
  EXPECT_EQ(ReasonOf(create), reason::kArtifactIo) << create;
  EXPECT_EQ(MetadataOf(create, "path"), gone);

  // Writing past the file size limit fails with EFBIG.
  const std::string dest = dir_.File("fetched");
  absl::Status write;
  {
    testing::FileSizeLimit limit(4);
    write = fetcher_->Fetch(source_, UploadKind::kBinary, dest);
  }
  EXPECT_EQ(write.code(), absl::StatusCode::kFailedPrecondition) << write;
  EXPECT_THAT(std::string(write.message()), HasSubstr("cannot write " + dest));
  EXPECT_FALSE(std::filesystem::exists(dest));
}

}  // namespace
}  // namespace kmsfleet
