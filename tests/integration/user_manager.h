// A real `systemd --user` manager for multi-process tests, in a directory
// of the test's own: XDG_RUNTIME_DIR=<dir>/rt (0700, with the private bus
// socket rt/systemd/private) and XDG_CONFIG_HOME=<dir>/cfg (units in
// cfg/systemd/user). Shared by the swap tests and the fleet tests.
#ifndef KMSFLEET_TESTS_INTEGRATION_USER_MANAGER_H_
#define KMSFLEET_TESTS_INTEGRATION_USER_MANAGER_H_

#include <memory>
#include <string>
#include <vector>

#include "process_harness.h"

namespace kmsfleet::testing {

// Runs `cmd` with /bin/sh; throws with its stderr unless it exits 0.
void Sh(const std::string& cmd);

// Writes an executable file through O_CLOEXEC and rename: a child forked
// meanwhile by another thread must not carry a write descriptor of the
// file into its exec, or executing it fails with ETXTBSY.
void WriteExecutable(const std::string& path, const std::string& body);

// Writes <dir>/checksums.txt listing <dir>/<name> (sha256sum) and
// <dir>/checksums.txt.sig, its base64 Ed25519 signature with `key`.
void SignRelease(const std::string& dir, const std::string& name, const std::string& key,
                 const std::vector<std::string>& more_names = {});
// Writes upstream's static-pod kit for `version` into `dir`:
// bao-kms-provider_<version>_static-pod_linux_amd64.tar.gz, whose top
// directory holds image-ref.txt naming `image` (and a README). Returns its
// path; SignRelease lists it when named in `more_names`.
std::string MakeStaticPodKit(const std::string& dir, const std::string& version,
                             const std::string& image);

// Creates <dir>/rt and <dir>/cfg/systemd/user, starts the manager and
// waits for its bus. Throws with the manager's log if it does not start.
std::unique_ptr<ChildProcess> StartUserManager(const std::string& dir);

// Stops the manager with SIGTERM, so that it stops its units first (a
// SIGKILL would orphan them), then SIGKILL if it lingers.
void StopUserManager(std::unique_ptr<ChildProcess>& manager);

// systemctl --user <args> against the manager of `dir`: its output.
std::string UserSystemctl(const std::string& dir, const std::vector<std::string>& args);

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_INTEGRATION_USER_MANAGER_H_
