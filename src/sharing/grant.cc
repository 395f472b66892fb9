// Allocate for one container: checks the device IDs kubelet sent against the
// resource and, under per-container MPS, against the allocation rules of
// docs/design/resource-model.md (never trusting that kubelet followed
// PreferredAllocation), and turns them into GPUs and limits.
//
// Pure; safe to call concurrently.
#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sharing/internal.h"
#include "sharing/sharing.h"

namespace nvdp::sharing {
namespace {

using internal::Slot;

// A reused set of any shape: per-GPU limits (GrantOptions). `order` and `count` as below.
Grant ReusedSetGrant(const ResourceSpec& spec, std::vector<int> order,
                     const std::vector<int64_t>& count) {
  const int64_t n = spec.replicas;
  const bool proportional = spec.memory_limit == config::MemoryLimit::kProportional;
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return internal::DeviceBefore(spec.gpus[static_cast<size_t>(a)],
                                  spec.gpus[static_cast<size_t>(b)]);
  });
  Grant grant;
  MpsLimits limits;
  int64_t largest = 0;
  std::vector<std::string> memory;
  for (size_t ordinal = 0; ordinal < order.size(); ++ordinal) {
    const device::Gpu& gpu = spec.gpus[static_cast<size_t>(order[ordinal])];
    const int64_t c = count[static_cast<size_t>(order[ordinal])];
    largest = std::max(largest, c);
    grant.gpus.push_back(gpu);
    if (gpu.memory_bytes > 0) {
      memory.push_back(absl::StrCat(ordinal, "=", internal::ShareMiB(gpu.memory_bytes, c, n), "M"));
    }
  }
  limits.active_thread_percentage = static_cast<int>(std::max<int64_t>(1, 100 * largest / n));
  if (proportional && !memory.empty()) limits.pinned_mem_limit = absl::StrJoin(memory, ",");
  grant.mps_limits = limits;
  return grant;
}

absl::StatusOr<Grant> PerContainerMpsGrant(const ResourceSpec& spec, const std::vector<Slot>& slots,
                                           bool reused) {
  const auto k = static_cast<int64_t>(slots.size());
  const int64_t n = spec.replicas;
  // Shares per GPU, GPUs in order of first appearance.
  std::vector<int> order;
  std::vector<int64_t> count(spec.gpus.size(), 0);
  for (Slot s : slots) {
    if (count[static_cast<size_t>(s.gpu)]++ == 0) order.push_back(s.gpu);
  }
  const auto gpu_of = [&](int g) -> const device::Gpu& {
    return spec.gpus[static_cast<size_t>(g)];
  };
  const bool proportional = spec.memory_limit == config::MemoryLimit::kProportional;

  // Each MIG device has its own MPS daemon and a client reaches one daemon (one pipe directory),
  // so a container's shares must be on one MIG device, whatever their number.
  if (order.size() > 1 && gpu_of(order.front()).IsMig()) {
    std::vector<std::string> names;
    for (int g : order) names.push_back(gpu_of(g).uuid);
    return absl::InvalidArgumentError(absl::StrCat(
        spec.name, ": request for ", k, " shares spans MIG devices ", internal::JoinAnd(names),
        "; under MPS a container can use one MIG device (each has its own MPS daemon), so at "
        "most ",
        n, " shares"));
  }

  if (reused) {
    const bool whole = k % n == 0 && std::all_of(order.begin(), order.end(), [&](int g) {
                         return count[static_cast<size_t>(g)] == n;
                       });
    if (order.size() > 1 && !whole) return ReusedSetGrant(spec, std::move(order), count);
  }

  Grant grant;
  MpsLimits limits;
  if (k < n) {
    if (order.size() > 1) {
      std::vector<std::string> names;
      for (int g : order) names.push_back(gpu_of(g).uuid);
      return absl::InvalidArgumentError(
          absl::StrCat(spec.name, ": request for ", k,
                       " shares: all shares of a request below one GPU must "
                       "come from one GPU; got shares of ",
                       internal::JoinAnd(names)));
    }
    const device::Gpu& gpu = gpu_of(order.front());
    grant.gpus.push_back(gpu);
    limits.active_thread_percentage = static_cast<int>(std::max<int64_t>(1, 100 * k / n));
    // A GPU whose memory size NVML could not report (0) gets no memory limit rather than 0 MiB.
    if (proportional && gpu.memory_bytes > 0) {
      limits.pinned_mem_limit = absl::StrCat("0=", internal::ShareMiB(gpu.memory_bytes, k, n), "M");
    }
  } else if (k % n == 0) {
    const bool whole = std::all_of(order.begin(), order.end(),
                                   [&](int g) { return count[static_cast<size_t>(g)] == n; });
    if (!whole) {
      std::vector<std::string> got;
      for (int g : order) {
        got.push_back(absl::StrCat(count[static_cast<size_t>(g)], " of ", gpu_of(g).uuid));
      }
      return absl::InvalidArgumentError(
          absl::StrCat(spec.name, ": request for ", k, " shares must take ", k / n,
                       " whole GPU(s) (all ", n, " shares of each); got ", internal::JoinAnd(got)));
    }
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return internal::DeviceBefore(gpu_of(a), gpu_of(b)); });
    std::vector<std::string> memory;
    for (size_t ordinal = 0; ordinal < order.size(); ++ordinal) {
      const device::Gpu& gpu = gpu_of(order[ordinal]);
      grant.gpus.push_back(gpu);
      if (gpu.memory_bytes > 0) {
        memory.push_back(absl::StrCat(ordinal, "=", gpu.memory_bytes >> 20, "M"));
      }
    }
    limits.active_thread_percentage = 100;
    if (proportional && !memory.empty()) limits.pinned_mem_limit = absl::StrJoin(memory, ",");
  } else {
    return internal::UnevenRequestError(spec, k);
  }
  grant.mps_limits = limits;
  return grant;
}

}  // namespace

absl::StatusOr<Grant> GrantContainer(const ResourceSpec& spec,
                                     const std::vector<std::string>& device_ids,
                                     const GrantOptions& options) {
  if (device_ids.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, ": empty allocation request"));
  }
  const bool shared = spec.mode != Mode::kExclusive;
  if (shared && spec.fail_requests_greater_than_one && device_ids.size() > 1) {
    return internal::TooManyError(spec, device_ids.size());
  }

  internal::Resolver resolver(spec);
  std::vector<Slot> slots;
  slots.reserve(device_ids.size());
  std::vector<std::string> unknown;
  for (const auto& id : device_ids) {
    if (auto slot = resolver.Resolve(id)) {
      slots.push_back(*slot);
    } else {
      unknown.push_back(id);
    }
  }
  if (!unknown.empty()) return internal::UnknownIdsError(spec, unknown);

  const int per_gpu = internal::SlotsPerGpu(spec);
  // 0: not seen, 1: seen once, 2: duplicate already reported.
  std::vector<char> seen(spec.gpus.size() * static_cast<size_t>(per_gpu), 0);
  std::vector<std::string> duplicates;
  std::vector<Slot> distinct;
  distinct.reserve(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    char& mark = seen[static_cast<size_t>(slots[i].gpu) * static_cast<size_t>(per_gpu) +
                      static_cast<size_t>(slots[i].replica)];
    if (mark == 0) {
      distinct.push_back(slots[i]);
      mark = 1;
    } else if (mark == 1) {
      duplicates.push_back(device_ids[i]);
      mark = 2;
    }
  }

  // Time-slicing and uniform MPS (upstream): strip the share suffix, one GPU
  // per distinct UUID.
  if (shared && !internal::PerContainerMps(spec)) {
    Grant grant;
    std::vector<char> granted(spec.gpus.size(), 0);
    for (Slot s : distinct) {
      char& done = granted[static_cast<size_t>(s.gpu)];
      if (done == 0) grant.gpus.push_back(spec.gpus[static_cast<size_t>(s.gpu)]);
      done = 1;
    }
    return grant;
  }

  // Exclusive and per-container MPS: every ID names a distinct device or share.
  if (!duplicates.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.name, ": duplicate device IDs: ", internal::QuoteAll(duplicates)));
  }
  if (!shared) {
    Grant grant;
    for (Slot s : slots) grant.gpus.push_back(spec.gpus[static_cast<size_t>(s.gpu)]);
    return grant;
  }
  return PerContainerMpsGrant(spec, slots, options.reuses_held_ids);
}

}  // namespace nvdp::sharing
