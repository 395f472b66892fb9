// The node's GPU inventory: what NVML and sysfs say about each GPU, in one immutable value.
//
// Built once at start-up (and on reload) by DiscoverInventory; everything downstream (resources,
// sharing, Allocate) reads it. Plain data, freely copyable, no locking needed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "nvml/nvml.h"

namespace nvdp::device {

// What makes a device a MIG device: where it lives on its parent GPU and what it is.
struct MigInfo {
  std::string parent_uuid{};
  unsigned parent_index = 0;  // == Gpu::index of the MIG device
  unsigned mig_index = 0;     // NVML MIG slot on the parent
  unsigned gi_id = 0;
  unsigned ci_id = 0;
  std::string profile{};  // "1g.5gb", "1g.5gb+me", "1c.3g.20gb"
  unsigned multiprocessor_count = 0;
  // Attributes compared by the single strategy (all of nvmlDeviceAttributes_t but memory, which is
  // Gpu::memory_bytes).
  unsigned gi_slice_count = 0;
  unsigned ci_slice_count = 0;
  unsigned shared_copy_engines = 0;
  unsigned shared_decoders = 0;
  unsigned shared_encoders = 0;
  unsigned shared_jpegs = 0;
  unsigned shared_ofas = 0;
  // The capability device nodes a container needs besides the parent's /dev/nvidia<minor>:
  // "/dev/nvidia-caps/nvidia-cap<N>" for the GI's and the CI's `access` file, resolved from
  // <driver root>/proc/driver/nvidia/capabilities/gpu<minor>/mig/gi<g>/{access,ci<c>/access} and
  // <driver root>/proc/driver/nvidia-caps/mig-minors at discovery. When they cannot be resolved
  // `cap_error` says why (and Allocate with passDeviceSpecs fails with it).
  std::vector<std::string> cap_device_paths{};
  std::string cap_error{};
};

// A full GPU, or (with `mig` set) one MIG device. MIG devices carry their parent's index, minor,
// name, compute capability, PCI bus and NUMA node; uuid and memory_bytes are the MIG device's own.
struct Gpu {
  std::string uuid{};
  unsigned index = 0;
  unsigned minor = 0;
  std::string name{};
  uint64_t memory_bytes = 0;  // 0: NVML could not report it (see Inventory::warnings)
  int cc_major = 0;
  int cc_minor = 0;
  std::string pci_bus_id{};        // sysfs form: "0000:07:00.0" (lower case, 4-digit domain)
  std::optional<int> numa_node{};  // from /sys/bus/pci/devices/<bus>/numa_node; nullopt if unknown
  bool mig_enabled = false;        // MIG mode is on (current mode); full GPUs only
  std::optional<MigInfo> mig{};    // set for MIG devices

  bool IsMig() const { return mig.has_value(); }
  // The parent's /dev/nvidia<minor> (MIG devices too).
  std::string DevicePath() const { return "/dev/nvidia" + std::to_string(minor); }
  // The device's index as deviceIDStrategy "index" and `devices` lists name it: "<index>" for a
  // GPU, "<gpu>:<mig>" for a MIG device.
  std::string IndexId() const {
    return mig ? std::to_string(index) + ":" + std::to_string(mig->mig_index)
               : std::to_string(index);
  }
};

struct Inventory {
  std::string driver_version;
  std::vector<Gpu> gpus;  // full GPUs, ordered by NVML index
  // Every MIG device of every MIG-enabled GPU, by parent index then MIG slot (IsMig() holds).
  std::vector<Gpu> mig_devices;
  // Problems that do not stop discovery, e.g. a GPU whose memory NVML cannot report (upstream logs
  // the same as a warning). The caller logs them.
  std::vector<std::string> warnings;

  const Gpu* FindByUuid(const std::string& uuid) const;
  const Gpu* FindByIndex(unsigned index) const;
};

// NVML's "00000000:07:00.0" -> sysfs "0000:07:00.0".
std::string NvmlBusIdToSysfs(const std::string& nvml_bus_id);

// Where discovery reads the files NVML does not cover.
struct DiscoveryPaths {
  // NUMA nodes: <sysfs_root>/bus/pci/devices/<bus>/numa_node.
  std::string sysfs_root = "/sys";
  // MIG capability files: <driver_root>/proc/driver/nvidia/capabilities/... and
  // <driver_root>/proc/driver/nvidia-caps/mig-minors. The kernel's procfs shows them to every
  // container at /proc, so "/" in production; tests point it at a fake tree.
  std::string driver_root = "/";
};

// Reads every GPU through `nvml` (which must be initialised) and its NUMA node from sysfs (missing
// file or negative value: unknown), and every MIG device of each GPU with MIG enabled, with its
// capability device nodes (see MigInfo::cap_device_paths; failing to resolve them is recorded in
// MigInfo::cap_error, not a discovery failure). A GPU that fails to describe itself, or a
// MIG-enabled GPU whose MIG devices cannot be enumerated, fails discovery with an error naming it.
absl::StatusOr<Inventory> DiscoverInventory(nvml::Nvml& nvml, const DiscoveryPaths& paths = {});

}  // namespace nvdp::device
