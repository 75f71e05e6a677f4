#include "fake_cri_service.h"

#include <chrono>
#include <thread>

#include "kmsfleet/core/image_ref.h"
#include "kmsfleet/node/cri_client.h"

namespace kmsfleet::fake {
namespace {

namespace cri = ::runtime::v1;

grpc::Status FromStore(const absl::Status& status) {
  return grpc::Status(grpc::StatusCode::INTERNAL, std::string(status.message()));
}

// repository@digest as a runtime lists it in repo_digests: containerd and
// CRI-O both list the fully qualified name (docker.io/library/busybox for
// a pull of busybox), as distribution/reference normalises it.
std::string RepoDigest(const FakeImage& image) {
  absl::StatusOr<ImageRef> ref = ParseImageRef(image.ref, "ref");
  std::string repository =
      ref.ok() ? ref->NormalizedRepository() : image.ref.substr(0, image.ref.find('@'));
  return repository + "@" + image.digest;
}

// A name asked for, normalised as a runtime resolves it before looking it
// up; anything else (an image id) as written.
std::string AsLookedUp(const std::string& wanted) {
  absl::StatusOr<ImageRef> ref = ParseImageRef(wanted, "image");
  return ref.ok() ? ref->NormalizedPinned() : wanted;
}

// An image id as `flavour` writes it: containerd "sha256:<hex>", CRI-O the
// bare hex.
std::string IdAs(Flavour flavour, const std::string& id) {
  if (flavour == Flavour::kCriO && id.starts_with("sha256:")) return id.substr(7);
  return id;
}

// The images the runtime holds: pulled.json and the `present` entries of
// images.json.
absl::StatusOr<std::vector<FakeImage>> HeldImages(const FakeCriStore& store) {
  absl::StatusOr<std::vector<FakeImage>> held = store.PulledImages();
  absl::StatusOr<std::vector<FakeImage>> registry = store.RegistryImages();
  if (!held.ok()) return held.status();
  if (!registry.ok()) return registry.status();
  for (const FakeImage& image : *registry) {
    if (image.present) held->push_back(image);
  }
  return held;
}

// The id of the image container `c` runs: that of the held image its
// manifest names, as a runtime knows it, else the entry's own.
std::string ContainerImageId(const FakeContainer& c, const std::vector<FakeImage>& held) {
  for (const FakeImage& image : held) {
    if (image.ref == c.image_ref || RepoDigest(image) == AsLookedUp(c.image_ref)) {
      return image.image_id;
    }
  }
  return c.image_id;
}

// What the container answers are read from, every one from one reading.
struct ContainerView {
  Flavour flavour;
  std::vector<FakeImage> held;
  std::vector<FakeContainer> containers;
};

absl::StatusOr<ContainerView> ReadContainers(const FakeCriStore& store) {
  absl::StatusOr<Flavour> flavour = store.RuntimeFlavour();
  if (!flavour.ok()) return flavour.status();
  absl::StatusOr<std::vector<FakeImage>> held = HeldImages(store);
  if (!held.ok()) return held.status();
  absl::StatusOr<std::vector<FakeContainer>> containers = store.Containers();
  if (!containers.ok()) return containers.status();
  return ContainerView{*flavour, *std::move(held), *std::move(containers)};
}

void ToCri(const FakeImage& held, Flavour flavour, cri::Image& out) {
  out.set_id(IdAs(flavour, held.image_id));
  out.add_repo_digests(RepoDigest(held));
  absl::StatusOr<ImageRef> ref = ParseImageRef(held.ref, "ref");
  if (ref.ok() && !ref->tag.empty()) out.add_repo_tags(ref->repository + ":" + ref->tag);
  out.set_size(1);  // CRI requires > 0
}

void Label(const FakeContainer& c, google::protobuf::Map<std::string, std::string>& labels) {
  labels[kPodNameLabel] = c.pod_name;
  labels[kPodNamespaceLabel] = c.pod_namespace;
  labels[kContainerNameLabel] = c.container_name;
}

std::string SandboxOf(const FakeContainer& c) {
  return "sandbox-" + c.pod_namespace + "-" + c.pod_name;
}

bool Matches(const cri::ContainerFilter& filter, const FakeContainer& c) {
  if (!filter.id().empty() && filter.id() != c.id) return false;
  if (filter.has_state() && filter.state().state() != c.state) return false;
  if (!filter.pod_sandbox_id().empty() && filter.pod_sandbox_id() != SandboxOf(c)) return false;
  google::protobuf::Map<std::string, std::string> labels;
  Label(c, labels);
  for (const auto& [key, value] : filter.label_selector()) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

// Sleeps `delay_ms` unless the caller gives up first, as a pull would be
// abandoned when its client's deadline passes.
bool SleepUnlessCancelled(grpc::ServerContext& context, int64_t delay_ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
  while (std::chrono::steady_clock::now() < until) {
    if (context.IsCancelled()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return !context.IsCancelled();
}

}  // namespace

grpc::Status FakeImageService::PullImage(grpc::ServerContext* context,
                                         const cri::PullImageRequest* request,
                                         cri::PullImageResponse* response) {
  const std::string& wanted = request->image().image();
  store_.LogCall("PullImage " + wanted);
  absl::StatusOr<std::vector<FakeImage>> registry = store_.RegistryImages();
  if (!registry.ok()) return FromStore(registry.status());
  absl::StatusOr<Flavour> flavour = store_.RuntimeFlavour();
  if (!flavour.ok()) return FromStore(flavour.status());
  for (const FakeImage& image : *registry) {
    // A registry serves a reference by its digest, whatever tag is beside
    // it, under the name the runtime normalises it to.
    if (image.ref != wanted && AsLookedUp(image.ref) != AsLookedUp(wanted)) continue;
    if (!SleepUnlessCancelled(*context, image.pull_delay_ms)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "fake-cri: pull abandoned");
    }
    if (!image.fail.empty()) return grpc::Status(grpc::StatusCode::UNKNOWN, image.fail);
    if (absl::Status recorded = store_.RecordPull(image); !recorded.ok()) {
      return FromStore(recorded);
    }
    response->set_image_ref(image.pull_answer == image.image_id
                                ? IdAs(*flavour, image.image_id)
                                : image.pull_answer);
    return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::NOT_FOUND,
                      "fake-cri: no image \"" + wanted + "\" in images.json");
}

grpc::Status FakeImageService::ImageStatus(grpc::ServerContext*,
                                           const cri::ImageStatusRequest* request,
                                           cri::ImageStatusResponse* response) {
  const std::string& wanted = request->image().image();
  store_.LogCall("ImageStatus " + wanted);
  absl::StatusOr<std::vector<FakeImage>> held = HeldImages(store_);
  if (!held.ok()) return FromStore(held.status());
  absl::StatusOr<Flavour> flavour = store_.RuntimeFlavour();
  if (!flavour.ok()) return FromStore(flavour.status());
  for (const FakeImage& image : *held) {
    if (image.ref == wanted || IdAs(*flavour, image.image_id) == wanted ||
        RepoDigest(image) == AsLookedUp(wanted)) {
      ToCri(image, *flavour, *response->mutable_image());
      return grpc::Status::OK;
    }
  }
  return grpc::Status::OK;  // absent: no image in the response, as upstream
}

grpc::Status FakeRuntimeService::ListContainers(grpc::ServerContext*,
                                                const cri::ListContainersRequest* request,
                                                cri::ListContainersResponse* response) {
  store_.LogCall("ListContainers");
  absl::StatusOr<ContainerView> view = ReadContainers(store_);
  if (!view.ok()) return FromStore(view.status());
  for (const FakeContainer& c : view->containers) {
    if (!Matches(request->filter(), c)) continue;
    const std::string image_id = IdAs(view->flavour, ContainerImageId(c, view->held));
    cri::Container* out = response->add_containers();
    out->set_id(c.id);
    out->set_pod_sandbox_id(SandboxOf(c));
    out->mutable_metadata()->set_name(c.container_name);
    out->mutable_metadata()->set_attempt(c.attempt);
    out->mutable_image()->set_image(c.image_ref);
    out->set_image_ref(image_id);  // containerd lists the image id here
    out->set_state(c.state);
    out->set_created_at(c.created_at_ns);
    Label(c, *out->mutable_labels());
    out->set_image_id(image_id);
  }
  return grpc::Status::OK;
}

grpc::Status FakeRuntimeService::ContainerStatus(grpc::ServerContext*,
                                                 const cri::ContainerStatusRequest* request,
                                                 cri::ContainerStatusResponse* response) {
  store_.LogCall("ContainerStatus " + request->container_id());
  absl::StatusOr<ContainerView> view = ReadContainers(store_);
  if (!view.ok()) return FromStore(view.status());
  for (const FakeContainer& c : view->containers) {
    if (c.id != request->container_id()) continue;
    const std::string image_id = IdAs(view->flavour, ContainerImageId(c, view->held));
    cri::ContainerStatus* out = response->mutable_status();
    out->set_id(c.id);
    out->mutable_metadata()->set_name(c.container_name);
    out->mutable_metadata()->set_attempt(c.attempt);
    out->set_state(c.state);
    out->set_created_at(c.created_at_ns);
    out->set_started_at(c.started_at_ns);
    out->mutable_image()->set_image(c.image_ref);
    // containerd answers the digested reference, CRI-O the image id
    // (cri-o#7149).
    out->set_image_ref(view->flavour == Flavour::kCriO ? image_id : c.image_ref);
    Label(c, *out->mutable_labels());
    out->set_image_id(image_id);
    return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::NOT_FOUND,
                      "fake-cri: no container \"" +
                          request->container_id() + "\" in containers.json");
}

}  // namespace kmsfleet::fake
