// Editing the provider's static-pod manifest: only the provider
// container's image changes, byte for byte; anything else is refused.
#include "kmsfleet/core/manifest_edit.h"

#include <gtest/gtest.h>

#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "test_util.h"

namespace kmsfleet {
namespace {

using ::kmsfleet::testing::ReadTestData;

const std::string kOld =
    "ghcr.io/dc-tec/bao-kms-provider@sha256:"
    "2222222222222222222222222222222222222222222222222222222222222222";
const std::string kNew =
    "ghcr.io/dc-tec/bao-kms-provider@sha256:"
    "3333333333333333333333333333333333333333333333333333333333333333";

// `text` with the first `old` after `anchor` replaced by `replacement`:
// what a careful hand edit produces.
std::string HandEdit(const std::string& text, const std::string& anchor, const std::string& old,
                     const std::string& replacement) {
  size_t at = text.find(old, text.find(anchor));
  EXPECT_NE(at, std::string::npos) << anchor;
  std::string out = text;
  return out.replace(at, old.size(), replacement);
}

// A small manifest with the image written as `image_line`.
std::string Pod(const std::string& image_line, const std::string& eol = "\n") {
  std::string text = "apiVersion: v1\nkind: Pod\nmetadata: {name: bao-kms-provider}\n"
                     "spec:\n  containers:\n  - name: bao-kms-provider\n    " +
                     image_line + "\n    args: [serve]\n";
  std::string out;
  for (char c : text) out += c == '\n' ? eol : std::string(1, c);
  return out;
}

absl::Status Rejected(const std::string& text, const std::string& image = kNew) {
  absl::StatusOr<std::string> r = ReplaceManifestImage(text, image, "/m/p.yaml");
  return r.ok() ? absl::OkStatus() : r.status();
}

TEST(ManifestEditTest, ObservesTheProviderContainersImageNotTheSidecars) {
  std::string text = ReadTestData("static-pod/bao-kms-provider.yaml");
  absl::StatusOr<std::string> image = ObserveManifestImage(text, "p.yaml");
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(*image, kOld);
  absl::StatusOr<std::string> tail = ObserveManifestImage(text, "p.yaml", "log-tail");
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ(*tail, kOld);
}

TEST(ManifestEditTest, ChangesOnlyTheImageBytesOfAnOperatorsManifest) {
  std::string text = ReadTestData("static-pod/bao-kms-provider.yaml");
  absl::StatusOr<std::string> edited = ReplaceManifestImage(text, kNew, "p.yaml");
  ASSERT_TRUE(edited.ok()) << edited.status();
  // Comments, spacing, the trailing comment on the image line, the sidecar
  // with the same image: all as they were.
  EXPECT_EQ(*edited, HandEdit(text, "image:    ", kOld, kNew));
  absl::StatusOr<std::string> now = ObserveManifestImage(*edited, "p.yaml");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(*now, kNew);
  absl::StatusOr<std::string> back = ReplaceManifestImage(*edited, kOld, "p.yaml");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, text);
}

TEST(ManifestEditTest, KeepsTheQuotingStyle) {
  for (const std::string q : {"'", "\""}) {
    std::string text = Pod("image: " + q + kOld + q + "  # pinned");
    absl::StatusOr<std::string> edited = ReplaceManifestImage(text, kNew, "p.yaml");
    ASSERT_TRUE(edited.ok()) << q << edited.status();
    EXPECT_EQ(*edited, Pod("image: " + q + kNew + q + "  # pinned")) << q;
  }
}

TEST(ManifestEditTest, HandlesOddSpacingAndAValueOnTheNextLine) {
  for (const std::string& line : std::vector<std::string>{"image:\t" + kOld, "image   :   " + kOld + "   ", "image:\n      " + kOld,
        "\"image\": " + kOld, "'image': '" + kOld + "'"}) {
    std::string text = Pod(line);
    absl::StatusOr<std::string> edited = ReplaceManifestImage(text, kNew, "p.yaml");
    ASSERT_TRUE(edited.ok()) << line << ": " << edited.status();
    EXPECT_EQ(*edited, HandEdit(text, "image", kOld, kNew)) << line;
  }
}

TEST(ManifestEditTest, KeepsCrlfLineEndingsAndAByteOrderMark) {
  std::string crlf = Pod("image: " + kOld + " # c", "\r\n");
  absl::StatusOr<std::string> edited = ReplaceManifestImage(crlf, kNew, "p.yaml");
  ASSERT_TRUE(edited.ok()) << edited.status();
  EXPECT_EQ(*edited, Pod("image: " + kNew + " # c", "\r\n"));

  std::string bom = "\xEF\xBB\xBF" + Pod("image: " + kOld);
  edited = ReplaceManifestImage(bom, kNew, "p.yaml");
  ASSERT_TRUE(edited.ok()) << edited.status();
  EXPECT_EQ(*edited, "\xEF\xBB\xBF" + Pod("image: " + kNew));
}

TEST(ManifestEditTest, EditsAJsonManifestInFlowStyle) {
  std::string json = R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},)"
                     R"("spec":{"containers":[{"name":"bao-kms-provider","image":")" +
                     kOld + R"("}]}})";
  absl::StatusOr<std::string> edited = ReplaceManifestImage(json, kNew, "p.json");
  ASSERT_TRUE(edited.ok()) << edited.status();
  EXPECT_EQ(*edited, HandEdit(json, "image", kOld, kNew));
}

TEST(ManifestEditTest, RefusesWhatIsNotAV1PodNamingFileAndValue) {
  std::string text = Pod("image: " + kOld);
  absl::Status s = Rejected(HandEdit(text, "apiVersion", "v1", "apps/v1"));
  EXPECT_EQ(ReasonOf(s), reason::kManifestNotAPod) << s;
  EXPECT_EQ(MetadataOf(s, "file"), "/m/p.yaml");
  EXPECT_EQ(MetadataOf(s, "key"), "apiVersion");
  EXPECT_NE(s.message().find("\"apps/v1\""), std::string::npos) << s;
  s = Rejected(HandEdit(text, "kind", "Pod", "Deployment"));
  EXPECT_EQ(ReasonOf(s), reason::kManifestNotAPod) << s;
  EXPECT_NE(s.message().find("\"Deployment\""), std::string::npos) << s;
  EXPECT_EQ(ReasonOf(Rejected("kind: Pod\nspec: {}\n")), reason::kManifestNotAPod);
}

TEST(ManifestEditTest, RefusesMalformedManifests) {
  const std::string pod = Pod("image: " + kOld);
  for (const std::string& text : std::vector<std::string>{std::string("apiVersion: v1\nkind: Pod\nspec: [\n"), std::string("- a\n- b\n"),
        std::string("apiVersion: v1\nkind: Pod\nspec: []\n"),
        std::string("apiVersion: v1\nkind: Pod\nspec: {containers: {a: b}}\n"),
        pod + "---\n" + pod, std::string(""), std::string("apiVersion: v1\0", 15),
        HandEdit(pod, "args", "args", "image"),  // a second image key
        "spec: {}\n" + pod,
        // yaml-cpp 0.7 would loop without bound on these.
        std::string("{\"apiVersion\": \"v1\", \"kind\": \"Pod\"},\n"),
        std::string("# c\n---\n[a, {b: \"]}\"}] # ]\n  , x\n"),
        std::string("{\"kind\":}\"Pod\", \"x\": 1}\n"),
        std::string("{a: 1}\n---\n{b: 2} x\n"), std::string("&a !!map {a: 1}, b\n")}) {
    absl::Status s = Rejected(text);
    EXPECT_EQ(ReasonOf(s), reason::kManifestMalformed) << text << "\n" << s;
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  }
  absl::Status big = Rejected(pod + "# " + std::string(kMaxManifestBytes, 'x') + "\n");
  EXPECT_EQ(ReasonOf(big), reason::kInputTooLarge);
}

TEST(ManifestEditTest, RefusesAMissingOrDuplicatedProviderContainer) {
  std::string text = Pod("image: " + kOld);
  absl::Status s = Rejected(HandEdit(text, "- name", "bao-kms-provider", "sidecar"));
  EXPECT_EQ(ReasonOf(s), reason::kManifestContainerNotFound) << s;
  EXPECT_NE(s.message().find("\"sidecar\""), std::string::npos) << s;
  std::string twice = text + "  - {name: bao-kms-provider, image: x}\n";
  EXPECT_EQ(ReasonOf(Rejected(twice)), reason::kManifestContainerNotFound);
  absl::StatusOr<std::string> other = ObserveManifestImage(text, "p.yaml", "other");
  EXPECT_EQ(ReasonOf(other.status()), reason::kManifestContainerNotFound);
}

TEST(ManifestEditTest, RefusesAnImageItCannotReplaceByteForByte) {
  for (const std::string& line : std::vector<std::string>{std::string("image: >-\n      ") + kOld, "image: |\n      " + kOld,
        "image: ghcr.io/dc-tec/\n      bao-kms-provider@sha256:22",
        "image: \"ghcr.io/dc-tec/bao-kms-provider\\u0040sha256:22\"",
        "image: 'it''s'", "image: !!str " + kOld, "image: &img " + kOld,
        "image: # the digest\n      " + kOld, "image: []", "image:", "name2: x"}) {
    absl::Status s = Rejected(Pod(line));
    EXPECT_EQ(ReasonOf(s), reason::kManifestImageUneditable) << line << "\n" << s;
    EXPECT_EQ(MetadataOf(s, "key"), "spec.containers[0].image") << line;
  }
}

TEST(ManifestEditTest, RefusesAnAliasedImageThatWouldChangeAnotherValue) {
  std::string text = "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations: {was: &img " + kOld +
                     "}\nspec:\n  containers:\n  - name: bao-kms-provider\n    image: *img\n";
  absl::StatusOr<std::string> observed = ObserveManifestImage(text, "p.yaml");
  ASSERT_TRUE(observed.ok());
  EXPECT_EQ(*observed, kOld);
  EXPECT_EQ(ReasonOf(Rejected(text)), reason::kManifestImageUneditable);
}

TEST(ManifestEditTest, RefusesANewImageThatWouldNeedQuotingOrEscapes) {
  std::string text = Pod("image: " + kOld);
  for (const std::string& image : std::vector<std::string>{std::string(""), std::string("repo:tag # x"), std::string("a'b"), std::string("a\"b"),
        std::string("-rm"), std::string("repo\n"), std::string("{x}"), std::string(600, 'a')}) {
    absl::Status s = Rejected(text, image);
    EXPECT_EQ(ReasonOf(s), reason::kManifestImageInvalid) << image;
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ManifestEditTest, TheSameImageGivesTheSameBytes) {
  std::string text = ReadTestData("static-pod/bao-kms-provider.yaml");
  absl::StatusOr<std::string> edited = ReplaceManifestImage(text, kOld, "p.yaml");
  ASSERT_TRUE(edited.ok());
  EXPECT_EQ(*edited, text);
}

// Found in review: with `imagePullPolicy: Always` the kubelet pulls even
// an image the runtime holds, so the restore of a failed swap needed the
// registry that the docs say it never needs.
TEST(ManifestEditTest, APullPolicyOfAlwaysCannotBeRestoredWithoutARegistry) {
  const std::string image = "image: " + kOld;
  absl::Status always =
      CheckPullPolicyRestorable(Pod(image + "\n    imagePullPolicy: Always"), "/m/p.yaml");
  EXPECT_EQ(ReasonOf(always), reason::kImagePullPolicyAlways) << always;
  EXPECT_EQ(MetadataOf(always, "key"), "spec.containers[0].imagePullPolicy");
  EXPECT_NE(std::string(always.message()).find("/m/p.yaml:8"), std::string::npos) << always;
  for (const std::string& fine : {image, image + "\n    imagePullPolicy: IfNotPresent",
                                  image + "\n    imagePullPolicy: Never"}) {
    EXPECT_TRUE(CheckPullPolicyRestorable(Pod(fine), "/m/p.yaml").ok()) << fine;
  }
  // Without the key, a `latest` tag means Always to the kubelet.
  const std::string latest = "image: ghcr.io/dc-tec/bao-kms-provider:latest@sha256:" +
                             std::string(64, '2');
  absl::Status defaulted = CheckPullPolicyRestorable(Pod(latest), "/m/p.yaml");
  EXPECT_EQ(ReasonOf(defaulted), reason::kImagePullPolicyAlways) << defaulted;
  EXPECT_EQ(MetadataOf(defaulted, "key"), "spec.containers[0].image");
  EXPECT_TRUE(
      CheckPullPolicyRestorable(Pod(latest + "\n    imagePullPolicy: IfNotPresent"), "/m/p.yaml")
          .ok());
  // Another container's policy is its own business.
  const std::string sidecar = Pod(image) + "  - {name: sidecar, image: x, imagePullPolicy: Always}\n";
  EXPECT_TRUE(CheckPullPolicyRestorable(sidecar, "/m/p.yaml").ok());
}

}  // namespace
}  // namespace kmsfleet
