#include "plugin/allocate_response.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nvdp::plugin {
namespace {

using config::DeviceIdStrategy;
using config::DeviceListStrategy;

std::string JoinPath(const std::string& root, const std::string& path) {
  if (root.empty() || root == "/") return path;
  std::string joined = root;
  if (joined.back() == '/') joined.pop_back();
  return joined + path;
}

std::vector<std::string> DeviceIds(const sharing::Grant& grant, DeviceIdStrategy strategy) {
  std::vector<std::string> ids;
  ids.reserve(grant.gpus.size());
  for (const auto& gpu : grant.gpus) {
    ids.push_back(strategy == DeviceIdStrategy::kIndex ? std::to_string(gpu.index) : gpu.uuid);
  }
  return ids;
}

void AddDeviceSpec(const std::string& dev_root, const std::string& path,
                   v1beta1::ContainerAllocateResponse& response) {
  auto* spec = response.add_devices();
  spec->set_container_path(path);
  spec->set_host_path(JoinPath(dev_root, path));
  spec->set_permissions("rw");
}

void AddMount(const std::string& host, const std::string& container, bool read_only,
              v1beta1::ContainerAllocateResponse& response) {
  auto* mount = response.add_mounts();
  mount->set_host_path(host);
  mount->set_container_path(container);
  mount->set_read_only(read_only);
}

}  // namespace

v1beta1::ContainerAllocateResponse BuildContainerResponse(const sharing::ResourceSpec& spec,
                                                          const sharing::Grant& grant,
                                                          const ResponseOptions& options) {
  v1beta1::ContainerAllocateResponse response;
  auto& envs = *response.mutable_envs();
  const std::vector<std::string> ids = DeviceIds(grant, options.plugin.device_id_strategy);

  for (DeviceListStrategy strategy : options.plugin.device_list_strategy) {
    switch (strategy) {
      case DeviceListStrategy::kEnvvar:
        envs[kVisibleDevicesEnv] = absl::StrJoin(ids, ",");
        break;
      case DeviceListStrategy::kVolumeMounts:
        envs[kVisibleDevicesEnv] = kVolumeMountDevicesDir;
        for (const auto& id : ids) {
          AddMount("/dev/null", absl::StrCat(kVolumeMountDevicesDir, "/", id), false, response);
        }
        break;
      case DeviceListStrategy::kCdiAnnotations: {
        std::vector<std::string> names;
        for (const auto& id : ids) names.push_back(absl::StrCat(kCdiKind, "=", id));
        (*response.mutable_annotations())[absl::StrCat(options.plugin.cdi_annotation_prefix,
                                                       "nvidia-device-plugin_", spec.ShortName())] =
            absl::StrJoin(names, ",");
        break;
      }
      case DeviceListStrategy::kCdiCri:
        for (const auto& id : ids) {
          response.add_cdi_devices()->set_name(absl::StrCat(kCdiKind, "=", id));
        }
        break;
    }
  }

  if (options.plugin.pass_device_specs) {
    for (const char* path :
         {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"}) {
      AddDeviceSpec(options.dev_root, path, response);
    }
    for (const auto& gpu : grant.gpus) AddDeviceSpec(options.dev_root, gpu.DevicePath(), response);
  }

  if (spec.mode == sharing::Mode::kMps) {
    const std::string pipe = absl::StrCat("/mps/", spec.ShortName(), "/pipe");
    envs[kMpsPipeDirectoryEnv] = pipe;
    const std::string root = options.mps_root.value_or("/run/nvidia/mps");
    AddMount(absl::StrCat(root, "/", spec.ShortName(), "/pipe"), pipe, false, response);
    AddMount(absl::StrCat(root, "/shm"), "/dev/shm", false, response);
    std::vector<std::string> uuids;
    for (const auto& gpu : grant.gpus) uuids.push_back(gpu.uuid);
    envs[kCudaVisibleDevicesEnv] = absl::StrJoin(uuids, ",");
    if (grant.mps_limits) {
      envs[kMpsThreadPercentageEnv] = std::to_string(grant.mps_limits->active_thread_percentage);
      if (grant.mps_limits->pinned_mem_limit) {
        envs[kMpsPinnedMemLimitEnv] = *grant.mps_limits->pinned_mem_limit;
      }
    }
  }
  return response;
}

}  // namespace nvdp::plugin
