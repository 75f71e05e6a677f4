// Durable state files and what the election shell does with a bad one
// (architecture.md §2 "persist before you act", §7 bounded input).
#include "kmsfleet/cluster/state_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <vector>
#include <thread>
#include <fstream>

#include "kmsfleet/cluster/peer_node.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

class StateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kmsfleet-state-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(StateFileTest, WriteReplacesTheWholeFileAndLeavesNoTemporary) {
  std::string path = dir_ + "/election.pb";
  ASSERT_TRUE(WriteStateFile(path, "first, longer content").ok());
  ASSERT_TRUE(WriteStateFile(path, "second").ok());
  absl::StatusOr<std::optional<std::string>> read = ReadStateFile(path, 1024);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->value(), "second");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "state is private to the agent";
}

TEST_F(StateFileTest, MissingFileReadsAsFirstStart) {
  absl::StatusOr<std::optional<std::string>> read = ReadStateFile(dir_ + "/none", 10);
  ASSERT_TRUE(read.ok());
  EXPECT_FALSE(read->has_value());
}

TEST_F(StateFileTest, OversizedFileIsRefusedNamingIt) {
  std::string path = dir_ + "/big";
  ASSERT_TRUE(WriteStateFile(path, std::string(100, 'x')).ok());
  absl::StatusOr<std::optional<std::string>> read = ReadStateFile(path, 99);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReasonOf(read.status()), reason::kInputTooLarge);
  EXPECT_EQ(MetadataOf(read.status(), "path"), path);
}

TEST_F(StateFileTest, ReadErrorIsAnErrorNotAShortFile) {
  // open() of a directory succeeds and read() then fails with EISDIR: the
  // shape of an I/O error in the middle of a state file.
  absl::StatusOr<std::optional<std::string>> read = ReadStateFile(dir_, 1024);
  ASSERT_FALSE(read.ok()) << "read as " << read->value_or("<none>").size() << " bytes";
  EXPECT_EQ(read.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(read.status()), reason::kStateReadFailed);
  EXPECT_EQ(MetadataOf(read.status(), "path"), dir_);
}

TEST_F(StateFileTest, StateFilesRefuseSymlinksOperatorFilesFollowThem) {
  std::string target = dir_ + "/real.pem";
  ASSERT_TRUE(WriteStateFile(target, "-----BEGIN CERTIFICATE-----").ok());
  std::string link = dir_ + "/link.pem";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  // A link planted among the agent's own state cannot redirect a read...
  EXPECT_EQ(ReasonOf(ReadStateFile(link, 1024).status()), reason::kStateReadFailed);
  EXPECT_FALSE(ReadBoundedFile(link, 1024).ok());
  // ...while an operator's certificate or config may well be a link.
  absl::StatusOr<std::string> followed = ReadBoundedFile(link, 1024, Symlinks::kFollow);
  ASSERT_TRUE(followed.ok()) << followed.status();
  EXPECT_EQ(*followed, "-----BEGIN CERTIFICATE-----");
}

TEST_F(StateFileTest, AFifoWhereAFileShouldBeIsRefusedWithoutBlocking) {
  // A config path pointing at a FIFO used to block the agent's start in
  // open(); every bounded read now refuses anything but a regular file.
  std::string fifo = dir_ + "/config.yaml";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  absl::StatusOr<std::string> read = ReadBoundedFile(fifo, 1024, Symlinks::kFollow);
  EXPECT_EQ(ReasonOf(read.status()), reason::kNotRegularFile);
  EXPECT_EQ(MetadataOf(read.status(), "file_type"), "a FIFO");
  EXPECT_EQ(MetadataOf(read.status(), "path"), fifo);
}

TEST_F(StateFileTest, ConcurrentAtomicWritesOfOnePathUseTempFilesOfTheirOwn) {
  std::string path = dir_ + "/shared.json";
  std::vector<std::thread> writers;
  for (int i = 0; i < 8; ++i) {
    writers.emplace_back([&path, i] {
      std::string body(4096, static_cast<char>('a' + i));
      for (int n = 0; n < 20; ++n) EXPECT_TRUE(WriteFileAtomic(path, body, 0600).ok());
    });
  }
  for (std::thread& t : writers) t.join();
  // One writer's whole content, never a mix, and no temp file left behind.
  absl::StatusOr<std::string> final_text = ReadBoundedFile(path, 1 << 16);
  ASSERT_TRUE(final_text.ok()) << final_text.status();
  EXPECT_EQ(*final_text, std::string(4096, (*final_text)[0]));
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1u);
}

TEST_F(StateFileTest, WriteIntoMissingDirectoryFailsNamingThePath) {
  absl::Status s = WriteStateFile(dir_ + "/no/such/dir/election.pb", "x");
  EXPECT_EQ(ReasonOf(s), reason::kStateWriteFailed);
  EXPECT_NE(s.message().find("no/such/dir/election.pb"), std::string::npos);
}

TEST_F(StateFileTest, CorruptElectionStateStopsThePeerNodeFromOpening) {
  ASSERT_TRUE(WriteStateFile(dir_ + "/election.pb", "\xff\xff\xff not a proto").ok());
  PeerNodeOptions options;
  options.election = ElectionConfig{.self = "cp-1", .voters = {"cp-1"}};
  options.state_dir = dir_;
  absl::StatusOr<std::unique_ptr<PeerNode>> node = PeerNode::Open(std::move(options));
  EXPECT_EQ(node.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReasonOf(node.status()), reason::kCorruptState);
  EXPECT_EQ(MetadataOf(node.status(), "path"), dir_ + "/election.pb");
}

// Found in review: the advice for a corrupt fence.pb was "remove it to
// rejoin as a new member", and a node without it forgets where it handed
// its slot off. Each file's refusal says what removing it forgets.
TEST_F(StateFileTest, ACorruptStateFileSaysWhatRemovingItForgets) {
  ASSERT_TRUE(WriteStateFile(dir_ + "/fence.pb", "\xff\xff\xff not a proto").ok());
  PeerNodeOptions options;
  options.election = ElectionConfig{.self = "cp-1", .voters = {"cp-1"}};
  options.state_dir = dir_;
  absl::StatusOr<std::unique_ptr<PeerNode>> node = PeerNode::Open(options);
  EXPECT_EQ(ReasonOf(node.status()), reason::kCorruptState);
  EXPECT_EQ(MetadataOf(node.status(), "path"), dir_ + "/fence.pb");
  EXPECT_THAT(std::string(node.status().message()),
              ::testing::HasSubstr("forgets where it handed its slot off"));
  ASSERT_TRUE(WriteStateFile(dir_ + "/fence.pb", "").ok());
  ASSERT_TRUE(WriteStateFile(dir_ + "/election.pb", "\xff\xff\xff not a proto").ok());
  node = PeerNode::Open(options);
  EXPECT_THAT(std::string(node.status().message()),
              ::testing::HasSubstr("forgets its term and vote"));
}

TEST_F(StateFileTest, StateDirThatCannotBeCreatedStopsThePeerNodeFromOpening) {
  std::ofstream(dir_ + "/state") << "a file where the directory should be";
  PeerNodeOptions options;
  options.election = ElectionConfig{.self = "cp-1", .voters = {"cp-1"}};
  options.state_dir = dir_ + "/state";
  absl::StatusOr<std::unique_ptr<PeerNode>> node = PeerNode::Open(std::move(options));
  EXPECT_EQ(node.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(node.status()), reason::kStateWriteFailed);
  EXPECT_EQ(MetadataOf(node.status(), "path"), dir_ + "/state");
}

// A fresh node's state_dir does not exist yet: the node creates it rather
// than failing every write (and so every election) later.
TEST_F(StateFileTest, SingleVoterPeerNodeLeadsAndPersistsItsTerm) {
  PeerNodeOptions options;
  options.election = ElectionConfig{.self = "cp-1", .voters = {"cp-1"}};
  options.state_dir = dir_ + "/state";
  options.tick = std::chrono::milliseconds(5);
  absl::StatusOr<std::unique_ptr<PeerNode>> node = PeerNode::Open(std::move(options));
  ASSERT_TRUE(node.ok()) << node.status();
  (*node)->Start();
  // It elects itself once its election timeout (10-19 ticks) runs out.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((*node)->View().role() != "Leader" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  absl::StatusOr<v1::Fence> fence =
      (*node)->ProposePlan("cp-1", "plan", std::chrono::seconds(5));
  ASSERT_TRUE(fence.ok()) << fence.status();
  (*node)->Stop();
  v1::HardState persisted;
  struct stat st {};
  ASSERT_EQ(stat((dir_ + "/state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::ifstream in(dir_ + "/state/election.pb", std::ios::binary);
  ASSERT_TRUE(persisted.ParseFromIstream(&in));
  EXPECT_EQ(persisted.term(), fence->term());
  EXPECT_EQ(persisted.committed().payload(), "plan");
  EXPECT_EQ(persisted.committed().in_flight(), "cp-1");
}

}  // namespace
}  // namespace kmsfleet
