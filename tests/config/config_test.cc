// The pure helpers of config.h and Validate/Check on configs built in code (the
// file-based cases live in cases_test.cc).
#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "config/messages.h"
#include "config/validate.h"

namespace nvdp::config {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

ReplicatedResource Shared(std::string name, int replicas) {
  ReplicatedResource r;
  r.name = std::move(name);
  r.replicas = replicas;
  return r;
}

TEST(ConfigNames, StripPrefix) {
  EXPECT_EQ(StripResourcePrefix("nvidia.com/gpu"), "gpu");
  EXPECT_EQ(StripResourcePrefix("gpu"), "gpu");
  EXPECT_EQ(StripResourcePrefix("example.com/gpu"), "example.com/gpu");
  EXPECT_EQ(StripResourcePrefix("nvidia.com/"), "");
}

TEST(ConfigNames, ValidResourceNames) {
  for (const char* ok : {"gpu", "gpu.shared", "mig-1g.5gb", "a", "0", "a-b.c-d",
                         "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij123"}) {
    EXPECT_TRUE(IsValidResourceName(ok)) << ok;
  }
  for (const char* bad :
       {"", "GPU", "gpu_x", "-gpu", "gpu-", "gpu..x", ".gpu", "gpu.", "a/b", "gpu shared",
        "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij1234"}) {
    EXPECT_FALSE(IsValidResourceName(bad)) << bad;
  }
}

TEST(ConfigNames, SharedResourceName) {
  ReplicatedResources section;
  ReplicatedResource r = Shared("gpu", 2);
  EXPECT_EQ(SharedResourceName(section, r), "gpu");
  section.rename_by_default = true;
  EXPECT_EQ(SharedResourceName(section, r), "gpu.shared");
  r.rename = "gpu-ts";
  EXPECT_EQ(SharedResourceName(section, r), "gpu-ts");
}

TEST(ConfigEnums, RoundTrip) {
  for (auto v : {MigStrategy::kNone, MigStrategy::kSingle, MigStrategy::kMixed}) {
    EXPECT_EQ(ParseMigStrategy(ToString(v)), v);
  }
  for (auto v : {DeviceListStrategy::kEnvvar, DeviceListStrategy::kVolumeMounts,
                 DeviceListStrategy::kCdiAnnotations, DeviceListStrategy::kCdiCri}) {
    EXPECT_EQ(ParseDeviceListStrategy(ToString(v)), v);
  }
  for (auto v : {DeviceIdStrategy::kUuid, DeviceIdStrategy::kIndex}) {
    EXPECT_EQ(ParseDeviceIdStrategy(ToString(v)), v);
  }
  for (auto v : {AllocationPolicy::kDistributed, AllocationPolicy::kPacked}) {
    EXPECT_EQ(ParseAllocationPolicy(ToString(v)), v);
  }
  for (auto v : {MemoryLimit::kProportional, MemoryLimit::kNone}) {
    EXPECT_EQ(ParseMemoryLimit(ToString(v)), v);
  }
  EXPECT_EQ(ParseMigStrategy("None"),
            std::nullopt);  // case-sensitive, as upstream
  EXPECT_EQ(ParseMemoryLimit(""), std::nullopt);
}

TEST(ConfigFailRequestsGreaterThanOne, DefaultsByMode) {
  ReplicatedResources ts;
  EXPECT_FALSE(FailRequestsGreaterThanOne(ts, /*is_mps=*/false,
                                          /*per_container_limits=*/false));
  MpsSharing mps;
  EXPECT_FALSE(FailRequestsGreaterThanOne(mps));  // per-container: k shares is the point
  mps.per_container_limits = false;
  EXPECT_TRUE(FailRequestsGreaterThanOne(mps));  // uniform: upstream's default
  mps.fail_requests_greater_than_one = false;
  EXPECT_FALSE(FailRequestsGreaterThanOne(mps));
  ts.fail_requests_greater_than_one = true;
  EXPECT_TRUE(FailRequestsGreaterThanOne(ts, false, false));
}

TEST(ConfigValidate, DefaultConfigIsValid) {
  const Problems p = Check(Config{});
  EXPECT_THAT(p.errors, IsEmpty());
  EXPECT_THAT(p.warnings, IsEmpty());
}

TEST(ConfigValidate, CodeBuiltMpsConfig) {
  Config c;
  c.sharing.mps.resources.push_back(Shared("gpu", 100));
  EXPECT_THAT(Validate(c), ElementsAre("flags.mpsRoot: (unset) \u2014 required "
                                       "when sharing.mps has resources "
                                       "(flags.mpsRoot, --mps-root or "
                                       "MPS_ROOT; Helm uses /run/nvidia/mps)"));
  c.flags.mps_root = "/run/nvidia/mps";
  EXPECT_THAT(Validate(c), IsEmpty());
  c.sharing.mps.per_container_limits = false;
  EXPECT_THAT(Validate(c), ElementsAre("sharing.mps.resources[0].replicas: 100 \u2014 must be at "
                                       "most 48 with perContainerLimits: false (each replica is "
                                       "an MPS client, and MPS serves at most 48 per GPU)"));
  c.sharing.mps.resources[0].replicas = 48;
  EXPECT_THAT(Validate(c), IsEmpty());
}

TEST(ConfigValidate, ReplicaBounds) {
  Config c;
  c.sharing.time_slicing.resources.push_back(Shared("gpu", kMaxReplicas));
  EXPECT_THAT(Validate(c), IsEmpty());
  c.sharing.time_slicing.resources[0].replicas = kMaxReplicas + 1;
  EXPECT_THAT(Validate(c), ElementsAre("sharing.timeSlicing.resources[0].replicas: 1025 \u2014 "
                                       "must be at most 1024 replicas per GPU"));
  c.sharing.time_slicing.resources[0].replicas = kMinReplicas;
  EXPECT_THAT(Validate(c), IsEmpty());
}

TEST(ConfigValidate, PerContainerWithFailRequestsIsAWarning) {
  Config c;
  c.flags.mps_root = "/mps";
  c.sharing.mps.resources.push_back(Shared("gpu", 10));
  c.sharing.mps.fail_requests_greater_than_one = true;
  const Problems p = Check(c);
  EXPECT_THAT(p.errors, IsEmpty());
  EXPECT_THAT(p.warnings, ElementsAre("sharing.mps.failRequestsGreaterThanOne: true \u2014 with "
                                      "perContainerLimits: true every container gets exactly one "
                                      "share; omit "
                                      "it (or set false) to allow requests for several shares"));
}

TEST(ConfigValidate, KubeletSocketFitsSunPath) {
  Config c;
  c.flags.kubelet_socket = "/" + std::string(106, 'k');
  EXPECT_THAT(Validate(c), IsEmpty());
  c.flags.kubelet_socket += "k";
  ASSERT_EQ(Validate(c).size(), 1u);
  EXPECT_THAT(Validate(c)[0], ::testing::HasSubstr("must be at most 107 bytes"));
}

TEST(ConfigMessages, QuoteKeepsMessagesOnOneLine) {
  using internal::Quote;
  EXPECT_EQ(Quote("gpu"), "\"gpu\"");
  EXPECT_EQ(Quote("a\"b\\c\nd\te"), "\"a\\\"b\\\\c\\nd\\te\"");
  EXPECT_EQ(Quote(std::string("\x01\xc3\xbc", 3)), "\"\\x01\\xc3\\xbc\"");
  EXPECT_EQ(Quote(std::string(100, 'x')), "\"" + std::string(80, 'x') + "...\"");
}

TEST(ConfigMessages, PathHelpers) {
  using internal::IsWithin;
  using internal::PathOf;
  EXPECT_EQ(PathOf("a.b[0]: 1 \u2014 x"), "a.b[0]");
  EXPECT_TRUE(IsWithin("a.b[0].c", "a.b[0]"));
  EXPECT_TRUE(IsWithin("a.b[0]", "a.b"));
  EXPECT_TRUE(IsWithin("a.b", "a.b"));
  EXPECT_FALSE(IsWithin("a.bc", "a.b"));
}

}  // namespace
}  // namespace nvdp::config
