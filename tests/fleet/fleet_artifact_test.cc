// End to end (issue 9, "Artifacts reach every node"): release files that
// exist only on the operator's machine are uploaded to the coordinator by
// `kmsfleetctl upgrade`, and every agent fetches them from there over mTLS
// and verifies them with its own keys.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fleet_fixture.h"
#include "kmsfleet/core/artifact_upload.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"
#include "kmsfleet/node/subprocess.h"
#include "user_manager.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class FleetArtifactTest : public FleetUpgradeTest {
 protected:
  // Moves the release into a directory no agent is told about; the
  // harness's release directory is deleted, so a node could only stage
  // what the coordinator relays.
  void MoveReleaseToOperator() {
    const std::filesystem::path harness_dir = std::filesystem::path(release_.binary).parent_path();
    for (std::string* file : {&release_.binary, &release_.checksums, &release_.signature}) {
      const std::string moved = operator_dir_.File(std::filesystem::path(*file).filename());
      std::filesystem::copy_file(*file, moved,
                                 std::filesystem::copy_options::overwrite_existing);
      std::filesystem::remove(*file);
      *file = moved;
    }
    std::filesystem::remove_all(harness_dir);
  }

  std::string StagedFile(int i, const std::string& name) {
    return fleet_->NodeDir(i) + "/state/artifacts/0.2.0/" + name;
  }

  TempDir operator_dir_;
};

TEST_F(FleetArtifactTest, FilesOnlyOnTheOperatorsMachineReachEveryNode) {
  MoveReleaseToOperator();
  const int coordinator = fleet_->WaitForCoordinator();
  SubprocessResult r = Run((coordinator + 1) % 3, Upgrade({"--watch"}));
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text << fleet_->Logs();
  for (const std::string& file : {release_.binary, release_.checksums, release_.signature}) {
    EXPECT_THAT(r.stderr_text, HasSubstr("uploaded " + file + " ("));
  }
  EXPECT_THAT(r.stderr_text, HasSubstr("to the coordinator " + fleet_->Name(coordinator)));
  EXPECT_THAT(r.stdout_text, HasSubstr("3/3 nodes  Completed"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
  // The plan records where the agents staged from; each staged the
  // operator's own checksums.txt.
  EXPECT_THAT(PlanField("artifact_source"),
              HasSubstr("coordinator://" + fleet_->Name(coordinator) + "/"));
  for (int i = 0; i < FleetCluster::kNodes; ++i) {
    EXPECT_EQ(ReadFile(StagedFile(i, "checksums.txt")), ReadFile(release_.checksums))
        << fleet_->Name(i);
  }
}

// Found in review: uploads were never removed from the coordinator. A new
// upload once no plan is under way removes those of past plans.
TEST_F(FleetArtifactTest, AnUploadAfterAFinishedPlanRemovesTheUploadsOfPastPlans) {
  MoveReleaseToOperator();
  const int coordinator = fleet_->WaitForCoordinator();
  SubprocessResult r = Run((coordinator + 1) % 3, Upgrade({"--watch"}));
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text << fleet_->Logs();
  const std::string uploads = fleet_->NodeDir(coordinator) + "/state/uploads/";
  const std::string past = uploads + std::string(64, 'd');
  std::filesystem::create_directories(past);
  WriteFile(past + "/bao-kms-provider", "a release of a past plan");
  std::filesystem::last_write_time(
      past, std::filesystem::file_time_type::clock::now() - std::chrono::hours(2));

  // The same release again: nothing to do, so nothing is uploaded (and
  // nothing removed).
  r = Run((coordinator + 1) % 3, Upgrade());
  EXPECT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stdout_text, HasSubstr("nothing to do: [ALREADY_AT_TARGET]"));
  EXPECT_THAT(r.stderr_text, Not(HasSubstr("uploaded ")));
  EXPECT_TRUE(std::filesystem::exists(past));

  // A new release is uploaded, and its upload removes those of past plans.
  release_ = fleet_->MakeRelease("0.3.0");
  MoveReleaseToOperator();
  r = Run((coordinator + 1) % 3,
          {"upgrade", "--to", "0.3.0", "--artifact", release_.binary, "--checksums",
           release_.checksums, "--signature", release_.signature, "--watch"});
  EXPECT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text << fleet_->Logs();
  EXPECT_THAT(r.stderr_text, HasSubstr("uploaded " + release_.binary + " ("));
  EXPECT_FALSE(std::filesystem::exists(past)) << fleet_->Logs();
  EXPECT_THAT(fleet_->Logs(), HasSubstr("uploads of past plans removed"));
  const std::string source = PlanField("artifact_source");
  const std::string sha = source.substr(source.find('/', 14) + 1, 64);
  EXPECT_TRUE(std::filesystem::exists(uploads + sha)) << source;
}

// Found in review: the unix socket's message cap was the upload chunk
// itself, so on the coordinator's own host (local root, the default
// --agent) every upload of a real binary was refused and reported as
// AGENT_UNREACHABLE.
TEST_F(FleetArtifactTest, AnUploadOverTheCoordinatorsUnixSocketReachesEveryNode) {
  // As large as a real release (the fake's script is a few hundred
  // bytes): a comment after it, signed again.
  {
    std::ofstream out(release_.binary, std::ios::app);
    out << "\n# " << std::string(3 * kMaxUploadChunkBytes, 'x') << "\n";
  }
  const std::filesystem::path binary(release_.binary);
  SignRelease(binary.parent_path().string(), binary.filename().string(),
              fleet_->NodeDir(0) + "/../release.key");
  MoveReleaseToOperator();
  const int coordinator = fleet_->WaitForCoordinator();
  ASSERT_GT(std::filesystem::file_size(release_.binary), 2 * kMaxUploadChunkBytes);
  std::vector<std::string> argv = {KMSFLEETCTL_PATH};
  for (const std::string& a :
       Upgrade({"--watch", "--agent", "unix:" + fleet_->NodeDir(coordinator) + "/agent.sock"})) {
    argv.push_back(a);
  }
  SubprocessOptions o;
  o.timeout = std::chrono::seconds(120);
  absl::StatusOr<SubprocessResult> r = RunSubprocess(argv, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->exit_code, 0) << r->stdout_text << r->stderr_text << fleet_->Logs();
  EXPECT_THAT(r->stderr_text, HasSubstr("uploaded " + release_.binary + " ("));
  // Over the unix socket the plan's audit names local root (the issue's
  // "or \"local root\" over the unix socket").
  EXPECT_THAT(PlanJson(), HasSubstr("\"who\": \"local root\""));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

TEST_F(FleetArtifactTest, ABinaryTheSignedChecksumsDoNotListIsRefusedByEveryAgent) {
  MoveReleaseToOperator();
  // The coordinator relays whatever it is sent: the agents must catch it.
  WriteFile(release_.binary, ReadFile(release_.binary) + "# tampered\n");
  SubprocessResult r = Run(0, Upgrade({"--watch"}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stdout_text, HasSubstr("CHECKSUM_MISMATCH")) << fleet_->Logs();
  EXPECT_THAT(PlanJson(), HasSubstr("PLAN_PHASE_HALTED"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
  EXPECT_TRUE(fleet_->DownIntervals().empty());
  // Each agent, asked itself, fetches the upload and refuses it.
  const std::string source = PlanField("artifact_source");
  ASSERT_THAT(source, HasSubstr("coordinator://"));
  for (int i = 0; i < FleetCluster::kNodes; ++i) {
    absl::StatusOr<SubprocessResult> stage = RunSubprocess(
        {KMSFLEETCTL_PATH, "node", "--agent", "unix:" + fleet_->NodeDir(i) + "/agent.sock", "stage",
         "--version", "0.2.0", "--source", source, "--checksums", PlanField("checksums_source"),
         "--signature", PlanField("signature_source")},
        SubprocessOptions{});
    ASSERT_TRUE(stage.ok()) << stage.status();
    EXPECT_NE(stage->exit_code, 0) << fleet_->Name(i);
    const std::string said = stage->stdout_text + stage->stderr_text;
    EXPECT_THAT(said, HasSubstr("CHECKSUM_MISMATCH")) << fleet_->Name(i);
    // The refusal names the upload, not the temp file it was fetched into.
    EXPECT_THAT(said, HasSubstr(source)) << said;
    EXPECT_FALSE(PathExists(StagedFile(i, "bao-kms-provider"))) << fleet_->Name(i);
  }
}

// Found in review: a coordinator:// source naming the coordinator that
// no longer held it (pruned after an hour, or copied from an older plan)
// started a plan that could only halt once every node failed to stage.
TEST_F(FleetArtifactTest, ASourceTheCoordinatorDoesNotHoldStartsNoPlan) {
  const int coordinator = fleet_->WaitForCoordinator();
  const std::string missing = FormatCoordinatorSource(
      {fleet_->Name(coordinator), std::string(64, 'a'), "bao-kms-provider"});
  release_.binary = missing;
  SubprocessResult r = Run(coordinator, Upgrade());
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stderr_text, HasSubstr("UPLOAD_NOT_FOUND"));
  EXPECT_THAT(r.stderr_text, HasSubstr(missing));
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));
  EXPECT_TRUE(fleet_->DownIntervals().empty());
}

TEST_F(FleetArtifactTest, AnUploadTheCoordinatorRefusesStartsNoPlanAndStoresNothing) {
  MoveReleaseToOperator();
  const std::string odd = operator_dir_.File("bao kms provider");  // not a plain file name
  std::filesystem::rename(release_.binary, odd);
  release_.binary = odd;
  const int coordinator = fleet_->WaitForCoordinator();
  SubprocessResult r = Run(coordinator, Upgrade());
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stderr_text, HasSubstr("UPLOAD_BAD_NAME"));
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));
  const std::string uploads = fleet_->NodeDir(coordinator) + "/state/uploads";
  if (std::filesystem::exists(uploads)) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(uploads)) {
      EXPECT_TRUE(e.is_directory()) << "stored: " << e.path();
    }
  }
}

// Found in review: an upload its caller cut (Ctrl-C, or a local file
// that could not be read) was hashed and logged as refused for declaring
// no SHA-256, which sent the operator after the wrong problem.
TEST_F(FleetArtifactTest, AnUploadTheCallerCutsIsLoggedAsCutAndStoresNothing) {
  const int coordinator = fleet_->WaitForCoordinator();
  auto stub = v1::Fleet::NewStub(grpc::CreateChannel(
      "unix:" + fleet_->NodeDir(coordinator) + "/agent.sock", grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::ArtifactRef ref;
  auto writer = stub->UploadArtifact(&context, &ref);
  v1::ArtifactChunk chunk;
  chunk.set_name("bao-kms-provider");
  chunk.set_kind(std::string(UploadKindName(UploadKind::kBinary)));
  chunk.set_data(std::string(4096, 'x'));
  ASSERT_TRUE(writer->Write(chunk));
  // The server has the chunk once an unknown caller would have been
  // refused; then the caller goes away.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  context.TryCancel();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);

  const std::string log_file = fleet_->NodeDir(coordinator) + "/agent.log";
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string log;
  while ((log = ReadFile(log_file)).find("upload refused") == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_THAT(log, HasSubstr("the upload of bao-kms-provider was cut by the caller after 4096 "
                             "bytes; nothing is stored"));
  EXPECT_THAT(log, Not(HasSubstr("declares no SHA-256")));
  for (const auto& e : std::filesystem::recursive_directory_iterator(
           fleet_->NodeDir(coordinator) + "/state/uploads")) {
    EXPECT_TRUE(e.is_directory()) << "left behind: " << e.path();
  }
}

// Each upload holds a thread and a temp file on the coordinator. With
// cluster.upload_streams (4) held by callers that keep their streams open,
// the operator's upgrade is refused UPLOAD_BUSY (exit 3) and starts no
// plan; once those callers fall silent for cluster.upload_idle_timeout_ms
// (5 s here), their streams are ended with a status that says why, nothing
// of them stays, and the same upgrade runs. The silent callers use the
// unix socket, the operator the mTLS listener: one limit holds for both.
TEST_F(FleetArtifactTest, UploadsPastTheLimitAreRefusedUntilSilentOnesAreEnded) {
  MoveReleaseToOperator();
  const int coordinator = fleet_->WaitForCoordinator();
  auto stub = v1::Fleet::NewStub(grpc::CreateChannel(
      "unix:" + fleet_->NodeDir(coordinator) + "/agent.sock", grpc::InsecureChannelCredentials()));
  struct Held {
    grpc::ClientContext context;
    v1::ArtifactRef ref;
    std::unique_ptr<grpc::ClientWriter<v1::ArtifactChunk>> writer;
    std::string name;
    uint64_t sent = 0;
    bool Send() {
      v1::ArtifactChunk chunk;
      chunk.set_name(name);
      chunk.set_kind(std::string(UploadKindName(UploadKind::kBinary)));
      chunk.set_offset(sent);
      chunk.set_data(std::string(4096, 'x'));
      sent += 4096;
      return writer->Write(chunk);
    }
  };
  std::vector<std::unique_ptr<Held>> held;
  for (int i = 0; i < 4; ++i) {
    auto h = std::make_unique<Held>();
    // Long past the agent's bound: where it fails to end them, this does.
    h->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    h->writer = stub->UploadArtifact(&h->context, &h->ref);
    h->name = "silent-" + std::to_string(i);
    ASSERT_TRUE(h->Send());
    held.push_back(std::move(h));
  }
  // All four hold their slots once each has its temp file (the agent makes
  // it as it takes the slot); then one more upload is refused busy. (A
  // probe sent before could take the slot of a stream not yet begun.)
  const std::string uploads = fleet_->NodeDir(coordinator) + "/state/uploads";
  const auto begun = [&] {
    int n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(uploads, ec)) {
      n += e.path().filename().string().starts_with(".incoming-") ? 1 : 0;
    }
    return n;
  };
  ASSERT_TRUE(WaitUntil([&] { return begun() == 4; }, std::chrono::seconds(10))) << begun();
  const auto probe = [&] {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ArtifactRef ref;
    auto writer = stub->UploadArtifact(&context, &ref);
    v1::ArtifactChunk chunk;
    chunk.set_name("probe");
    chunk.set_kind(std::string(UploadKindName(UploadKind::kChecksums)));
    chunk.set_data("x");
    writer->Write(chunk);
    writer->WritesDone();
    return writer->Finish().error_code();
  };
  ASSERT_EQ(probe(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // The holders send a chunk a second while the operator's upgrade runs,
  // however long it takes to reach the coordinator.
  std::atomic<bool> holding{true};
  std::thread keeper([&] {
    while (holding) {
      for (int i = 0; i < 20 && holding; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      for (auto& h : held) h->Send();
    }
  });
  SubprocessResult busy = Run((coordinator + 1) % 3, Upgrade());
  holding = false;
  keeper.join();
  const auto silent_from = std::chrono::steady_clock::now();  // after the last chunk
  EXPECT_EQ(busy.exit_code, 3) << busy.stdout_text << busy.stderr_text;  // ask again
  EXPECT_THAT(busy.stderr_text, HasSubstr("UPLOAD_BUSY"));
  EXPECT_THAT(busy.stderr_text, HasSubstr("4 uploads are being received"));
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));

  for (auto& h : held) {
    grpc::Status s = h->writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << h->name;
    EXPECT_THAT(s.error_message(), HasSubstr("[UPLOAD_STALLED] the agent ended this upload: no "
                                             "chunk came for 5000 ms"))
        << h->name;  // kmsfleetctl reads it as UPLOAD_STALLED (UploadReleaseTest)
  }
  // Ended for their silence, not before it (the last chunk went at most
  // about a second before `silent_from`).
  EXPECT_GE(std::chrono::steady_clock::now() - silent_from, std::chrono::seconds(3));
  // The agent logs each once its handler has returned, after the caller
  // has its status.
  const std::string log_file = fleet_->NodeDir(coordinator) + "/agent.log";
  const auto all_logged = [&] {
    const std::string log = ReadFile(log_file);
    for (const auto& h : held) {
      if (log.find("the upload of " + h->name + " was ended after " + std::to_string(h->sent) +
                   " bytes: no chunk came for 5000 ms") == std::string::npos) {
        return false;
      }
    }
    return true;
  };
  EXPECT_TRUE(WaitUntil(all_logged, std::chrono::seconds(10))) << ReadFile(log_file);
  EXPECT_THAT(ReadFile(log_file), HasSubstr("reason=UPLOAD_STALLED"));
  for (const auto& e : std::filesystem::recursive_directory_iterator(uploads)) {
    EXPECT_TRUE(e.is_directory()) << "left behind: " << e.path();
  }

  SubprocessResult r = Run((coordinator + 1) % 3, Upgrade({"--watch"}));
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text << fleet_->Logs();
  EXPECT_THAT(r.stdout_text, HasSubstr("3/3 nodes  Completed"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
}

}  // namespace
}  // namespace kmsfleet::testing
