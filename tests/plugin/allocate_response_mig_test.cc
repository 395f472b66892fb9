// BuildContainerResponse for MIG devices, from resources BuildResources makes on hand-built MIG
// nodes: device IDs (MIG UUIDs, "<gpu>:<mig>" indices), passDeviceSpecs (the parent's node once,
// then each MIG device's capability nodes; a cap_error fails Allocate), per-container MPS on a MIG
// device (its own daemon's pipe directory, CUDA_VISIBLE_DEVICES=MIG-...), socket names.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "plugin/allocate_response.h"
#include "plugin/device_plugin_server.h"
#include "plugin/response_fields.h"
#include "sharing/mig_node.h"

namespace nvdp::plugin {
namespace {

using config::DeviceIdStrategy;
using sharing::testing::MigUuid;
using Lines = std::vector<std::string>;

sharing::ResourceSpec Resource(const config::Config& cfg, const device::Inventory& node,
                               const std::string& name) {
  auto specs = sharing::BuildResources(cfg, node);
  EXPECT_TRUE(specs.ok()) << specs.status();
  for (const auto& spec : *specs) {
    if (spec.name == name) return spec;
  }
  ADD_FAILURE() << "no resource " << name;
  return {};
}

config::Config Mixed() {
  config::Config cfg;
  cfg.flags.mig_strategy = config::MigStrategy::kMixed;
  return cfg;
}

ResponseOptions NoControlNodes() {
  ResponseOptions options;
  options.node_exists = [](const std::string&) { return false; };
  return options;
}

Lines Allocate(const sharing::ResourceSpec& spec, const std::vector<std::string>& ids,
               const ResponseOptions& options) {
  auto grant = sharing::GrantContainer(spec, ids);
  if (!grant.ok()) return Lines{"grant error " + std::string(grant.status().message())};
  auto response = BuildContainerResponse(spec, *grant, options);
  if (!response.ok()) return Lines{"error " + std::string(response.status().message())};
  return testing::ResponseFields(*response);
}

TEST(AllocateResponseMigTest, EnvvarListsMigUuids) {
  const auto spec = Resource(Mixed(), sharing::testing::A100Mixed(), "nvidia.com/mig-1g.5gb");
  EXPECT_EQ(Allocate(spec, {MigUuid(0, 4), MigUuid(0, 5)}, NoControlNodes()),
            Lines{"env NVIDIA_VISIBLE_DEVICES=" + MigUuid(0, 4) + "," + MigUuid(0, 5)});
}

TEST(AllocateResponseMigTest, IndexStrategyListsGpuColonMig) {
  const auto spec = Resource(Mixed(), sharing::testing::A100Mixed(), "nvidia.com/mig-1g.5gb");
  ResponseOptions options = NoControlNodes();
  options.plugin.device_id_strategy = DeviceIdStrategy::kIndex;
  EXPECT_EQ(Allocate(spec, {MigUuid(1, 2), MigUuid(0, 6)}, options),
            Lines{"env NVIDIA_VISIBLE_DEVICES=1:2,0:6"});
  options.plugin.device_list_strategy = {config::DeviceListStrategy::kVolumeMounts};
  EXPECT_EQ(Allocate(spec, {MigUuid(1, 2)}, options),
            (Lines{"env NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices",
                   "mount /dev/null -> /var/run/nvidia-container-devices/1:2 rw"}));
}

TEST(AllocateResponseMigTest, DeviceSpecsPassTheParentOnceAndEachDevicesCaps) {
  const auto spec = Resource(Mixed(), sharing::testing::A100Mixed(), "nvidia.com/mig-1g.5gb");
  ResponseOptions options = NoControlNodes();
  options.plugin.pass_device_specs = true;
  options.dev_root = "/host";
  // MIG devices 0:1 and 0:2 (GI 2 and 3 of GPU 0) and 1:2 (GI 3 of GPU 1, minor 1).
  EXPECT_EQ(Allocate(spec, {MigUuid(0, 1), MigUuid(0, 2), MigUuid(1, 2)}, options),
            (Lines{"device /dev/nvidia0 <- /host/dev/nvidia0 rw",
                   "device /dev/nvidia-caps/nvidia-cap4 <- /host/dev/nvidia-caps/nvidia-cap4 rw",
                   "device /dev/nvidia-caps/nvidia-cap5 <- /host/dev/nvidia-caps/nvidia-cap5 rw",
                   "device /dev/nvidia-caps/nvidia-cap6 <- /host/dev/nvidia-caps/nvidia-cap6 rw",
                   "device /dev/nvidia-caps/nvidia-cap7 <- /host/dev/nvidia-caps/nvidia-cap7 rw",
                   "device /dev/nvidia1 <- /host/dev/nvidia1 rw",
                   "device /dev/nvidia-caps/nvidia-cap106 <- "
                   "/host/dev/nvidia-caps/nvidia-cap106 rw",
                   "device /dev/nvidia-caps/nvidia-cap107 <- "
                   "/host/dev/nvidia-caps/nvidia-cap107 rw",
                   "env NVIDIA_VISIBLE_DEVICES=" + MigUuid(0, 1) + "," + MigUuid(0, 2) + "," +
                       MigUuid(1, 2)}));
}

TEST(AllocateResponseMigTest, UnresolvedCapsFailAllocateWithDeviceSpecs) {
  device::Inventory node = sharing::testing::A100Mixed();
  node.mig_devices[3].mig->cap_device_paths.clear();
  node.mig_devices[3].mig->cap_error =
      "/proc/driver/nvidia-caps/mig-minors has no entry for gpu0/gi4/access";
  const auto spec = Resource(Mixed(), node, "nvidia.com/mig-1g.5gb");
  ResponseOptions options = NoControlNodes();
  options.plugin.pass_device_specs = true;
  EXPECT_EQ(Allocate(spec, {MigUuid(0, 3)}, options),
            Lines{"error nvidia.com/mig-1g.5gb: cannot pass the device nodes of MIG device 0:3 (" +
                  MigUuid(0, 3) +
                  "): /proc/driver/nvidia-caps/mig-minors has no entry for gpu0/gi4/access"});
  // Without passDeviceSpecs the runtime resolves the nodes itself: Allocate works.
  options.plugin.pass_device_specs = false;
  EXPECT_EQ(Allocate(spec, {MigUuid(0, 3)}, options),
            Lines{"env NVIDIA_VISIBLE_DEVICES=" + MigUuid(0, 3)});
}

TEST(AllocateResponseMigTest, PerContainerMpsUsesTheMigDevicesOwnDaemon) {
  config::Config cfg = Mixed();
  cfg.sharing.mps.per_container_limits = true;
  config::ReplicatedResource entry;
  entry.name = "mig-1g.5gb";
  entry.replicas = 10;
  cfg.sharing.mps.resources = {entry};
  const auto spec = Resource(cfg, sharing::testing::A100Mixed(), "nvidia.com/mig-1g.5gb");
  ResponseOptions options = NoControlNodes();
  options.mps_root = "/run/nvidia/mps";
  const std::string uuid = MigUuid(1, 2);
  EXPECT_EQ(Allocate(spec, {uuid + "::0", uuid + "::1"}, options),
            (Lines{"env CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=20",
                   "env CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=972M",
                   "env CUDA_MPS_PIPE_DIRECTORY=/mps/nvidia.com/mig-1g.5gb/pipe",
                   "env CUDA_VISIBLE_DEVICES=" + uuid, "env NVIDIA_VISIBLE_DEVICES=" + uuid,
                   "mount /run/nvidia/mps/nvidia.com/mig-1g.5gb/" + uuid +
                       "/pipe -> /mps/nvidia.com/mig-1g.5gb/pipe rw",
                   "mount /run/nvidia/mps/shm -> /dev/shm rw"}));
}

TEST(AllocateResponseMigTest, SocketNamesFollowUpstream) {
  auto specs = sharing::BuildResources(Mixed(), sharing::testing::A100Mixed());
  ASSERT_TRUE(specs.ok()) << specs.status();
  std::vector<std::string> sockets;
  for (const auto& spec : *specs) sockets.push_back(SocketNameFor(spec));
  EXPECT_EQ(sockets,
            (Lines{"nvidia-gpu.sock", "nvidia-mig-1g.5gb.sock", "nvidia-mig-1g.5gb.me.sock",
                   "nvidia-mig-2g.10gb.sock", "nvidia-mig-3g.20gb.sock"}));
}

}  // namespace
}  // namespace nvdp::plugin
