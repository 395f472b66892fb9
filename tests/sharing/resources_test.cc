// BuildResources: naming patterns, sharing entries, rename / renameByDefault,
// `devices` selection and the errors for configs this node cannot apply.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sharing/test_node.h"

namespace nvdp::sharing {
namespace {

using testing::A100Uuid;
using ::testing::ElementsAre;

std::vector<std::string> Names(const std::vector<ResourceSpec>& specs) {
  std::vector<std::string> out;
  for (const auto& s : specs) out.push_back(s.name);
  return out;
}

std::vector<unsigned> Indices(const ResourceSpec& spec) {
  std::vector<unsigned> out;
  for (const auto& g : spec.gpus) out.push_back(g.index);
  return out;
}

config::ReplicatedResource Entry(std::string name, int replicas, std::string rename = "") {
  config::ReplicatedResource r;
  r.name = std::move(name);
  r.rename = std::move(rename);
  r.replicas = replicas;
  return r;
}

config::DeviceSelector Count(int n) {
  config::DeviceSelector d;
  d.kind = config::DeviceSelector::Kind::kCount;
  d.count = n;
  return d;
}

config::DeviceSelector List(std::vector<std::string> ids) {
  config::DeviceSelector d;
  d.kind = config::DeviceSelector::Kind::kList;
  d.ids = std::move(ids);
  return d;
}

// Two A100s, two H100s and one T4 that no pattern below names.
device::Inventory MixedNode() {
  device::Inventory inv = testing::A100Node(5);
  inv.gpus[2].name = "NVIDIA H100 80GB HBM3";
  inv.gpus[3].name = "NVIDIA H100 80GB HBM3";
  inv.gpus[4].name = "Tesla T4";
  return inv;
}

TEST(BuildResources, DefaultIsOneExclusiveGpuResource) {
  auto specs = BuildResources(config::Config{}, testing::A100Node());
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 1u);
  const ResourceSpec& spec = specs->front();
  EXPECT_EQ(spec.name, "nvidia.com/gpu");
  EXPECT_EQ(spec.mode, Mode::kExclusive);
  EXPECT_EQ(spec.replicas, 1);
  EXPECT_THAT(Indices(spec), ElementsAre(0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u));
  EXPECT_EQ(spec.gpus[5].uuid, A100Uuid(5));
}

TEST(BuildResources, EmptyInventoryAdvertisesNothing) {
  auto specs = BuildResources(config::Config{}, device::Inventory{});
  ASSERT_TRUE(specs.ok());
  EXPECT_TRUE(specs->empty());
}

TEST(BuildResources, PatternsNameGpusFirstMatchWins) {
  config::Config cfg;
  cfg.resources.gpus = {{"*A100*", "a100"},
                        {"NVIDIA H100*", "h100"},
                        {"*H100*", "never"},
                        {"*A100-SXM4-40GB", "never-either"}};
  auto specs = BuildResources(cfg, MixedNode());
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_THAT(Names(*specs), ElementsAre("nvidia.com/a100", "nvidia.com/h100"));
  EXPECT_THAT(Indices((*specs)[0]), ElementsAre(0u, 1u));
  EXPECT_THAT(Indices((*specs)[1]), ElementsAre(2u, 3u));  // T4: not advertised
}

TEST(BuildResources, PatternsMatchTheWholeNameAndOnlyStarIsWild) {
  config::Config cfg;
  cfg.resources.gpus = {{"A100", "no"},
                        {"NVIDIA A100-SXM4-40G", "no"},
                        {"NVIDIA ?100*", "no"},
                        {"NVIDIA*A100*40GB", "a100"}};
  auto specs = BuildResources(cfg, MixedNode());
  ASSERT_TRUE(specs.ok());
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/a100"));
  cfg.resources.gpus = {{"Tesla T4", "t4"}, {"*", "rest"}};
  specs = BuildResources(cfg, MixedNode());
  ASSERT_TRUE(specs.ok());
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/rest", "nvidia.com/t4"));
  EXPECT_THAT(Indices((*specs)[0]), ElementsAre(0u, 1u, 2u, 3u));
}

TEST(BuildResources, MpsKeepsTheNameAndResolvesDefaults) {
  config::Config cfg;
  cfg.sharing.mps.per_container_limits = true;
  cfg.sharing.mps.resources = {Entry("gpu", 100)};
  cfg.flags.plugin.shared_devices_allocation_policy = config::AllocationPolicy::kPacked;
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 1u);
  const ResourceSpec& spec = specs->front();
  EXPECT_EQ(spec.name, "nvidia.com/gpu");
  EXPECT_EQ(spec.mode, Mode::kMps);
  EXPECT_EQ(spec.replicas, 100);
  EXPECT_TRUE(spec.per_container_limits);
  EXPECT_FALSE(spec.fail_requests_greater_than_one);  // per-container default
  EXPECT_EQ(spec.memory_limit, config::MemoryLimit::kProportional);
  EXPECT_EQ(spec.policy, config::AllocationPolicy::kPacked);
  EXPECT_EQ(spec.gpus.size(), 8u);
  EXPECT_EQ(AdvertisedDevices(spec).size(), 800u);
}

TEST(BuildResources, FailRequestsGreaterThanOneDefaults) {
  struct Case {
    bool mps;
    bool per_container;
    std::optional<bool> value;
    bool want;
  };
  for (const Case& c : std::vector<Case>{{true, false, std::nullopt, true},
                                         {true, false, false, false},
                                         {true, true, std::nullopt, false},
                                         {true, true, true, true},
                                         {false, false, std::nullopt, false},
                                         {false, false, true, true}}) {
    config::Config cfg;
    config::ReplicatedResources& r =
        c.mps ? static_cast<config::ReplicatedResources&>(cfg.sharing.mps)
              : cfg.sharing.time_slicing;
    r.resources = {Entry("gpu", 4)};
    r.fail_requests_greater_than_one = c.value;
    cfg.sharing.mps.per_container_limits = c.per_container;
    auto specs = BuildResources(cfg, testing::A100Node(2));
    ASSERT_TRUE(specs.ok());
    ASSERT_EQ(specs->size(), 1u);
    EXPECT_EQ(specs->front().mode, c.mps ? Mode::kMps : Mode::kTimeSlicing);
    EXPECT_EQ(specs->front().fail_requests_greater_than_one, c.want)
        << c.mps << c.per_container << c.value.value_or(false);
    EXPECT_EQ(specs->front().per_container_limits, c.mps && c.per_container);
  }
}

TEST(BuildResources, UniformMpsByDefault) {
  config::Config cfg;  // perContainerLimits omitted: upstream's uniform MPS
  cfg.sharing.mps.resources = {Entry("gpu", 10)};
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 1u);
  EXPECT_FALSE(specs->front().per_container_limits);
  EXPECT_TRUE(specs->front().fail_requests_greater_than_one);
}

TEST(BuildResources, UniformMpsOnPreVoltaGpusTakesAtMostSixteenReplicas) {
  device::Inventory node = testing::A100Node(2);
  node.gpus[1].cc_major = 6;  // Pascal: MPS serves 16 clients
  config::Config cfg;
  cfg.sharing.mps.resources = {Entry("gpu", 17)};
  auto specs = BuildResources(cfg, node);
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(specs.status().message()),
              ::testing::AllOf(::testing::HasSubstr("replicas: 17: must be at most 16"),
                               ::testing::HasSubstr("GPU 1"),
                               ::testing::HasSubstr("compute capability 6.0")));
  cfg.sharing.mps.resources = {Entry("gpu", 16)};
  EXPECT_TRUE(BuildResources(cfg, node).ok());
  // Per-container limits: replicas are shares, not clients (the cap is kept at run time).
  cfg.sharing.mps.per_container_limits = true;
  cfg.sharing.mps.resources = {Entry("gpu", 100)};
  EXPECT_TRUE(BuildResources(cfg, node).ok());
}

TEST(BuildResources, CapacityShapingOnlyUnderPerContainerLimits) {
  config::Config cfg;
  cfg.sharing.mps.resources = {Entry("gpu", 10)};
  cfg.sharing.mps.per_container_limits = true;
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok());
  EXPECT_TRUE(specs->front().capacity_shaping);
  cfg.sharing.mps.capacity_shaping = false;
  specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok());
  EXPECT_FALSE(specs->front().capacity_shaping);
  cfg.sharing.mps.capacity_shaping = true;
  cfg.sharing.mps.per_container_limits = false;
  specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok());
  EXPECT_FALSE(specs->front().capacity_shaping);
}

TEST(BuildResources, UniformMpsAndMemoryLimitCarryOver) {
  config::Config cfg;
  cfg.sharing.mps.per_container_limits = false;
  cfg.sharing.mps.memory_limit = config::MemoryLimit::kNone;
  cfg.sharing.mps.resources = {Entry("nvidia.com/gpu", 10)};
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok());
  ASSERT_EQ(specs->size(), 1u);
  EXPECT_FALSE(specs->front().per_container_limits);
  EXPECT_EQ(specs->front().memory_limit, config::MemoryLimit::kNone);
}

TEST(BuildResources, RenameMovesAllGpus) {
  config::Config cfg;
  cfg.sharing.time_slicing.resources = {Entry("gpu", 4, "gpu-ts")};
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok());
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/gpu-ts"));
  EXPECT_EQ(specs->front().mode, Mode::kTimeSlicing);
  EXPECT_EQ(specs->front().ShortName(), "gpu-ts");
}

TEST(BuildResources, RenameByDefaultWithDeviceCount) {
  config::Config cfg;
  cfg.sharing.mps.rename_by_default = true;
  cfg.sharing.mps.resources = {Entry("gpu", 100)};
  cfg.sharing.mps.resources[0].devices = Count(3);
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/gpu", "nvidia.com/gpu.shared"));
  EXPECT_EQ((*specs)[0].mode, Mode::kExclusive);
  EXPECT_THAT(Indices((*specs)[0]), ElementsAre(3u, 4u, 5u, 6u, 7u));
  EXPECT_EQ((*specs)[1].mode, Mode::kMps);
  EXPECT_EQ((*specs)[1].ShortName(), "gpu.shared");
  EXPECT_THAT(Indices((*specs)[1]), ElementsAre(0u, 1u, 2u));
}

TEST(BuildResources, DevicesListOfIndicesAndUuids) {
  config::Config cfg;
  cfg.sharing.mps.resources = {Entry("gpu", 100, "gpu-mps")};
  cfg.sharing.mps.resources[0].devices = List({"6", A100Uuid(1), "1", "3"});
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/gpu", "nvidia.com/gpu-mps"));
  EXPECT_THAT(Indices((*specs)[0]), ElementsAre(0u, 2u, 4u, 5u, 7u));
  EXPECT_THAT(Indices((*specs)[1]), ElementsAre(1u, 3u, 6u));
}

TEST(BuildResources, UnknownDevicesAreNamed) {
  config::Config cfg;
  cfg.sharing.mps.resources = {Entry("gpu", 100, "gpu-mps")};
  cfg.sharing.mps.resources[0].devices = List({"2", "8", "GPU-missing"});
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(specs.status().message(),
            "sharing.mps.resources[0].devices: no GPU on this node has the "
            "indices or UUIDs \"8\", \"GPU-missing\"");
}

TEST(BuildResources, DevicesOfAnotherResourceAreRefused) {
  config::Config cfg;
  cfg.resources.gpus = {{"*A100*", "a100"}, {"*H100*", "h100"}};
  cfg.sharing.time_slicing.resources = {Entry("a100", 2, "a100-ts")};
  cfg.sharing.time_slicing.resources[0].devices = List({"0", "2"});
  auto specs = BuildResources(cfg, MixedNode());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().message(),
            "sharing.timeSlicing.resources[0].devices: \"2\" is not a GPU of "
            "nvidia.com/a100");
}

TEST(BuildResources, DeviceCountLargerThanTheNode) {
  config::Config cfg;
  cfg.sharing.mps.rename_by_default = true;
  cfg.sharing.mps.resources = {Entry("gpu", 100)};
  cfg.sharing.mps.resources[0].devices = Count(9);
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().message(),
            "sharing.mps.resources[0].devices: asks for the first 9 GPUs of "
            "nvidia.com/gpu, but this node has 8");
}

// MIG IDs on a node without MIG name nothing (tests/sharing/mig_test.cc has MIG nodes).
TEST(BuildResources, MigIndexOnANodeWithoutMigIsUnknown) {
  config::Config cfg;
  cfg.sharing.mps.resources = {Entry("gpu", 100, "x")};
  cfg.sharing.mps.resources[0].devices = List({"0:1"});
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().message(),
            "sharing.mps.resources[0].devices: no GPU on this node has index or UUID "
            "\"0:1\"");
}

TEST(BuildResources, PartialSharingUnderTheSameNameIsAnError) {
  config::Config cfg;
  cfg.sharing.mps.resources = {Entry("gpu", 100)};
  cfg.sharing.mps.resources[0].devices = Count(2);
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().message(),
            "resource nvidia.com/gpu would be both mps with 100 replicas "
            "(sharing.mps.resources[0]) and unshared (resources.gpus, GPU 2 (" +
                A100Uuid(2) +
                ")); the GPUs left unshared keep that name, so give the shared "
                "ones another with rename or renameByDefault");
}

TEST(BuildResources, BothSharingKindsOnDifferentGpus) {
  config::Config cfg;
  cfg.sharing.time_slicing.resources = {Entry("gpu", 4, "gpu-ts")};
  cfg.sharing.time_slicing.resources[0].devices = List({"0", "1", "2", "3"});
  cfg.sharing.mps.resources = {Entry("gpu", 100, "gpu-mps")};
  cfg.sharing.mps.resources[0].devices = List({"4", "5"});
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs),
              ElementsAre("nvidia.com/gpu", "nvidia.com/gpu-mps", "nvidia.com/gpu-ts"));
  EXPECT_THAT(Indices((*specs)[0]), ElementsAre(6u, 7u));
  EXPECT_EQ((*specs)[1].mode, Mode::kMps);
  EXPECT_EQ((*specs)[1].replicas, 100);
  EXPECT_THAT(Indices((*specs)[1]), ElementsAre(4u, 5u));
  EXPECT_EQ((*specs)[2].mode, Mode::kTimeSlicing);
  EXPECT_EQ((*specs)[2].replicas, 4);
  EXPECT_THAT(Indices((*specs)[2]), ElementsAre(0u, 1u, 2u, 3u));
}

TEST(BuildResources, OneGpuSharedTwiceIsAnError) {
  config::Config cfg;
  cfg.sharing.time_slicing.resources = {Entry("gpu", 4, "gpu-ts")};
  cfg.sharing.time_slicing.resources[0].devices = List({"0", "1"});
  cfg.sharing.mps.resources = {Entry("gpu", 100, "gpu-mps")};
  cfg.sharing.mps.resources[0].devices = List({"1", "2"});
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().message(),
            "sharing.timeSlicing.resources[0] and sharing.mps.resources[0] "
            "both share GPU 1 (" +
                A100Uuid(1) + ")");
}

TEST(BuildResources, EntriesMergeUnderOneNameOnlyWhenTheyAgree) {
  config::Config cfg;
  cfg.resources.gpus = {{"*A100*", "a100"}, {"*H100*", "h100"}};
  cfg.sharing.mps.resources = {Entry("a100", 100, "shared"), Entry("h100", 100, "shared")};
  auto specs = BuildResources(cfg, MixedNode());
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/shared"));
  EXPECT_THAT(Indices(specs->front()), ElementsAre(0u, 1u, 2u, 3u));

  cfg.sharing.mps.resources[1].replicas = 50;
  specs = BuildResources(cfg, MixedNode());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.status().message(),
            "resource nvidia.com/shared would be both mps with 100 replicas "
            "(sharing.mps.resources[0]) and mps with 50 replicas "
            "(sharing.mps.resources[1], GPU 2 (" +
                A100Uuid(2) + "))");
}

TEST(BuildResources, EntriesForResourcesThisNodeLacksAreSkipped) {
  config::Config cfg;
  cfg.sharing.mps.resources = {Entry("h100", 100)};
  cfg.sharing.mps.resources[0].devices = List({"42"});
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_THAT(Names(*specs), ElementsAre("nvidia.com/gpu"));
  EXPECT_EQ(specs->front().mode, Mode::kExclusive);
}

TEST(BuildResources, ShareIdsOfBuiltResourcesRoundTrip) {
  config::Config cfg;
  cfg.sharing.mps.per_container_limits = true;
  cfg.sharing.mps.rename_by_default = true;
  cfg.sharing.mps.resources = {Entry("gpu", 10)};
  cfg.sharing.mps.resources[0].devices = List({"7"});
  auto specs = BuildResources(cfg, testing::A100Node());
  ASSERT_TRUE(specs.ok());
  const ResourceSpec& shared = (*specs)[1];
  auto devices = AdvertisedDevices(shared);
  ASSERT_EQ(devices.size(), 10u);
  std::vector<std::string> ids;
  for (const auto& d : devices) {
    EXPECT_EQ(d.gpu_uuid, A100Uuid(7));
    ids.push_back(d.id);
  }
  auto grant = GrantContainer(shared, ids);
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->mps_limits->pinned_mem_limit, "0=40960M");
}

}  // namespace
}  // namespace nvdp::sharing
