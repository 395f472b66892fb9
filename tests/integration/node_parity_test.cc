// The real nvidia-device-plugin on nodes that upstream handles in particular ways: MIG enabled on
// a GPU (refused under the single and mixed strategies until MIG is implemented, full GPUs under
// none), and a GPU whose memory size NVML cannot report (a warning, as upstream, not a failure).
#include <algorithm>
#include <filesystem>
#include <string>

#include "config/version.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/daemon_harness.h"
#include "mps/process.h"

namespace nvdp::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kGpu[] = "nvidia.com/gpu";
constexpr char kMigNode[] = "a100-40gb-x2-mig-on-gpu1.json";
constexpr char kNode8[] = "a100-sxm4-40gb-x8.json";

TEST(NodeParityTest, MigEnabledWithSingleStrategyExitsWithAClearMessage) {
  DaemonHarness h;
  h.StartKubelet();
  h.StartDaemon(kMigNode, {"--mig-strategy=single"});
  auto status = h.WaitForExit();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->exit_code, 1);
  // Single needs MIG on every GPU with alike MIG devices (docs/mig.md); GPU 0 has MIG off.
  EXPECT_THAT(h.DaemonLog(), HasSubstr("flags.migStrategy: single — "));
  EXPECT_THAT(h.DaemonLog(), HasSubstr("MIG is enabled on GPU 1 "
                                       "(GPU-a100a100-0000-4000-8000-0000000000a1)"));
  EXPECT_EQ(h.kubelet().Registrations(kGpu), 0);
}

TEST(NodeParityTest, MigEnabledWithMixedStrategyFromTheEnvironmentExits) {
  DaemonHarness h;
  h.StartKubelet();
  h.StartDaemon(kMigNode, {}, {"MIG_STRATEGY=mixed"});
  auto status = h.WaitForExit();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->exit_code, 1);
  EXPECT_THAT(h.DaemonLog(), HasSubstr("flags.migStrategy: mixed — MIG is enabled on GPU 1"));
}

TEST(NodeParityTest, MigEnabledWithStrategyNoneAdvertisesFullGpus) {
  DaemonHarness h;
  h.StartKubelet();
  h.StartDaemon(kMigNode);
  ASSERT_TRUE(h.kubelet().WaitForDevices(
      kGpu, [](const auto& devices) { return devices.size() == 2; }, kWait));
}

TEST(NodeParityTest, MemoryQueryFailureIsAWarningAndTheGpuIsAdvertised) {
  DaemonHarness h;
  h.StartKubelet();
  h.StartDaemon("a100-sxm4-40gb-x8.json", {},
                {"FAKE_NVML_FAIL=nvmlDeviceGetMemoryInfo_v2@2,nvmlDeviceGetMemoryInfo@2"});
  ASSERT_TRUE(h.kubelet().WaitForDevices(
      kGpu,
      [](const auto& devices) {
        return devices.size() == 8 &&
               std::all_of(devices.begin(), devices.end(), [](const auto& d) { return d.healthy; });
      },
      kWait));
  EXPECT_THAT(h.DaemonLog(), HasSubstr("GPU 2 (GPU-a100a100-0000-4000-8000-000000000002): cannot "
                                       "read its memory size"));
}

// Upstream's --version, on both binaries: the name and the project's version, exit 0.
TEST(NodeParityTest, BothBinariesPrintTheirVersion) {
  for (const std::string binary : {"nvidia-device-plugin", "mps-control-daemon"}) {
    mps::CommandSpec spec;
    spec.program = BinDir() + "/" + binary;
    spec.args = {"--version"};
    auto result = mps::RealProcessRunner().Run(spec);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(result->status.Success()) << binary << ": " << result->status.ToString();
    EXPECT_EQ(result->out, binary + " " + config::kPluginVersion + "\n");
  }
}

// NVML is loaded from the container driver root (--driver-root-ctr-path), where upstream's chart
// mounts the host's driver, not from the host driver root.
TEST(NodeParityTest, LoadsNvmlFromTheContainerDriverRoot) {
  DaemonHarness h;
  const std::string root = h.tmp() + "/driver-root";
  std::filesystem::create_directories(root + "/usr/lib/x86_64-linux-gnu");
  std::filesystem::copy_file(FakeNvmlLibrary(),
                             root + "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1");
  h.set_pass_nvml_library(false);
  h.StartKubelet();
  h.StartDaemon(kNode8, {"--driver-root-ctr-path=" + root, "--driver-root=/host-root-unused"});
  ASSERT_TRUE(h.kubelet().WaitForDevices(
      kGpu, [](const auto& devices) { return devices.size() == 8; }, kWait));
}

}  // namespace
}  // namespace nvdp::testing
