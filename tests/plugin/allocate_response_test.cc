// BuildContainerResponse against upstream v0.20's Allocate, field for field: every device-list
// strategy alone and combined, both device-ID strategies, dev/driver roots, passDeviceSpecs on a
// fake dev tree, gdrcopy/gds/mofed, MPS uniform (upstream's) and per-container (ours). Every
// expectation lists the whole response (plugin/response_fields.h).
#include "plugin/allocate_response.h"

#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/temp_dir.h"
#include "plugin/device_plugin_server.h"
#include "plugin/response_fields.h"

namespace nvdp::plugin {
namespace {

using config::DeviceIdStrategy;
using config::DeviceListStrategy;
using ::testing::ElementsAre;
using testing::ResponseFields;
using Lines = std::vector<std::string>;

constexpr DeviceListStrategy kEnvvar = DeviceListStrategy::kEnvvar;
constexpr DeviceListStrategy kVolumeMounts = DeviceListStrategy::kVolumeMounts;
constexpr DeviceListStrategy kCdiAnnotations = DeviceListStrategy::kCdiAnnotations;
constexpr DeviceListStrategy kCdiCri = DeviceListStrategy::kCdiCri;

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

sharing::ResourceSpec Uniform(const std::string& name = "nvidia.com/gpu") {
  sharing::ResourceSpec spec = Spec(sharing::Mode::kMps, name);
  spec.per_container_limits = false;
  spec.replicas = 4;
  return spec;
}

sharing::ResourceSpec PerContainer(const std::string& name = "nvidia.com/gpu") {
  sharing::ResourceSpec spec = Spec(sharing::Mode::kMps, name);
  spec.per_container_limits = true;
  spec.replicas = 100;
  return spec;
}

sharing::Grant GrantOf(std::vector<unsigned> indices) {
  sharing::Grant grant;
  for (unsigned i : indices) grant.gpus.push_back(MakeGpu(i));
  return grant;
}

ResponseOptions With(std::vector<DeviceListStrategy> strategies,
                     DeviceIdStrategy ids = DeviceIdStrategy::kUuid) {
  ResponseOptions options;
  options.plugin.device_list_strategy = std::move(strategies);
  options.plugin.device_id_strategy = ids;
  return options;
}

Lines Build(const sharing::ResourceSpec& spec, const sharing::Grant& grant,
            const ResponseOptions& options) {
  auto response = BuildContainerResponse(spec, grant, options);
  if (!response.ok()) return Lines{"error " + std::string(response.status().message())};
  return ResponseFields(*response);
}

const sharing::ResourceSpec kExclusive = Spec(sharing::Mode::kExclusive);

// --- Device-list and device-ID strategies -------------------------------------------------------

TEST(AllocateResponseTest, DefaultIsEnvvarWithUuidsInGrantOrder) {
  EXPECT_EQ(Build(kExclusive, GrantOf({1, 0}), {}),
            Lines{"env NVIDIA_VISIBLE_DEVICES=GPU-1,GPU-0"});
}

TEST(AllocateResponseTest, EnvvarWithIndexStrategyListsIndices) {
  EXPECT_EQ(Build(kExclusive, GrantOf({1, 0}), With({kEnvvar}, DeviceIdStrategy::kIndex)),
            Lines{"env NVIDIA_VISIBLE_DEVICES=1,0"});
}

TEST(AllocateResponseTest, VolumeMountsMountsDevNullPerDevice) {
  EXPECT_EQ(Build(kExclusive, GrantOf({0, 1}), With({kVolumeMounts})),
            (Lines{"env NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices",
                   "mount /dev/null -> /var/run/nvidia-container-devices/GPU-0 rw",
                   "mount /dev/null -> /var/run/nvidia-container-devices/GPU-1 rw"}));
}

TEST(AllocateResponseTest, VolumeMountsWithIndexStrategy) {
  EXPECT_EQ(Build(kExclusive, GrantOf({1}), With({kVolumeMounts}, DeviceIdStrategy::kIndex)),
            (Lines{"env NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices",
                   "mount /dev/null -> /var/run/nvidia-container-devices/1 rw"}));
}

TEST(AllocateResponseTest, CdiAnnotationsOnlyIsTheAnnotationAlone) {
  EXPECT_EQ(Build(kExclusive, GrantOf({0, 1}), With({kCdiAnnotations})),
            Lines{"annotation cdi.k8s.io/nvidia-device-plugin_gpu="
                  "k8s.device-plugin.nvidia.com/gpu=GPU-0,k8s.device-plugin.nvidia.com/gpu=GPU-1"});
}

TEST(AllocateResponseTest, CdiAnnotationKeyUsesPrefixAndShortResourceName) {
  ResponseOptions options = With({kCdiAnnotations}, DeviceIdStrategy::kIndex);
  options.plugin.cdi_annotation_prefix = "cdi.example.com/";
  EXPECT_EQ(
      Build(Spec(sharing::Mode::kTimeSlicing, "nvidia.com/gpu.shared"), GrantOf({1}), options),
      Lines{"annotation cdi.example.com/nvidia-device-plugin_gpu.shared="
            "k8s.device-plugin.nvidia.com/gpu=1"});
}

TEST(AllocateResponseTest, CdiCriOnlyIsTheCdiDevicesAlone) {
  EXPECT_EQ(Build(kExclusive, GrantOf({0, 1}), With({kCdiCri})),
            (Lines{"cdi k8s.device-plugin.nvidia.com/gpu=GPU-0",
                   "cdi k8s.device-plugin.nvidia.com/gpu=GPU-1"}));
}

TEST(AllocateResponseTest, BothCdiStrategiesAndNothingElse) {
  EXPECT_EQ(Build(kExclusive, GrantOf({1}), With({kCdiCri, kCdiAnnotations})),
            (Lines{"annotation cdi.k8s.io/nvidia-device-plugin_gpu=k8s.device-plugin.nvidia.com/"
                   "gpu=GPU-1",
                   "cdi k8s.device-plugin.nvidia.com/gpu=GPU-1"}));
}

TEST(AllocateResponseTest, CdiPlusEnvvarHasBoth) {
  EXPECT_EQ(Build(kExclusive, GrantOf({1}), With({kCdiAnnotations, kEnvvar})),
            (Lines{"annotation cdi.k8s.io/nvidia-device-plugin_gpu=k8s.device-plugin.nvidia.com/"
                   "gpu=GPU-1",
                   "env NVIDIA_VISIBLE_DEVICES=GPU-1"}));
  EXPECT_EQ(Build(kExclusive, GrantOf({1}), With({kEnvvar, kCdiCri}, DeviceIdStrategy::kIndex)),
            (Lines{"cdi k8s.device-plugin.nvidia.com/gpu=1", "env NVIDIA_VISIBLE_DEVICES=1"}));
}

TEST(AllocateResponseTest, EnvvarAndVolumeMountsInEitherOrderLetVolumeMountsWin) {
  const Lines expected = {"env NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices",
                          "mount /dev/null -> /var/run/nvidia-container-devices/GPU-0 rw"};
  EXPECT_EQ(Build(kExclusive, GrantOf({0}), With({kEnvvar, kVolumeMounts})), expected);
  EXPECT_EQ(Build(kExclusive, GrantOf({0}), With({kVolumeMounts, kEnvvar})), expected);
}

TEST(AllocateResponseTest, AllFourStrategies) {
  EXPECT_EQ(
      Build(kExclusive, GrantOf({0}), With({kVolumeMounts, kCdiCri, kEnvvar, kCdiAnnotations})),
      (Lines{"annotation cdi.k8s.io/nvidia-device-plugin_gpu=k8s.device-plugin.nvidia.com/"
             "gpu=GPU-0",
             "cdi k8s.device-plugin.nvidia.com/gpu=GPU-0",
             "env NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices",
             "mount /dev/null -> /var/run/nvidia-container-devices/GPU-0 rw"}));
}

// --- Device specs, dev root and driver root -----------------------------------------------------

// A fake dev tree: <root>/dev with some of the optional control nodes.
class DevTree {
 public:
  explicit DevTree(const std::vector<std::string>& nodes) {
    std::filesystem::create_directories(root() + "/dev");
    for (const auto& node : nodes) mps::testing::WriteFile(root() + node, "");
  }
  std::string root() const { return dir_.path(); }

 private:
  mps::testing::TempDir dir_;
};

TEST(AllocateResponseTest, DeviceSpecsPassOnlyControlNodesThatExist) {
  DevTree tree({"/dev/nvidiactl", "/dev/nvidia-uvm-tools"});
  ResponseOptions options;
  options.plugin.pass_device_specs = true;
  options.dev_root = tree.root();
  const std::string r = tree.root();
  EXPECT_EQ(Build(kExclusive, GrantOf({1, 0}), options),
            (Lines{"device /dev/nvidiactl <- " + r + "/dev/nvidiactl rw",
                   "device /dev/nvidia-uvm-tools <- " + r + "/dev/nvidia-uvm-tools rw",
                   "device /dev/nvidia11 <- " + r + "/dev/nvidia11 rw",
                   "device /dev/nvidia10 <- " + r + "/dev/nvidia10 rw",
                   "env NVIDIA_VISIBLE_DEVICES=GPU-1,GPU-0"}));
}

TEST(AllocateResponseTest, DeviceSpecsWithEveryControlNodeInUpstreamOrder) {
  DevTree tree(
      {"/dev/nvidia-modeset", "/dev/nvidia-uvm-tools", "/dev/nvidia-uvm", "/dev/nvidiactl"});
  ResponseOptions options = With({kVolumeMounts}, DeviceIdStrategy::kIndex);
  options.plugin.pass_device_specs = true;
  options.dev_root = tree.root() + "/";  // joined as a path: no double slash
  const std::string r = tree.root();
  EXPECT_EQ(Build(kExclusive, GrantOf({0}), options),
            (Lines{"device /dev/nvidiactl <- " + r + "/dev/nvidiactl rw",
                   "device /dev/nvidia-uvm <- " + r + "/dev/nvidia-uvm rw",
                   "device /dev/nvidia-uvm-tools <- " + r + "/dev/nvidia-uvm-tools rw",
                   "device /dev/nvidia-modeset <- " + r + "/dev/nvidia-modeset rw",
                   "device /dev/nvidia10 <- " + r + "/dev/nvidia10 rw",
                   "env NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices",
                   "mount /dev/null -> /var/run/nvidia-container-devices/0 rw"}));
}

TEST(AllocateResponseTest, DeviceSpecsUnderTheSlashRootAskAboutTheBarePath) {
  ResponseOptions options;
  options.plugin.pass_device_specs = true;
  std::vector<std::string> asked;
  options.node_exists = [&](const std::string& path) {
    asked.push_back(path);
    return path == "/dev/nvidia-uvm";
  };
  EXPECT_EQ(
      Build(kExclusive, GrantOf({0}), options),
      (Lines{"device /dev/nvidia-uvm <- /dev/nvidia-uvm rw",
             "device /dev/nvidia10 <- /dev/nvidia10 rw", "env NVIDIA_VISIBLE_DEVICES=GPU-0"}));
  EXPECT_THAT(asked, ElementsAre("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                                 "/dev/nvidia-modeset"));
}

TEST(AllocateResponseTest, DevRootDefaultsToTheDriverRootAndAnExplicitOneWins) {
  DevTree driver({"/dev/nvidiactl"});
  DevTree dev({"/dev/nvidia-modeset"});
  config::Flags flags;
  flags.nvidia_driver_root = driver.root();
  ResponseOptions options;
  options.plugin.pass_device_specs = true;
  options.dev_root = flags.DevRoot();
  EXPECT_EQ(Build(kExclusive, GrantOf({0}), options),
            (Lines{"device /dev/nvidiactl <- " + driver.root() + "/dev/nvidiactl rw",
                   "device /dev/nvidia10 <- " + driver.root() + "/dev/nvidia10 rw",
                   "env NVIDIA_VISIBLE_DEVICES=GPU-0"}));

  flags.nvidia_dev_root = dev.root();
  options.dev_root = flags.DevRoot();
  EXPECT_EQ(Build(kExclusive, GrantOf({0}), options),
            (Lines{"device /dev/nvidia-modeset <- " + dev.root() + "/dev/nvidia-modeset rw",
                   "device /dev/nvidia10 <- " + dev.root() + "/dev/nvidia10 rw",
                   "env NVIDIA_VISIBLE_DEVICES=GPU-0"}));
}

TEST(AllocateResponseTest, CdiOnlyPassesNoDeviceSpecs) {
  DevTree tree({"/dev/nvidiactl"});
  ResponseOptions options = With({kCdiCri});
  options.plugin.pass_device_specs = true;
  options.dev_root = tree.root();
  EXPECT_EQ(Build(kExclusive, GrantOf({0}), options),
            Lines{"cdi k8s.device-plugin.nvidia.com/gpu=GPU-0"});
}

// --- gdrcopy / gds / mofed ----------------------------------------------------------------------

ResponseOptions AllExtras(std::vector<DeviceListStrategy> strategies) {
  ResponseOptions options = With(std::move(strategies));
  options.gdrcopy_enabled = true;
  options.gds_enabled = true;
  options.mofed_enabled = true;
  return options;
}

TEST(AllocateResponseTest, GdrcopyGdsMofedAreEnabledByEnv) {
  EXPECT_EQ(Build(kExclusive, GrantOf({0}), AllExtras({kEnvvar})),
            (Lines{"env NVIDIA_GDRCOPY=enabled", "env NVIDIA_GDS=enabled",
                   "env NVIDIA_MOFED=enabled", "env NVIDIA_VISIBLE_DEVICES=GPU-0"}));
  ResponseOptions only_gds = With({kEnvvar});
  only_gds.gds_enabled = true;
  EXPECT_EQ(Build(kExclusive, GrantOf({0}), only_gds),
            (Lines{"env NVIDIA_GDS=enabled", "env NVIDIA_VISIBLE_DEVICES=GPU-0"}));
}

TEST(AllocateResponseTest, GdrcopyGdsMofedAreLeftOutUnderCdiOnly) {
  EXPECT_EQ(Build(kExclusive, GrantOf({0}), AllExtras({kCdiAnnotations, kCdiCri})),
            (Lines{"annotation cdi.k8s.io/nvidia-device-plugin_gpu=k8s.device-plugin.nvidia.com/"
                   "gpu=GPU-0",
                   "cdi k8s.device-plugin.nvidia.com/gpu=GPU-0"}));
  // ... but not when a non-CDI strategy is there too.
  EXPECT_EQ(Build(kExclusive, GrantOf({0}), AllExtras({kCdiCri, kEnvvar})),
            (Lines{"cdi k8s.device-plugin.nvidia.com/gpu=GPU-0", "env NVIDIA_GDRCOPY=enabled",
                   "env NVIDIA_GDS=enabled", "env NVIDIA_MOFED=enabled",
                   "env NVIDIA_VISIBLE_DEVICES=GPU-0"}));
}

// --- MPS ----------------------------------------------------------------------------------------

TEST(AllocateResponseTest, UniformMpsIsUpstreamsResponseExactly) {
  ResponseOptions options;
  options.mps_root = "/run/nvidia/mps";
  EXPECT_EQ(Build(Uniform(), GrantOf({1}), options),
            (Lines{"env CUDA_MPS_PIPE_DIRECTORY=/mps/nvidia.com/gpu/pipe",
                   "env NVIDIA_VISIBLE_DEVICES=GPU-1",
                   "mount /run/nvidia/mps/nvidia.com/gpu/pipe -> /mps/nvidia.com/gpu/pipe rw",
                   "mount /run/nvidia/mps/shm -> /dev/shm rw"}));
}

TEST(AllocateResponseTest, UniformMpsUnderARenamedResourceAndTheDefaultRoot) {
  ResponseOptions options = With({kEnvvar}, DeviceIdStrategy::kIndex);
  options.mps_root.reset();  // validation refuses this with MPS; the builder falls back
  EXPECT_EQ(Build(Uniform("nvidia.com/gpu.shared"), GrantOf({0}), options),
            (Lines{"env CUDA_MPS_PIPE_DIRECTORY=/mps/nvidia.com/gpu.shared/pipe",
                   "env NVIDIA_VISIBLE_DEVICES=0",
                   "mount /run/nvidia/mps/nvidia.com/gpu.shared/pipe -> "
                   "/mps/nvidia.com/gpu.shared/pipe rw",
                   "mount /run/nvidia/mps/shm -> /dev/shm rw"}));
}

TEST(AllocateResponseTest, UniformMpsMountsComeBeforeVolumeMounts) {
  ResponseOptions options = AllExtras({kVolumeMounts});
  options.mps_root = "/var/mps/";
  EXPECT_EQ(
      Build(Uniform(), GrantOf({0}), options),
      (Lines{"env CUDA_MPS_PIPE_DIRECTORY=/mps/nvidia.com/gpu/pipe", "env NVIDIA_GDRCOPY=enabled",
             "env NVIDIA_GDS=enabled", "env NVIDIA_MOFED=enabled",
             "env NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices",
             "mount /var/mps/nvidia.com/gpu/pipe -> /mps/nvidia.com/gpu/pipe rw",
             "mount /var/mps/shm -> /dev/shm rw",
             "mount /dev/null -> /var/run/nvidia-container-devices/GPU-0 rw"}));
}

TEST(AllocateResponseTest, UniformMpsUnderCdiOnlyKeepsThePipeAndShm) {
  ResponseOptions options = AllExtras({kCdiAnnotations});
  options.mps_root = "/run/nvidia/mps";
  EXPECT_EQ(Build(Uniform(), GrantOf({0}), options),
            (Lines{"annotation cdi.k8s.io/nvidia-device-plugin_gpu=k8s.device-plugin.nvidia.com/"
                   "gpu=GPU-0",
                   "env CUDA_MPS_PIPE_DIRECTORY=/mps/nvidia.com/gpu/pipe",
                   "mount /run/nvidia/mps/nvidia.com/gpu/pipe -> /mps/nvidia.com/gpu/pipe rw",
                   "mount /run/nvidia/mps/shm -> /dev/shm rw"}));
}

TEST(AllocateResponseTest, PerContainerMpsAddsLimitsAndCudaVisibleDevices) {
  ResponseOptions options;
  options.mps_root = "/run/nvidia/mps";
  auto grant = GrantOf({1});
  grant.mps_limits = sharing::MpsLimits{30, "0=12288M"};
  EXPECT_EQ(Build(PerContainer("nvidia.com/gpu.shared"), grant, options),
            (Lines{"env CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30",
                   "env CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=12288M",
                   "env CUDA_MPS_PIPE_DIRECTORY=/mps/nvidia.com/gpu.shared/pipe",
                   "env CUDA_VISIBLE_DEVICES=GPU-1", "env NVIDIA_VISIBLE_DEVICES=GPU-1",
                   "mount /run/nvidia/mps/nvidia.com/gpu.shared/pipe -> "
                   "/mps/nvidia.com/gpu.shared/pipe rw",
                   "mount /run/nvidia/mps/shm -> /dev/shm rw"}));
}

TEST(AllocateResponseTest, PerContainerMpsOverTwoGpusWithIndexIds) {
  ResponseOptions options = With({kEnvvar}, DeviceIdStrategy::kIndex);
  options.mps_root = "/run/nvidia/mps";
  auto grant = GrantOf({1, 0});
  grant.mps_limits = sharing::MpsLimits{100, "0=40960M,1=40960M"};
  EXPECT_EQ(Build(PerContainer(), grant, options),
            (Lines{"env CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=100",
                   "env CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=40960M,1=40960M",
                   "env CUDA_MPS_PIPE_DIRECTORY=/mps/nvidia.com/gpu/pipe",
                   "env CUDA_VISIBLE_DEVICES=GPU-1,GPU-0", "env NVIDIA_VISIBLE_DEVICES=1,0",
                   "mount /run/nvidia/mps/nvidia.com/gpu/pipe -> /mps/nvidia.com/gpu/pipe rw",
                   "mount /run/nvidia/mps/shm -> /dev/shm rw"}));
}

TEST(AllocateResponseTest, PerContainerMpsUnderCdiOnlyKeepsItsLimits) {
  ResponseOptions options = With({kCdiCri});
  options.mps_root = "/run/nvidia/mps";
  auto grant = GrantOf({0});
  grant.mps_limits = sharing::MpsLimits{50, std::nullopt};  // memoryLimit: none
  EXPECT_EQ(
      Build(PerContainer(), grant, options),
      (Lines{
          "cdi k8s.device-plugin.nvidia.com/gpu=GPU-0", "env CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=50",
          "env CUDA_MPS_PIPE_DIRECTORY=/mps/nvidia.com/gpu/pipe", "env CUDA_VISIBLE_DEVICES=GPU-0",
          "mount /run/nvidia/mps/nvidia.com/gpu/pipe -> /mps/nvidia.com/gpu/pipe rw",
          "mount /run/nvidia/mps/shm -> /dev/shm rw"}));
}

TEST(AllocateResponseTest, TimeSlicingIsLikeExclusive) {
  EXPECT_EQ(Build(Spec(sharing::Mode::kTimeSlicing), GrantOf({0}), {}),
            Lines{"env NVIDIA_VISIBLE_DEVICES=GPU-0"});
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
