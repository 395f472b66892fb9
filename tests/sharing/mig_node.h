// Test fixtures for MIG: hand-built nodes with MIG devices, as discovery would report them (MIG
// devices carry their parent's index, minor, name, compute capability, PCI bus and NUMA node; their
// own UUID and memory). A100-40GB profiles with the sizes NVML reports for them, and an H100 80GB
// with 7x 1g.10gb.
//
// Header-only, pure.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sharing/sharing.h"
#include "sharing/test_node.h"

namespace nvdp::sharing::testing {

// One MIG profile's NVML attributes.
struct MigProfile {
  std::string name{};
  uint64_t memory_mib = 0;
  unsigned sms = 0;
  unsigned gi_slices = 0;
  unsigned ci_slices = 0;
  unsigned copy_engines = 0;
  unsigned jpegs = 0;
  unsigned ofas = 0;
};

inline const MigProfile kA100_1g5gb{"1g.5gb", 4864, 14, 1, 1, 1, 0, 0};
inline const MigProfile kA100_1g5gbMe{"1g.5gb+me", 4864, 14, 1, 1, 1, 1, 1};
inline const MigProfile kA100_2g10gb{"2g.10gb", 9856, 28, 2, 2, 2, 0, 0};
inline const MigProfile kA100_3g20gb{"3g.20gb", 19968, 42, 3, 3, 3, 0, 0};
inline const MigProfile kA100_1c3g20gb{"1c.3g.20gb", 19968, 14, 3, 1, 3, 0, 0};
inline const MigProfile kH100_1g10gb{"1g.10gb", 9856, 16, 1, 1, 1, 0, 0};

inline constexpr char kH100Name[] = "NVIDIA H100 80GB HBM3";
inline constexpr uint64_t kH100Bytes = 85520809984ULL;  // 81559 MiB

// MIG-<parent><slot>...: a well-formed MIG UUID per (parent index, MIG slot).
inline std::string MigUuid(unsigned parent, unsigned slot) {
  const std::string p = std::to_string(100 + parent).substr(1);  // 2 digits
  const std::string s = std::to_string(1000 + slot).substr(1);   // 3 digits
  return absl::StrCat("MIG-a100a100-0000-4000-8000-0000000", p, s);
}

// MIG device `slot` of `parent` with `profile`; GI slot + 1, CI 0, and two capability nodes.
inline device::Gpu MigDevice(const device::Gpu& parent, unsigned slot, const MigProfile& profile) {
  device::Gpu d = parent;
  d.uuid = MigUuid(parent.index, slot);
  d.memory_bytes = profile.memory_mib << 20;
  d.mig_enabled = false;
  device::MigInfo m;
  m.parent_uuid = parent.uuid;
  m.parent_index = parent.index;
  m.mig_index = slot;
  m.gi_id = slot + 1;
  m.ci_id = 0;
  m.profile = profile.name;
  m.multiprocessor_count = profile.sms;
  m.gi_slice_count = profile.gi_slices;
  m.ci_slice_count = profile.ci_slices;
  m.shared_copy_engines = profile.copy_engines;
  m.shared_jpegs = profile.jpegs;
  m.shared_ofas = profile.ofas;
  const unsigned gi_cap = parent.index * 100 + m.gi_id * 2;
  m.cap_device_paths = {absl::StrCat("/dev/nvidia-caps/nvidia-cap", gi_cap),
                        absl::StrCat("/dev/nvidia-caps/nvidia-cap", gi_cap + 1)};
  d.mig = std::move(m);
  return d;
}

// Turns MIG on for GPU `index` of `inventory` and gives it MIG devices with `profiles`, slot by
// slot. Call in GPU order (mig_devices stays ordered by parent, then slot).
inline void PartitionGpu(device::Inventory& inventory, unsigned index,
                         const std::vector<MigProfile>& profiles) {
  device::Gpu& parent = inventory.gpus[index];
  parent.mig_enabled = true;
  for (unsigned slot = 0; slot < profiles.size(); ++slot) {
    inventory.mig_devices.push_back(MigDevice(parent, slot, profiles[slot]));
  }
}

inline std::vector<MigProfile> Times(int n, const MigProfile& profile) {
  return std::vector<MigProfile>(static_cast<size_t>(n), profile);
}

// `gpus` A100-40GB, each with 7x 1g.5gb.
inline device::Inventory A100Uniform(int gpus = 2) {
  device::Inventory inventory = A100Node(gpus);
  for (int i = 0; i < gpus; ++i) {
    PartitionGpu(inventory, static_cast<unsigned>(i), Times(7, kA100_1g5gb));
  }
  return inventory;
}

// A mixed A100 node: GPU 0 7x 1g.5gb; GPU 1 3g.20gb, 2g.10gb, 1g.5gb, 1g.5gb+me; GPU 2 MIG off.
inline device::Inventory A100Mixed() {
  device::Inventory inventory = A100Node(3);
  PartitionGpu(inventory, 0, Times(7, kA100_1g5gb));
  PartitionGpu(inventory, 1, {kA100_3g20gb, kA100_2g10gb, kA100_1g5gb, kA100_1g5gbMe});
  return inventory;
}

// `gpus` H100 80GB (compute capability 9.0), each with 7x 1g.10gb.
inline device::Inventory H100Uniform(int gpus = 2) {
  device::Inventory inventory = A100Node(gpus);
  for (auto& gpu : inventory.gpus) {
    gpu.name = kH100Name;
    gpu.memory_bytes = kH100Bytes;
    gpu.cc_major = 9;
    gpu.uuid = absl::StrCat("GPU-h100h100-0000-4000-8000-00000000000", gpu.index);
  }
  for (int i = 0; i < gpus; ++i) {
    PartitionGpu(inventory, static_cast<unsigned>(i), Times(7, kH100_1g10gb));
  }
  return inventory;
}

// The MIG devices of `inventory` whose profile is `profile`, in order.
inline std::vector<device::Gpu> MigDevicesOf(const device::Inventory& inventory,
                                             const std::string& profile) {
  std::vector<device::Gpu> out;
  for (const auto& d : inventory.mig_devices) {
    if (d.mig->profile == profile) out.push_back(d);
  }
  return out;
}

}  // namespace nvdp::sharing::testing
