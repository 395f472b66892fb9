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
  bool mig_enabled = false;        // MIG mode is on (current mode)

  std::string DevicePath() const { return "/dev/nvidia" + std::to_string(minor); }
};

struct Inventory {
  std::string driver_version;
  std::vector<Gpu> gpus;  // ordered by NVML index
  // Problems that do not stop discovery, e.g. a GPU whose memory NVML cannot report (upstream logs
  // the same as a warning). The caller logs them.
  std::vector<std::string> warnings;

  const Gpu* FindByUuid(const std::string& uuid) const;
  const Gpu* FindByIndex(unsigned index) const;
};

// NVML's "00000000:07:00.0" -> sysfs "0000:07:00.0".
std::string NvmlBusIdToSysfs(const std::string& nvml_bus_id);

// Reads every GPU through `nvml` (which must be initialised) and its NUMA node from
// `<sysfs_root>/bus/pci/devices/<bus>/numa_node` (missing file or negative value: unknown).
absl::StatusOr<Inventory> DiscoverInventory(nvml::Nvml& nvml,
                                            const std::string& sysfs_root = "/sys");

// MIG strategies are not implemented yet. A node where some GPU has MIG enabled and the strategy is
// single or mixed would otherwise advertise full GPUs that cannot run work: FailedPrecondition
// naming the strategy and the GPUs, and what to do. With migStrategy none, or with MIG off on every
// GPU (where upstream's single and mixed also advertise full GPUs), OK.
absl::Status CheckMigStrategySupported(config::MigStrategy strategy, const Inventory& inventory);

}  // namespace nvdp::device
