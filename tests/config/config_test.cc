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
  EXPECT_FALSE(mps.per_container_limits);        // omitted: upstream's uniform mode
  EXPECT_TRUE(FailRequestsGreaterThanOne(mps));  // uniform: upstream's default
  mps.per_container_limits = true;
  EXPECT_FALSE(FailRequestsGreaterThanOne(mps));  // per-container: k shares is the point
  mps.per_container_limits = false;
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
  c.sharing.mps.per_container_limits = true;
  c.sharing.mps.resources.push_back(Shared("gpu", 100));
  EXPECT_EQ(c.flags.mps_root, "/run/nvidia/mps");  // the default
  EXPECT_THAT(Validate(c), IsEmpty());
  c.flags.mps_root.reset();  // set empty explicitly
  EXPECT_THAT(Validate(c), ElementsAre("flags.mpsRoot: \"\" \u2014 required when sharing.mps has "
                                       "resources: set a directory, or remove the empty value to "
                                       "use the default /run/nvidia/mps"));
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
  c.sharing.mps.per_container_limits = true;
  c.sharing.mps.resources.push_back(Shared("gpu", 10));
  c.sharing.mps.fail_requests_greater_than_one = true;
  const Problems p = Check(c);
  EXPECT_THAT(p.errors, IsEmpty());
  EXPECT_THAT(p.warnings, ElementsAre("sharing.mps.failRequestsGreaterThanOne: true \u2014 with "
                                      "perContainerLimits: true every container gets exactly one "
                                      "share; omit "
                                      "it (or set false) to allow requests for several shares"));
}

TEST(ConfigValidate, CheckAndNormalizeRewritesUpstreamFormsCheckDoesNot) {
  Config c;
  c.sharing.time_slicing.resources.push_back(Shared("gpu", 2));
  c.sharing.mps.resources.push_back(Shared("gpu", 10));
  c.sharing.mps.resources[0].devices.kind = DeviceSelector::Kind::kCount;
  c.sharing.mps.resources[0].devices.count = 2;
  const Config before = c;
  const Problems checked = Check(c);
  EXPECT_THAT(checked.errors, IsEmpty());
  EXPECT_THAT(checked.warnings,
              ElementsAre("sharing.mps.resources[0].devices: 2 \u2014 ignored without rename, as "
                          "upstream does: every GPU is shared; add rename to share only these "
                          "devices",
                          "sharing.timeSlicing.resources[0].name: \"gpu\" \u2014 also shared by "
                          "sharing.mps.resources[0]; a resource can use one sharing method and MPS "
                          "wins: this time-slicing entry is ignored"));
  EXPECT_EQ(c.sharing.time_slicing.resources.size(), 1u);  // Check works on a copy
  EXPECT_EQ(c.sharing.mps.resources[0].devices.kind, DeviceSelector::Kind::kCount);

  const Problems normalised = CheckAndNormalize(c);
  EXPECT_EQ(normalised.warnings, checked.warnings);
  EXPECT_THAT(c.sharing.time_slicing.resources, IsEmpty());
  EXPECT_EQ(c.sharing.mps.resources[0].devices.kind, DeviceSelector::Kind::kAll);
  // Idempotent.
  EXPECT_THAT(CheckAndNormalize(c).warnings, IsEmpty());

  // Renamed: devices honoured, nothing to say.
  Config renamed = before;
  renamed.sharing.time_slicing.resources.clear();
  renamed.sharing.mps.resources[0].rename = "gpu-mps";
  EXPECT_THAT(CheckAndNormalize(renamed).warnings, IsEmpty());
  EXPECT_EQ(renamed.sharing.mps.resources[0].devices.kind, DeviceSelector::Kind::kCount);
}

TEST(ConfigValidate, UpstreamSettingsWeDoNotUse) {
  Config c;
  c.flags.device_discovery_strategy = DeviceDiscoveryStrategy::kTegra;
  c.imex.channel_ids = {"0"};
  c.imex.required = true;
  c.flags.plugin.nvidia_cdi_hook_path = "/opt/nvidia-ctk";
  c.flags.plugin.cdi_feature_flags = {"f"};
  c.flags.plugin.cdi_disable_hooks = {"h"};
  const Problems p = Check(c);
  EXPECT_THAT(p.errors,
              ElementsAre("flags.deviceDiscoveryStrategy: \"tegra\" \u2014 tegra (Jetson) "
                          "discovery is not supported; use auto or nvml"));
  EXPECT_THAT(
      p.warnings,
      ::testing::UnorderedElementsAre(
          "imex.channelIDs: [0] \u2014 this plugin injects no IMEX channels; containers get none",
          "imex.required: true \u2014 this plugin injects no IMEX channels; containers get none",
          "flags.plugin.nvidiaCDIHookPath: \"/opt/nvidia-ctk\" \u2014 this plugin writes no CDI "
          "spec; ignored",
          "flags.plugin.cdiFeatureFlags: [\"f\"] \u2014 this plugin writes no CDI spec; ignored",
          "--cdi-disable-hooks: [\"h\"] \u2014 this plugin writes no CDI spec; ignored"));
  c.flags.device_discovery_strategy = DeviceDiscoveryStrategy::kNvml;
  c.flags.gdrcopy_enabled = c.flags.gds_enabled = c.flags.mofed_enabled = true;
  EXPECT_THAT(Validate(c), IsEmpty());
}

TEST(ConfigValidate, EmptyKubeletSocketIsValid) {
  Config c;
  c.flags.kubelet_socket = "";
  EXPECT_THAT(Validate(c), IsEmpty());
  c.flags.kubelet_socket = "relative.sock";
  EXPECT_THAT(Validate(c), ElementsAre(::testing::HasSubstr("must be an absolute path")));
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
