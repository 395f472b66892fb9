// nvdp::device::DiscoverInventory against the fake libnvidia-ml.so.1 and the
// fake sysfs tree.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "device/inventory.h"
#include "nvml/dl_nvml.h"
#include "nvml/fake_nvml_env.h"
#include "sharing/sharing.h"

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
  auto inventory = DiscoverInventory(*nvml_, {.sysfs_root = FakeNvmlNode("a100-sysfs")});
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
  auto inventory = DiscoverInventory(*nvml_, {.sysfs_root = "/nonexistent/nvdp-sysfs"});
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  ASSERT_EQ(inventory->gpus.size(), 8u);
  for (const Gpu& gpu : inventory->gpus) EXPECT_EQ(gpu.numa_node, std::nullopt);
}

TEST_F(InventoryFakeNvmlTest, FailingGpuFailsDiscovery) {
  ASSERT_TRUE(nvml_->Shutdown().ok());
  ScopedFakeNvmlEnv::Set("FAKE_NVML_FAIL", "nvmlDeviceGetPciInfo_v3@2=15");
  ASSERT_TRUE(nvml_->Init().ok());
  auto inventory = DiscoverInventory(*nvml_, {.sysfs_root = FakeNvmlNode("a100-sysfs")});
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
  auto inventory = DiscoverInventory(**nvml, {.sysfs_root = FakeNvmlNode("a100-sysfs")});
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
  EXPECT_TRUE(sharing::CheckMigStrategy(config::MigStrategy::kNone, *inventory).ok());
  EXPECT_EQ(sharing::CheckMigStrategy(config::MigStrategy::kSingle, *inventory).code(),
            absl::StatusCode::kFailedPrecondition);
}

// Discovers `node` with `driver_root` as the root of the MIG capability files.
absl::StatusOr<Inventory> DiscoverMigNode(const std::string& node, const std::string& driver_root,
                                          const std::string& failures = "") {
  ScopedFakeNvmlEnv env(FakeNvmlNode(node));
  if (!failures.empty()) ScopedFakeNvmlEnv::Set("FAKE_NVML_FAIL", failures);
  auto nvml = nvml::LoadNvml({FakeNvmlLibrary()});
  if (!nvml.ok()) return nvml.status();
  if (auto status = (*nvml)->Init(); !status.ok()) return status;
  auto inventory = DiscoverInventory(
      **nvml, {.sysfs_root = FakeNvmlNode("a100-sysfs"), .driver_root = driver_root});
  (void)(*nvml)->Shutdown();
  return inventory;
}

std::string Cap(int minor) { return "/dev/nvidia-caps/nvidia-cap" + std::to_string(minor); }

TEST(InventoryFakeNvmlMigTest, MixedA100NodeListsEveryMigDeviceWithItsParentAndCaps) {
  auto inventory = DiscoverMigNode("a100-sxm4-40gb-x8-mig-mixed.json",
                                   FakeNvmlNode("a100-sxm4-40gb-x8-mig-mixed-proc"));
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  ASSERT_EQ(inventory->gpus.size(), 8u);
  for (unsigned i = 0; i < 8; ++i) EXPECT_EQ(inventory->gpus[i].mig_enabled, i < 6) << i;
  // 4 on GPUs 0-3, 7 on GPUs 4 and 5, none on the MIG-off GPUs 6 and 7.
  ASSERT_EQ(inventory->mig_devices.size(), 4u * 4 + 7 * 2);
  EXPECT_TRUE(inventory->warnings.empty());

  const Gpu& first = inventory->mig_devices[0];
  ASSERT_TRUE(first.IsMig());
  EXPECT_EQ(first.uuid, "MIG-a100a100-0000-5000-8000-000000000000");
  EXPECT_EQ(first.index, 0u);
  EXPECT_EQ(first.minor, 0u);
  EXPECT_EQ(first.DevicePath(), "/dev/nvidia0");
  EXPECT_EQ(first.IndexId(), "0:0");
  EXPECT_EQ(first.name, "NVIDIA A100-SXM4-40GB");
  EXPECT_EQ(first.memory_bytes, 19968ull << 20);
  EXPECT_EQ(first.cc_major, 8);
  EXPECT_EQ(first.pci_bus_id, "0000:07:00.0");
  EXPECT_EQ(first.numa_node, std::optional<int>(0));
  EXPECT_FALSE(first.mig_enabled);
  EXPECT_EQ(first.mig->parent_uuid, "GPU-a100a100-0000-4000-8000-000000000000");
  EXPECT_EQ(first.mig->parent_index, 0u);
  EXPECT_EQ(first.mig->mig_index, 0u);
  EXPECT_EQ(first.mig->gi_id, 2u);
  EXPECT_EQ(first.mig->ci_id, 0u);
  EXPECT_EQ(first.mig->profile, "3g.20gb");
  EXPECT_EQ(first.mig->multiprocessor_count, 42u);
  // gpu0/gi2/access and gpu0/gi2/ci0/access in the driver's minors table.
  EXPECT_EQ(first.mig->cap_device_paths,
            (std::vector<std::string>{Cap(3 + 2 * 9), Cap(4 + 2 * 9)}));
  EXPECT_EQ(first.mig->cap_error, "");

  // GPU 3's second MIG device: CI 1 of the 3g GPU instance 1, on the GPU with minor 3.
  const Gpu* split = inventory->FindByUuid("MIG-a100a100-0003-5000-8000-000000000001");
  EXPECT_EQ(split, nullptr) << "FindByUuid looks at full GPUs only";
  const Gpu& ci1 = inventory->mig_devices[3 * 4 + 1];
  EXPECT_EQ(ci1.uuid, "MIG-a100a100-0003-5000-8000-000000000001");
  EXPECT_EQ(ci1.IndexId(), "3:1");
  EXPECT_EQ(ci1.mig->profile, "2c.3g.20gb");
  EXPECT_EQ(ci1.numa_node, std::optional<int>(0));
  EXPECT_EQ(ci1.mig->cap_device_paths,
            (std::vector<std::string>{Cap(3 + 3 * 135 + 1 * 9), Cap(3 + 3 * 135 + 1 * 9 + 2)}));

  // The last one: GPU 5, slot 6, 1g.5gb in GI 13, NUMA node 1.
  const Gpu& last = inventory->mig_devices.back();
  EXPECT_EQ(last.uuid, "MIG-a100a100-0005-5000-8000-000000000006");
  EXPECT_EQ(last.IndexId(), "5:6");
  EXPECT_EQ(last.mig->profile, "1g.5gb");
  EXPECT_EQ(last.memory_bytes, 4864ull << 20);
  EXPECT_EQ(last.numa_node, std::optional<int>(1));
  EXPECT_EQ(last.mig->cap_device_paths,
            (std::vector<std::string>{Cap(3 + 5 * 135 + 13 * 9), Cap(3 + 5 * 135 + 13 * 9 + 1)}));
}

TEST(InventoryFakeNvmlMigTest, H100SevenOneSliceDevices) {
  auto inventory =
      DiscoverMigNode("h100-80gb-x1-mig-1g10gb.json", FakeNvmlNode("h100-80gb-x1-mig-1g10gb-proc"));
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  ASSERT_EQ(inventory->mig_devices.size(), 7u);
  for (unsigned i = 0; i < 7; ++i) {
    const Gpu& d = inventory->mig_devices[i];
    EXPECT_EQ(d.mig->profile, "1g.10gb");
    EXPECT_EQ(d.memory_bytes, 9856ull << 20);
    EXPECT_EQ(d.name, "NVIDIA H100 80GB HBM3");
    EXPECT_EQ(d.mig->cap_device_paths,
              (std::vector<std::string>{Cap(3 + (7 + i) * 9), Cap(4 + (7 + i) * 9)}));
  }
}

TEST(InventoryFakeNvmlMigTest, MissingCapabilityFilesAreRecordedNotFatal) {
  auto inventory = DiscoverMigNode("h100-80gb-x1-mig-1g10gb.json", "/nonexistent/nvdp-driver-root");
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  ASSERT_EQ(inventory->mig_devices.size(), 7u);
  for (const Gpu& d : inventory->mig_devices) {
    EXPECT_TRUE(d.mig->cap_device_paths.empty());
    EXPECT_THAT(
        d.mig->cap_error,
        ::testing::HasSubstr("/nonexistent/nvdp-driver-root/proc/driver/nvidia-caps/mig-minors"));
  }
}

// The minors table is there but the node's capability tree lacks the GPU instances of this node.
TEST(InventoryFakeNvmlMigTest, CapabilityOfAnotherLayoutIsRecordedPerDevice) {
  auto inventory = DiscoverMigNode("h100-80gb-x1-mig-1g10gb.json",
                                   FakeNvmlNode("a100-sxm4-40gb-x8-mig-mixed-proc"));
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  ASSERT_EQ(inventory->mig_devices.size(), 7u);
  // GPU 0 of the A100 tree has GIs 2, 3, 9 and 10: the H100's GI 9 and 10 (slots 2, 3) resolve.
  EXPECT_EQ(inventory->mig_devices[2].mig->cap_error, "");
  EXPECT_THAT(inventory->mig_devices[0].mig->cap_error,
              ::testing::HasSubstr("capabilities/gpu0/mig/gi7/access"));
  EXPECT_TRUE(inventory->mig_devices[0].mig->cap_device_paths.empty());
}

TEST(InventoryFakeNvmlMigTest, MigEnabledGpuWhoseMigDevicesCannotBeReadFailsDiscovery) {
  auto inventory = DiscoverMigNode("a100-sxm4-40gb-x8-mig-mixed.json",
                                   FakeNvmlNode("a100-sxm4-40gb-x8-mig-mixed-proc"),
                                   "nvmlDeviceGetMigDeviceHandleByIndex@4");
  EXPECT_EQ(inventory.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(inventory.status().message()),
              ::testing::StartsWith("GPU 4 (GPU-a100a100-0000-4000-8000-000000000004): MIG is "
                                    "enabled but its MIG devices cannot be read"));
  EXPECT_THAT(inventory.status().message(),
              ::testing::HasSubstr("nvmlDeviceGetMigDeviceHandleByIndex"));
}

TEST(InventoryFakeNvmlMigTest, MigEnabledWithoutMigDevicesIsAWarning) {
  auto inventory = DiscoverMigNode("a100-40gb-x2-mig-on-gpu1.json", "/nonexistent");
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  EXPECT_TRUE(inventory->mig_devices.empty());
  ASSERT_EQ(inventory->warnings.size(), 1u);
  EXPECT_THAT(inventory->warnings[0], ::testing::HasSubstr("GPU 1"));
}

}  // namespace
}  // namespace nvdp::device
