// Test fixtures for the sharing tests: the 8x A100-40GB node built in code,
// resource specs over it, and a small kubelet that keeps the allocated set,
// asks PreferredAllocation and then GrantContainer the way kubelet does.
//
// Not thread-safe (tests use one FakeKubelet per thread).
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "sharing/sharing.h"

namespace nvdp::sharing::testing {

inline constexpr uint64_t kA100Bytes = 42949672960ULL;  // 40 GiB
inline constexpr char kA100Name[] = "NVIDIA A100-SXM4-40GB";

// GPU-a100a100-0000-4000-8000-00000000000N (N = 0..9).
inline std::string A100Uuid(int i) {
  return absl::StrCat("GPU-a100a100-0000-4000-8000-00000000000", i);
}

inline device::Gpu A100(int i) {
  device::Gpu gpu;
  gpu.uuid = A100Uuid(i);
  gpu.index = static_cast<unsigned>(i);
  gpu.minor = static_cast<unsigned>(i);
  gpu.name = kA100Name;
  gpu.memory_bytes = kA100Bytes;
  gpu.cc_major = 8;
  gpu.cc_minor = 0;
  gpu.pci_bus_id = absl::StrCat("0000:", 7 + i * 8, ":00.0");
  gpu.numa_node = i < 4 ? 0 : 1;
  return gpu;
}

// 8x A100-40GB: indices 0..7, NUMA 0 for 0-3 and 1 for 4-7.
inline device::Inventory A100Node(int count = 8) {
  device::Inventory inventory;
  inventory.driver_version = "550.54.15";
  for (int i = 0; i < count; ++i) inventory.gpus.push_back(A100(i));
  return inventory;
}

inline ResourceSpec Spec(Mode mode, int replicas, int gpus = 8) {
  ResourceSpec spec;
  spec.name = "nvidia.com/gpu";
  spec.mode = mode;
  spec.replicas = mode == Mode::kExclusive ? 1 : replicas;
  spec.gpus = A100Node(gpus).gpus;
  spec.per_container_limits = mode == Mode::kMps;
  return spec;
}

// Per-container MPS, the default.
inline ResourceSpec MpsSpec(int replicas = 100, int gpus = 8) {
  return Spec(Mode::kMps, replicas, gpus);
}

inline std::string Share(int gpu, int replica) { return FormatShareId(A100Uuid(gpu), replica); }

// Shares [from, to) of a GPU.
inline std::vector<std::string> Shares(int gpu, int from, int to) {
  std::vector<std::string> out;
  for (int r = from; r < to; ++r) out.push_back(Share(gpu, r));
  return out;
}

class FakeKubelet {
 public:
  struct Admission {
    std::vector<std::string> ids;
    Grant grant;
  };

  explicit FakeKubelet(ResourceSpec spec, uint64_t shuffle_seed = 0)
      : spec_(std::move(spec)),
        all_(AdvertisedDevices(spec_)),
        rng_(shuffle_seed),
        shuffle_(shuffle_seed != 0) {}

  // Free devices, in advertised order (or shuffled, as kubelet's sets are).
  std::vector<std::string> Available() {
    std::vector<std::string> out;
    for (const auto& d : all_) {
      if (!allocated_.contains(d.id)) out.push_back(d.id);
    }
    if (shuffle_) std::shuffle(out.begin(), out.end(), rng_);
    return out;
  }

  // GetPreferredAllocation, then Allocate with its answer; records the IDs.
  absl::StatusOr<Admission> Admit(int size, const std::vector<std::string>& must = {}) {
    auto available = Available();
    if (static_cast<size_t>(size) > available.size()) {
      return absl::ResourceExhaustedError("kubelet: not enough devices");
    }
    auto ids = PreferredAllocation(spec_, available, must, size);
    if (!ids.ok()) return ids.status();
    auto grant = GrantContainer(spec_, *ids);
    if (!grant.ok()) return grant.status();
    for (const auto& id : *ids) allocated_.insert(id);
    return Admission{*ids, *grant};
  }

  void Release(const std::vector<std::string>& ids) {
    for (const auto& id : ids) allocated_.erase(id);
  }

  const std::unordered_set<std::string>& allocated() const { return allocated_; }
  const ResourceSpec& spec() const { return spec_; }

 private:
  ResourceSpec spec_;
  std::vector<AdvertisedDevice> all_;
  std::unordered_set<std::string> allocated_;
  std::mt19937_64 rng_;
  bool shuffle_;
};

inline std::vector<unsigned> Indices(const Grant& grant) {
  std::vector<unsigned> out;
  for (const auto& gpu : grant.gpus) out.push_back(gpu.index);
  return out;
}

}  // namespace nvdp::sharing::testing
