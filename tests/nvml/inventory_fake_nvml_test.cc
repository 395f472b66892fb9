// nvdp::device::DiscoverInventory against the fake libnvidia-ml.so.1 and the
// fake sysfs tree.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "device/inventory.h"
#include "nvml/dl_nvml.h"
#include "nvml/fake_nvml_env.h"

namespace nvdp::device {
namespace {

using ::nvdp::testutil::FakeNvmlLibrary;
using ::nvdp::testutil::FakeNvmlNode;
using ::nvdp::testutil::ScopedFakeNvmlEnv;

class InventoryFakeNvmlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = nvml::LoadNvml({FakeNvmlLibrary()});
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    nvml_ = *std::move(loaded);
    ASSERT_TRUE(nvml_->Init().ok());
  }
  void TearDown() override {
    if (nvml_ != nullptr) (void)nvml_->Shutdown();
  }

  ScopedFakeNvmlEnv env_{FakeNvmlNode("a100-sxm4-40gb-x8.json")};
  std::unique_ptr<nvml::Nvml> nvml_;
};

TEST_F(InventoryFakeNvmlTest, A100NodeWithNumaFromSysfs) {
  auto inventory = DiscoverInventory(*nvml_, FakeNvmlNode("a100-sysfs"));
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  EXPECT_EQ(inventory->driver_version, "550.54.15");
  ASSERT_EQ(inventory->gpus.size(), 8u);
  const char* buses[] = {"07", "0f", "47", "4e", "87", "90", "b7", "bd"};
  for (unsigned i = 0; i < 8; ++i) {
    const Gpu& gpu = inventory->gpus[i];
    EXPECT_EQ(gpu.uuid, "GPU-a100a100-0000-4000-8000-00000000000" + std::to_string(i));
    EXPECT_EQ(gpu.index, i);
    EXPECT_EQ(gpu.minor, i);
    EXPECT_EQ(gpu.DevicePath(), "/dev/nvidia" + std::to_string(i));
    EXPECT_EQ(gpu.name, "NVIDIA A100-SXM4-40GB");
    EXPECT_EQ(gpu.memory_bytes, 40960ull << 20);
    EXPECT_EQ(gpu.cc_major, 8);
    EXPECT_EQ(gpu.cc_minor, 0);
    EXPECT_EQ(gpu.pci_bus_id, std::string("0000:") + buses[i] + ":00.0");
    EXPECT_EQ(gpu.numa_node, std::optional<int>(i < 4 ? 0 : 1)) << "GPU " << i;
  }
  ASSERT_NE(inventory->FindByUuid("GPU-a100a100-0000-4000-8000-000000000006"), nullptr);
  EXPECT_EQ(inventory->FindByUuid("GPU-a100a100-0000-4000-8000-000000000006")->index, 6u);
}

TEST_F(InventoryFakeNvmlTest, MissingSysfsMeansUnknownNuma) {
  auto inventory = DiscoverInventory(*nvml_, "/nonexistent/nvdp-sysfs");
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  ASSERT_EQ(inventory->gpus.size(), 8u);
  for (const Gpu& gpu : inventory->gpus) EXPECT_EQ(gpu.numa_node, std::nullopt);
}

TEST_F(InventoryFakeNvmlTest, FailingGpuFailsDiscovery) {
  ASSERT_TRUE(nvml_->Shutdown().ok());
  ScopedFakeNvmlEnv::Set("FAKE_NVML_FAIL", "nvmlDeviceGetPciInfo_v3@2=15");
  ASSERT_TRUE(nvml_->Init().ok());
  auto inventory = DiscoverInventory(*nvml_, FakeNvmlNode("a100-sysfs"));
  EXPECT_EQ(inventory.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(inventory.status().message(), ::testing::HasSubstr("GPU 2"));
  EXPECT_THAT(inventory.status().message(), ::testing::HasSubstr("nvmlDeviceGetPciInfo_v3"));
}

// Discovers the inventory of `node` through the fake library, with `failures` in FAKE_NVML_FAIL.
absl::StatusOr<Inventory> DiscoverNode(const std::string& node, const std::string& failures = "") {
  ScopedFakeNvmlEnv env(FakeNvmlNode(node));
  if (!failures.empty()) ScopedFakeNvmlEnv::Set("FAKE_NVML_FAIL", failures);
  auto nvml = nvml::LoadNvml({FakeNvmlLibrary()});
  if (!nvml.ok()) return nvml.status();
  if (auto status = (*nvml)->Init(); !status.ok()) return status;
  auto inventory = DiscoverInventory(**nvml, FakeNvmlNode("a100-sysfs"));
  (void)(*nvml)->Shutdown();
  return inventory;
}

// A GPU whose memory NVML cannot report is still in the inventory, with a warning (as upstream).
TEST(InventoryFakeNvmlWarningsTest, MemoryFailureBecomesAWarning) {
  auto inventory = DiscoverNode("a100-sxm4-40gb-x8.json",
                                "nvmlDeviceGetMemoryInfo_v2@3,nvmlDeviceGetMemoryInfo@3");
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  ASSERT_EQ(inventory->gpus.size(), 8u);
  EXPECT_EQ(inventory->gpus[3].memory_bytes, 0u);
  EXPECT_EQ(inventory->gpus[2].memory_bytes, 40960ull << 20);
  ASSERT_EQ(inventory->warnings.size(), 1u);
  EXPECT_THAT(inventory->warnings[0],
              ::testing::StartsWith("GPU 3 (GPU-a100a100-0000-4000-8000-000000000003): cannot read "
                                    "its memory size"));
}

TEST(InventoryFakeNvmlMigTest, MigModeReachesTheInventory) {
  auto inventory = DiscoverNode("a100-40gb-x2-mig-on-gpu1.json");
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  ASSERT_EQ(inventory->gpus.size(), 2u);
  EXPECT_FALSE(inventory->gpus[0].mig_enabled);
  EXPECT_TRUE(inventory->gpus[1].mig_enabled);
  EXPECT_TRUE(CheckMigStrategySupported(config::MigStrategy::kNone, *inventory).ok());
  EXPECT_EQ(CheckMigStrategySupported(config::MigStrategy::kSingle, *inventory).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace nvdp::device
