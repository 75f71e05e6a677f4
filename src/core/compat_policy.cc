// The release compatibility policy (compat_policy.h). yaml-cpp reports
// syntax errors by exception; they are caught here and never cross the
// module boundary (architecture.md §8).
#include "kmsfleet/core/compat_policy.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cassert>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "parse_util.h"

namespace kmsfleet {
namespace {

constexpr char kApiVersion[] = "kmsfleet.io/v1";
constexpr char kKind[] = "CompatibilityPolicy";

class PolicyReader {
 public:
  explicit PolicyReader(std::string_view what) : what_(what) {}

  absl::Status Error(const YAML::Node& at, std::string_view key,
                     std::string_view problem) const {
    return MakeFileError(reason::kMalformedPolicy, what_, at.Mark().line + 1, key, problem);
  }

  absl::Status Document(const YAML::Node& root, CompatPolicy& out) const;

 private:
  absl::Status Release(const YAML::Node& node, const std::string& path,
                       ReleaseCompat& out) const;
  absl::Status Bool(const YAML::Node& v, const std::string& key,
                    bool& out) const;
  absl::Status Version(const YAML::Node& v, const std::string& key,
                       std::string& out) const;
  absl::Status Scalar(const YAML::Node& v, const std::string& key,
                      std::string& out) const;

  std::string what_;
};

std::string ScalarText(const YAML::Node& v) {
  return v.IsScalar() ? internal::Quoted(v.Scalar()) : "a non-scalar";
}

absl::Status PolicyReader::Scalar(const YAML::Node& v, const std::string& key,
                                  std::string& out) const {
  if (!v.IsScalar()) return Error(v, key, "must be a string");
  out = v.Scalar();
  return absl::OkStatus();
}

absl::Status PolicyReader::Bool(const YAML::Node& v, const std::string& key,
                                bool& out) const {
  if (!v.IsScalar() || (v.Scalar() != "true" && v.Scalar() != "false")) {
    return Error(v, key, "must be true or false, got " + ScalarText(v));
  }
  out = v.Scalar() == "true";
  return absl::OkStatus();
}

absl::Status PolicyReader::Version(const YAML::Node& v, const std::string& key,
                                   std::string& out) const {
  if (!v.IsScalar()) return Error(v, key, "must be a SemVer string");
  absl::StatusOr<SemVer> parsed = SemVer::Parse(v.Scalar());
  if (!parsed.ok()) {
    return Error(v, key, absl::StrCat("is not strict SemVer, got ",
                                      ScalarText(v), ": ",
                                      parsed.status().message()));
  }
  out = parsed->ToString();
  return absl::OkStatus();
}

absl::Status PolicyReader::Release(const YAML::Node& node,
                                   const std::string& path,
                                   ReleaseCompat& out) const {
  if (!node.IsMap()) return Error(node, path, "must be a mapping");
  using Handler = std::function<absl::Status(const YAML::Node&, const std::string&)>;
  auto flag = [this](bool& f) -> Handler {
    return [this, &f](const YAML::Node& v, const std::string& k) {
      return Bool(v, k, f);
    };
  };
  const std::map<std::string, Handler> handlers = {
      {"version", [&](auto& v, auto& k) { return Version(v, k, out.version); }},
      {"above", [&](auto& v, auto& k) { return Version(v, k, out.above); }},
      {"notes", [&](auto& v, auto& k) { return Scalar(v, k, out.notes); }},
      {"freshInstallOnly", flag(out.fresh_install_only)},
      {"oneWay", flag(out.one_way)},
      {"wireFormatChange", flag(out.wire_format_change)},
      {"migrationPlanned", flag(out.migration_planned)},
      {"apiServerRestartRequired", flag(out.apiserver_restart_required)},
  };
  // yaml-cpp keeps a repeated key, and a lookup reads one of them: the
  // other would be ignored without a word.
  std::set<std::string> keys;
  for (const auto& entry : node) {
    const std::string key = path + "." + entry.first.Scalar();
    auto it = handlers.find(entry.first.Scalar());
    if (it == handlers.end()) return Error(entry.first, key, "unknown key");
    if (!keys.insert(entry.first.Scalar()).second) return Error(entry.first, key, "repeats");
    KMSFLEET_RETURN_IF_ERROR(it->second(entry.second, key));
  }
  if (out.version.empty() == out.above.empty()) {
    return Error(node, path, "must set exactly one of version and above");
  }
  out.source = what_;
  return absl::OkStatus();
}

absl::Status PolicyReader::Document(const YAML::Node& root,
                                    CompatPolicy& out) const {
  if (!root.IsMap()) return Error(root, "(document)", "must be a mapping");
  std::set<std::string> keys;
  for (const auto& entry : root) {
    const std::string key = entry.first.Scalar();
    if (key != "apiVersion" && key != "kind" && key != "releases") {
      return Error(entry.first, key, "unknown key");
    }
    if (!keys.insert(key).second) return Error(entry.first, key, "repeats");
  }
  if (!root["apiVersion"] || root["apiVersion"].Scalar() != kApiVersion) {
    return Error(root, "apiVersion", absl::StrCat("must be ", kApiVersion));
  }
  if (!root["kind"] || root["kind"].Scalar() != kKind) {
    return Error(root, "kind", absl::StrCat("must be ", kKind));
  }
  const YAML::Node releases = root["releases"];
  if (!releases || releases.IsNull()) return absl::OkStatus();
  if (!releases.IsSequence()) return Error(releases, "releases", "must be a list");
  std::set<std::string> seen;
  for (size_t i = 0; i < releases.size(); ++i) {
    const std::string path = absl::StrCat("releases[", i, "]");
    ReleaseCompat release;
    KMSFLEET_RETURN_IF_ERROR(Release(releases[i], path, release));
    const std::string id = release.version.empty() ? ">" + release.above
                                                   : release.version;
    if (!seen.insert(id).second) {
      return Error(releases[i], path, "repeats release " + id);
    }
    out.releases.push_back(std::move(release));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CompatPolicy> ParseCompatPolicy(std::string_view yaml,
                                               std::string_view what) {
  if (yaml.size() > kMaxPolicyBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument,
                     reason::kInputTooLarge,
                     absl::StrCat(std::string(what), " is ", yaml.size(),
                                  " bytes, more than the limit of ",
                                  kMaxPolicyBytes),
                     {{"file", std::string(what)},
                      {"size_bytes", std::to_string(yaml.size())}});
  }
  PolicyReader reader(what);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return reader.Error(YAML::Node(), "(document)",
                        absl::StrCat("invalid YAML at line ", e.mark.line + 1,
                                     " column ", e.mark.column + 1, ": ",
                                     e.msg));
  }
  CompatPolicy policy;
  KMSFLEET_RETURN_IF_ERROR(reader.Document(root, policy));
  return policy;
}

namespace {

std::string EntryId(const ReleaseCompat& r) {
  return r.version.empty() ? ">" + r.above : r.version;
}

// An operator's entry for a release the base lists extends it: a flag the
// base sets stays set (a file that gave only notes cleared the built-in
// fresh-installation boundary of 0.1.0-preview.3, found by the
// requirements audit), a flag the file sets is added, and the notes of
// both are kept (the base's may be the catalog's safety advice).
ReleaseCompat Extended(const ReleaseCompat& base, const ReleaseCompat& file) {
  ReleaseCompat out = file;
  out.fresh_install_only = base.fresh_install_only || file.fresh_install_only;
  out.one_way = base.one_way || file.one_way;
  out.wire_format_change = base.wire_format_change || file.wire_format_change;
  out.migration_planned = base.migration_planned || file.migration_planned;
  out.apiserver_restart_required =
      base.apiserver_restart_required || file.apiserver_restart_required;
  out.notes = base.notes.empty()   ? file.notes
              : file.notes.empty() ? base.notes
                                   : base.notes + "; " + file.notes;
  return out;
}

}  // namespace

CompatPolicy MergePolicies(const CompatPolicy& base,
                           const CompatPolicy& overlay) {
  CompatPolicy merged = base;
  for (const ReleaseCompat& entry : overlay.releases) {
    auto same = [&](const ReleaseCompat& r) {
      return EntryId(r) == EntryId(entry);
    };
    auto it = std::find_if(merged.releases.begin(), merged.releases.end(), same);
    if (it != merged.releases.end()) {
      *it = Extended(*it, entry);
    } else {
      merged.releases.push_back(entry);
    }
  }
  return merged;
}

namespace {

// The version an entry is ordered by: its release, or the one it is above.
SemVer OrderKey(const ReleaseCompat& r) {
  absl::StatusOr<SemVer> v = SemVer::Parse(r.version.empty() ? r.above
                                                             : r.version);
  // Entries come from ParseCompatPolicy, which checked every version.
  assert(v.ok());
  return v.ok() ? *v : SemVer();
}

// `v` is a pre-release of `release` (0.2.0-rc.1 of 0.2.0).
bool PreReleaseOf(const SemVer& v, const SemVer& release) {
  return !v.prerelease().empty() && release.prerelease().empty() &&
         v.major() == release.major() && v.minor() == release.minor() &&
         v.patch() == release.patch();
}

// An entry for a release speaks for its pre-releases too: 0.2.0's
// wire-format change is in 0.2.0-rc.1, though SemVer orders the candidate
// below the release (found in review: upgrading to it asked for nothing,
// and rolling back from it was allowed). From one of its pre-releases, to
// another or to the release, nothing new is crossed.
bool Crossed(const ReleaseCompat& r, const SemVer& lo, const SemVer& hi) {
  const SemVer key = OrderKey(r);
  if (!r.version.empty()) {
    if (PreReleaseOf(lo, key)) return false;
    return (lo < key && key <= hi) || PreReleaseOf(hi, key);
  }
  return lo <= key && key < hi;
}

// Notes go into the plan, whose record is bounded (64 KiB): each is cut,
// and the notes of at most kMaxNotes entries are kept.
constexpr int kMaxNotes = 16;

std::string CutNotes(const std::string& notes) {
  constexpr size_t kMaxNoteBytes = 300;
  if (notes.size() <= kMaxNoteBytes) return notes;
  return notes.substr(0, internal::Utf8CutLength(notes, kMaxNoteBytes)) + "...";
}

}  // namespace

v1::CompatFacts FactsCrossed(const CompatPolicy& policy, const SemVer& from,
                             const SemVer& to) {
  const SemVer& lo = from < to ? from : to;
  const SemVer& hi = from < to ? to : from;
  std::vector<const ReleaseCompat*> crossed;
  for (const ReleaseCompat& r : policy.releases) {
    if (Crossed(r, lo, hi)) crossed.push_back(&r);
  }
  std::sort(crossed.begin(), crossed.end(),
            [](const ReleaseCompat* a, const ReleaseCompat* b) {
              return OrderKey(*a) < OrderKey(*b);
            });
  v1::CompatFacts facts;
  int notes_left_out = 0;
  for (const ReleaseCompat* r : crossed) {
    facts.set_fresh_install_only(facts.fresh_install_only() ||
                                 r->fresh_install_only);
    facts.set_one_way(facts.one_way() || r->one_way);
    facts.set_wire_format_change(facts.wire_format_change() ||
                                 r->wire_format_change);
    facts.set_apiserver_restart_required(facts.apiserver_restart_required() ||
                                         r->apiserver_restart_required);
    facts.add_releases(EntryId(*r));
    if (r->notes.empty()) continue;
    if (facts.notes_size() < kMaxNotes) {
      facts.add_notes(EntryId(*r) + ": " + CutNotes(r->notes));
    } else {
      ++notes_left_out;
    }
  }
  if (notes_left_out > 0) {
    facts.add_notes(absl::StrCat("and the notes of ", notes_left_out,
                                 " more releases crossed, in the policy"));
  }
  // A migration is planned only if every wire-format change crossed has one.
  bool planned = facts.wire_format_change();
  for (const ReleaseCompat* r : crossed) {
    if (r->wire_format_change && !r->migration_planned) planned = false;
  }
  facts.set_migration_planned(planned);
  return facts;
}

}  // namespace kmsfleet
