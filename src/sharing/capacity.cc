// Capacity shaping (capacity.h): the client cap, empty occupancies and ShapeCapacity.
//
// Pure functions; safe to call concurrently.
#include "sharing/capacity.h"

#include <cstddef>

#include "sharing/internal.h"

namespace nvdp::sharing {

int MpsClientCap(const device::Gpu& gpu) {
  return gpu.cc_major >= 7 || gpu.cc_major == 0 ? kMpsClientCapVolta : kMpsClientCapPreVolta;
}

Occupancy EmptyOccupancy(const ResourceSpec& spec) {
  Occupancy out;
  out.allocated.assign(spec.gpus.size() * static_cast<size_t>(internal::SlotsPerGpu(spec)), 0);
  out.clients.assign(spec.gpus.size(), 0);
  return out;
}

std::vector<char> ShapeCapacity(const ResourceSpec& spec, const Occupancy& occupancy,
                                const std::vector<char>& gpu_usable) {
  const size_t gpus = spec.gpus.size();
  const auto slots = static_cast<size_t>(internal::SlotsPerGpu(spec));
  std::vector<char> healthy(gpus * slots, 1);
  if (!internal::PerContainerMps(spec) || occupancy.allocated.size() != healthy.size() ||
      occupancy.clients.size() != gpus || gpu_usable.size() != gpus) {
    return healthy;
  }

  // Free shares per GPU; -1 for GPUs that can take no new container (unusable, or at the cap).
  std::vector<int> free(gpus, 0);
  for (size_t g = 0; g < gpus; ++g) {
    for (size_t r = 0; r < slots; ++r) {
      if (occupancy.allocated[g * slots + r] == 0) ++free[g];
    }
    if (gpu_usable[g] == 0 || occupancy.clients[g] >= MpsClientCap(spec.gpus[g])) free[g] = -1;
  }

  // The hole: the partly used open GPU with the most free shares, ties to the lowest GPU index.
  const auto whole = static_cast<int>(slots);
  size_t hole = gpus;
  for (size_t g = 0; g < gpus; ++g) {
    if (free[g] <= 0 || free[g] >= whole) continue;
    if (hole == gpus || free[g] > free[hole] ||
        (free[g] == free[hole] && spec.gpus[g].index < spec.gpus[hole].index)) {
      hole = g;
    }
  }

  for (size_t g = 0; g < gpus; ++g) {
    if (free[g] == whole || g == hole) continue;  // every share shown
    for (size_t r = 0; r < slots; ++r) {
      const size_t i = g * slots + r;
      healthy[i] = occupancy.allocated[i] != 0 ? 1 : 0;
    }
  }
  return healthy;
}

}  // namespace nvdp::sharing
