// Turns a sharing::Grant into what kubelet hands the container runtime: env vars, mounts, device
// specs, CDI annotations/devices, following the configured device-list and device-ID strategies and
// upstream's paths (../shared/facts/upstream-plugin.md, "Allocate response").
//
// Pure function of its inputs; safe to call concurrently.
#pragma once

#include <optional>
#include <string>

#include "config/config.h"
#include "deviceplugin/v1beta1/api.pb.h"
#include "sharing/sharing.h"

namespace nvdp::plugin {

struct ResponseOptions {
  config::PluginFlags plugin;           // strategies, passDeviceSpecs, CDI prefix
  std::string dev_root = "/";           // host root of /dev/nvidia* (flags.nvidiaDevRoot)
  std::optional<std::string> mps_root;  // host root of the MPS pipe/shm directories
};

// Environment variable and path names shared with the container runtime and upstream.
inline constexpr char kVisibleDevicesEnv[] = "NVIDIA_VISIBLE_DEVICES";
inline constexpr char kCudaVisibleDevicesEnv[] = "CUDA_VISIBLE_DEVICES";
inline constexpr char kMpsPipeDirectoryEnv[] = "CUDA_MPS_PIPE_DIRECTORY";
inline constexpr char kMpsThreadPercentageEnv[] = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE";
inline constexpr char kMpsPinnedMemLimitEnv[] = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT";
inline constexpr char kVolumeMountDevicesDir[] = "/var/run/nvidia-container-devices";
inline constexpr char kCdiKind[] = "k8s.device-plugin.nvidia.com/gpu";

v1beta1::ContainerAllocateResponse BuildContainerResponse(const sharing::ResourceSpec& spec,
                                                          const sharing::Grant& grant,
                                                          const ResponseOptions& options);

}  // namespace nvdp::plugin
