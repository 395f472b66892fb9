// BuildContainerResponse: what each device-list strategy, device-ID strategy and sharing mode puts
// into the container, with upstream's names and paths.
#include "plugin/allocate_response.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugin/device_plugin_server.h"

namespace nvdp::plugin {
namespace {

using config::DeviceIdStrategy;
using config::DeviceListStrategy;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

device::Gpu MakeGpu(unsigned index) {
  device::Gpu gpu;
  gpu.uuid = "GPU-" + std::to_string(index);
  gpu.index = index;
  gpu.minor = index + 10;
  gpu.memory_bytes = 40ull << 30;
  return gpu;
}

sharing::ResourceSpec Spec(sharing::Mode mode, const std::string& name = "nvidia.com/gpu") {
  sharing::ResourceSpec spec;
  spec.name = name;
  spec.mode = mode;
  spec.gpus = {MakeGpu(0), MakeGpu(1)};
  return spec;
}

sharing::Grant GrantOf(std::vector<unsigned> indices) {
  sharing::Grant grant;
  for (unsigned i : indices) grant.gpus.push_back(MakeGpu(i));
  return grant;
}

TEST(AllocateResponseTest, EnvvarStrategyListsUuidsInGrantOrder) {
  auto response = BuildContainerResponse(Spec(sharing::Mode::kExclusive), GrantOf({1, 0}), {});
  EXPECT_THAT(response.envs(), UnorderedElementsAre(Pair("NVIDIA_VISIBLE_DEVICES", "GPU-1,GPU-0")));
  EXPECT_EQ(response.mounts_size(), 0);
  EXPECT_EQ(response.devices_size(), 0);
}

TEST(AllocateResponseTest, IndexStrategyListsIndices) {
  ResponseOptions options;
  options.plugin.device_id_strategy = DeviceIdStrategy::kIndex;
  auto response = BuildContainerResponse(Spec(sharing::Mode::kExclusive), GrantOf({1}), options);
  EXPECT_EQ(response.envs().at("NVIDIA_VISIBLE_DEVICES"), "1");
}

TEST(AllocateResponseTest, VolumeMountsStrategyMountsDevNullPerDevice) {
  ResponseOptions options;
  options.plugin.device_list_strategy = {DeviceListStrategy::kVolumeMounts};
  auto response = BuildContainerResponse(Spec(sharing::Mode::kExclusive), GrantOf({0, 1}), options);
  EXPECT_EQ(response.envs().at("NVIDIA_VISIBLE_DEVICES"), "/var/run/nvidia-container-devices");
  ASSERT_EQ(response.mounts_size(), 2);
  EXPECT_EQ(response.mounts(0).host_path(), "/dev/null");
  EXPECT_EQ(response.mounts(0).container_path(), "/var/run/nvidia-container-devices/GPU-0");
  EXPECT_EQ(response.mounts(1).container_path(), "/var/run/nvidia-container-devices/GPU-1");
}

TEST(AllocateResponseTest, CdiStrategiesNameQualifiedDevices) {
  ResponseOptions options;
  options.plugin.device_list_strategy = {DeviceListStrategy::kCdiAnnotations,
                                         DeviceListStrategy::kCdiCri};
  auto response = BuildContainerResponse(Spec(sharing::Mode::kExclusive), GrantOf({0, 1}), options);
  EXPECT_THAT(response.annotations(),
              UnorderedElementsAre(Pair("cdi.k8s.io/nvidia-device-plugin_gpu",
                                        "k8s.device-plugin.nvidia.com/gpu=GPU-0,"
                                        "k8s.device-plugin.nvidia.com/gpu=GPU-1")));
  ASSERT_EQ(response.cdi_devices_size(), 2);
  EXPECT_EQ(response.cdi_devices(1).name(), "k8s.device-plugin.nvidia.com/gpu=GPU-1");
  EXPECT_FALSE(response.envs().contains("NVIDIA_VISIBLE_DEVICES"));
}

TEST(AllocateResponseTest, DeviceSpecsUnderTheDevRoot) {
  ResponseOptions options;
  options.plugin.pass_device_specs = true;
  options.dev_root = "/run/nvidia/driver";
  auto response = BuildContainerResponse(Spec(sharing::Mode::kExclusive), GrantOf({1}), options);
  std::vector<std::pair<std::string, std::string>> specs;
  for (const auto& d : response.devices()) {
    specs.emplace_back(d.container_path(), d.host_path());
    EXPECT_EQ(d.permissions(), "rw");
  }
  EXPECT_THAT(specs, UnorderedElementsAre(
                         Pair("/dev/nvidiactl", "/run/nvidia/driver/dev/nvidiactl"),
                         Pair("/dev/nvidia-uvm", "/run/nvidia/driver/dev/nvidia-uvm"),
                         Pair("/dev/nvidia-uvm-tools", "/run/nvidia/driver/dev/nvidia-uvm-tools"),
                         Pair("/dev/nvidia-modeset", "/run/nvidia/driver/dev/nvidia-modeset"),
                         Pair("/dev/nvidia11", "/run/nvidia/driver/dev/nvidia11")));
}

TEST(AllocateResponseTest, MpsAddsPipeDirectoryMountsAndPerContainerLimits) {
  ResponseOptions options;
  options.mps_root = "/run/nvidia/mps";
  auto grant = GrantOf({1});
  grant.mps_limits = sharing::MpsLimits{30, "0=12288M"};
  auto response =
      BuildContainerResponse(Spec(sharing::Mode::kMps, "nvidia.com/gpu.shared"), grant, options);
  EXPECT_THAT(response.envs(),
              UnorderedElementsAre(Pair("NVIDIA_VISIBLE_DEVICES", "GPU-1"),
                                   Pair("CUDA_VISIBLE_DEVICES", "GPU-1"),
                                   Pair("CUDA_MPS_PIPE_DIRECTORY", "/mps/gpu.shared/pipe"),
                                   Pair("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "30"),
                                   Pair("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", "0=12288M")));
  ASSERT_EQ(response.mounts_size(), 2);
  EXPECT_EQ(response.mounts(0).host_path(), "/run/nvidia/mps/gpu.shared/pipe");
  EXPECT_EQ(response.mounts(0).container_path(), "/mps/gpu.shared/pipe");
  EXPECT_EQ(response.mounts(1).host_path(), "/run/nvidia/mps/shm");
  EXPECT_EQ(response.mounts(1).container_path(), "/dev/shm");
}

TEST(AllocateResponseTest, UniformMpsSetsNoLimitsOfItsOwn) {
  ResponseOptions options;
  options.mps_root = "/run/nvidia/mps";
  auto response = BuildContainerResponse(Spec(sharing::Mode::kMps), GrantOf({0}), options);
  EXPECT_FALSE(response.envs().contains("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"));
  EXPECT_FALSE(response.envs().contains("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"));
  EXPECT_EQ(response.envs().at("CUDA_MPS_PIPE_DIRECTORY"), "/mps/gpu/pipe");
}

TEST(AllocateResponseTest, MpsMemoryLimitNoneOmitsTheVariable) {
  auto grant = GrantOf({0});
  grant.mps_limits = sharing::MpsLimits{50, std::nullopt};
  auto response = BuildContainerResponse(Spec(sharing::Mode::kMps), grant, {});
  EXPECT_EQ(response.envs().at("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "50");
  EXPECT_FALSE(response.envs().contains("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"));
}

TEST(AllocateResponseTest, SocketNamesFollowUpstream) {
  EXPECT_EQ(SocketNameFor(Spec(sharing::Mode::kExclusive)), "nvidia-gpu.sock");
  EXPECT_EQ(SocketNameFor(Spec(sharing::Mode::kMps, "nvidia.com/gpu.shared")),
            "nvidia-gpu.shared.sock");
  EXPECT_EQ(SocketNameFor(Spec(sharing::Mode::kExclusive, "nvidia.com/mig-1g.5gb")),
            "nvidia-mig-1g.5gb.sock");
}

}  // namespace
}  // namespace nvdp::plugin
