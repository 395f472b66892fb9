// MIG in the resource model: the three strategies on hand-built A100 and H100 nodes (resource
// names, device counts, IDs, refusals), `devices` lists with MIG indices and UUIDs, preferred
// allocation (same parent GPU), time-slicing and per-container MPS on MIG devices (limits from the
// MIG device's memory, one MIG device per container, the client cap), uniform MPS refused.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sharing/capacity.h"
#include "sharing/mig_node.h"

namespace nvdp::sharing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::MigUuid;

constexpr auto kNone = config::MigStrategy::kNone;
constexpr auto kSingle = config::MigStrategy::kSingle;
constexpr auto kMixed = config::MigStrategy::kMixed;

config::Config WithStrategy(config::MigStrategy strategy) {
  config::Config cfg;
  cfg.flags.mig_strategy = strategy;
  return cfg;
}

config::ReplicatedResource Entry(std::string name, int replicas, std::string rename = "") {
  config::ReplicatedResource r;
  r.name = std::move(name);
  r.rename = std::move(rename);
  r.replicas = replicas;
  return r;
}

config::DeviceSelector List(std::vector<std::string> ids) {
  config::DeviceSelector d;
  d.kind = config::DeviceSelector::Kind::kList;
  d.ids = std::move(ids);
  return d;
}

std::vector<std::string> Names(const std::vector<ResourceSpec>& specs) {
  std::vector<std::string> out;
  for (const auto& s : specs) out.push_back(s.name);
  return out;
}

std::vector<std::string> Uuids(const ResourceSpec& spec) {
  std::vector<std::string> out;
  for (const auto& d : spec.gpus) out.push_back(d.uuid);
  return out;
}

std::vector<std::string> IndexIds(const ResourceSpec& spec) {
  std::vector<std::string> out;
  for (const auto& d : spec.gpus) out.push_back(d.IndexId());
  return out;
}

const ResourceSpec& Find(const std::vector<ResourceSpec>& specs, const std::string& name) {
  for (const auto& s : specs) {
    if (s.name == name) return s;
  }
  ADD_FAILURE() << "no resource " << name;
  return specs.front();
}

// --- Strategies ----------------------------------------------------------------------------------

TEST(MigStrategy, NoneAdvertisesMigEnabledGpusWhole) {
  auto specs = BuildResources(WithStrategy(kNone), testing::A100Mixed());
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/gpu"));
  EXPECT_THAT(Uuids(specs->front()),
              ElementsAre(testing::A100Uuid(0), testing::A100Uuid(1), testing::A100Uuid(2)));
}

TEST(MigStrategy, SingleAdvertisesEveryMigDeviceAsGpu) {
  auto specs = BuildResources(WithStrategy(kSingle), testing::A100Uniform(2));
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/gpu"));
  const ResourceSpec& gpu = specs->front();
  ASSERT_EQ(gpu.gpus.size(), 14u);
  EXPECT_EQ(gpu.ShortName(), "gpu");
  EXPECT_EQ(gpu.gpus[0].uuid, MigUuid(0, 0));
  EXPECT_EQ(gpu.gpus[13].uuid, MigUuid(1, 6));
  EXPECT_EQ(gpu.gpus[8].IndexId(), "1:1");
  EXPECT_EQ(gpu.gpus[8].memory_bytes, 4864ull << 20);
  // Exclusive: the advertised IDs are the MIG UUIDs.
  const auto devices = AdvertisedDevices(gpu);
  ASSERT_EQ(devices.size(), 14u);
  EXPECT_EQ(devices[3].id, MigUuid(0, 3));
}

TEST(MigStrategy, SingleOnH100With7x1g10gb) {
  auto specs = BuildResources(WithStrategy(kSingle), testing::H100Uniform(1));
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/gpu"));
  EXPECT_THAT(IndexIds(specs->front()),
              ElementsAre("0:0", "0:1", "0:2", "0:3", "0:4", "0:5", "0:6"));
  EXPECT_EQ(specs->front().gpus[0].mig->profile, "1g.10gb");
}

TEST(MigStrategy, SingleWithMigOffEverywhereAdvertisesFullGpus) {
  auto specs = BuildResources(WithStrategy(kSingle), testing::A100Node(2));
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/gpu"));
  EXPECT_THAT(Uuids(specs->front()), ElementsAre(testing::A100Uuid(0), testing::A100Uuid(1)));
}

TEST(MigStrategy, SingleRefusesMigOnSomeGpusOnly) {
  auto specs = BuildResources(WithStrategy(kSingle), testing::A100Mixed());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(specs.status().message(),
            "flags.migStrategy: single — every GPU must have MIG enabled, or none (as upstream): "
            "MIG is enabled on GPU 0 (GPU-a100a100-0000-4000-8000-000000000000) and GPU 1 "
            "(GPU-a100a100-0000-4000-8000-000000000001) but not on GPU 2 "
            "(GPU-a100a100-0000-4000-8000-000000000002); use migStrategy: mixed, or change the "
            "MIG mode");
}

TEST(MigStrategy, SingleRefusesDifferentMigDevicesNamingTheProfiles) {
  device::Inventory node = testing::A100Node(2);
  testing::PartitionGpu(node, 0, testing::Times(7, testing::kA100_1g5gb));
  testing::PartitionGpu(node, 1, {testing::kA100_3g20gb, testing::kA100_3g20gb});
  auto specs = BuildResources(WithStrategy(kSingle), node);
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(specs.status().message(),
            "flags.migStrategy: single — every MIG device must be alike (same profile and "
            "attributes, as upstream), but this node has 1g.5gb (4864 MiB, 14 SMs) on GPU 0; "
            "3g.20gb (19968 MiB, 42 SMs) on GPU 1; use migStrategy: mixed, or repartition the "
            "GPUs");
}

TEST(MigStrategy, SingleRefusesAProfileVariantWithOtherAttributes) {
  device::Inventory node = testing::A100Node(1);
  testing::PartitionGpu(node, 0, {testing::kA100_1g5gb, testing::kA100_1g5gbMe});
  auto status = CheckMigStrategy(kSingle, node);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("1g.5gb (4864 MiB, 14 SMs) on GPU 0; 1g.5gb+me"));
}

TEST(MigStrategy, MigEnabledGpuWithoutMigDevicesIsRefused) {
  device::Inventory node = testing::A100Uniform(1);
  node.gpus.push_back(testing::A100(1));
  node.gpus[1].mig_enabled = true;
  for (auto strategy : {kSingle, kMixed}) {
    auto status = CheckMigStrategy(strategy, node);
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(status.message(),
                HasSubstr("MIG is enabled on GPU 1 (GPU-a100a100-0000-4000-8000-000000000001) but "
                          "it has no MIG devices"));
  }
  EXPECT_TRUE(CheckMigStrategy(kNone, node).ok());
}

TEST(MigStrategy, MixedAdvertisesOneResourcePerProfileAndMigOffGpusAsGpu) {
  auto specs = BuildResources(WithStrategy(kMixed), testing::A100Mixed());
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_THAT(Names(*specs),
              ElementsAre("nvidia.com/gpu", "nvidia.com/mig-1g.5gb", "nvidia.com/mig-1g.5gb.me",
                          "nvidia.com/mig-2g.10gb", "nvidia.com/mig-3g.20gb"));
  EXPECT_THAT(Uuids(Find(*specs, "nvidia.com/gpu")), ElementsAre(testing::A100Uuid(2)));
  const ResourceSpec& small = Find(*specs, "nvidia.com/mig-1g.5gb");
  EXPECT_EQ(small.ShortName(), "mig-1g.5gb");
  EXPECT_THAT(IndexIds(small), ElementsAre("0:0", "0:1", "0:2", "0:3", "0:4", "0:5", "0:6", "1:2"));
  EXPECT_THAT(IndexIds(Find(*specs, "nvidia.com/mig-1g.5gb.me")), ElementsAre("1:3"));
  EXPECT_THAT(IndexIds(Find(*specs, "nvidia.com/mig-3g.20gb")), ElementsAre("1:0"));
}

TEST(MigStrategy, MixedLeavesOutProfilesWithFewerComputeSlicesByDefault) {
  device::Inventory node = testing::A100Node(1);
  testing::PartitionGpu(node, 0, {testing::kA100_1c3g20gb, testing::kA100_3g20gb});
  auto specs = BuildResources(WithStrategy(kMixed), node);
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_THAT(Names(*specs), ElementsAre("nvidia.com/mig-3g.20gb"));
  EXPECT_EQ(DefaultMixedMigResource("1c.3g.20gb"), std::nullopt);
  EXPECT_EQ(DefaultMixedMigResource("1g.5gb+me"), "mig-1g.5gb.me");
}

TEST(MigStrategy, ResourcesMigPatternsNameProfiles) {
  config::Config cfg = WithStrategy(kMixed);
  cfg.resources.mig = {{"1c.*", "mig-compute-slice"}, {"1g.5gb", "mig-tiny"}};
  device::Inventory node = testing::A100Mixed();
  testing::PartitionGpu(node, 2, {testing::kA100_1c3g20gb});
  auto specs = BuildResources(cfg, node);
  ASSERT_TRUE(specs.ok()) << specs.status();
  // Profiles no pattern matches (2g.10gb, 3g.20gb, 1g.5gb+me) are not advertised, as for GPUs.
  EXPECT_THAT(Names(*specs), ElementsAre("nvidia.com/mig-compute-slice", "nvidia.com/mig-tiny"));
  EXPECT_EQ(Find(*specs, "nvidia.com/mig-tiny").gpus.size(), 8u);
}

TEST(MigStrategy, ResourcesMigUnderSingle) {
  config::Config cfg = WithStrategy(kSingle);
  cfg.resources.mig = {{"1g.*", "mig-small"}};
  auto specs = BuildResources(cfg, testing::H100Uniform(1));
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_THAT(Names(*specs), ElementsAre("nvidia.com/mig-small"));
}

TEST(MigStrategy, AResourceIsOneProfile) {
  config::Config cfg = WithStrategy(kMixed);
  cfg.resources.mig = {{"1g.5gb*", "mig-small"}};
  auto specs = BuildResources(cfg, testing::A100Mixed());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().message(),
            "resource nvidia.com/mig-small would hold MIG devices of two profiles, 1g.5gb (MIG "
            "device 0:0 (" +
                MigUuid(0, 0) + ")) and 1g.5gb+me (MIG device 1:3 (" + MigUuid(1, 3) +
                ")); a MIG resource is one profile: narrow the resources.mig patterns");
}

TEST(MigStrategy, FullGpusAndMigDevicesNeverShareAName) {
  config::Config cfg = WithStrategy(kMixed);
  cfg.resources.mig = {{"*", "gpu"}};
  device::Inventory node = testing::A100Uniform(1);
  node.gpus.push_back(testing::A100(1));
  auto specs = BuildResources(cfg, node);
  ASSERT_FALSE(specs.ok());
  EXPECT_THAT(specs.status().message(),
              HasSubstr("resource nvidia.com/gpu would hold both full GPUs (GPU 1 ("));
}

// --- `devices` lists -----------------------------------------------------------------------------

TEST(MigDevicesList, MigIndicesAndUuidsSelectMigDevices) {
  config::Config cfg = WithStrategy(kMixed);
  cfg.sharing.time_slicing.resources = {Entry("mig-1g.5gb", 4, "mig-1g.5gb.shared")};
  cfg.sharing.time_slicing.resources[0].devices = List({"0:3", MigUuid(1, 2)});
  auto specs = BuildResources(cfg, testing::A100Mixed());
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_THAT(IndexIds(Find(*specs, "nvidia.com/mig-1g.5gb.shared")), ElementsAre("0:3", "1:2"));
  EXPECT_EQ(Find(*specs, "nvidia.com/mig-1g.5gb").gpus.size(), 6u);
}

TEST(MigDevicesList, AMigEnabledGpuByIndexIsNotAdvertised) {
  config::Config cfg = WithStrategy(kMixed);
  cfg.sharing.time_slicing.resources = {Entry("mig-1g.5gb", 4, "x")};
  cfg.sharing.time_slicing.resources[0].devices = List({"0"});
  auto specs = BuildResources(cfg, testing::A100Mixed());
  ASSERT_FALSE(specs.ok());
  EXPECT_THAT(specs.status().message(),
              HasSubstr("sharing.timeSlicing.resources[0].devices: \"0\" is not advertised under "
                        "this flags.migStrategy"));
}

TEST(MigDevicesList, AMigDeviceOfAnotherProfileIsNotOfTheResource) {
  config::Config cfg = WithStrategy(kMixed);
  cfg.sharing.time_slicing.resources = {Entry("mig-1g.5gb", 4, "x")};
  cfg.sharing.time_slicing.resources[0].devices = List({"1:0"});
  auto specs = BuildResources(cfg, testing::A100Mixed());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().message(),
            "sharing.timeSlicing.resources[0].devices: \"1:0\" is not a MIG device of "
            "nvidia.com/mig-1g.5gb");
}

TEST(MigDevicesList, UnknownMigIndex) {
  config::Config cfg = WithStrategy(kMixed);
  cfg.sharing.time_slicing.resources = {Entry("mig-1g.5gb", 4, "x")};
  cfg.sharing.time_slicing.resources[0].devices = List({"0:9"});
  auto specs = BuildResources(cfg, testing::A100Mixed());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().message(),
            "sharing.timeSlicing.resources[0].devices: no GPU or MIG device on this node has "
            "index or UUID \"0:9\"");
}

// --- Preferred allocation ------------------------------------------------------------------------

ResourceSpec Exclusive1g5gb() {
  auto specs = BuildResources(WithStrategy(kSingle), testing::A100Uniform(2));
  return specs->front();
}

TEST(MigPreferred, MultiDeviceRequestsStayOnOneParentGpu) {
  const ResourceSpec spec = Exclusive1g5gb();
  // GPU 0 has 2 free, GPU 1 has 3: two fit GPU 0 exactly (best fit), three only GPU 1.
  const std::vector<std::string> available = {MigUuid(0, 5), MigUuid(0, 6), MigUuid(1, 0),
                                              MigUuid(1, 1), MigUuid(1, 2)};
  auto two = PreferredAllocation(spec, available, {}, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_THAT(*two, ElementsAre(MigUuid(0, 5), MigUuid(0, 6)));
  auto three = PreferredAllocation(spec, available, {}, 3);
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_THAT(*three, ElementsAre(MigUuid(1, 0), MigUuid(1, 1), MigUuid(1, 2)));
}

TEST(MigPreferred, MustIncludeAnchorsTheParentGpu) {
  const ResourceSpec spec = Exclusive1g5gb();
  const std::vector<std::string> available = {MigUuid(0, 5), MigUuid(0, 6), MigUuid(1, 0),
                                              MigUuid(1, 1), MigUuid(1, 2)};
  auto picked = PreferredAllocation(spec, available, {MigUuid(1, 2)}, 2);
  ASSERT_TRUE(picked.ok()) << picked.status();
  EXPECT_THAT(*picked, ElementsAre(MigUuid(1, 2), MigUuid(1, 0)));
}

// --- Time-slicing on MIG -------------------------------------------------------------------------

TEST(MigTimeSlicing, ReplicasOfMigUuids) {
  config::Config cfg = WithStrategy(kMixed);
  cfg.sharing.time_slicing.resources = {Entry("mig-1g.5gb", 4)};
  auto specs = BuildResources(cfg, testing::A100Mixed());
  ASSERT_TRUE(specs.ok()) << specs.status();
  const ResourceSpec& spec = Find(*specs, "nvidia.com/mig-1g.5gb");
  EXPECT_EQ(spec.mode, Mode::kTimeSlicing);
  const auto devices = AdvertisedDevices(spec);
  ASSERT_EQ(devices.size(), 32u);
  EXPECT_EQ(devices[5].id, MigUuid(0, 1) + "::1");
  EXPECT_EQ(devices[5].gpu_uuid, MigUuid(0, 1));
  // Allocate strips the suffix: the container sees the MIG device.
  auto grant = GrantContainer(spec, {MigUuid(1, 2) + "::3"});
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_EQ(grant->gpus.size(), 1u);
  EXPECT_EQ(grant->gpus[0].uuid, MigUuid(1, 2));
  EXPECT_FALSE(grant->mps_limits.has_value());
}

TEST(MigTimeSlicing, UnderSingleTheGpuResourceIsSharedAsMigDevices) {
  config::Config cfg = WithStrategy(kSingle);
  cfg.sharing.time_slicing.rename_by_default = true;
  cfg.sharing.time_slicing.resources = {Entry("gpu", 2)};
  auto specs = BuildResources(cfg, testing::H100Uniform(2));
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/gpu.shared"));
  const auto devices = AdvertisedDevices(specs->front());
  ASSERT_EQ(devices.size(), 28u);  // 2 GPUs x 7 MIG devices x 2 replicas
  EXPECT_EQ(devices.back().id, MigUuid(1, 6) + "::1");
}

TEST(MigStrategy, MixedOnH100NamesTheProfile) {
  auto specs = BuildResources(WithStrategy(kMixed), testing::H100Uniform(1));
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/mig-1g.10gb"));
  EXPECT_EQ(specs->front().gpus.size(), 7u);
  EXPECT_EQ(specs->front().gpus[0].cc_major, 9);
}

// --- MPS on MIG ----------------------------------------------------------------------------------

config::Config FlexibleMps(config::MigStrategy strategy, const std::string& name, int replicas) {
  config::Config cfg = WithStrategy(strategy);
  cfg.sharing.mps.per_container_limits = true;
  cfg.sharing.mps.resources = {Entry(name, replicas)};
  return cfg;
}

TEST(MigMps, FlexibleMpsLimitsComeFromTheMigDevicesMemory) {
  auto specs = BuildResources(FlexibleMps(kMixed, "mig-1g.5gb", 10), testing::A100Mixed());
  ASSERT_TRUE(specs.ok()) << specs.status();
  const ResourceSpec& spec = Find(*specs, "nvidia.com/mig-1g.5gb");
  ASSERT_EQ(spec.mode, Mode::kMps);
  EXPECT_EQ(AdvertisedDevices(spec).size(), 80u);  // 8 MIG devices x 10 shares
  // One share: 10% of the threads, a tenth of 4864 MiB.
  auto one = GrantContainer(spec, {MigUuid(0, 2) + "::0"});
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->gpus.size(), 1u);
  EXPECT_EQ(one->gpus[0].uuid, MigUuid(0, 2));
  ASSERT_TRUE(one->mps_limits.has_value());
  EXPECT_EQ(one->mps_limits->active_thread_percentage, 10);
  EXPECT_EQ(one->mps_limits->pinned_mem_limit, "0=486M");
  // Three shares: 30%, floor(4864 * 3 / 10) = 1459 MiB.
  auto three =
      GrantContainer(spec, {MigUuid(0, 2) + "::1", MigUuid(0, 2) + "::2", MigUuid(0, 2) + "::3"});
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(three->mps_limits->active_thread_percentage, 30);
  EXPECT_EQ(three->mps_limits->pinned_mem_limit, "0=1459M");
}

TEST(MigMps, FlexibleMpsOnH100UnderSingle) {
  auto specs = BuildResources(FlexibleMps(kSingle, "gpu", 4), testing::H100Uniform(1));
  ASSERT_TRUE(specs.ok()) << specs.status();
  const ResourceSpec& spec = specs->front();
  std::vector<std::string> ids;
  for (int r = 0; r < 4; ++r) ids.push_back(MigUuid(0, 6) + "::" + std::to_string(r));
  // The whole MIG device: 100% and all of its 9856 MiB.
  auto whole = GrantContainer(spec, ids);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->mps_limits->active_thread_percentage, 100);
  EXPECT_EQ(whole->mps_limits->pinned_mem_limit, "0=9856M");
}

TEST(MigMps, AContainerGetsSharesOfOneMigDevice) {
  auto specs = BuildResources(FlexibleMps(kSingle, "gpu", 2), testing::A100Uniform(1));
  ASSERT_TRUE(specs.ok()) << specs.status();
  const ResourceSpec& spec = specs->front();
  const std::vector<std::string> two_devices = {MigUuid(0, 0) + "::0", MigUuid(0, 0) + "::1",
                                                MigUuid(0, 1) + "::0", MigUuid(0, 1) + "::1"};
  auto grant = GrantContainer(spec, two_devices);
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().message(),
            "nvidia.com/gpu: request for 4 shares spans MIG devices " + MigUuid(0, 0) + " and " +
                MigUuid(0, 1) +
                "; under MPS a container can use one MIG device (each has its own MPS daemon), "
                "so at most 2 shares");
  std::vector<std::string> all;
  for (const auto& d : AdvertisedDevices(spec)) all.push_back(d.id);
  auto picked = PreferredAllocation(spec, all, {}, 4);
  ASSERT_FALSE(picked.ok());
  EXPECT_THAT(picked.status().message(), HasSubstr("needs more than one MIG device"));
  auto fits = PreferredAllocation(spec, all, {}, 2);
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_THAT(*fits, ElementsAre(MigUuid(0, 0) + "::0", MigUuid(0, 0) + "::1"));
}

TEST(MigMps, ClientCapIsPerMigDevice) {
  auto specs = BuildResources(FlexibleMps(kSingle, "gpu", 100), testing::A100Uniform(1));
  ASSERT_TRUE(specs.ok()) << specs.status();
  const ResourceSpec& spec = specs->front();
  // MIG devices carry the parent's compute capability (8.0): 48 clients per MIG device's daemon.
  EXPECT_EQ(MpsClientCap(spec.gpus[0]), kMpsClientCapVolta);
  // MIG device 0:0 is at the cap: a one-share request goes to the next MIG device.
  PreferenceHints hints;
  hints.gpu_at_client_cap.assign(spec.gpus.size(), 0);
  hints.gpu_at_client_cap[0] = 1;
  std::vector<std::string> all;
  for (const auto& d : AdvertisedDevices(spec)) all.push_back(d.id);
  auto picked = PreferredAllocation(spec, all, {}, 1, hints);
  ASSERT_TRUE(picked.ok()) << picked.status();
  EXPECT_THAT(*picked, ElementsAre(MigUuid(0, 1) + "::0"));
}

TEST(MigMps, UniformMpsOnMigDevicesIsRefused) {
  config::Config cfg = FlexibleMps(kSingle, "gpu", 4);
  cfg.sharing.mps.per_container_limits = false;
  auto specs = BuildResources(cfg, testing::A100Uniform(1));
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().message(),
            "sharing.mps.resources[0]: resource nvidia.com/gpu would share MIG devices (MIG "
            "device 0:0 (" +
                MigUuid(0, 0) +
                ")) with MPS and perContainerLimits: false; MPS with uniform limits is not "
                "supported on MIG devices (as upstream). Set sharing.mps.perContainerLimits: true "
                "(one MPS daemon per MIG device, limits per container), or share them with "
                "time-slicing");
  // The same config on a node without MIG is upstream's uniform MPS.
  EXPECT_TRUE(BuildResources(cfg, testing::A100Node(1)).ok());
}

TEST(MigMps, DaemonKeyIsPerMigDevice) {
  auto specs = BuildResources(FlexibleMps(kMixed, "mig-1g.5gb", 10), testing::A100Mixed());
  ASSERT_TRUE(specs.ok()) << specs.status();
  const ResourceSpec& spec = Find(*specs, "nvidia.com/mig-1g.5gb");
  EXPECT_EQ(MpsDaemonKey(spec, spec.gpus[7]), "nvidia.com/mig-1g.5gb/" + MigUuid(1, 2));
  const ResourceSpec& gpu = Find(*specs, "nvidia.com/gpu");
  EXPECT_EQ(MpsDaemonKey(gpu, gpu.gpus[0]), "nvidia.com/gpu");
}

}  // namespace
}  // namespace nvdp::sharing
