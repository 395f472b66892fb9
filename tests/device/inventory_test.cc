// Inventory helpers that need no NVML (discovery itself is tested against the fake library in
// tests/nvml/inventory_fake_nvml_test.cc).
#include "device/inventory.h"

#include <string>

#include "gtest/gtest.h"
#include "sharing/sharing.h"

namespace nvdp::device {
namespace {

TEST(InventoryTest, NvmlBusIdBecomesTheSysfsName) {
  EXPECT_EQ(NvmlBusIdToSysfs("00000000:07:00.0"), "0000:07:00.0");
  EXPECT_EQ(NvmlBusIdToSysfs("00000000:BD:00.0"), "0000:bd:00.0");
  // A domain that does not start with four zeros keeps all eight digits.
  EXPECT_EQ(NvmlBusIdToSysfs("00010000:07:00.0"), "00010000:07:00.0");
  EXPECT_EQ(NvmlBusIdToSysfs("0000:07:00.0"), "0000:07:00.0");
}

TEST(InventoryTest, FindsGpusByUuidAndIndex) {
  Inventory inventory;
  inventory.gpus = {Gpu{.uuid = "GPU-a", .index = 0, .minor = 3},
                    Gpu{.uuid = "GPU-b", .index = 1, .minor = 7}};
  ASSERT_NE(inventory.FindByUuid("GPU-b"), nullptr);
  EXPECT_EQ(inventory.FindByUuid("GPU-b")->index, 1u);
  EXPECT_EQ(inventory.FindByUuid("GPU-c"), nullptr);
  ASSERT_NE(inventory.FindByIndex(0), nullptr);
  EXPECT_EQ(inventory.FindByIndex(0)->DevicePath(), "/dev/nvidia3");
  EXPECT_EQ(inventory.FindByIndex(2), nullptr);
}

Inventory TwoGpus(bool second_has_mig) {
  Inventory inventory;
  inventory.gpus = {Gpu{.uuid = "GPU-a", .index = 0},
                    Gpu{.uuid = "GPU-b", .index = 1, .mig_enabled = second_has_mig}};
  return inventory;
}

TEST(MigStrategyCheckTest, NoneAlwaysPasses) {
  EXPECT_TRUE(sharing::CheckMigStrategy(config::MigStrategy::kNone, TwoGpus(true)).ok());
}

// With MIG off everywhere, upstream's single and mixed advertise full GPUs too.
TEST(MigStrategyCheckTest, SingleAndMixedPassWhenMigIsOffEverywhere) {
  EXPECT_TRUE(sharing::CheckMigStrategy(config::MigStrategy::kSingle, TwoGpus(false)).ok());
  EXPECT_TRUE(sharing::CheckMigStrategy(config::MigStrategy::kMixed, TwoGpus(false)).ok());
}

// A MIG-enabled GPU without MIG devices cannot be advertised under single or mixed (the strategy
// rules themselves are tested in tests/sharing/mig_test.cc).
TEST(MigStrategyCheckTest, SingleOrMixedWithMigEnabledButNoMigDevicesFailsNamingTheGpu) {
  for (auto strategy : {config::MigStrategy::kSingle, config::MigStrategy::kMixed}) {
    absl::Status status = sharing::CheckMigStrategy(strategy, TwoGpus(true));
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(status.message(),
              std::string("flags.migStrategy: ") + std::string(config::ToString(strategy)) +
                  " — MIG is enabled on GPU 1 (GPU-b) but it has no MIG devices; create MIG "
                  "devices on it (e.g. with nvidia-smi mig or mig-parted), disable MIG on it, or "
                  "use migStrategy: none");
  }
}

}  // namespace
}  // namespace nvdp::device
