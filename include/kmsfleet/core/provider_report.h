// Parsers for the provider's report-style command output and exit codes
// (reference §2.1, §2.3, §2.5, §2.6): `doctor`, `verify-key` and `probe`
// print a check report; `rotation-plan` and `verify-rotation` print a
// rotation report. Each is read from its JSON form (`--output json`, the
// stable shape) or, failing that, from its text form.
//
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_PROVIDER_REPORT_H_
#define KMSFLEET_CORE_PROVIDER_REPORT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kmsfleet {

// Reports larger than this are refused; real ones are a few KiB.
inline constexpr size_t kMaxReportBytes = 4 << 20;

// ---- Check reports (doctor, verify-key, probe) ----

// NOTE: the names are the provider's wire values; only kFail fails a
// command, and a skip is not a pass (reference §2.1).
enum class CheckStatus { kPass, kWarn, kFail, kSkip };

// "pass", "warn", "fail", "skip".
std::string_view CheckStatusName(CheckStatus status);

struct Check {
  std::string id;     // e.g. "kubernetes.encryption_config"
  std::string title;  // e.g. "EncryptionConfiguration"
  CheckStatus status = CheckStatus::kFail;
  std::string message;  // "" when the provider printed none
};

struct CheckReport {
  std::string name;  // "doctor", "verify-key", "probe", ...
  std::vector<Check> checks;

  // True if any check has status kFail.
  bool HasFailures() const;
  // The check with `id`, or nullptr. Absent is not a pass.
  const Check* Find(std::string_view id) const;
};

// Parses `output`. If its first non-blank byte is '{' it must be the JSON
// form {"name": ..., "checks": [{"id", "title", "status", "message"?}]}
// (unknown keys ignored; "checks" absent or null means no checks).
// Otherwise it is the text form: the first non-blank line is the name, then
// one `[status] id: title` or `[status] id: title - message` per line
// (blank lines ignored). A check id is one or more of [A-Za-z0-9_.-].
// Errors (kInvalidArgument):
//   INPUT_TOO_LARGE: more than kMaxReportBytes;
//   MALFORMED_JSON: JSON that does not parse or nests deeper than 32;
//   MALFORMED_REPORT: a missing or ill-typed name, check id, title or
//     status; an invalid or repeated check id; a status other than
//     pass/warn/fail/skip (the message names the check id and the value);
//     a text line that is not a check line (naming the line number).
absl::StatusOr<CheckReport> ParseCheckReport(std::string_view output);

// ---- Rotation reports (rotation-plan, verify-rotation) ----

struct RotationReport {
  std::string name;  // "rotation-plan" | "verify-rotation"
  // "pass" | "fail"; "" when absent (binaries before the Unreleased
  // line, whose reports cannot be trusted the same way; reference §2.6).
  std::string transit_metadata_status;
  std::string transit_metadata_error;  // redacted; only on failure
  bool state_loaded = false;
  std::optional<uint64_t> state_generation;
  std::string state_hash;  // "krs1.<...>" when state is loaded
  bool state_checkpoint_loaded = false;
  std::string state_checkpoint_status;  // current|behind|missing|absent|""
  std::string rotation_state;           // active|pending|unknown
  std::string active_key_id_hash;       // 43-char base64url, or ""
  std::optional<int64_t> active_transit_version, latest_transit_version;
  std::string pending_key_id_hash;  // "" unless pending
  std::optional<int64_t> pending_transit_version;
  std::optional<int64_t> pending_stable_observation_count;
  std::string pending_promotes_after;  // RFC 3339 UTC, verbatim; or ""
  std::optional<bool> state_bootstrap_eligible;  // only without state
  std::string state_bootstrap_reason;
};

// Parses `output`: JSON if its first non-blank byte is '{', with the
// camelCase keys of reference §2.6 (unknown keys ignored); otherwise the
// text form: the name (without a ':') on the first non-blank line, then
// `key: value` lines with the same keys, split at the first ':' (unknown
// keys ignored). `name`, `stateLoaded`, `stateCheckpointLoaded` and
// `rotationState` are required. Enumerated values are checked:
// transitMetadataStatus pass|fail, stateCheckpointStatus
// current|behind|missing|absent, rotationState active|pending|unknown; key_id
// hashes must be 43-char base64url.
// Errors (kInvalidArgument):
//   INPUT_TOO_LARGE: more than kMaxReportBytes;
//   MALFORMED_JSON: JSON that does not parse or nests deeper than 32;
//   MALFORMED_REPORT: a missing required key, a key given twice in text, a
//     value of the wrong type or outside its set (naming the key and the
//     value), or a text line that is not `key: value`.
absl::StatusOr<RotationReport> ParseRotationReport(std::string_view output);

// Why `report` shows a rotation under way, or "" when it shows none
// (reference §2.6): rotationState other than active, a pending key or
// Transit version, or a latest Transit version above the active one (a
// key rotated in OpenBao that the provider has not recorded yet).
std::string RotationUnderWayWhy(const RotationReport& report);

// Why `report`'s registry checkpoint does not anchor the provider's state,
// or "" when it does, or when the report does not say (a binary that
// prints no stateCheckpointStatus). Reference §10 asks for `current`
// before an upgrade: `behind` and `missing` leave the provider's rollback
// detection unanchored, and `absent` (no state either) means a restarted
// provider would bootstrap anew, or fail closed for a rotated key.
std::string CheckpointNotCurrentWhy(const RotationReport& report);
// What to do about it, said by every refusal that carries it.
inline constexpr char kCheckpointRemedy[] =
    "the provider's rollback detection is not anchored to its key registry there. "
    "Run `bao-kms-provider verify-key` on that node and find out how the state file "
    "and its .checkpoint got so (never edit either by hand, and never restore one "
    "without the other, nor an older pair over newer state). Once you judge the "
    "state right, upgrade with --acknowledge STATE_CHECKPOINT_NOT_CURRENT";

// ---- Exit codes ----

// The provider's exit codes 0..5 (reference §2.1, internal/cli/exit.go).
enum class ExitMeaning {
  kOk,           // 0
  kError,        // 1: unclassified
  kUsage,        // 2: invalid command usage
  kConfig,       // 3: configuration load or validation error
  kCheckFailed,  // 4: a diagnostic check failed
  kRuntime,      // 5: provider runtime failure
  kUnknown,      // anything else, including signals
};

// "ok", "error", "usage", "config", "check_failed", "runtime", "unknown".
std::string_view ExitMeaningName(ExitMeaning meaning);

// Classifies `exit_code`. Binaries before the Unreleased line exit 1 where
// newer ones exit 2 or 3, so for code 1 `stderr_text` decides: cobra's and
// the provider's usage messages ("unknown command", "unknown flag",
// "unsupported output format", "invalid argument", "flag needs an
// argument", "accepts N arg(s)", "required flag") mean kUsage; config
// load/validation wording ("load config", "config validation", "invalid
// config", "configuration", "configVersion", ...) means kConfig; anything
// else kError. Matching ignores case. A bare path such as
// /etc/openbao-kms/config.yaml is not config wording, since runtime errors
// name it too.
ExitMeaning ClassifyExit(int exit_code, std::string_view stderr_text);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PROVIDER_REPORT_H_
