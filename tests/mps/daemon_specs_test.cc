// mpsd::MpsDaemonSpecs: one daemon per MPS resource of full GPUs, one per MIG device of an MPS
// resource of MIG devices (named sharing::MpsDaemonKey, scoped to that device).
#include "mpsd/daemon_specs.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sharing/mig_node.h"

namespace nvdp::mpsd {
namespace {

using sharing::testing::MigUuid;
using ::testing::ElementsAre;

std::vector<std::string> Names(const std::vector<mps::DaemonSpec>& specs) {
  std::vector<std::string> out;
  for (const auto& s : specs) out.push_back(s.name);
  return out;
}

config::Config FlexibleMps(config::MigStrategy strategy, const std::string& name) {
  config::Config cfg;
  cfg.flags.mig_strategy = strategy;
  cfg.sharing.mps.per_container_limits = true;
  config::ReplicatedResource entry;
  entry.name = name;
  entry.replicas = 10;
  cfg.sharing.mps.resources = {entry};
  return cfg;
}

TEST(MpsDaemonSpecsTest, FullGpusShareOneDaemonPerResource) {
  auto resources = sharing::BuildResources(FlexibleMps(config::MigStrategy::kNone, "gpu"),
                                           sharing::testing::A100Node(2));
  ASSERT_TRUE(resources.ok()) << resources.status();
  const auto specs = MpsDaemonSpecs(*resources);
  ASSERT_THAT(Names(specs), ElementsAre("nvidia.com/gpu"));
  EXPECT_EQ(specs[0].gpus.size(), 2u);
  EXPECT_EQ(specs[0].replicas, 10);
}

TEST(MpsDaemonSpecsTest, EachMigDeviceGetsItsOwnDaemon) {
  device::Inventory node = sharing::testing::A100Node(1);
  sharing::testing::PartitionGpu(node, 0,
                                 {sharing::testing::kA100_3g20gb, sharing::testing::kA100_1g5gb,
                                  sharing::testing::kA100_1g5gb});
  auto resources =
      sharing::BuildResources(FlexibleMps(config::MigStrategy::kMixed, "mig-1g.5gb"), node);
  ASSERT_TRUE(resources.ok()) << resources.status();
  const auto specs = MpsDaemonSpecs(*resources);
  ASSERT_THAT(Names(specs), ElementsAre("nvidia.com/mig-1g.5gb/" + MigUuid(0, 1),
                                        "nvidia.com/mig-1g.5gb/" + MigUuid(0, 2)));
  ASSERT_EQ(specs[1].gpus.size(), 1u);
  EXPECT_EQ(specs[1].gpus[0].uuid, MigUuid(0, 2));
  EXPECT_EQ(specs[1].gpus[0].memory_bytes, 4864ull << 20);
  EXPECT_TRUE(specs[1].per_container_limits);
  EXPECT_EQ(specs[1].replicas, 10);
}

}  // namespace
}  // namespace nvdp::mpsd
