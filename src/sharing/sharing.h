// The resource model of ../shared/design/SHARING.md as pure functions: which device IDs a resource
// advertises, which IDs a container should get (GetPreferredAllocation), and what a set of IDs
// grants a container (Allocate): its GPUs in container order and, under per-container MPS, its
// thread and memory limits.
//
// Pure: no I/O, no threads, no clocks. Every function is safe to call concurrently.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "device/inventory.h"

namespace nvdp::sharing {

enum class Mode { kExclusive, kTimeSlicing, kMps };

// One advertised resource (one gRPC server, one registration).
struct ResourceSpec {
  std::string name;                 // full resource name, e.g. "nvidia.com/gpu"
  Mode mode = Mode::kExclusive;
  int replicas = 1;                 // shares per GPU; 1 when exclusive
  std::vector<device::Gpu> gpus;    // the GPUs behind this resource, by NVML index
  bool fail_requests_greater_than_one = false;
  bool per_container_limits = true;  // MPS only
  config::MemoryLimit memory_limit = config::MemoryLimit::kProportional;  // MPS only
  config::AllocationPolicy policy = config::AllocationPolicy::kDistributed;  // time-slicing only

  // The part of `name` after "nvidia.com/" (used in socket names and MPS paths).
  std::string ShortName() const;
};

// A device ID as advertised: a whole GPU ("<uuid>") or a share ("<uuid>::<i>").
struct ShareId {
  std::string gpu_uuid;
  std::optional<int> replica;
};
std::string FormatShareId(const std::string& gpu_uuid, int replica);
absl::StatusOr<ShareId> ParseShareId(const std::string& id);

struct AdvertisedDevice {
  std::string id;
  std::string gpu_uuid;
  std::optional<int> numa_node;
};
// Every device ID the resource advertises, GPU by GPU, shares in order.
std::vector<AdvertisedDevice> AdvertisedDevices(const ResourceSpec& spec);

// GetPreferredAllocation for one container. Stateless: works only from what kubelet sends.
absl::StatusOr<std::vector<std::string>> PreferredAllocation(
    const ResourceSpec& spec, const std::vector<std::string>& available,
    const std::vector<std::string>& must_include, int allocation_size);

struct MpsLimits {
  int active_thread_percentage = 100;              // CUDA_MPS_ACTIVE_THREAD_PERCENTAGE
  std::optional<std::string> pinned_mem_limit;     // CUDA_MPS_PINNED_DEVICE_MEM_LIMIT ("0=20480M")
};

// What a container receives for one Allocate request.
struct Grant {
  std::vector<device::Gpu> gpus;        // distinct GPUs, in container ordinal order (0..m-1)
  std::optional<MpsLimits> mps_limits;  // set only under per-container MPS
};

// Allocate for one container: validates the IDs against the resource and the allocation rules
// (never trusting that kubelet followed PreferredAllocation) and returns the grant.
absl::StatusOr<Grant> GrantContainer(const ResourceSpec& spec,
                                     const std::vector<std::string>& device_ids);

// Builds every resource this node advertises from the config and the inventory: unshared GPUs under
// their `resources.gpus` names, shared ones under their (re)names. Only resources with at least one
// GPU are returned. Errors for configs that cannot be applied to this inventory (e.g. `devices`
// naming a GPU that does not exist).
absl::StatusOr<std::vector<ResourceSpec>> BuildResources(const config::Config& config,
                                                         const device::Inventory& inventory);

}  // namespace nvdp::sharing
