// The resource model of docs/design/resource-model.md as pure functions: which
// device IDs a resource advertises, which IDs a container should get
// (GetPreferredAllocation), and what a set of IDs grants a container
// (Allocate): its GPUs in container order and, under per-container MPS, its
// thread and memory limits.
//
// Pure: no I/O, no threads, no clocks, no state. Every function is safe to
// call concurrently.
//
// Errors: InvalidArgument for requests that are malformed or break the rules
// (unknown or duplicate IDs, uneven share counts, more than one share where
// failRequestsGreaterThanOne holds) and for configs that cannot be applied;
// ResourceExhausted when PreferredAllocation finds no room for a valid request.
// Messages start with the resource name.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "device/inventory.h"

namespace nvdp::sharing {

enum class Mode { kExclusive, kTimeSlicing, kMps };

// "exclusive", "time-slicing" or "mps" (for messages).
std::string_view ModeName(Mode mode);

// One advertised resource (one gRPC server, one registration).
struct ResourceSpec {
  // Full resource name, e.g. "nvidia.com/gpu".
  std::string name;
  Mode mode = Mode::kExclusive;
  // Shares per GPU; 1 when exclusive.
  int replicas = 1;
  // The GPUs behind this resource, by NVML index; or its MIG devices (all of one profile), by
  // parent index then MIG slot. Never both.
  std::vector<device::Gpu> gpus;
  // Resolved by BuildResources: the config value, or when omitted true under
  // uniform MPS and false under time-slicing and per-container MPS.
  bool fail_requests_greater_than_one = false;
  // MPS only.
  bool per_container_limits = true;
  // MPS only.
  config::MemoryLimit memory_limit = config::MemoryLimit::kProportional;
  // Time-slicing and uniform MPS.
  config::AllocationPolicy policy = config::AllocationPolicy::kDistributed;
  // Per-container MPS only: advertise only the free shares any valid request can use
  // (capacity.h).
  bool capacity_shaping = false;

  // The part of `name` after "nvidia.com/" (used in socket names and MPS
  // paths).
  std::string ShortName() const;
};

// A device ID as advertised: a whole GPU ("<uuid>") or a share
// ("<uuid>::<i>").
struct ShareId {
  std::string gpu_uuid;
  std::optional<int> replica;
};
std::string FormatShareId(const std::string& gpu_uuid, int replica);
// Rejects empty IDs, an empty UUID or one with ':' or blanks in it, and a
// suffix that is not a canonical non-negative decimal ("x::", "x::-1",
// "x::01", "x::1a", "x::1::2").
absl::StatusOr<ShareId> ParseShareId(const std::string& id);

struct AdvertisedDevice {
  std::string id;
  std::string gpu_uuid;
  std::optional<int> numa_node;
};
// Every device ID the resource advertises, GPU by GPU, shares in order. Each
// carries its GPU's UUID, so per-GPU health maps onto all of its shares.
std::vector<AdvertisedDevice> AdvertisedDevices(const ResourceSpec& spec);

// Finds advertised device IDs' positions in AdvertisedDevices(spec) without allocating or
// hashing: it parses "<uuid>::<i>" and matches the UUID against the resource's devices, starting
// from the one the previous ID named (kubelet sends thousands of IDs, grouped by device). Keeps a
// reference to `spec`, which must outlive it. Not thread-safe (it remembers that hint).
class AdvertisedIndex {
 public:
  explicit AdvertisedIndex(const ResourceSpec& spec);
  ~AdvertisedIndex();
  AdvertisedIndex(const AdvertisedIndex&) = delete;
  AdvertisedIndex& operator=(const AdvertisedIndex&) = delete;

  // nullopt for an ID the resource does not advertise (or a malformed one).
  std::optional<size_t> Find(std::string_view id);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// GetPreferredAllocation for one container. Stateless: works only from what
// kubelet sends. Per-container MPS: best fit on one GPU below `replicas`
// shares, whole free GPUs for multiples, an error when nothing can hold the
// request. Time-slicing and uniform MPS: upstream's distributed/packed greedy
// pick. Exclusive: must_include first, then GPUs on the same NUMA node.
//
// `hints` carry what the plugin knows beyond kubelet's request (they never make an unavailable ID
// eligible): GPUs whose MPS server already serves as many clients as it accepts are passed over
// for requests below one GPU.
struct PreferenceHints {
  // Per GPU position in spec.gpus; empty: no GPU is at the cap.
  std::vector<char> gpu_at_client_cap;
};
absl::StatusOr<std::vector<std::string>> PreferredAllocation(
    const ResourceSpec& spec, const std::vector<std::string>& available,
    const std::vector<std::string>& must_include, int allocation_size,
    const PreferenceHints& hints = {});

struct MpsLimits {
  // CUDA_MPS_ACTIVE_THREAD_PERCENTAGE
  int active_thread_percentage = 100;
  // CUDA_MPS_PINNED_DEVICE_MEM_LIMIT ("0=20480M"); unset with memoryLimit none.
  std::optional<std::string> pinned_mem_limit;
};

// What a container receives for one Allocate request.
struct Grant {
  // Distinct GPUs, in container ordinal order (0..m-1).
  std::vector<device::Gpu> gpus;
  // Set only under per-container MPS.
  std::optional<MpsLimits> mps_limits;
};

struct GrantOptions {
  // Every ID is already held by an earlier container of the same pod. Kubelet gives an app
  // container IDs out of its init containers' set, at random and without asking
  // PreferredAllocation, whenever that set covers the request (init 200 / app 80 can get 80 IDs
  // spread over two GPUs). Under per-container MPS such a set is granted per GPU whatever its shape
  // (see GrantContainer); otherwise it must follow the allocation rules like any other.
  bool reuses_held_ids = false;
};

// Allocate for one container: validates the IDs against the resource and the
// allocation rules (never trusting that kubelet followed PreferredAllocation)
// and returns the grant.
//
// Per-container MPS, a reused set (GrantOptions) that is neither on one GPU nor whole GPUs: the
// container sees each GPU it holds shares of (by index order), pinned memory of each is
// floor(total * c_g / n), and the one thread percentage CUDA takes for all of a client's GPUs is
// that of its largest holding, max(1, floor(100 * max c_g / n)). The rest of those GPUs is held by
// the same pod's init container for the pod's whole life, so no other pod is squeezed.
absl::StatusOr<Grant> GrantContainer(const ResourceSpec& spec,
                                     const std::vector<std::string>& device_ids,
                                     const GrantOptions& options = {});

// The MPS control daemon that serves `device` of MPS resource `spec`, as the key of its directory
// under the MPS root (<mpsRoot>/<key>/{pipe,log,.started}): the resource's full name for full
// GPUs (one daemon per resource, as upstream), "<resource>/<MIG uuid>" for a MIG device (one
// daemon per MIG device: an MPS daemon serves one MIG device).
std::string MpsDaemonKey(const ResourceSpec& spec, const device::Gpu& device);

// MIG strategies (flags.migStrategy; docs/mig.md), as upstream:
//  none:   the full GPUs; MIG devices are ignored (a MIG-enabled GPU is advertised whole).
//  single: with MIG off everywhere, the full GPUs; otherwise every MIG device, which needs MIG on
//          on every GPU and all MIG devices alike (profile and NVML attributes).
//  mixed:  the GPUs with MIG off, and every MIG device.
// Under single and mixed, a GPU with MIG on but no MIG device is refused (as upstream). Errors are
// FailedPrecondition "flags.migStrategy: <strategy> — ..." naming the GPUs and profiles. Devices
// in inventory order (full GPUs, then MIG devices).
absl::StatusOr<std::vector<device::Gpu>> MigStrategyDevices(config::MigStrategy strategy,
                                                            const device::Inventory& inventory);
// MigStrategyDevices' verdict alone.
absl::Status CheckMigStrategy(config::MigStrategy strategy, const device::Inventory& inventory);
// The resource name the mixed strategy gives a MIG profile when `resources.mig` is empty:
// "mig-<profile>" with '+' as '.' ("1g.5gb+me" -> "mig-1g.5gb.me"); nullopt for profiles whose
// compute-instance slices differ from their GPU-instance slices ("1c.3g.20gb"), which upstream
// does not advertise.
std::optional<std::string> DefaultMixedMigResource(std::string_view profile);

// Builds every resource this node advertises from the config and the
// inventory: the devices flags.migStrategy picks (MigStrategyDevices), unshared
// ones under their `resources.gpus` / `resources.mig` names, shared ones under
// their (re)names. MIG devices are device::Gpu values with `mig` set. Only resources with at least
// one GPU are returned, sorted by name. Errors for configs that cannot be applied to this inventory
// (e.g. `devices` naming a GPU that does not exist).
absl::StatusOr<std::vector<ResourceSpec>> BuildResources(const config::Config& config,
                                                         const device::Inventory& inventory);

}  // namespace nvdp::sharing
