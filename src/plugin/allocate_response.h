// Turns a sharing::Grant into what kubelet hands the container runtime: env vars, mounts, device
// specs, CDI annotations/devices. Follows upstream v0.20's Allocate field for field (same order of
// steps, names and paths), except for the deliberate extensions listed in docs/sharing.md
// ("Differences from upstream's Allocate"): per-container MPS limits and CUDA_VISIBLE_DEVICES, and
// a deterministic CDI annotation key.
//
// Pure function of its inputs (the only I/O is ResponseOptions::node_exists, which by default
// stats a path); safe to call concurrently.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "deviceplugin/v1beta1/api.pb.h"
#include "sharing/sharing.h"

namespace nvdp::plugin {

// True when `host_path` exists (stat succeeds). The default for ResponseOptions::node_exists.
bool PathExists(const std::string& host_path);

struct ResponseOptions {
  config::PluginFlags plugin;           // strategies, passDeviceSpecs, CDI prefix
  std::string dev_root = "/";           // host root of /dev/nvidia* (flags.nvidiaDevRoot)
  std::optional<std::string> mps_root;  // host root of the MPS pipe/shm directories
  // flags.gdrcopyEnabled / gdsEnabled / mofedEnabled: NVIDIA_GDRCOPY / NVIDIA_GDS / NVIDIA_MOFED
  // = "enabled" (not under CDI-only strategies).
  bool gdrcopy_enabled = false;
  bool gds_enabled = false;
  bool mofed_enabled = false;
  // Asked, with passDeviceSpecs, whether an optional control node (/dev/nvidiactl, nvidia-uvm,
  // nvidia-uvm-tools, nvidia-modeset) exists; gets the host path <dev_root><path>. Only the nodes
  // it confirms are passed. Not part of the configuration (ignored when options are compared).
  std::function<bool(const std::string& host_path)> node_exists = PathExists;
};

// Environment variable and path names shared with the container runtime and upstream.
inline constexpr char kVisibleDevicesEnv[] = "NVIDIA_VISIBLE_DEVICES";
inline constexpr char kCudaVisibleDevicesEnv[] = "CUDA_VISIBLE_DEVICES";
inline constexpr char kMpsPipeDirectoryEnv[] = "CUDA_MPS_PIPE_DIRECTORY";
inline constexpr char kMpsThreadPercentageEnv[] = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE";
inline constexpr char kMpsPinnedMemLimitEnv[] = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT";
inline constexpr char kGdrcopyEnv[] = "NVIDIA_GDRCOPY";
inline constexpr char kGdsEnv[] = "NVIDIA_GDS";
inline constexpr char kMofedEnv[] = "NVIDIA_MOFED";
inline constexpr char kVolumeMountDevicesDir[] = "/var/run/nvidia-container-devices";
inline constexpr char kCdiKind[] = "k8s.device-plugin.nvidia.com/gpu";

// The MPS pipe directory inside the container for a resource (full name):
// /mps/nvidia.com/gpu/pipe. The host side is <mpsRoot>/<daemon key>/pipe (mps::PathsFor,
// sharing::MpsDaemonKey): <mpsRoot>/nvidia.com/gpu/pipe, or for a MIG device
// <mpsRoot>/nvidia.com/mig-1g.5gb/MIG-<uuid>/pipe.
std::string MpsContainerPipeDir(const std::string& resource_name);

// Upstream's steps, in its order:
//  1. any CDI strategy: the CDI annotation (cdi-annotations) and/or CDI devices (cdi-cri);
//  2. MPS: CUDA_MPS_PIPE_DIRECTORY and the pipe and /dev/shm mounts (plus, per-container mode
//     only, CUDA_VISIBLE_DEVICES and the container's limits);
//  3. if every strategy is a CDI one, stop;
//  4. envvar: NVIDIA_VISIBLE_DEVICES=<ids>; then volume-mounts: NVIDIA_VISIBLE_DEVICES=
//     /var/run/nvidia-container-devices and one /dev/null mount per id (so with both, the
//     volume-mounts value wins whatever their order in the list);
//  5. passDeviceSpecs: the control nodes that exist, then /dev/nvidia<minor> per GPU (a MIG
//     device's parent, once however many of its MIG devices the grant has), then each MIG
//     device's capability nodes (/dev/nvidia-caps/nvidia-cap<N>), all read-write;
//  6. NVIDIA_GDRCOPY / NVIDIA_GDS / NVIDIA_MOFED.
// FailedPrecondition with passDeviceSpecs when a MIG device's capability nodes could not be
// resolved at discovery (MigInfo::cap_error), naming the device and the reason.
absl::StatusOr<v1beta1::ContainerAllocateResponse> BuildContainerResponse(
    const sharing::ResourceSpec& spec, const sharing::Grant& grant, const ResponseOptions& options);

}  // namespace nvdp::plugin
