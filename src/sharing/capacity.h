// Capacity shaping for per-container MPS resources: which shares the plugin reports Healthy so
// that the stock kube-scheduler, which only counts a node's free shares, never sends a pod that
// GetPreferredAllocation must refuse (the fragmentation limit of docs/design/resource-model.md;
// bench/packing measures the effect).
//
// Reported Healthy: every allocated share (so the node's accounting stays right), every share of
// each completely free GPU, and the free shares of exactly one partly used GPU, the "hole": the one
// with the most free shares (ties: lowest GPU index). Every other free share is hidden. A GPU whose
// MPS server already has its maximum number of clients never is the hole. Then a request for
// k < n shares that the count admits fits in the hole or on a free GPU, and k = m*n fits on m free
// GPUs.
//
// Pure: no I/O, no threads, no state. The caller owns the Occupancy; every function is safe to
// call concurrently.
#pragma once

#include <vector>

#include "device/inventory.h"
#include "sharing/sharing.h"

namespace nvdp::sharing {

// MPS serves at most this many client processes per GPU from Volta (compute capability 7) on, and
// kMpsClientCapPreVolta before.
inline constexpr int kMpsClientCapVolta = 48;
inline constexpr int kMpsClientCapPreVolta = 16;
// 48 when gpu.cc_major >= 7 or unknown (cc_major == 0), 16 otherwise.
int MpsClientCap(const device::Gpu& gpu);

// Who holds what on one resource, by slot (slot = gpu_position * SlotsPerGpu + replica, the order
// of AdvertisedDevices(spec); gpu_position is the index into spec.gpus).
struct Occupancy {
  std::vector<char> allocated;  // per slot: 1 = held by some container
  std::vector<int> clients;     // per GPU position: containers (MPS clients) holding shares on it
};
// An empty occupancy (nothing allocated) of the right size for `spec`.
Occupancy EmptyOccupancy(const ResourceSpec& spec);

// Capacity shaping (rules above). `gpu_usable` per GPU position (false: the GPU is unhealthy; it is
// never chosen as free GPU or hole, the caller reports all its shares Unhealthy anyway). Returns
// per slot 1 = report Healthy, 0 = hide. Allocated slots are always 1. Sizes must match the spec
// (REQUIRES). Per-container MPS resources only; for any other mode return all 1s.
//
// A call that breaks REQUIRES gets all 1s for every slot (no shaping, today's behaviour) rather
// than a crash.
std::vector<char> ShapeCapacity(const ResourceSpec& spec, const Occupancy& occupancy,
                                const std::vector<char>& gpu_usable);

}  // namespace nvdp::sharing
