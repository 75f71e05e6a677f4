#include "fake_cri_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>

#include "absl/strings/ascii.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet::fake {
namespace {

namespace json = boost::json;

// The files are a few entries each; anything larger is a broken test.
constexpr size_t kMaxStateFileBytes = 1 << 20;

absl::Status Bad(const std::string& file, const std::string& problem) {
  return absl::InvalidArgumentError("fake-cri: " + file + ": " + problem);
}

// The array under `key` of the JSON object in `file`; empty if the file is
// absent.
absl::StatusOr<json::array> ReadList(const std::string& file, const char* key) {
  if (::access(file.c_str(), F_OK) != 0) return json::array();
  absl::StatusOr<std::string> text = ReadBoundedFile(file, kMaxStateFileBytes);
  if (!text.ok()) return Bad(file, std::string(text.status().message()));
  boost::system::error_code ec;
  json::value doc = json::parse(*text, ec);
  if (ec) return Bad(file, "not JSON: " + ec.message());
  const json::object* root = doc.if_object();
  const json::value* list = root ? root->if_contains(key) : nullptr;
  if (list == nullptr || !list->is_array()) {
    return Bad(file, std::string("expected {\"") + key + "\": [...]}");
  }
  return list->as_array();
}

// Typed field readers: absent keys give the default, wrong types an error.
class Entry {
 public:
  Entry(const std::string& file, size_t index, const json::value& value)
      : where_(file + ": entry " + std::to_string(index)), object_(value.if_object()) {}

  absl::Status status() const {
    if (object_ == nullptr) return absl::InvalidArgumentError("fake-cri: " + where_ + " is not an object");
    return error_;
  }
  std::string String(const char* key, bool required = false) {
    const json::value* v = Find(key);
    if (v == nullptr) {
      if (required) Fail(std::string("missing \"") + key + "\"");
      return "";
    }
    if (!v->is_string()) return Fail(std::string("\"") + key + "\" is not a string"), "";
    return std::string(v->as_string());
  }
  int64_t Int(const char* key) {
    const json::value* v = Find(key);
    if (v == nullptr) return 0;
    if (v->is_int64()) return v->as_int64();
    if (v->is_uint64() && v->as_uint64() <= INT64_MAX) return static_cast<int64_t>(v->as_uint64());
    return Fail(std::string("\"") + key + "\" is not an integer"), 0;
  }
  bool Bool(const char* key) {
    const json::value* v = Find(key);
    if (v == nullptr) return false;
    if (!v->is_bool()) return Fail(std::string("\"") + key + "\" is not a boolean"), false;
    return v->as_bool();
  }
  void Fail(const std::string& problem) {
    if (error_.ok()) error_ = absl::InvalidArgumentError("fake-cri: " + where_ + ": " + problem);
  }

 private:
  const json::value* Find(const char* key) const {
    return object_ == nullptr ? nullptr : object_->if_contains(key);
  }
  std::string where_;
  const json::object* object_;
  absl::Status error_;
};

absl::StatusOr<std::vector<FakeImage>> ReadImages(const std::string& file) {
  absl::StatusOr<json::array> list = ReadList(file, "images");
  if (!list.ok()) return list.status();
  std::vector<FakeImage> images;
  for (size_t i = 0; i < list->size(); ++i) {
    Entry e(file, i, (*list)[i]);
    FakeImage image;
    image.ref = e.String("ref", true);
    image.digest = e.String("digest", true);
    image.image_id = e.String("image_id");
    if (image.image_id.empty()) image.image_id = image.digest;
    image.pull_answer = e.String("pull_answer");
    if (image.pull_answer.empty()) image.pull_answer = image.image_id;
    image.pull_delay_ms = e.Int("pull_delay_ms");
    image.fail = e.String("fail");
    image.present = e.Bool("present");
    if (!e.status().ok()) return e.status();
    images.push_back(std::move(image));
  }
  return images;
}

}  // namespace

absl::StatusOr<std::vector<FakeImage>> FakeCriStore::RegistryImages() const {
  return ReadImages(Path("images.json"));
}

absl::StatusOr<std::vector<FakeImage>> FakeCriStore::PulledImages() const {
  return ReadImages(Path("pulled.json"));
}

absl::StatusOr<Flavour> FakeCriStore::RuntimeFlavour() const {
  const std::string file = Path("flavour");
  if (::access(file.c_str(), F_OK) != 0) return Flavour::kContainerd;
  absl::StatusOr<std::string> text = ReadBoundedFile(file, 64);
  if (!text.ok()) return Bad(file, std::string(text.status().message()));
  const std::string name(absl::StripAsciiWhitespace(*text));
  if (name == "containerd") return Flavour::kContainerd;
  if (name == "cri-o") return Flavour::kCriO;
  return Bad(file, "flavour \"" + name + "\" is neither \"containerd\" nor \"cri-o\"");
}

absl::StatusOr<std::vector<FakeContainer>> FakeCriStore::Containers() const {
  const std::string file = Path("containers.json");
  absl::StatusOr<json::array> list = ReadList(file, "containers");
  if (!list.ok()) return list.status();
  std::vector<FakeContainer> containers;
  for (size_t i = 0; i < list->size(); ++i) {
    Entry e(file, i, (*list)[i]);
    FakeContainer c;
    c.id = e.String("id", true);
    c.pod_name = e.String("pod_name", true);
    c.pod_namespace = e.String("pod_namespace", true);
    c.container_name = e.String("container_name", true);
    c.image_ref = e.String("image_ref", true);
    c.image_id = e.String("image_id");
    std::string state = e.String("state", true);
    if (!state.empty() && !runtime::v1::ContainerState_Parse(state, &c.state)) {
      e.Fail("\"state\" is \"" + state + "\", not a CRI ContainerState name");
    }
    c.created_at_ns = e.Int("created_at_ns");
    c.started_at_ns = e.Int("started_at_ns");
    int64_t attempt = e.Int("attempt");
    if (attempt < 0 || attempt > UINT32_MAX) e.Fail("\"attempt\" is out of range");
    c.attempt = static_cast<uint32_t>(attempt);
    if (!e.status().ok()) return e.status();
    containers.push_back(std::move(c));
  }
  return containers;
}

absl::Status FakeCriStore::RecordPull(const FakeImage& image) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<std::vector<FakeImage>> pulled = PulledImages();
  if (!pulled.ok()) return pulled.status();
  json::array list;
  for (const FakeImage& held : *pulled) {
    if (held.ref == image.ref) continue;
    list.push_back(json::object{{"ref", held.ref}, {"digest", held.digest},
                                {"image_id", held.image_id}});
  }
  list.push_back(json::object{{"ref", image.ref}, {"digest", image.digest},
                              {"image_id", image.image_id}});
  return WriteFileAtomic(Path("pulled.json"),
                         json::serialize(json::object{{"images", list}}) + "\n", 0644);
}

void FakeCriStore::LogCall(std::string_view line) {
  std::lock_guard<std::mutex> lock(mu_);
  int fd = ::open(Path("calls.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;  // the log is a test aid; serving goes on without it
  std::string text = std::string(line) + "\n";
  ssize_t written = ::write(fd, text.data(), text.size());
  (void)written;  // same: a short write only shortens the aid
  ::close(fd);
}

}  // namespace kmsfleet::fake
