#include "plugin/allocate_response.h"

#include <sys/stat.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nvdp::plugin {
namespace {

using config::DeviceIdStrategy;
using config::DeviceListStrategy;

// Control nodes passed with passDeviceSpecs when they exist, in upstream's order.
constexpr const char* kOptionalControlNodes[] = {"/dev/nvidiactl", "/dev/nvidia-uvm",
                                                 "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"};

// filepath.Join(root, path) for an absolute, clean `path`.
std::string JoinPath(const std::string& root, const std::string& path) {
  std::string joined = root;
  while (!joined.empty() && joined.back() == '/') joined.pop_back();
  return joined + path;
}

bool Has(const std::vector<DeviceListStrategy>& strategies, DeviceListStrategy strategy) {
  return std::find(strategies.begin(), strategies.end(), strategy) != strategies.end();
}

bool IsCdi(DeviceListStrategy strategy) {
  return strategy == DeviceListStrategy::kCdiAnnotations || strategy == DeviceListStrategy::kCdiCri;
}

std::vector<std::string> DeviceIds(const sharing::Grant& grant, DeviceIdStrategy strategy) {
  std::vector<std::string> ids;
  ids.reserve(grant.gpus.size());
  for (const auto& gpu : grant.gpus) {
    ids.push_back(strategy == DeviceIdStrategy::kIndex ? gpu.IndexId() : gpu.uuid);
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

void AddMount(const std::string& host, const std::string& container,
              v1beta1::ContainerAllocateResponse& response) {
  auto* mount = response.add_mounts();
  mount->set_host_path(host);
  mount->set_container_path(container);
  mount->set_read_only(false);
}

}  // namespace

bool PathExists(const std::string& host_path) {
  struct stat st;
  return stat(host_path.c_str(), &st) == 0;
}

std::string MpsContainerPipeDir(const std::string& resource_name) {
  return absl::StrCat("/mps/", resource_name, "/pipe");
}

absl::StatusOr<v1beta1::ContainerAllocateResponse> BuildContainerResponse(
    const sharing::ResourceSpec& spec, const sharing::Grant& grant,
    const ResponseOptions& options) {
  v1beta1::ContainerAllocateResponse response;
  auto& envs = *response.mutable_envs();
  const std::vector<DeviceListStrategy>& strategies = options.plugin.device_list_strategy;
  const std::vector<std::string> ids = DeviceIds(grant, options.plugin.device_id_strategy);

  // 1. CDI.
  if (std::any_of(strategies.begin(), strategies.end(), IsCdi) && !ids.empty()) {
    std::vector<std::string> names;
    for (const auto& id : ids) names.push_back(absl::StrCat(kCdiKind, "=", id));
    if (Has(strategies, DeviceListStrategy::kCdiAnnotations)) {
      (*response.mutable_annotations())[absl::StrCat(options.plugin.cdi_annotation_prefix,
                                                     "nvidia-device-plugin_", spec.ShortName())] =
          absl::StrJoin(names, ",");
    }
    if (Has(strategies, DeviceListStrategy::kCdiCri)) {
      for (const auto& name : names) response.add_cdi_devices()->set_name(name);
    }
  }

  // 2. MPS: upstream's pipe directory and mounts, keyed by the full resource name.
  if (spec.mode == sharing::Mode::kMps) {
    const std::string pipe = MpsContainerPipeDir(spec.name);
    const std::string root = options.mps_root.value_or(config::kDefaultMpsRoot);
    envs[kMpsPipeDirectoryEnv] = pipe;
    // A grant under MPS is on one daemon: the resource's, or its MIG device's (grant.cc).
    const std::string daemon =
        grant.gpus.empty() ? spec.name : sharing::MpsDaemonKey(spec, grant.gpus.front());
    AddMount(JoinPath(root, absl::StrCat("/", daemon, "/pipe")), pipe, response);
    AddMount(JoinPath(root, "/shm"), "/dev/shm", response);
    if (spec.per_container_limits) {
      // Ours: the GPUs by UUID, so the memory limit's ordinals (0=...,1=...) are the grant's order.
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
  }

  // 3. Nothing else when every strategy is a CDI one.
  if (std::all_of(strategies.begin(), strategies.end(), IsCdi)) return response;

  // 4. Device lists the runtime reads from the environment / mounts.
  if (Has(strategies, DeviceListStrategy::kEnvvar)) {
    envs[kVisibleDevicesEnv] = absl::StrJoin(ids, ",");
  }
  if (Has(strategies, DeviceListStrategy::kVolumeMounts)) {
    envs[kVisibleDevicesEnv] = kVolumeMountDevicesDir;
    for (const auto& id : ids) {
      AddMount("/dev/null", absl::StrCat(kVolumeMountDevicesDir, "/", id), response);
    }
  }

  // 5. Device nodes.
  if (options.plugin.pass_device_specs) {
    for (const char* path : kOptionalControlNodes) {
      const std::string host = JoinPath(options.dev_root, path);
      if (options.node_exists && options.node_exists(host)) {
        AddDeviceSpec(options.dev_root, path, response);
      }
    }
    // The parent's node once per GPU, then each MIG device's capability nodes.
    std::vector<std::string> paths;
    const auto add_once = [&paths](const std::string& path) {
      if (std::find(paths.begin(), paths.end(), path) == paths.end()) paths.push_back(path);
    };
    for (const auto& gpu : grant.gpus) {
      add_once(gpu.DevicePath());
      if (!gpu.IsMig()) continue;
      if (!gpu.mig->cap_error.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat(spec.name, ": cannot pass the device nodes of MIG device ", gpu.IndexId(),
                         " (", gpu.uuid, "): ", gpu.mig->cap_error));
      }
      for (const auto& cap : gpu.mig->cap_device_paths) add_once(cap);
    }
    for (const auto& path : paths) AddDeviceSpec(options.dev_root, path, response);
  }

  // 6. Extra driver components.
  if (options.gdrcopy_enabled) envs[kGdrcopyEnv] = "enabled";
  if (options.gds_enabled) envs[kGdsEnv] = "enabled";
  if (options.mofed_enabled) envs[kMofedEnv] = "enabled";
  return response;
}

}  // namespace nvdp::plugin
