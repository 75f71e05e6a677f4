#include "election_cluster.h"

#include <signal.h>

#include <filesystem>
#include <iostream>

#include "kmsfleet/node/subprocess.h"

namespace kmsfleet::testing {
namespace {

bool Openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<SubprocessResult> r = RunSubprocess(argv, {});
  if (!r.ok() || r->exit_code != 0) {
    std::cerr << "openssl failed: " << (r.ok() ? r->stderr_text : r.status().ToString())
              << "\n";
    return false;
  }
  return true;
}

}  // namespace

bool MakeCertificates(const std::string& dir, const std::vector<std::string>& names,
                      const std::string& ca_name) {
  std::filesystem::create_directories(dir);
  std::string ca = dir + "/" + ca_name;
  if (!PathExists(ca + ".pem") &&
      !Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                "-subj", "/CN=kmsfleet test " + ca_name, "-addext",
                "basicConstraints=critical,CA:TRUE", "-addext",
                "keyUsage=critical,keyCertSign,cRLSign"})) {
    return false;
  }
  for (const std::string& name : names) {
    std::string base = dir + "/" + name;
    WriteFile(base + ".ext", "subjectAltName=DNS:" + name +
                                 "\nextendedKeyUsage=serverAuth,clientAuth\n");
    if (!Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", base + ".key", "-out", base + ".csr", "-subj",
                  "/CN=" + name}) ||
        !Openssl({"x509", "-req", "-in", base + ".csr", "-CA", ca + ".pem", "-CAkey",
                  ca + ".key", "-CAcreateserial", "-out", base + ".pem", "-days", "2",
                  "-extfile", base + ".ext"})) {
      return false;
    }
  }
  return true;
}

bool MakeOperatorCertificate(const std::string& dir, const std::string& name,
                             const std::string& trust_domain, const std::string& ca_name) {
  std::string ca = dir + "/" + ca_name;
  std::string base = dir + "/" + name;
  WriteFile(base + ".ext", "subjectAltName=URI:spiffe://" + trust_domain +
                               "/kmsfleet/operator/" + name +
                               "\nextendedKeyUsage=clientAuth\n");
  return Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=" + name}) &&
         Openssl({"x509", "-req", "-in", base + ".csr", "-CA", ca + ".pem", "-CAkey",
                  ca + ".key", "-CAcreateserial", "-out", base + ".pem", "-days", "2",
                  "-extfile", base + ".ext"});
}

ElectionCluster::ElectionCluster(const TempDir& dir, int voters, int learners)
    : dir_(dir.path()), pki_(dir.File("pki")) {
  std::vector<std::string> names;
  for (int i = 0; i < voters; ++i) {
    names.push_back(Name(i));
    ports_.push_back(FreeLoopbackPort());
  }
  agents_.resize(voters);
  std::string learner_list;
  std::string learner_peers;
  for (int i = voters; i < voters + learners; ++i) {
    names.push_back(Name(i));
    learner_list += (learner_list.empty() ? "" : ", ") + Name(i);
    learner_peers += "  - {name: " + Name(i) + ", address: 127.0.0.1:" +
                     std::to_string(FreeLoopbackPort()) + "}\n";
  }
  bool made = MakeCertificates(pki_, names);
  if (!made) std::cerr << "certificates not made; agents will refuse to start\n";
  for (int i = 0; i < voters; ++i) {
    std::string node_dir = dir_ + "/" + Name(i);
    std::filesystem::create_directories(node_dir + "/state");
    std::string peers = learner_peers;
    for (int j = 0; j < voters; ++j) {
      if (j == i) continue;
      peers += "  - {name: " + Name(j) + ", address: 127.0.0.1:" +
               std::to_string(ports_[j]) + "}\n";
    }
    WriteFile(node_dir + "/kmsfleet.yaml",
              "node: " + Name(i) + "\n"
              "state_dir: " + node_dir + "/state\n"
              "listen:\n  unix: " + node_dir + "/agent.sock\n"
              "peers:\n" + peers +
              "cluster:\n"
              "  listen: 127.0.0.1:" + std::to_string(ports_[i]) + "\n" +
              (learners > 0 ? "  learners: [" + learner_list + "]\n" : "") +
              "  tick_ms: " + std::to_string(kTickMs) + "\n"
              "  election_ticks: " + std::to_string(kElectionTicks) + "\n"
              "  heartbeat_ticks: " + std::to_string(kHeartbeatTicks) + "\n"
              "  tls:\n"
              "    ca: " + pki_ + "/ca.pem\n"
              "    cert: " + pki_ + "/" + Name(i) + ".pem\n"
              "    key: " + pki_ + "/" + Name(i) + ".key\n"
              "    operator_trust_domain: " + kOperatorTrustDomain + "\n");
  }
}

void ElectionCluster::Start(int i) {
  std::string node_dir = dir_ + "/" + Name(i);
  agents_[i] = std::make_unique<ChildProcess>(
      std::vector<std::string>{KMSFLEETD_PATH, "--config", node_dir + "/kmsfleet.yaml"},
      ChildOptions{.out_path = node_dir + "/agent.log"});
}

void ElectionCluster::StartAll() {
  for (int i = 0; i < size(); ++i) Start(i);
}

void ElectionCluster::Kill(int i) {
  agents_[i]->Signal(SIGKILL);
  agents_[i]->Wait(std::chrono::seconds(5));
}

void ElectionCluster::Signal(int i, int signal_number) { agents_[i]->Signal(signal_number); }

std::optional<int> ElectionCluster::WaitExit(int i, std::chrono::milliseconds timeout) {
  return agents_[i]->Wait(timeout);
}

std::string ElectionCluster::Log(int i) const {
  return ReadFile(dir_ + "/" + Name(i) + "/agent.log");
}

std::unique_ptr<v1::Fleet::Stub> ElectionCluster::LocalFleet(int i) {
  return v1::Fleet::NewStub(grpc::CreateChannel(
      "unix:" + dir_ + "/" + Name(i) + "/agent.sock", grpc::InsecureChannelCredentials()));
}

grpc::Status ElectionCluster::Swap(int i, const std::optional<v1::Fence>& fence,
                                   const std::string& version) {
  auto stub = v1::Agent::NewStub(
      grpc::CreateChannel("unix:" + Socket(i), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  v1::SwapRequest request;
  request.set_version(version);
  if (fence) *request.mutable_fence() = *fence;
  v1::Operation op;
  return stub->Swap(&context, request, &op);
}

std::optional<v1::LeaderView> ElectionCluster::View(int i) {
  auto stub = LocalFleet(i);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  v1::LeaderView view;
  if (!stub->GetLeader(&context, v1::GetLeaderRequest(), &view).ok()) return std::nullopt;
  return view;
}

int ElectionCluster::WaitForLeader(const std::vector<int>& among, uint64_t above) {
  int leader = -1;
  bool found = WaitUntil(
      [&] {
        std::string name;
        for (int i : among) {
          std::optional<v1::LeaderView> v = View(i);
          if (!v || v->leader().empty() || v->term() <= above) return false;
          if (!name.empty() && v->leader() != name) return false;
          name = v->leader();
        }
        for (int i : among) {
          if (Name(i) == name) leader = i;
        }
        return leader >= 0;
      },
      std::chrono::seconds(20));
  return found ? leader : -1;
}

std::shared_ptr<grpc::Channel> ElectionCluster::PeerChannel(int i,
                                                            const std::string& cert_name,
                                                            const std::string& pki_dir) {
  std::string dir = pki_dir.empty() ? pki_ : pki_dir;
  grpc::SslCredentialsOptions tls{ReadFile(pki_ + "/ca.pem"),
                                  ReadFile(dir + "/" + cert_name + ".key"),
                                  ReadFile(dir + "/" + cert_name + ".pem")};
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(Name(i));
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(ports_[i]),
                                   grpc::SslCredentials(tls), args);
}

std::shared_ptr<grpc::Channel> ElectionCluster::AnonymousChannel(int i) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadFile(pki_ + "/ca.pem");
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(Name(i));
  return grpc::CreateCustomChannel(Address(i), grpc::SslCredentials(tls), args);
}

std::unique_ptr<v1::Peer::Stub> ElectionCluster::PeerClient(int i,
                                                            const std::string& cert_name,
                                                            const std::string& pki_dir) {
  return v1::Peer::NewStub(PeerChannel(i, cert_name, pki_dir));
}

}  // namespace kmsfleet::testing
