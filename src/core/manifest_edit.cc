// Replacing one scalar of a static-pod manifest in place (manifest_edit.h).
//
// yaml-cpp gives each node the byte offset where it starts (its Mark); the
// bytes from there must spell the scalar's value exactly (plain) or between
// its quotes, on one line, or the edit is refused. A YAML emitter would
// re-format the operator's whole file, which is what this avoids.
#include "kmsfleet/core/manifest_edit.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <optional>
#include <sstream>
#include <vector>

#include "kmsfleet/core/image_ref.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxImageBytes = 512;
// Aliases let a small file name one node very many times; the comparison
// after an edit follows them, so it gives up after this many visits.
constexpr int kMaxNodesCompared = 100000;
// yaml-cpp skips a UTF-8 byte order mark without counting it in marks.
constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

absl::Status ManifestError(std::string_view reason, std::string_view file,
                           const YAML::Mark& mark, std::string_view key,
                           std::string_view problem,
                           absl::StatusCode code = absl::StatusCode::kFailedPrecondition) {
  const int line = mark.is_null() ? 0 : mark.line + 1;
  const std::string at =
      std::string(file) + (line > 0 ? ":" + std::to_string(line) : std::string());
  return MakeError(code, reason, at + ": " + std::string(key) + ": " + std::string(problem),
                   {{"file", std::string(file)},
                    {"line", std::to_string(line)},
                    {"key", std::string(key)}});
}

std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// A key and its value in a mapping.
struct Entry {
  YAML::Node key, value;
};

// Where the image is: the parsed document and the container's `image`.
// (yaml-cpp nodes are handles into the document: assigning one to another
// rewrites the document, so these are only ever copy-constructed.)
struct Found {
  YAML::Node root;
  Entry image;
  std::string path;  // e.g. spec.containers[1].image, for messages
  YAML::Node container;
};

// yaml-cpp 0.7 never finishes some invalid documents: after a root flow
// collection followed by more content (a JSON manifest with a trailing
// comma, `{...},`) its parser emits events without end while the node
// builder allocates without bound. A first pass only counts the events;
// a real manifest has far fewer than its bytes.
class EventBudget final : public YAML::EventHandler {
 public:
  struct Exhausted {};
  explicit EventBudget(size_t budget) : left_(budget) {}

  // YAML::EventHandler
  void OnDocumentStart(const YAML::Mark&) override { Spend(); }
  void OnDocumentEnd() override { Spend(); }
  void OnNull(const YAML::Mark&, YAML::anchor_t) override { Spend(); }
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { Spend(); }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Spend();
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Spend();
  }
  void OnSequenceEnd() override { Spend(); }
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Spend();
  }
  void OnMapEnd() override { Spend(); }

 private:
  void Spend() {
    if (left_-- == 0) throw Exhausted{};
  }
  size_t left_;
};

// Whether yaml-cpp's parser ends on `text` within a bounded number of
// events. YAML errors are left for the real parse to report.
bool ParserTerminates(const std::string& text) {
  std::istringstream in(text);
  EventBudget budget(4 * text.size() + 1024);
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(budget)) {
    }
  } catch (const EventBudget::Exhausted&) {
    return false;
  } catch (const YAML::Exception&) {
  }
  return true;
}

absl::StatusOr<YAML::Node> ParseOne(std::string_view text, std::string_view file) {
  if (text.size() > kMaxManifestBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInputTooLarge,
                     "manifest " + std::string(file) + " is larger than " +
                         std::to_string(kMaxManifestBytes) + " bytes",
                     {{"file", std::string(file)}});
  }
  // yaml-cpp would transcode UTF-16/32, and its marks would then no longer
  // be byte offsets into `text`.
  if (text.find('\0') != std::string_view::npos || text.starts_with("\xFE\xFF") ||
      text.starts_with("\xFF\xFE")) {
    return ManifestError(reason::kManifestMalformed, file, YAML::Mark::null_mark(), "(file)",
                         "not UTF-8 text (a NUL byte or a UTF-16 byte order mark)");
  }
  const std::string copy(text);
  if (!ParserTerminates(copy)) {
    return ManifestError(reason::kManifestMalformed, file, YAML::Mark::null_mark(), "(file)",
                         "not valid YAML: the parser did not finish (content after the "
                         "document's root flow collection?)");
  }
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(copy);
  } catch (const YAML::Exception& e) {
    return ManifestError(reason::kManifestMalformed, file, e.mark, "(file)",
                         "not valid YAML: " + e.msg);
  }
  if (docs.size() != 1) {
    return ManifestError(reason::kManifestMalformed, file, YAML::Mark::null_mark(), "(file)",
                         "holds " + std::to_string(docs.size()) +
                             " YAML documents, expected one Pod");
  }
  return docs.front();
}

// The entry under `key` in `map` (nullopt when absent). A duplicate key is
// refused: which one the kubelet would use is not ours to guess.
absl::StatusOr<std::optional<Entry>> Child(const YAML::Node& map, std::string_view key,
                                           std::string_view file, std::string_view path) {
  std::optional<Entry> found;
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it->first.IsScalar() || it->first.Scalar() != key) continue;
    if (found) {
      return ManifestError(reason::kManifestMalformed, file, it->first.Mark(), path,
                           "duplicate key");
    }
    found.emplace(Entry{it->first, it->second});
  }
  return found;
}

// `root.<key>` must be the scalar `want`.
absl::Status RequireValue(const YAML::Node& root, std::string_view key, std::string_view want,
                          std::string_view file) {
  KMSFLEET_ASSIGN_OR_RETURN(std::optional<Entry> e, Child(root, key, file, key));
  if (e && e->value.IsScalar() && e->value.Scalar() == want) return absl::OkStatus();
  std::string got = !e ? "absent" : e->value.IsScalar() ? Quoted(e->value.Scalar()) : "not a string";
  return ManifestError(reason::kManifestNotAPod, file,
                       e ? e->value.Mark() : root.Mark(), key,
                       "is " + got + ", expected " + Quoted(want) + " (a v1 Pod)");
}

// `parent.<key>` must be present and of `type`.
absl::StatusOr<Entry> RequireNode(const YAML::Node& parent, std::string_view key,
                                  YAML::NodeType::value type, std::string_view what,
                                  std::string_view file, const std::string& path) {
  KMSFLEET_ASSIGN_OR_RETURN(std::optional<Entry> e, Child(parent, key, file, path));
  if (e && e->value.Type() == type) return *std::move(e);
  return ManifestError(reason::kManifestMalformed, file, e ? e->value.Mark() : parent.Mark(),
                       path, e ? "is not " + std::string(what) : "is absent");
}

// The index in `containers` of the one container named `name`.
absl::StatusOr<size_t> FindContainer(const YAML::Node& containers, std::string_view name,
                                     std::string_view file) {
  std::vector<size_t> hits;
  std::string names;
  for (size_t i = 0; i < containers.size(); ++i) {
    const std::string path = "spec.containers[" + std::to_string(i) + "]";
    YAML::Node c = containers[i];
    if (!c.IsMap()) {
      return ManifestError(reason::kManifestMalformed, file, c.Mark(), path,
                           "is not a mapping");
    }
    KMSFLEET_ASSIGN_OR_RETURN(std::optional<Entry> n, Child(c, "name", file, path + ".name"));
    if (!n || !n->value.IsScalar()) continue;
    names += (names.empty() ? "" : ", ") + Quoted(n->value.Scalar());
    if (n->value.Scalar() == name) hits.push_back(i);
  }
  if (hits.size() == 1) return hits.front();
  std::string problem = hits.empty()
      ? "no container named " + Quoted(name) + " (found " + (names.empty() ? "none" : names) + ")"
      : std::to_string(hits.size()) + " containers are named " + Quoted(name);
  return ManifestError(reason::kManifestContainerNotFound, file, containers.Mark(),
                       "spec.containers", problem);
}

absl::StatusOr<Found> Locate(std::string_view text, std::string_view file,
                             std::string_view container) {
  KMSFLEET_ASSIGN_OR_RETURN(YAML::Node root, ParseOne(text, file));
  if (!root.IsMap()) {
    return ManifestError(reason::kManifestMalformed, file, root.Mark(), "(document)",
                         "is not a mapping");
  }
  KMSFLEET_RETURN_IF_ERROR(RequireValue(root, "apiVersion", "v1", file));
  KMSFLEET_RETURN_IF_ERROR(RequireValue(root, "kind", "Pod", file));
  KMSFLEET_ASSIGN_OR_RETURN(
      Entry spec, RequireNode(root, "spec", YAML::NodeType::Map, "a mapping", file, "spec"));
  KMSFLEET_ASSIGN_OR_RETURN(Entry containers,
                            RequireNode(spec.value, "containers", YAML::NodeType::Sequence,
                                        "a sequence", file, "spec.containers"));
  KMSFLEET_ASSIGN_OR_RETURN(size_t index, FindContainer(containers.value, container, file));
  const std::string path = "spec.containers[" + std::to_string(index) + "].image";
  YAML::Node c = containers.value[index];
  KMSFLEET_ASSIGN_OR_RETURN(std::optional<Entry> image, Child(c, "image", file, path));
  if (!image || !image->value.IsScalar() || image->value.Scalar().empty()) {
    std::string why = !image                       ? "is absent"
                      : image->value.IsScalar() || image->value.IsNull() ? "is empty"
                                                                         : "is not a string";
    return ManifestError(reason::kManifestImageUneditable, file,
                         image ? image->value.Mark() : c.Mark(), path,
                         why + " (container " + Quoted(container) + ")");
  }
  return Found{root, *std::move(image), path, c};
}

// Where a scalar's bytes are in the text, and how it is quoted (0: plain).
struct RawScalar {
  size_t begin = 0, end = 0;
  char quote = 0;
};

// The quoted scalar starting at `begin` (at its quote), if it closes on
// the same line and holds no escape; nullopt otherwise.
std::optional<RawScalar> FindQuoted(std::string_view text, size_t begin) {
  const char q = text[begin];
  for (size_t i = begin + 1; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n' || c == '\r' || (q == '"' && c == '\\')) return std::nullopt;
    if (c != q) continue;
    // '' inside single quotes is an escaped quote: its bytes are not its value.
    if (q == '\'' && i + 1 < text.size() && text[i + 1] == '\'') return std::nullopt;
    return RawScalar{begin, i + 1, q};
  }
  return std::nullopt;
}

// The bytes of the scalar `node` in `text`, when they spell exactly its
// value (between quotes, if quoted); nullopt for any other form.
std::optional<RawScalar> FindRaw(std::string_view text, size_t shift, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null() || mark.pos < 0) return std::nullopt;
  const size_t begin = static_cast<size_t>(mark.pos) + shift;
  const std::string& value = node.Scalar();
  if (begin >= text.size() || value.empty()) return std::nullopt;
  const char first = text[begin];
  std::optional<RawScalar> raw;
  if (first == '\'' || first == '"') {
    raw = FindQuoted(text, begin);
    if (raw && text.substr(raw->begin + 1, raw->end - raw->begin - 2) != value) return std::nullopt;
    return raw;
  }
  // Plain. A multi-line plain scalar folds its line break into a space, a
  // tag, anchor or block indicator comes before the value: none of them
  // spells the value at its mark.
  if (text.substr(begin, value.size()) != value) return std::nullopt;
  const size_t end = begin + value.size();
  if (end < text.size() && std::string_view(" \t\r\n,]}:").find(text[end]) == std::string_view::npos) {
    return std::nullopt;
  }
  return RawScalar{begin, end, 0};
}

// Whether the value starting at `value_begin` is written right after its
// key's colon: not an alias to a node written elsewhere, no tag, anchor or
// comment in between.
bool FollowsKey(std::string_view text, const RawScalar& key, size_t value_begin) {
  size_t i = key.end;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
  if (i >= text.size() || text[i] != ':') return false;
  ++i;
  while (i < text.size() && std::string_view(" \t\r\n").find(text[i]) != std::string_view::npos) ++i;
  return i == value_begin;
}

absl::Status CheckNewImage(std::string_view image, std::string_view file) {
  auto safe = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '/' || c == ':' || c == '@' || c == '-';
  };
  bool ok = !image.empty() && image.size() <= kMaxImageBytes &&
            std::isalnum(static_cast<unsigned char>(image.front()));
  for (char c : image) ok = ok && safe(c);
  if (ok) return absl::OkStatus();
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kManifestImageInvalid,
                   "new image " + Quoted(image.substr(0, kMaxImageBytes)) + " for " +
                       std::string(file) +
                       " is not an image reference (1-512 bytes of [A-Za-z0-9._/:@-], "
                       "starting with a letter or digit)",
                   {{"file", std::string(file)}});
}

// Whether `a` and `b` are the same document, taking `skip` (a node of `b`)
// as equal to anything. `budget` counts visits down.
bool SameTree(const YAML::Node& a, const YAML::Node& b, const YAML::Node& skip, int& budget) {
  if (--budget < 0) return false;
  if (b.is(skip)) return true;
  if (a.Type() != b.Type() || a.Tag() != b.Tag()) return false;
  switch (a.Type()) {
    case YAML::NodeType::Scalar:
      return a.Scalar() == b.Scalar();
    case YAML::NodeType::Sequence:
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i) {
        if (!SameTree(a[i], b[i], skip, budget)) return false;
      }
      return true;
    case YAML::NodeType::Map: {
      if (a.size() != b.size()) return false;
      for (auto ia = a.begin(), ib = b.begin(); ia != a.end() && ib != b.end(); ++ia, ++ib) {
        if (!SameTree(ia->first, ib->first, skip, budget) ||
            !SameTree(ia->second, ib->second, skip, budget)) {
          return false;
        }
      }
      return true;
    }
    default:
      return true;  // Null, Undefined
  }
}

// Defence in depth: `edited`, parsed again, must hold `new_image` where
// `before` held the old one, and equal it everywhere else.
absl::Status VerifyEdit(const Found& before, std::string_view edited,
                        std::string_view new_image, std::string_view file,
                        std::string_view container) {
  absl::StatusOr<Found> after = Locate(edited, file, container);
  int budget = kMaxNodesCompared;
  std::string problem;
  if (!after.ok()) {
    problem = std::string(after.status().message());
  } else if (after->image.value.Scalar() != new_image || after->path != before.path) {
    problem = after->path + " reads " + Quoted(after->image.value.Scalar());
  } else if (!SameTree(before.root, after->root, after->image.value, budget)) {
    if (budget < 0) {
      return ManifestError(reason::kManifestMalformed, file, YAML::Mark::null_mark(), "(file)",
                           "more than " + std::to_string(kMaxNodesCompared) +
                               " nodes to compare (aliases?)");
    }
    problem = "another value changed";
  } else {
    return absl::OkStatus();
  }
  return ManifestError(reason::kManifestEditUnverified, file, YAML::Mark::null_mark(),
                       before.path, "the edited manifest does not parse back as expected: " +
                           problem,
                       absl::StatusCode::kInternal);
}

}  // namespace

absl::StatusOr<std::string> ObserveManifestImage(std::string_view text, std::string_view file,
                                                 std::string_view container) {
  KMSFLEET_ASSIGN_OR_RETURN(Found found, Locate(text, file, container));
  return found.image.value.Scalar();
}

absl::Status CheckPullPolicyRestorable(std::string_view text, std::string_view file,
                                       std::string_view container) {
  KMSFLEET_ASSIGN_OR_RETURN(Found found, Locate(text, file, container));
  const std::string key = found.path.substr(0, found.path.size() - std::string("image").size()) +
                          "imagePullPolicy";
  KMSFLEET_ASSIGN_OR_RETURN(std::optional<Entry> policy,
                            Child(found.container, "imagePullPolicy", file, key));
  const std::string why =
      "the kubelet would pull even the image the runtime holds, so a failed swap could not "
      "restore the provider while the registry is down; set imagePullPolicy: IfNotPresent "
      "(the image is pinned by digest)";
  if (policy) {
    if (!policy->value.IsScalar() || policy->value.Scalar() != "Always") return absl::OkStatus();
    return ManifestError(reason::kImagePullPolicyAlways, file, policy->value.Mark(), key,
                         "is Always: " + why);
  }
  // Without the key, Kubernetes defaults a `latest` tag to Always, digest
  // or not (found in review).
  absl::StatusOr<ImageRef> image = ParseImageRef(found.image.value.Scalar(), found.path);
  if (!image.ok() || image->tag != "latest") return absl::OkStatus();
  return ManifestError(reason::kImagePullPolicyAlways, file, found.image.value.Mark(), found.path,
                       "has the tag latest and no imagePullPolicy, which the kubelet then "
                       "takes as Always: " + why);
}

absl::StatusOr<std::string> ReplaceManifestImage(std::string_view text,
                                                 std::string_view new_image,
                                                 std::string_view file,
                                                 std::string_view container) {
  KMSFLEET_RETURN_IF_ERROR(CheckNewImage(new_image, file));
  KMSFLEET_ASSIGN_OR_RETURN(Found found, Locate(text, file, container));
  const size_t shift = text.starts_with(kUtf8Bom) ? kUtf8Bom.size() : 0;
  std::optional<RawScalar> key = FindRaw(text, shift, found.image.key);
  std::optional<RawScalar> value = FindRaw(text, shift, found.image.value);
  if (!key || !value || !FollowsKey(text, *key, value->begin)) {
    return ManifestError(reason::kManifestImageUneditable, file, found.image.value.Mark(),
                         found.path,
                         "value " + Quoted(found.image.value.Scalar()) +
                             " is not written as a plain or quoted scalar on one line "
                             "right after its key (a block scalar, escape, tag, anchor "
                             "or alias?); edit it to that form once by hand");
  }
  const std::string quote = value->quote == 0 ? "" : std::string(1, value->quote);
  std::string edited;
  edited.reserve(text.size() + new_image.size());
  edited.append(text.substr(0, value->begin));
  edited.append(quote).append(new_image).append(quote);
  edited.append(text.substr(value->end));
  KMSFLEET_RETURN_IF_ERROR(VerifyEdit(found, edited, new_image, file, container));
  return edited;
}

}  // namespace kmsfleet
