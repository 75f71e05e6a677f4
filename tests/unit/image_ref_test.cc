// Pinned image references (image_ref.h; issue 10, reference §8.7): only a
// sha256 digest names the bytes a static pod runs.
#include "kmsfleet/core/image_ref.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kDigest = "sha256:" + kHex;
const std::string kRepo = "ghcr.io/dc-tec/bao-kms-provider";

std::string ReasonFor(std::string_view text) {
  return ReasonOf(ParseImageRef(text, "manifest image").status());
}

TEST(ImageRefTest, DigestReferenceParsesIntoRepositoryAndDigest) {
  absl::StatusOr<ImageRef> ref = ParseImageRef(kRepo + "@" + kDigest, "image");
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->repository, kRepo);
  EXPECT_EQ(ref->tag, "");
  EXPECT_EQ(ref->digest, kDigest);
  EXPECT_EQ(ref->ToString(), kRepo + "@" + kDigest);
  EXPECT_EQ(ref->Pinned(), kRepo + "@" + kDigest);
}

TEST(ImageRefTest, TagBeforeTheDigestIsKeptButTheDigestPins) {
  absl::StatusOr<ImageRef> ref = ParseImageRef(kRepo + ":0.2.0@" + kDigest, "image");
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->repository, kRepo);
  EXPECT_EQ(ref->tag, "0.2.0");
  EXPECT_EQ(ref->ToString(), kRepo + ":0.2.0@" + kDigest);
  EXPECT_EQ(ref->Pinned(), kRepo + "@" + kDigest);
}

TEST(ImageRefTest, RegistryPortIsNotATag) {
  absl::StatusOr<ImageRef> ref =
      ParseImageRef("localhost:5000/kms/provider@" + kDigest, "image");
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->repository, "localhost:5000/kms/provider");
  EXPECT_EQ(ref->tag, "");
  absl::StatusOr<ImageRef> tagged =
      ParseImageRef("registry.local:5000/provider:v1@" + kDigest, "image");
  ASSERT_TRUE(tagged.ok()) << tagged.status();
  EXPECT_EQ(tagged->repository, "registry.local:5000/provider");
  EXPECT_EQ(tagged->tag, "v1");
}

TEST(ImageRefTest, SingleComponentAndSeparatorsAreAccepted) {
  for (std::string name : {"provider", "a/b/c", "my_org/kms__provider",
                           "my-org/kms---provider", "quay.io/a.b/c-d_e"}) {
    EXPECT_TRUE(ParseImageRef(name + "@" + kDigest, "image").ok()) << name;
  }
}

// Upstream `init` refuses tag-only references; so does kmsfleet, with a
// reason a script can match and a message naming the source and value.
TEST(ImageRefTest, TagOnlyReferenceIsRefusedAsNotPinned) {
  absl::Status status = ParseImageRef(kRepo + ":0.2.0", "manifest image").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(status), reason::kImageRefNotPinned);
  EXPECT_NE(status.message().find("manifest image"), std::string::npos);
  EXPECT_NE(status.message().find(kRepo + ":0.2.0"), std::string::npos);
  EXPECT_EQ(MetadataOf(status, "image"), kRepo + ":0.2.0");
  EXPECT_EQ(ReasonFor(kRepo), reason::kImageRefNotPinned);
  EXPECT_EQ(ReasonFor("localhost:5000/provider"), reason::kImageRefNotPinned);
}

TEST(ImageRefTest, DigestMustBeSha256With64LowerCaseHexDigits) {
  std::string upper = kHex;
  upper[0] = 'A';
  for (const std::string& digest : std::vector<std::string>{
           "sha256:" + upper, "sha256:" + kHex.substr(1), "sha256:" + kHex + "0",
        "sha512:" + kHex, "sha256:" + kHex.substr(1) + "g", kHex, "sha256:", ""}) {
    EXPECT_EQ(ReasonFor(kRepo + "@" + digest), reason::kImageRefMalformed) << digest;
  }
  EXPECT_EQ(ReasonFor(kRepo + "@" + kDigest + "@" + kDigest), reason::kImageRefMalformed);
}

TEST(ImageRefTest, MalformedNamesAndTagsAreRefused) {
  for (const std::string& bad : std::vector<std::string>{
           "", "@" + kDigest, "Ghcr/Provider@" + kDigest, "ghcr.io/Provider@" + kDigest,
        "ghcr.io//provider@" + kDigest, "/provider@" + kDigest, "provider/@" + kDigest,
        "-provider@" + kDigest, "pro..vider@" + kDigest, "ghcr.io:port/p@" + kDigest,
        "ghcr.io:123456/p@" + kDigest, "-bad.io/p@" + kDigest, "p:@" + kDigest,
        "p:.tag@" + kDigest, "p:" + std::string(129, 't') + "@" + kDigest,
        "p r@" + kDigest, "p\n@" + kDigest}) {
    EXPECT_EQ(ReasonFor(bad), reason::kImageRefMalformed) << bad;
  }
}

TEST(ImageRefTest, LongInputIsRefusedAndShownCut) {
  std::string long_name = std::string(kMaxImageRefBytes, 'a');
  absl::Status status = ParseImageRef(long_name, "flag --image").status();
  EXPECT_EQ(ReasonOf(status), reason::kImageRefMalformed);
  EXPECT_LT(status.message().size(), 300u);
  EXPECT_EQ(ReasonFor(std::string(256, 'a') + "@" + kDigest), reason::kImageRefMalformed);
}

TEST(ImageRefTest, ControlCharactersAreEscapedInTheMessage) {
  absl::Status status = ParseImageRef("p\nforged log line", "image").status();
  EXPECT_EQ(status.message().find('\n'), std::string::npos);
}

ImageRef Parsed(const std::string& text) {
  absl::StatusOr<ImageRef> ref = ParseImageRef(text, "image");
  EXPECT_TRUE(ref.ok()) << text << ": " << ref.status();
  return ref.ok() ? *ref : ImageRef{};
}

// The Docker rules (distribution/reference ParseNormalizedNamed), as
// containerd lists names in repo_digests: a short name is a path on
// docker.io, and a one-component one there is an official image.
TEST(ImageRefTest, ShortNamesNormaliseToDockerHubAsARuntimeListsThem) {
  const std::string official = "docker.io/library/busybox@" + kDigest;
  for (const std::string& name : std::vector<std::string>{
           "busybox", "library/busybox", "docker.io/busybox", "docker.io/library/busybox",
           "index.docker.io/busybox", "index.docker.io/library/busybox"}) {
    EXPECT_EQ(Parsed(name + "@" + kDigest).NormalizedPinned(), official) << name;
  }
  EXPECT_EQ(Parsed("busybox@" + kDigest).NormalizedRepository(), "docker.io/library/busybox");
  EXPECT_EQ(Parsed("myorg/app@" + kDigest).NormalizedPinned(), "docker.io/myorg/app@" + kDigest);
  EXPECT_EQ(Parsed("index.docker.io/myorg/app@" + kDigest).NormalizedPinned(),
            "docker.io/myorg/app@" + kDigest);
  EXPECT_EQ(Parsed("a/b/c@" + kDigest).NormalizedRepository(), "docker.io/a/b/c");
}

// A first component with a '.' or a ':', or "localhost", is a registry,
// and its name is left as written (case too: only "docker.io" is Hub).
TEST(ImageRefTest, NamesWithARegistryAreNotNormalised) {
  for (const std::string& name : std::vector<std::string>{
           "localhost/x", "localhost:5000/x", "ghcr.io/x/y", "registry:5000/x",
           "quay.io/single", "Docker.io/busybox", kRepo}) {
    EXPECT_EQ(Parsed(name + "@" + kDigest).NormalizedRepository(), name) << name;
    EXPECT_EQ(Parsed(name + "@" + kDigest).NormalizedPinned(), name + "@" + kDigest) << name;
  }
}

// The tag never takes part in a comparison, and the operator's text is
// what manifests and the runtime get: normalising changes neither.
TEST(ImageRefTest, NormalisingDropsTheTagAndLeavesTheOperatorsTextUnchanged) {
  ImageRef ref = Parsed("busybox:1.36@" + kDigest);
  EXPECT_EQ(ref.tag, "1.36");
  EXPECT_EQ(ref.NormalizedPinned(), "docker.io/library/busybox@" + kDigest);
  EXPECT_EQ(ref.ToString(), "busybox:1.36@" + kDigest);
  EXPECT_EQ(ref.Pinned(), "busybox@" + kDigest);
  EXPECT_EQ(ref.repository, "busybox");
  EXPECT_EQ(Parsed("registry:5000/x:v1@" + kDigest).NormalizedPinned(),
            "registry:5000/x@" + kDigest);
  EXPECT_NE(Parsed("busybox@" + kDigest).NormalizedPinned(),
            Parsed("busybox@sha256:" + std::string(64, 'f')).NormalizedPinned());
}

TEST(ImageRefTest, IsSha256DigestChecksTheWholeForm) {
  EXPECT_TRUE(IsSha256Digest(kDigest));
  EXPECT_FALSE(IsSha256Digest(kHex));
  EXPECT_FALSE(IsSha256Digest("sha256:" + kHex.substr(2) + "AB"));
}

}  // namespace
}  // namespace kmsfleet
