// Stable reason codes carried in kmsfleet.v1.ErrorInfo.reason and in
// NodeState conditions (architecture.md §2, principle 5).
//
// NOTE: these strings are persisted in journals and used as metric label
// values and by operators' scripts. Never rename or reuse one; add new ones.
#ifndef KMSFLEET_CORE_REASONS_H_
#define KMSFLEET_CORE_REASONS_H_

namespace kmsfleet::reason {

// Input that can never be valid (a malformed file, flag or message).
inline constexpr char kInvalidConfig[] = "INVALID_CONFIG";
inline constexpr char kMalformedExposition[] = "MALFORMED_EXPOSITION";
inline constexpr char kMalformedJson[] = "MALFORMED_JSON";
inline constexpr char kMalformedReport[] = "MALFORMED_REPORT";
inline constexpr char kMalformedVersionOutput[] = "MALFORMED_VERSION_OUTPUT";
inline constexpr char kInvalidSemver[] = "INVALID_SEMVER";
inline constexpr char kInputTooLarge[] = "INPUT_TOO_LARGE";
inline constexpr char kDuplicateSeries[] = "DUPLICATE_SERIES";

// Observations of the provider (NodeState conditions).
inline constexpr char kMetricsUnreachable[] = "METRICS_UNREACHABLE";
inline constexpr char kHealthUnreachable[] = "HEALTH_UNREACHABLE";
inline constexpr char kNotLive[] = "NOT_LIVE";
inline constexpr char kNotReady[] = "NOT_READY";
inline constexpr char kKmsSocketUnreachable[] = "KMS_SOCKET_UNREACHABLE";
inline constexpr char kKmsUnhealthy[] = "KMS_UNHEALTHY";
inline constexpr char kKeyIdHashMissing[] = "KEY_ID_HASH_MISSING";
inline constexpr char kKeyIdHashAmbiguous[] = "KEY_ID_HASH_AMBIGUOUS";
inline constexpr char kKeyIdHashMismatch[] = "KEY_ID_HASH_MISMATCH";
// Before a swap's stop: the node's registry names another active key than
// the swap expects (CheckActiveKeyAsExpected).
inline constexpr char kActiveKeyNotExpected[] = "ACTIVE_KEY_NOT_EXPECTED";
inline constexpr char kBuildInfoMissing[] = "BUILD_INFO_MISSING";
inline constexpr char kVersionCommandFailed[] = "VERSION_COMMAND_FAILED";
inline constexpr char kRotationInProgress[] = "ROTATION_IN_PROGRESS";
inline constexpr char kStateCheckpointNotCurrent[] = "STATE_CHECKPOINT_NOT_CURRENT";

// Transport and process failures.
inline constexpr char kTimeout[] = "TIMEOUT";
inline constexpr char kHttpError[] = "HTTP_ERROR";
inline constexpr char kRedirectRefused[] = "REDIRECT_REFUSED";
inline constexpr char kSubprocessFailed[] = "SUBPROCESS_FAILED";
inline constexpr char kAgentUnreachable[] = "AGENT_UNREACHABLE";
// An agent (or whatever serves its address) answered a call with a gRPC
// error that carries no reason code: UNIMPLEMENTED (it does not serve the
// call), RESOURCE_EXHAUSTED, INTERNAL. It answered: not unreachable.
inline constexpr char kAgentCallFailed[] = "AGENT_CALL_FAILED";

// ---- Node executor (issue 4): staging, preflight, swap, rollback. ----
inline constexpr char kMalformedChecksums[] = "MALFORMED_CHECKSUMS";
inline constexpr char kChecksumNotListed[] = "CHECKSUM_NOT_LISTED";
inline constexpr char kChecksumAmbiguous[] = "CHECKSUM_AMBIGUOUS";
inline constexpr char kChecksumMismatch[] = "CHECKSUM_MISMATCH";
inline constexpr char kSignatureInvalid[] = "SIGNATURE_INVALID";
inline constexpr char kUnsignedRefused[] = "UNSIGNED_REFUSED";
inline constexpr char kArtifactIo[] = "ARTIFACT_IO";
inline constexpr char kNotStaged[] = "NOT_STAGED";
inline constexpr char kStagedArtifactChanged[] = "STAGED_ARTIFACT_CHANGED";
inline constexpr char kDoctorFailed[] = "DOCTOR_FAILED";
inline constexpr char kVersionMismatch[] = "VERSION_MISMATCH";
inline constexpr char kRotationPlanUntrusted[] = "ROTATION_PLAN_UNTRUSTED";
inline constexpr char kUnitFailed[] = "UNIT_FAILED";
inline constexpr char kServiceManagerError[] = "SERVICE_MANAGER_ERROR";
inline constexpr char kInstallFailed[] = "INSTALL_FAILED";
inline constexpr char kCountersRising[] = "ERROR_COUNTERS_RISING";
inline constexpr char kRollbackRefusedRemoved[] = "ROLLBACK_REFUSED_REMOVED_RECORDS";
inline constexpr char kRollbackRefusedSchema[] = "ROLLBACK_REFUSED_SCHEMA_CHANGED";
inline constexpr char kOperationInProgress[] = "OPERATION_IN_PROGRESS";
// The command's caller gave up (its deadline passed, or it cancelled)
// before the agent got to start it, so nothing was started: a caller that
// gave up may have decided since on the node as it was.
inline constexpr char kCallerGone[] = "CALLER_GONE";
// An operation id already names another command (a swap to another
// version, or a swap where a rollback was asked, or the reverse): the
// caller would take that operation for its own.
inline constexpr char kOperationIdReused[] = "OPERATION_ID_REUSED";
// The agent is stopping (SIGTERM): it admits no new swap, rollback or
// kube-apiserver restart, which it could not see through; the coordinator
// asks again, here once the agent is back or of the next node.
inline constexpr char kAgentStopping[] = "AGENT_STOPPING";
// The agent is still starting (its cluster listener serves before its
// local socket and /metrics, which can still fail): it admits no swap,
// rollback or kube-apiserver restart until it reports READY=1.
inline constexpr char kAgentStarting[] = "AGENT_STARTING";
// A lookup of an operation whose command is being admitted under its id
// and has no journal yet: it will have one or be refused, ask again.
inline constexpr char kOperationBeingAdmitted[] = "OPERATION_BEING_ADMITTED";
inline constexpr char kOperationNotFound[] = "OPERATION_NOT_FOUND";
inline constexpr char kJournalCorrupt[] = "JOURNAL_CORRUPT";
inline constexpr char kAgentRestarted[] = "AGENT_RESTARTED";
inline constexpr char kMalformedRegistry[] = "MALFORMED_REGISTRY";
inline constexpr char kIdentityChanged[] = "IDENTITY_FINGERPRINT_CHANGED";
inline constexpr char kStateDirLocked[] = "STATE_DIR_LOCKED";

// Election, replicated plan and fencing (architecture.md §6).
inline constexpr char kUnknownPeer[] = "UNKNOWN_PEER";
inline constexpr char kMalformedMessage[] = "MALFORMED_MESSAGE";
inline constexpr char kNotLeader[] = "NOT_LEADER";
inline constexpr char kPlanChangePending[] = "PLAN_CHANGE_PENDING";
// An operator command the coordinator did not take in time, withdrawn
// unread: nothing changed, asking again is safe.
inline constexpr char kCommandNotTaken[] = "COMMAND_NOT_TAKEN";
inline constexpr char kHandoffPending[] = "HANDOFF_PENDING";
inline constexpr char kStaleTerm[] = "STALE_TERM";
inline constexpr char kStaleFence[] = "STALE_FENCE";
inline constexpr char kUnknownFence[] = "UNKNOWN_FENCE";
inline constexpr char kNotInFlight[] = "NOT_IN_FLIGHT";
// A disruptive command without a fence sent to a member of an election.
inline constexpr char kFenceRequired[] = "FENCE_REQUIRED";
// A fenced command sent to an agent that runs no election.
inline constexpr char kNoElection[] = "NO_ELECTION";
inline constexpr char kOperationRunning[] = "OPERATION_RUNNING";
inline constexpr char kPeerIdentityMismatch[] = "PEER_IDENTITY_MISMATCH";
inline constexpr char kStateWriteFailed[] = "STATE_WRITE_FAILED";
inline constexpr char kCorruptState[] = "CORRUPT_STATE";

// ---- Fence authority and hand-off (issue 8, §1-2). ----
// A hand-off query answered with an outcome that does not release the
// in-flight slot (RollbackFailed, an open journal, an unknown outcome).
inline constexpr char kNotReleasable[] = "NOT_RELEASABLE";

// ---- Issue 8 review fixes (lead). ----
// A persisted state file exists but could not be read whole.
inline constexpr char kStateReadFailed[] = "STATE_READ_FAILED";
// A file that must be a regular file is a FIFO, device, socket, directory
// or a refused symlink (fs_util's reads never block on or follow one).
inline constexpr char kNotRegularFile[] = "NOT_REGULAR_FILE";

// Authenticated Agent API (issue 8 section 3): who may call what.
// A remote call whose certificate names no member and no operator.
inline constexpr char kUnknownCaller[] = "UNKNOWN_CALLER";
// A certificate that names both a member and an operator: refused for all.
inline constexpr char kAmbiguousCaller[] = "AMBIGUOUS_CALLER";
// A method only operators may call (e.g. Fleet.ProposePlan) from a member.
inline constexpr char kOperatorOnly[] = "OPERATOR_ONLY";
// A method only members may call (Peer.*) from an operator.
inline constexpr char kMemberOnly[] = "MEMBER_ONLY";
// A hand-off query (Peer.Release) from a member that is no voter: only the
// coordinator asks one, and only a voter can coordinate.
inline constexpr char kVoterOnly[] = "VOTER_ONLY";
// A method the authorisation table does not list: refused by default.
inline constexpr char kMethodNotAllowed[] = "METHOD_NOT_ALLOWED";
// A disruptive command to an agent with no cluster: and no standalone: true.
inline constexpr char kStandaloneNotConfigured[] = "STANDALONE_NOT_CONFIGURED";
// A Stage source that is not a regular file, or a URL outside the
// configured prefixes.
inline constexpr char kSourceNotAllowed[] = "SOURCE_NOT_ALLOWED";

// Node executor (issue 8, §4-§5).
// An operation id that is not 1-128 characters of [A-Za-z0-9._+-].
inline constexpr char kInvalidOperationId[] = "INVALID_OPERATION_ID";
// A rollback of an operation that did not end Stable.
inline constexpr char kNotRollbackable[] = "NOT_ROLLBACKABLE";
// A request value out of its documented range (e.g. stabilization_ms).
inline constexpr char kInvalidArgument[] = "INVALID_ARGUMENT";
// The unit got a new invocation (it restarted) inside the verify window.
inline constexpr char kUnitRestarted[] = "UNIT_RESTARTED";
// The registry pair changed although the new version never became ready.
inline constexpr char kEvidenceChanged[] = "EVIDENCE_CHANGED";

// ---- Fleet plan and guards (issue 9): plan machine, guards, policy. ----
// Fleet health and parity.
inline constexpr char kProviderNotLive[] = "PROVIDER_NOT_LIVE";
inline constexpr char kProviderNotReady[] = "PROVIDER_NOT_READY";
inline constexpr char kFleetParityMismatch[] = "FLEET_PARITY_MISMATCH";
inline constexpr char kParityNotStable[] = "PARITY_NOT_STABLE";
// The round a swap, rollback or kube-apiserver restart would start on was
// asked for more than kMaxViewsAgeAtSendMs ago (plan_machine.h).
inline constexpr char kObservationsTooOld[] = "OBSERVATIONS_TOO_OLD";
// OpenBao /v1/sys/health.
inline constexpr char kOpenBaoUnreachable[] = "OPENBAO_UNREACHABLE";
inline constexpr char kOpenBaoSealed[] = "OPENBAO_SEALED";
inline constexpr char kOpenBaoUninitialized[] = "OPENBAO_UNINITIALIZED";
inline constexpr char kOpenBaoStandby[] = "OPENBAO_STANDBY";
inline constexpr char kMalformedOpenBaoHealth[] = "MALFORMED_OPENBAO_HEALTH";
// Rotation.
inline constexpr char kRotationMetricDisagrees[] = "ROTATION_METRIC_DISAGREES";
// Version policy.
inline constexpr char kVersionUnknown[] = "VERSION_UNKNOWN";
inline constexpr char kVersionNotHigher[] = "VERSION_NOT_HIGHER";
inline constexpr char kRollbackTargetMismatch[] = "ROLLBACK_TARGET_MISMATCH";
inline constexpr char kAlreadyAtTarget[] = "ALREADY_AT_TARGET";
inline constexpr char kFleetVersionsMixed[] = "FLEET_VERSIONS_MIXED";
// Release compatibility (policy file, changelog).
inline constexpr char kMalformedPolicy[] = "MALFORMED_POLICY";
inline constexpr char kMalformedChangelog[] = "MALFORMED_CHANGELOG";
inline constexpr char kFreshInstallRequired[] = "FRESH_INSTALL_REQUIRED";
inline constexpr char kWireFormatUnplanned[] = "WIRE_FORMAT_UNPLANNED";
inline constexpr char kAcknowledgementRequired[] = "ACKNOWLEDGEMENT_REQUIRED";
inline constexpr char kApiServerRestartUnconfigured[] =
    "APISERVER_RESTART_UNCONFIGURED";
// Acknowledgement codes an operator passes with --acknowledge.
inline constexpr char kAckChangelogBreaking[] = "CHANGELOG_BREAKING";
inline constexpr char kAckChangelogCompatibility[] = "CHANGELOG_COMPATIBILITY";
inline constexpr char kAckOneWayUpgrade[] = "ONE_WAY_UPGRADE";
inline constexpr char kAckWireFormatChange[] = "WIRE_FORMAT_CHANGE";
inline constexpr char kAckFreshInstallation[] = "FRESH_INSTALLATION";
// Not required by any release: lets a plan upgrade nodes whose registry
// checkpoint is not current (the reason of that refusal, reasons above).
inline constexpr char kAckStateCheckpointNotCurrent[] = "STATE_CHECKPOINT_NOT_CURRENT";
// Rollback safety and readiness (see also ROLLBACK_REFUSED_* above).
inline constexpr char kRollbackRefusedOneWay[] = "ROLLBACK_REFUSED_ONE_WAY";
inline constexpr char kRollbackRefusedWireFormat[] =
    "ROLLBACK_REFUSED_WIRE_FORMAT";
inline constexpr char kRollbackRefusedKeyRotated[] =
    "ROLLBACK_REFUSED_KEY_ROTATED";
inline constexpr char kRollbackRefusedPendingRotation[] =
    "ROLLBACK_REFUSED_PENDING_ROTATION";
inline constexpr char kRollbackArtifactMissing[] = "ROLLBACK_ARTIFACT_MISSING";
inline constexpr char kRegistryUnknown[] = "REGISTRY_UNKNOWN";
// The plan machine and operator commands.
inline constexpr char kPlanTooLarge[] = "PLAN_TOO_LARGE";
inline constexpr char kMalformedPlan[] = "MALFORMED_PLAN";
inline constexpr char kPlanActive[] = "PLAN_ACTIVE";
// A raw plan record (`kmsfleetctl plan commit`) whose payload is a fleet
// plan: plans start only through Fleet.StartUpgrade and its guards.
inline constexpr char kRawFleetPlanRefused[] = "RAW_FLEET_PLAN_REFUSED";
inline constexpr char kNoPlan[] = "NO_PLAN";
inline constexpr char kCommandNotApplicable[] = "COMMAND_NOT_APPLICABLE";
// A member's swap or rollback that is not the committed plan's step for the
// node (plan_command_guard.h).
inline constexpr char kCommandNotInPlan[] = "COMMAND_NOT_IN_PLAN";
// A member's new swap or rollback while the committed plan is paused,
// halted, in break-glass or has an abort requested: nothing ran.
inline constexpr char kPlanNotMoving[] = "PLAN_NOT_MOVING";
// A member's swap, rollback or kube-apiserver restart from anyone but the
// leader this node follows in the term of its committed record: another
// member's key may not start the step the coordinator holds back.
inline constexpr char kCommandNotFromLeader[] = "COMMAND_NOT_FROM_LEADER";
inline constexpr char kBreakGlassActive[] = "BREAK_GLASS_ACTIVE";
inline constexpr char kBreakGlassNonceMismatch[] = "BREAK_GLASS_NONCE_MISMATCH";
inline constexpr char kNodeNotReleasable[] = "NODE_NOT_RELEASABLE";
inline constexpr char kSwapFailedRestored[] = "SWAP_FAILED_RESTORED";
inline constexpr char kRollbackFailed[] = "ROLLBACK_FAILED";
inline constexpr char kApiServerRestartFailed[] = "APISERVER_RESTART_FAILED";
inline constexpr char kStageFailed[] = "STAGE_FAILED";
inline constexpr char kAbortedByOperator[] = "ABORTED_BY_OPERATOR";
inline constexpr char kFleetNotConverged[] = "FLEET_NOT_CONVERGED";
// The plan's nodes are not this coordinator's voters (cluster.voters was
// changed while the plan was under way): no node is given a slot.
inline constexpr char kPlanMembersChanged[] = "PLAN_MEMBERS_CHANGED";
inline constexpr char kUnknownNode[] = "UNKNOWN_NODE";
inline constexpr char kSoakInProgress[] = "SOAK_IN_PROGRESS";
inline constexpr char kPlanPaused[] = "PLAN_PAUSED";
inline constexpr char kPlanHalted[] = "PLAN_HALTED";
inline constexpr char kNotEvaluated[] = "NOT_EVALUATED";
// NodeState's registry facts (issue 9, the agent's side of the rollback
// guard): the agent could not read key-registry.json.
inline constexpr char kRegistryUnreadable[] = "REGISTRY_UNREADABLE";

// kube-apiserver restart (issue 9, the agent's RestartApiServer): the
// restart ran but /readyz did not answer 200 in time. A restart that could
// not be carried out is APISERVER_RESTART_FAILED (above); an agent without
// an `apiserver:` section answers APISERVER_RESTART_UNCONFIGURED.
inline constexpr char kApiServerNotReady[] = "APISERVER_NOT_READY";
// ---- Operator uploads (issue 9, "Artifacts reach every node"). ----
// An upload chunk names no safe file name (or changes it mid-stream).
inline constexpr char kUploadBadName[] = "UPLOAD_BAD_NAME";
// An upload chunk is malformed: unknown kind, kind changed mid-stream, no
// chunk at all, or no final SHA-256.
inline constexpr char kUploadMalformed[] = "UPLOAD_MALFORMED";
// A chunk over 1 MiB, or an upload over its kind's bound.
inline constexpr char kUploadTooLarge[] = "UPLOAD_TOO_LARGE";
// A chunk whose offset is not where the previous one ended.
inline constexpr char kUploadOffsetGap[] = "UPLOAD_OFFSET_GAP";
// The bytes received do not hash to the SHA-256 the uploader declared.
inline constexpr char kUploadDigestMismatch[] = "UPLOAD_DIGEST_MISMATCH";
// FetchArtifact of an upload this node does not hold.
inline constexpr char kUploadNotFound[] = "UPLOAD_NOT_FOUND";
// As many uploads as cluster.upload_streams allows are being received.
inline constexpr char kUploadBusy[] = "UPLOAD_BUSY";
// An upload sent no chunk for cluster.upload_idle_timeout_ms and was ended.
inline constexpr char kUploadStalled[] = "UPLOAD_STALLED";
// An agent could not fetch a coordinator:// source for Stage.
inline constexpr char kArtifactFetchFailed[] = "ARTIFACT_FETCH_FAILED";

// ---- Static-pod providers: images and the container runtime (issue 10,
// image_ref.h and node/cri_client.h). ----
// An image reference without a sha256 digest (`repo:tag`, `repo`): only
// `repo[:tag]@sha256:<64 lower-case hex>` is accepted, as upstream `init`.
inline constexpr char kImageRefNotPinned[] = "IMAGE_REF_NOT_PINNED";
// An image reference that is not one: empty, too long, bad repository or
// tag syntax, or a digest that is not sha256 with 64 lower-case hex digits.
inline constexpr char kImageRefMalformed[] = "IMAGE_REF_MALFORMED";
// The runtime holds, after a pull, an image whose digest is not the one
// requested (or no such image at all).
inline constexpr char kImageDigestMismatch[] = "IMAGE_DIGEST_MISMATCH";
// The runtime refused or failed the pull (registry error, no space, …).
inline constexpr char kImagePullFailed[] = "IMAGE_PULL_FAILED";
// The CRI socket is absent or the runtime does not answer on it.
inline constexpr char kCriUnreachable[] = "CRI_UNREACHABLE";
// The runtime answered a CRI call with an error, or with a response that
// lacks what the call promises (ContainerStatus without a status).
inline constexpr char kCriCallFailed[] = "CRI_CALL_FAILED";
// ContainerStatus of a container the runtime does not know.
inline constexpr char kCriContainerNotFound[] = "CRI_CONTAINER_NOT_FOUND";

// ---- Static-pod manifest and installer (issue 10, helper E). ----
// The manifest is not YAML, not one document, or not shaped like a Pod
// (root, spec, spec.containers of the wrong type, a duplicate key).
inline constexpr char kManifestMalformed[] = "MANIFEST_MALFORMED";
// The manifest is YAML but not apiVersion v1, kind Pod.
inline constexpr char kManifestNotAPod[] = "MANIFEST_NOT_A_POD";
// spec.containers holds no container of the provider's name, or several.
inline constexpr char kManifestContainerNotFound[] = "MANIFEST_CONTAINER_NOT_FOUND";
// The provider container's image is absent, or written in a form whose
// bytes cannot be replaced safely (block, multi-line, escaped, tagged,
// anchored or aliased scalar).
inline constexpr char kManifestImageUneditable[] = "MANIFEST_IMAGE_UNEDITABLE";
// A new image value outside the characters an image reference uses.
inline constexpr char kManifestImageInvalid[] = "MANIFEST_IMAGE_INVALID";
// The edited manifest, parsed again, differs elsewhere than the image.
inline constexpr char kManifestEditUnverified[] = "MANIFEST_EDIT_UNVERIFIED";
// No longer returned (codes are never reused): the new manifest was
// written first in the state directory, which could be another filesystem
// or mount than the manifest directory. It is written beside it now.
inline constexpr char kManifestCrossDevice[] = "MANIFEST_CROSS_DEVICE";

// ---- Leadership transfer (issue 11, a coordinator's SIGTERM hands off). ----
// A plan change proposed while the coordinator hands leadership to another
// voter: retry on the new coordinator (GetLeader names it) once it is elected.
inline constexpr char kLeaderTransferInProgress[] = "LEADER_TRANSFER_IN_PROGRESS";
// A leadership transfer with no voter to go to: the named target is this
// node, a learner or no member, or no other voter has answered this leader.
inline constexpr char kNoTransferTarget[] = "NO_TRANSFER_TARGET";

// ---- Static-pod mode wired into the executor (issue 10). ----
// A static-pod node was asked to stage a release without the image to run
// (`--image`) or without the kit's image-ref.txt (`--image-ref`).
inline constexpr char kImageRefMissing[] = "IMAGE_REF_MISSING";
// The kit's image-ref.txt names another repository or digest than the
// image the operator asked for: the kit binary doctor runs would not be
// the release the pod runs.
inline constexpr char kImageRefMismatch[] = "IMAGE_REF_MISMATCH";
// The kit's image-ref.txt is not vouched for by the release's checksums.txt
// (neither the kit tarball nor the file itself is listed there).
inline constexpr char kImageRefUnverified[] = "IMAGE_REF_UNVERIFIED";
// A release kit that is not a readable gzip-compressed tar, or lacks the file.
inline constexpr char kKitMalformed[] = "KIT_MALFORMED";
// The static pod's container did not come up running the manifest's image
// digest within the start timeout (the kubelet did not replace it).
inline constexpr char kPodNotReplaced[] = "POD_NOT_REPLACED";
// The live manifest changed between the swap's start (which rendered the
// release from it) and its capture: installing the release would undo
// that edit, so the swap stops before anything is touched.
inline constexpr char kManifestChanged[] = "MANIFEST_CHANGED";
// The provider container's imagePullPolicy is Always: the kubelet pulls
// even an image the runtime holds, so a failed swap could not restore the
// provider without a registry. Refused before the stop.
inline constexpr char kImagePullPolicyAlways[] = "IMAGE_PULL_POLICY_ALWAYS";
// A static-pod rollback found the live manifest neither the release the
// operation installed nor the manifest it replaced: someone edited it
// since. The edit is kept and the operation ends RollbackFailed, for the
// operator to decide which manifest runs (not MANIFEST_CHANGED, which
// means nothing was touched and the swap may simply start again).
inline constexpr char kRollbackRefusedManifestEdited[] = "ROLLBACK_REFUSED_MANIFEST_EDITED";

}  // namespace kmsfleet::reason

#endif  // KMSFLEET_CORE_REASONS_H_
