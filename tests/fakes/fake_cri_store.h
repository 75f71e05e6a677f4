// fake-cri's state: JSON files in its state directory that the test (and
// fake-kubelet) write and fake-cri re-reads on every call, so a test steers
// it by rewriting a file. The contract is in README.md ("fake-cri").
// Thread-safe: reads are independent; RecordPull serialises its
// read-modify-write of pulled.json.
#ifndef KMSFLEET_TESTS_FAKES_FAKE_CRI_STORE_H_
#define KMSFLEET_TESTS_FAKES_FAKE_CRI_STORE_H_

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "k8s/cri/runtime/v1/api.pb.h"

namespace kmsfleet::fake {

// One entry of images.json (a registry's image, or one already held) or of
// pulled.json (one the runtime holds after a pull).
struct FakeImage {
  std::string ref;       // the reference a pull asks for, matched exactly
  std::string digest;    // the manifest digest the "registry" serves
  std::string image_id;  // the runtime's image id; defaults to `digest`
  // What PullImage answers as image_ref; defaults to `image_id`. Set apart
  // from it to play a runtime whose answer disagrees with its own listing.
  std::string pull_answer;
  int64_t pull_delay_ms = 0;
  std::string fail;      // non-empty: PullImage fails with this message
  bool present = false;  // held before any pull (ImageStatus finds it)
};

// One entry of containers.json.
struct FakeContainer {
  std::string id;
  std::string pod_name;
  std::string pod_namespace;
  std::string container_name;
  std::string image_ref;  // as the pod spec names it: repo@sha256:<hex>
  std::string image_id;
  runtime::v1::ContainerState state = runtime::v1::CONTAINER_UNKNOWN;
  int64_t created_at_ns = 0;
  int64_t started_at_ns = 0;
  uint32_t attempt = 0;
};

// Where runtimes differ in what they answer (README.md, "flavour").
enum class Flavour { kContainerd, kCriO };

class FakeCriStore {
 public:
  explicit FakeCriStore(std::string dir) : dir_(std::move(dir)) {}

  // Each reads its file afresh; an absent file is an empty list. Errors
  // (kInvalidArgument) name the file and the entry or key at fault.
  absl::StatusOr<std::vector<FakeImage>> RegistryImages() const;  // images.json
  absl::StatusOr<std::vector<FakeImage>> PulledImages() const;    // pulled.json
  absl::StatusOr<std::vector<FakeContainer>> Containers() const;  // containers.json
  // The runtime fake-cri plays, from <dir>/flavour: kContainerd when the
  // file is absent. Errors (kInvalidArgument) name the file and the value.
  absl::StatusOr<Flavour> RuntimeFlavour() const;

  // Adds `image` to pulled.json (replacing an entry with the same ref),
  // written through a temp file and rename.
  absl::Status RecordPull(const FakeImage& image);

  // Appends "<line>\n" to calls.log, the record of every CRI call served.
  void LogCall(std::string_view line);

 private:
  std::string Path(std::string_view name) const { return dir_ + "/" + std::string(name); }

  const std::string dir_;
  std::mutex mu_;  // serialises RecordPull and LogCall
};

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_FAKE_CRI_STORE_H_
