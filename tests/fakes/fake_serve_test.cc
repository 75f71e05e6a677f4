// `serve` end to end: the fake binds nothing during its bootstrap delay,
// then answers /live, /ready, /metrics and KMS v2 on its socket, follows
// scenario edits live, and cleans up on SIGTERM (reference §2.10, §3, §4).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include <boost/json.hpp>
#include <grpcpp/grpcpp.h>

#include "fake_test_config.h"
#include "k8s/kms/v2/api.grpc.pb.h"
#include "key_material.h"
#include "kmsfleet/node/key_id_hash.h"
#include "test_process.h"

namespace kmsfleet::fake::testing {
namespace {

// Returns the `hash` label of every openbao_kms_status_key_id_hash series.
std::vector<std::string> HashSeries(const std::string& metrics) {
  const std::string prefix = "openbao_kms_status_key_id_hash{hash=\"";
  std::vector<std::string> hashes;
  for (size_t at = 0; (at = metrics.find(prefix, at)) != std::string::npos;) {
    at += prefix.size();
    hashes.push_back(metrics.substr(at, metrics.find('"', at) - at));
  }
  return hashes;
}

// Counts the sockets (TCP or unix) the process `pid` holds open.
int OpenSockets(pid_t pid) {
  int sockets = 0;
  const std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  for (const auto& entry : std::filesystem::directory_iterator(fd_dir)) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(entry.path(), ec);
    if (!ec && target.string().rfind("socket:", 0) == 0) ++sockets;
  }
  return sockets;
}

class FakeServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = WriteProviderConfig(dir_);
    socket_ = dir_.File("kms.sock");
    WriteFile(scenario_, "");
  }
  // Children are SIGKILLed by ~ChildProcess even when an assertion failed.
  void TearDown() override { child_.reset(); }

  // Starts serve from `binary`; when `wait_bound`, waits for its
  // listen-info file.
  void StartServe(bool wait_bound = true, const std::string& binary = FakeBinary()) {
    child_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{binary, "serve", "--config", config_, "--scenario",
                                 scenario_, "--listen-info", listen_info_},
        FakeChildOptions(dir_.File("serve.out"), dir_.File("serve.err")));
    if (wait_bound) WaitBound();
  }

  void WaitBound() {
    ASSERT_TRUE(WaitUntil([&] { return PathExists(listen_info_) || !child_->Running(); }, 5s));
    ASSERT_TRUE(PathExists(listen_info_)) << ReadFile(dir_.File("serve.err"));
    boost::json::object info = boost::json::parse(ReadFile(listen_info_)).as_object();
    metrics_ = std::string(info.at("metrics").as_string());
    health_ = std::string(info.at("health").as_string());
    EXPECT_EQ(Str(info.at("socket")), socket_);
  }

  std::unique_ptr<v2::KeyManagementService::Stub> Stub() {
    return v2::KeyManagementService::NewStub(
        grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
  }

  v2::StatusResponse Status() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 3s);
    v2::StatusResponse response;
    grpc::Status status = Stub()->Status(&context, v2::StatusRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  TempDir dir_;
  std::string config_;
  std::string socket_;
  std::string scenario_ = dir_.File("scenario.yaml");
  std::string listen_info_ = dir_.File("listen.json");
  std::string metrics_;
  std::string health_;
  std::unique_ptr<ChildProcess> child_;
};

TEST_F(FakeServeTest, AnswersLiveAndReadyLikeTheRealHealthListener) {
  StartServe();
  HttpResponse live = HttpGet(health_, "/live");
  EXPECT_EQ(live.status, 200);
  EXPECT_EQ(live.body, "{\"status\":\"ok\"}\n");
  HttpResponse ready = HttpGet(health_, "/ready");
  EXPECT_EQ(ready.status, 200);
  boost::json::object body = boost::json::parse(ready.body).as_object();
  EXPECT_TRUE(body.at("reasons").as_array().empty());
  EXPECT_EQ(body.at("status"), "ok");
  EXPECT_EQ(body.at("healthz"), "ok");
  EXPECT_EQ(body.at("stale"), false);
  EXPECT_EQ(body.at("rotation_state"), "active");
  EXPECT_TRUE(body.at("cache_age_ms").is_int64());
  EXPECT_EQ(HttpRequest(health_, "POST", "/ready").status, 405);
  EXPECT_EQ(HttpGet(health_, "/metrics").status, 404);
  EXPECT_EQ(HttpGet(metrics_, "/ready").status, 404);
}

TEST_F(FakeServeTest, NotReadyScenarioAnswers503WithItsReasons) {
  WriteFile(scenario_, "ready: false\nready_reasons: [metadata_read_failed]\n");
  StartServe();
  HttpResponse ready = HttpGet(health_, "/ready");
  EXPECT_EQ(ready.status, 503);
  boost::json::object body = boost::json::parse(ready.body).as_object();
  EXPECT_EQ(body.at("status"), "unavailable");
  EXPECT_EQ(body.at("reasons").as_array(), boost::json::array{"metadata_read_failed"});
  EXPECT_EQ(HttpGet(health_, "/live").status, 200);
}

// Counts the lines of the JSON log `log` whose message is `message` and
// that contain `field`.
int LogLines(const std::string& log, const std::string& message, const std::string& field) {
  int n = 0;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    n += line.find("\"message\":\"" + message + "\"") != std::string::npos &&
         line.find(field) != std::string::npos;
  }
  return n;
}

// The fleet tests count a provider as down until /ready first answers 200
// (tests/fleet): the test-only fake.ready_changed line says when, once per
// change, not once per request.
TEST_F(FakeServeTest, LogsEachChangeOfTheReadyAnswerOnce) {
  WriteFile(scenario_, "ready: false\n");
  StartServe();
  const std::string err = dir_.File("serve.err");
  EXPECT_EQ(LogLines(ReadFile(err), "fake.ready_changed", ""), 0) << "no answer yet";
  ASSERT_EQ(HttpGet(health_, "/ready").status, 503);
  ASSERT_EQ(HttpGet(health_, "/ready").status, 503);
  EXPECT_EQ(LogLines(ReadFile(err), "fake.ready_changed", "\"ready\":false,\"http_status\":503"),
            1);
  WriteFile(scenario_, "");
  ASSERT_TRUE(WaitUntil([&] { return HttpGet(health_, "/ready").status == 200; }, 3s));
  ASSERT_EQ(HttpGet(health_, "/ready").status, 200);
  const std::string log = ReadFile(err);
  EXPECT_EQ(LogLines(log, "fake.ready_changed", "\"ready\":true,\"http_status\":200"), 1) << log;
  EXPECT_EQ(LogLines(log, "fake.ready_changed", ""), 2) << log;
  // serve.ready came before any answer: it says nothing of /ready.
  EXPECT_LT(log.find("\"serve.ready\""), log.find("\"fake.ready_changed\"")) << log;
}

TEST_F(FakeServeTest, MetricsCarryTheStatusKeyHashAndCountStatusCalls) {
  StartServe();
  v2::StatusResponse status = Status();
  EXPECT_EQ(status.version(), "v2");
  EXPECT_EQ(status.healthz(), "ok");
  ASSERT_TRUE(IsWellFormedKeyId(status.key_id())) << status.key_id();
  HttpResponse metrics = HttpGet(metrics_, "/metrics");
  ASSERT_EQ(metrics.status, 200);
  std::vector<std::string> hashes = HashSeries(metrics.body);
  ASSERT_EQ(hashes.size(), 1u) << metrics.body;
  EXPECT_EQ(hashes[0], kmsfleet::KeyIdHash(status.key_id()));
  EXPECT_NE(hashes[0].find('-'), std::string::npos);
  EXPECT_NE(hashes[0].find('_'), std::string::npos);
  for (const char* expected :
       {"# TYPE openbao_kms_status_key_id_hash gauge\n",
        "openbao_kms_grpc_requests_total{method=\"status\",status=\"ok\"} 1\n",
        "openbao_kms_grpc_duration_seconds_bucket{method=\"status\",le=\"+Inf\"} 1\n",
        "openbao_kms_rotation_state{state=\"active\"} 1\n",
        "openbao_kms_rotation_state{state=\"pending\"} 0\n",
        "openbao_kms_key_version 1\n",
        "openbao_kms_decrypt_key_id_errors_total{reason=\"key_id_unknown\"} 0\n",
        "openbao_kms_build_info{version=\"0.1.0-preview.3\"", "# TYPE go_goroutines gauge\n",
        "process_start_time_seconds "}) {
    EXPECT_NE(metrics.body.find(expected), std::string::npos) << expected;
  }
}

TEST_F(FakeServeTest, MetricsPageParsesWithPromtool) {
  if (!PathExists("/usr/bin/promtool")) GTEST_SKIP() << "promtool not installed";
  StartServe();
  Status();  // populate the gRPC families too
  WriteFile(dir_.File("metrics.txt"), HttpGet(metrics_, "/metrics").body);
  std::string command = "/usr/bin/promtool check metrics < " + dir_.File("metrics.txt") +
                        " > " + dir_.File("promtool.out") + " 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << ReadFile(dir_.File("promtool.out"));
}

TEST_F(FakeServeTest, BindsNothingUntilTheStartupDelayHasPassed) {
  WriteFile(scenario_, "startup_delay_ms: 1200\n");
  StartServe(/*wait_bound=*/false);
  std::this_thread::sleep_for(500ms);
  ASSERT_TRUE(child_->Running());
  EXPECT_EQ(OpenSockets(child_->pid()), 0);  // no listener of any kind yet
  EXPECT_FALSE(PathExists(socket_));
  EXPECT_FALSE(PathExists(listen_info_));
  WaitBound();
  EXPECT_GE(OpenSockets(child_->pid()), 3);  // KMS socket, metrics, health
  EXPECT_TRUE(PathExists(socket_));
  EXPECT_EQ(HttpGet(health_, "/live").status, 200);
}

TEST_F(FakeServeTest, LiveScenarioEditChangesTheActiveKey) {
  StartServe();
  const std::string before = Status().key_id();
  const std::string after = DeriveKeyId("rotated-seed", 2);
  WriteFile(scenario_, "key_seed: rotated-seed\nkey_version: 2\n");
  EXPECT_TRUE(WaitUntil([&] { return Status().key_id() == after; }, 3s)) << before;
  std::vector<std::string> hashes = HashSeries(HttpGet(metrics_, "/metrics").body);
  EXPECT_EQ(hashes, std::vector<std::string>{kmsfleet::KeyIdHash(after)});
}

TEST_F(FakeServeTest, DecryptOfAnUnknownKeyIdIsNotFoundAndCounted) {
  StartServe();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 3s);
  v2::DecryptRequest request;
  request.set_ciphertext("fbk1:whatever");
  request.set_key_id(DeriveKeyId("never-served", 1));
  v2::DecryptResponse response;
  grpc::Status status = Stub()->Decrypt(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  std::string metrics = HttpGet(metrics_, "/metrics").body;
  EXPECT_NE(metrics.find("openbao_kms_decrypt_key_id_errors_total{reason=\"key_id_unknown\"} 1\n"),
            std::string::npos);
  EXPECT_NE(metrics.find("openbao_kms_grpc_requests_total{method=\"decrypt\","
                         "status=\"not_found\"} 1"),
            std::string::npos);
}

TEST_F(FakeServeTest, ProbeCommandReportsTheRawKeyId) {
  StartServe();
  const std::string key_id = Status().key_id();
  RunResult probe = RunFake({"probe", "--socket", socket_, "--output", "json", "--timeout", "3s"});
  ASSERT_EQ(probe.exit_code, 0) << probe.out << probe.err;
  const boost::json::value report = boost::json::parse(probe.out);
  const auto& checks = report.at("checks").as_array();
  EXPECT_EQ(checks.back().at("id"), "kms.key_id");
  EXPECT_EQ(Str(checks.back().at("message")), key_id);
  EXPECT_EQ(RunFake({"probe", "--socket", socket_, "--expected-key-id",
                     DeriveKeyId("other", 1)}).exit_code, 4);
  EXPECT_EQ(RunFake({"probe", "--socket", socket_, "--expected-key-id", "obk2.short"}).exit_code,
            2);
}

// fake-bao-kms-provider hands serve to fake-bao-kms-provider-grpc by exec:
// a copied, stamped artifact must still serve, as the process that was
// started (its PID, its name) and with its own stamp's version.
TEST_F(FakeServeTest, StampedCopyServesItsVersionAsTheProcessThatWasStarted) {
  std::string artifact = dir_.File("bao-kms-provider");
  WriteFile(artifact, ReadFile(FakeBinary()) + "\nFAKE_BAO_KMS_VERSION=0.2.0\n");
  ASSERT_EQ(::chmod(artifact.c_str(), 0755), 0);
  StartServe(true, artifact);
  boost::json::object info = boost::json::parse(ReadFile(listen_info_)).as_object();
  EXPECT_EQ(info.at("pid").as_int64(), child_->pid());
  EXPECT_EQ(ReadFile("/proc/" + std::to_string(child_->pid()) + "/comm"), "bao-kms-provide\n");
  EXPECT_EQ(Status().healthz(), "ok");
  EXPECT_NE(HttpGet(metrics_, "/metrics").body.find("openbao_kms_build_info{version=\"0.2.0\""),
            std::string::npos);
  child_->Signal(SIGTERM);
  EXPECT_EQ(child_->Wait(5s), 0);
  EXPECT_FALSE(PathExists(socket_));
}

TEST_F(FakeServeTest, SigtermStopsGracefullyAndRemovesTheSocket) {
  StartServe();
  ASSERT_TRUE(PathExists(socket_));
  child_->Signal(SIGTERM);
  EXPECT_EQ(child_->Wait(5s), 0);
  EXPECT_FALSE(PathExists(socket_));
  EXPECT_FALSE(PathExists(listen_info_));
}

TEST_F(FakeServeTest, SecondProviderDoesNotStealALiveSocket) {
  StartServe();
  RunResult second = RunFake({"serve", "--config", config_});
  EXPECT_EQ(second.exit_code, 5);
  EXPECT_NE(second.err.find("in use by a live listener"), std::string::npos) << second.err;
  EXPECT_EQ(Status().healthz(), "ok");
}

// A crash leaves the socket file behind; the next start must reclaim it and
// count it (openbao_kms_socket_restarts_total, reference §3.1).
TEST_F(FakeServeTest, CrashLeavesAStaleSocketThatTheNextStartReclaims) {
  WriteFile(scenario_, "crash_after_ms: 300\n");
  StartServe();
  EXPECT_EQ(child_->Wait(5s), 5);
  EXPECT_TRUE(PathExists(socket_));
  WriteFile(scenario_, "");
  ::unlink(listen_info_.c_str());
  StartServe();
  EXPECT_EQ(Status().healthz(), "ok");
  EXPECT_NE(HttpGet(metrics_, "/metrics").body.find("openbao_kms_socket_restarts_total 1\n"),
            std::string::npos);
}

}  // namespace
}  // namespace kmsfleet::fake::testing
