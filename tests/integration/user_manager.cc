#include "user_manager.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "kmsfleet/node/subprocess.h"

namespace kmsfleet::testing {

void Sh(const std::string& cmd) {
  SubprocessOptions o;
  o.timeout = std::chrono::seconds(20);
  absl::StatusOr<SubprocessResult> r = RunSubprocess({"/bin/sh", "-c", cmd}, o);
  if (!r.ok() || r->exit_code != 0) {
    throw std::runtime_error("failed: " + cmd + "\n" +
                             (r.ok() ? r->stderr_text : std::string(r.status().message())));
  }
}

void SignRelease(const std::string& dir, const std::string& name, const std::string& key,
                 const std::vector<std::string>& more_names) {
  std::string names = name;
  for (const std::string& n : more_names) names += " " + n;
  Sh("cd " + dir + " && sha256sum " + names + " > checksums.txt");
  Sh("openssl pkeyutl -sign -inkey " + key + " -rawin -in " + dir +
     "/checksums.txt | base64 > " + dir + "/checksums.txt.sig");
}

std::string MakeStaticPodKit(const std::string& dir, const std::string& version,
                             const std::string& image) {
  const std::string top = "bao-kms-provider_" + version + "_static-pod_linux_amd64";
  std::filesystem::create_directories(dir + "/" + top);
  WriteFile(dir + "/" + top + "/README.md", "static-pod kit " + version + "\n");
  WriteFile(dir + "/" + top + "/image-ref.txt", image + "\n");
  Sh("cd " + dir + " && tar -czf " + top + ".tar.gz " + top + "/README.md " + top +
     "/image-ref.txt");
  return dir + "/" + top + ".tar.gz";
}

void WriteExecutable(const std::string& path, const std::string& body) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  if (fd < 0 || write(fd, body.data(), body.size()) != static_cast<ssize_t>(body.size()) ||
      close(fd) != 0) {
    throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  }
  chmod(tmp.c_str(), 0755);
  std::filesystem::rename(tmp, path);
}

std::unique_ptr<ChildProcess> StartUserManager(const std::string& dir) {
  std::filesystem::create_directories(dir + "/rt");
  std::filesystem::create_directories(dir + "/cfg/systemd/user");
  chmod((dir + "/rt").c_str(), 0700);
  // The user manager refuses to start unless this says systemd is booted.
  std::filesystem::create_directories("/run/systemd/system");
  auto manager = std::make_unique<ChildProcess>(
      std::vector<std::string>{"/lib/systemd/systemd", "--user"},
      ChildOptions{.out_path = dir + "/manager.log",
                   .extra_env = {"XDG_RUNTIME_DIR=" + dir + "/rt",
                                 "XDG_CONFIG_HOME=" + dir + "/cfg"},
                   .drop_env_prefixes = {"DBUS_", "XDG_", "NOTIFY_SOCKET", "LISTEN_",
                                         "INVOCATION_ID"}});
  if (!WaitUntil([&] { return PathExists(dir + "/rt/systemd/private"); },
                 std::chrono::seconds(10))) {
    throw std::runtime_error("systemd --user did not start:\n" + ReadFile(dir + "/manager.log"));
  }
  return manager;
}

void StopUserManager(std::unique_ptr<ChildProcess>& manager) {
  if (!manager) return;
  manager->Signal(SIGTERM);
  if (!manager->Wait(std::chrono::seconds(15))) manager->Signal(SIGKILL);
  manager.reset();
}

std::string UserSystemctl(const std::string& dir, const std::vector<std::string>& args) {
  std::string cmd = "XDG_RUNTIME_DIR=" + dir + "/rt" +
                    " DBUS_SESSION_BUS_ADDRESS= systemctl --user --no-pager";
  for (const auto& a : args) cmd += " '" + a + "'";
  SubprocessOptions o;
  o.timeout = std::chrono::seconds(20);
  absl::StatusOr<SubprocessResult> r = RunSubprocess({"/bin/sh", "-c", cmd}, o);
  return r.ok() ? r->stdout_text + r->stderr_text : std::string(r.status().message());
}

}  // namespace kmsfleet::testing
