// KMS v2 Status over a unix socket, with the connection kept between calls.
#include "kmsfleet/node/kms_client.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <thread>

#include "k8s/kms/v2/api.grpc.pb.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

constexpr std::chrono::milliseconds kTimeout{2000};

class StatusService final : public v2::KeyManagementService::Service {
 public:
  StatusService(std::string key_id, std::chrono::milliseconds delay)
      : key_id_(std::move(key_id)), delay_(delay) {}
  grpc::Status Status(grpc::ServerContext*, const v2::StatusRequest*,
                      v2::StatusResponse* response) override {
    std::this_thread::sleep_for(delay_);
    response->set_version("v2");
    response->set_healthz("ok");
    response->set_key_id(key_id_);
    return grpc::Status::OK;
  }

 private:
  std::string key_id_;
  std::chrono::milliseconds delay_;
};

// A provider's KMS endpoint on a unix socket whose connections it counts:
// it accepts them itself and hands each to a gRPC server. The gRPC server
// can be replaced while the socket stays (a server that dropped every
// connection).
class KmsEndpoint {
 public:
  KmsEndpoint(const std::string& path, std::string key_id) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    unlink(path.c_str());
    bool bound = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                 listen(fd_, 0) == 0;  // one pending connection: see Hold()
    EXPECT_TRUE(bound) << path << ": " << std::strerror(errno);
    Serve(std::move(key_id));
    thread_ = std::thread([this] { Accept(); });
  }
  ~KmsEndpoint() {
    shutdown(fd_, SHUT_RDWR);  // wakes accept()
    thread_.join();
    close(fd_);
    std::lock_guard lock(mu_);
    server_->Shutdown();
  }

  // Drops every connection and answers with `key_id` from now on, each
  // answer `delay` late.
  void Serve(std::string key_id,
             std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
    auto service = std::make_unique<StatusService>(std::move(key_id), delay);
    grpc::ServerBuilder builder;
    builder.RegisterService(service.get());
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    std::lock_guard lock(mu_);
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    server_ = std::move(server);
    services_.push_back(std::move(service));
  }

  int accepted() const { return accepted_.load(); }

  // Stops accepting and fills the listen queue, so a connect fails at once
  // (EAGAIN) although the socket file and its listener stay: a provider too
  // busy to take connections. Returns the queued client sockets.
  std::vector<int> Hold(const std::string& path) {
    {
      std::lock_guard lock(mu_);
      held_ = true;
    }
    held_from_ = accepted_.load();
    held_connects_ = 0;
    std::vector<int> queued;
    // The accept thread takes the first connection, then waits.
    for (int i = 0; i < 8; ++i) {
      int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
      int r = connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      queued.push_back(c);
      if (r != 0 && errno == EAGAIN) break;
      ++held_connects_;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return queued;
  }

  // Takes connections again, returning once the queue Hold() filled is
  // drained, so that a connect made after it is not refused by that queue.
  void Release(const std::vector<int>& queued) {
    for (int c : queued) close(c);
    {
      std::lock_guard lock(mu_);
      held_ = false;
    }
    released_.notify_all();
    for (int i = 0; i < 1000 && accepted_.load() < held_from_ + held_connects_; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

 private:
  void Accept() {
    for (;;) {
      // gRPC takes the descriptor as it would its own: non-blocking.
      int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (conn < 0) return;
      accepted_.fetch_add(1);
      std::unique_lock lock(mu_);
      if (held_) {
        close(conn);
        released_.wait(lock, [this] { return !held_; });
        continue;
      }
      grpc::AddInsecureChannelFromFd(server_.get(), conn);
    }
  }

  int fd_ = -1;
  std::atomic<int> accepted_{0};
  std::mutex mu_;
  bool held_ = false;  // guarded by mu_
  int held_from_ = 0;       // accepted_ when Hold() began
  int held_connects_ = 0;   // connects Hold() made that were not refused
  std::condition_variable released_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<StatusService>> services_;
  std::thread thread_;
};

std::string KeyIdOf(const absl::StatusOr<v2::StatusResponse>& r) {
  return r.ok() ? r->key_id() : "error: " + std::string(r.status().message());
}

class KmsClientTest : public ::testing::Test {
 protected:
  std::string Socket() const { return dir_.File("kms.sock"); }
  testing::TempDir dir_;
};

TEST_F(KmsClientTest, KeepsOneConnectionAcrossCalls) {
  KmsEndpoint provider(Socket(), "key-1");
  KmsStatusClient client(Socket());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(KeyIdOf(client.Query(kTimeout)), "key-1");
  EXPECT_EQ(provider.accepted(), 1);
}

TEST_F(KmsClientTest, AProviderStartedAgainIsAskedEvenWhileTheOldOneStillServes) {
  auto old_provider = std::make_unique<KmsEndpoint>(Socket(), "key-1");
  KmsStatusClient client(Socket());
  ASSERT_EQ(KeyIdOf(client.Query(kTimeout)), "key-1");
  // The old process keeps its socket (moved aside here, unlinked by a
  // real restart) and its connection open; the new one binds the path.
  ASSERT_EQ(rename(Socket().c_str(), dir_.File("old.sock").c_str()), 0);
  KmsEndpoint new_provider(Socket(), "key-2");
  EXPECT_EQ(KeyIdOf(client.Query(kTimeout)), "key-2");
  EXPECT_EQ(new_provider.accepted(), 1);
}

TEST_F(KmsClientTest, AKeptConnectionThatWasDroppedIsReplacedWithinTheCall) {
  KmsEndpoint provider(Socket(), "key-1");
  KmsStatusClient client(Socket());
  ASSERT_EQ(KeyIdOf(client.Query(kTimeout)), "key-1");
  provider.Serve("key-2");  // same socket file, every connection dropped
  EXPECT_EQ(KeyIdOf(client.Query(kTimeout)), "key-2");
}

TEST_F(KmsClientTest, AConnectionThatFailedIsNotKeptInItsBackOff) {
  KmsEndpoint provider(Socket(), "key-1");
  KmsStatusClient client(Socket());
  ASSERT_EQ(KeyIdOf(client.Query(kTimeout)), "key-1");
  provider.Serve("key-2");  // the kept connection is dropped
  std::vector<int> queued = provider.Hold(Socket());
  absl::StatusOr<v2::StatusResponse> busy = client.Query(kTimeout);
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(ReasonOf(busy.status()), reason::kKmsSocketUnreachable);
  provider.Release(queued);
  // A channel whose connect failed waits a second or more before it tries
  // again; the provider takes connections now.
  EXPECT_EQ(KeyIdOf(client.Query(kTimeout)), "key-2");
}

TEST_F(KmsClientTest, AProviderThatIsBackIsSeenOnTheFirstCall) {
  KmsStatusClient client(Socket());
  {
    KmsEndpoint provider(Socket(), "key-1");
    ASSERT_EQ(KeyIdOf(client.Query(kTimeout)), "key-1");
  }
  absl::StatusOr<v2::StatusResponse> down = client.Query(kTimeout);
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(ReasonOf(down.status()), reason::kKmsSocketUnreachable);
  // No reconnect back-off carries over from the failed calls.
  KmsEndpoint provider(Socket(), "key-2");
  EXPECT_EQ(KeyIdOf(client.Query(kTimeout)), "key-2");
}

TEST_F(KmsClientTest, AProviderTooSlowToAnswerIsATimeoutNamingTheSocket) {
  KmsEndpoint provider(Socket(), "key-1");
  KmsStatusClient client(Socket());
  ASSERT_EQ(KeyIdOf(client.Query(kTimeout)), "key-1");
  provider.Serve("key-2", std::chrono::milliseconds(500));
  absl::StatusOr<v2::StatusResponse> slow = client.Query(std::chrono::milliseconds(50));
  ASSERT_FALSE(slow.ok());
  EXPECT_EQ(slow.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ReasonOf(slow.status()), reason::kTimeout);
  EXPECT_NE(slow.status().message().find(Socket()), std::string::npos) << slow.status();
  provider.Serve("key-3");
  EXPECT_EQ(KeyIdOf(client.Query(kTimeout)), "key-3");
}

TEST_F(KmsClientTest, NoSocketIsUnreachableNamingIt) {
  KmsStatusClient client(Socket());
  absl::StatusOr<v2::StatusResponse> r = client.Query(kTimeout);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(r.status()), reason::kKmsSocketUnreachable);
  EXPECT_NE(r.status().message().find(Socket()), std::string::npos) << r.status();
}

}  // namespace
}  // namespace kmsfleet
