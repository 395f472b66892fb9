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
#include "nvml/nvml.h"

namespace nvdp::device {

struct Gpu {
  std::string uuid{};
  unsigned index = 0;
  unsigned minor = 0;
  std::string name{};
  uint64_t memory_bytes = 0;
  int cc_major = 0;
  int cc_minor = 0;
  std::string pci_bus_id{};        // sysfs form: "0000:07:00.0" (lower case, 4-digit domain)
  std::optional<int> numa_node{};  // from /sys/bus/pci/devices/<bus>/numa_node; nullopt if unknown

  std::string DevicePath() const { return "/dev/nvidia" + std::to_string(minor); }
};

struct Inventory {
  std::string driver_version;
  std::vector<Gpu> gpus;  // ordered by NVML index

  const Gpu* FindByUuid(const std::string& uuid) const;
  const Gpu* FindByIndex(unsigned index) const;
};

// NVML's "00000000:07:00.0" -> sysfs "0000:07:00.0".
std::string NvmlBusIdToSysfs(const std::string& nvml_bus_id);

// Reads every GPU through `nvml` (which must be initialised) and its NUMA node from
// `<sysfs_root>/bus/pci/devices/<bus>/numa_node` (missing file or negative value: unknown).
absl::StatusOr<Inventory> DiscoverInventory(nvml::Nvml& nvml,
                                            const std::string& sysfs_root = "/sys");

}  // namespace nvdp::device
