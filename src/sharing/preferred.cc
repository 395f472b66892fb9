// GetPreferredAllocation, per mode (docs/design/resource-model.md):
// - per-container MPS: best fit on one GPU below n shares, whole free GPUs for
// multiples of n, an
//   error when no GPU (or not enough whole GPUs) can hold the request;
// - time-slicing and uniform MPS: upstream's greedy replica pick (`distributed`
// / `packed`);
// - exclusive: must_include first, then GPUs on the same NUMA node where known (MIG devices: on
//   the same parent GPU).
// MIG devices under per-container MPS: at most one MIG device per container (its own daemon).
// Topology beyond NUMA (upstream's NVLink / PCIe-switch scoring) is not
// modelled.
//
// Stateless and pure: works only from what kubelet sends. Safe to call
// concurrently.
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sharing/capacity.h"
#include "sharing/internal.h"
#include "sharing/sharing.h"

namespace nvdp::sharing {
namespace {

using internal::Slot;

// What kubelet sent, resolved against the resource and checked.
struct Request {
  // Shares per GPU (1 when exclusive).
  int slots = 0;
  // Per share, at gpu * slots + replica: in `available` / in `must_include`.
  std::vector<char> free, must;
  // Per GPU: free shares (required ones included) and required shares.
  std::vector<int> free_count, must_count;
  // must_include de-duplicated, in the order sent, and its distinct GPUs in
  // order of appearance.
  std::vector<Slot> must_slots;
  std::vector<int> must_gpus;
  size_t total_free = 0;

  size_t At(int gpu, int replica) const {
    return static_cast<size_t>(gpu) * static_cast<size_t>(slots) + static_cast<size_t>(replica);
  }
  // Free and not already required: a share the pick may add.
  bool Candidate(int gpu, int replica) const {
    const size_t i = At(gpu, replica);
    return free[i] != 0 && must[i] == 0;
  }
};

absl::StatusOr<Request> ReadRequest(const ResourceSpec& spec,
                                    const std::vector<std::string>& available,
                                    const std::vector<std::string>& must_include, int size) {
  if (size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.name, ": allocation size must be positive; got ", size));
  }
  Request req;
  req.slots = internal::SlotsPerGpu(spec);
  const size_t gpus = spec.gpus.size();
  req.free.assign(gpus * static_cast<size_t>(req.slots), 0);
  req.must.assign(req.free.size(), 0);
  req.free_count.assign(gpus, 0);
  req.must_count.assign(gpus, 0);

  internal::Resolver resolver(spec);
  std::vector<std::string> unknown;
  for (const auto& id : available) {
    auto slot = resolver.Resolve(id);
    if (!slot) {
      unknown.push_back(id);
      continue;
    }
    char& bit = req.free[req.At(slot->gpu, slot->replica)];
    if (bit == 0) {
      bit = 1;
      ++req.free_count[static_cast<size_t>(slot->gpu)];
      ++req.total_free;
    }
  }
  std::vector<std::string> missing;
  for (const auto& id : must_include) {
    auto slot = resolver.Resolve(id);
    if (!slot) {
      unknown.push_back(id);
      continue;
    }
    const size_t i = req.At(slot->gpu, slot->replica);
    if (req.must[i] != 0) continue;
    if (req.free[i] == 0) {
      missing.push_back(id);
      continue;
    }
    req.must[i] = 1;
    if (req.must_count[static_cast<size_t>(slot->gpu)]++ == 0) {
      req.must_gpus.push_back(slot->gpu);
    }
    req.must_slots.push_back(*slot);
  }
  if (!unknown.empty()) return internal::UnknownIdsError(spec, unknown);
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec.name,
        ": required device IDs are not among the available ones: ", internal::QuoteAll(missing)));
  }
  if (req.must_slots.size() > static_cast<size_t>(size)) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.name, ": ", req.must_slots.size(),
                     " required device IDs exceed the allocation size ", size));
  }
  if (static_cast<size_t>(size) > req.total_free) {
    return absl::ResourceExhaustedError(absl::StrCat(spec.name, ": cannot pick ", size, " of ",
                                                     req.total_free, " available devices"));
  }
  return req;
}

// Device order (GPU index, then MIG slot) of two positions in spec.gpus.
bool Before(const ResourceSpec& spec, int a, int b) {
  return internal::DeviceBefore(spec.gpus[static_cast<size_t>(a)],
                                spec.gpus[static_cast<size_t>(b)]);
}

// Picks `count` devices out of `candidates`, staying in one group where possible: for full GPUs
// the NUMA node, for MIG devices the parent GPU (so a multi-device request gets MIG devices of one
// GPU). The group of the first anchor whose group is known; without one, the group that fits the
// whole pick with the fewest candidates to spare (best fit, keeping larger groups whole), else the
// group with the most candidates. Within a group and for the rest: device order.
std::vector<int> PickGpus(const ResourceSpec& spec, std::vector<int> candidates,
                          const std::vector<int>& anchors, size_t count) {
  if (count == 0) return {};
  std::sort(candidates.begin(), candidates.end(), [&](int a, int b) { return Before(spec, a, b); });
  auto group_of = [&](int g) -> std::optional<int> {
    const device::Gpu& d = spec.gpus[static_cast<size_t>(g)];
    if (d.IsMig()) return static_cast<int>(d.index);
    return d.numa_node;
  };

  std::optional<int> node;
  for (int a : anchors) {
    if (group_of(a)) {
      node = group_of(a);
      break;
    }
  }
  if (!node) {
    std::map<int, size_t> per_node;  // node -> candidates on it
    std::vector<int> node_order;     // nodes by their lowest candidate index
    for (int g : candidates) {
      if (auto n = group_of(g)) {
        if (per_node[*n]++ == 0) node_order.push_back(*n);
      }
    }
    std::optional<int> fit, largest;
    for (int n : node_order) {
      const size_t have = per_node[n];
      if (have >= count && (!fit || have < per_node[*fit])) fit = n;
      if (!largest || have > per_node[*largest]) largest = n;
    }
    node = fit ? fit : largest;
  }

  std::vector<int> out;
  if (node) {
    for (int g : candidates) {
      if (out.size() < count && group_of(g) == node) out.push_back(g);
    }
  }
  for (int g : candidates) {
    if (out.size() >= count) break;
    if (!node || group_of(g) != node) out.push_back(g);
  }
  return out;
}

std::vector<std::string> MustIds(const ResourceSpec& spec, const Request& req) {
  std::vector<std::string> out;
  for (Slot s : req.must_slots) out.push_back(internal::IdOf(spec, s));
  return out;
}

// Appends every share of `gpu` that is free and not already required, lowest
// first, up to `size`.
void AppendFreeShares(const ResourceSpec& spec, const Request& req, int gpu, size_t size,
                      std::vector<std::string>* out) {
  for (int r = 0; r < req.slots && out->size() < size; ++r) {
    if (req.Candidate(gpu, r)) {
      out->push_back(internal::IdOf(spec, Slot{gpu, r}));
    }
  }
}

absl::StatusOr<std::vector<std::string>> PerContainerMps(const ResourceSpec& spec,
                                                         const Request& req, int size,
                                                         const PreferenceHints& hints) {
  const int64_t k = size;
  const int64_t n = spec.replicas;
  auto uuid_of = [&](int g) -> const std::string& {
    return spec.gpus[static_cast<size_t>(g)].uuid;
  };

  if (k < n) {
    if (req.must_gpus.size() > 1) {
      std::vector<std::string> names;
      for (int g : req.must_gpus) names.push_back(uuid_of(g));
      return absl::InvalidArgumentError(
          absl::StrCat(spec.name, ": a request for ", k,
                       " shares must come from one GPU, but the required shares are on ",
                       internal::JoinAnd(names)));
    }
    int best = -1;
    int most = 0;
    int fits_at_cap = -1;  // a GPU with room whose MPS server takes no more clients
    for (int g = 0; g < static_cast<int>(spec.gpus.size()); ++g) {
      if (!req.must_gpus.empty() && g != req.must_gpus.front()) continue;
      const int have = req.free_count[static_cast<size_t>(g)];
      const bool at_cap = req.must_gpus.empty() &&
                          static_cast<size_t>(g) < hints.gpu_at_client_cap.size() &&
                          hints.gpu_at_client_cap[static_cast<size_t>(g)] != 0;
      if (at_cap) {
        if (have >= k && fits_at_cap < 0) fits_at_cap = g;
        continue;
      }
      most = std::max(most, have);
      if (have < k) continue;
      if (best < 0 || have < req.free_count[static_cast<size_t>(best)] ||
          (have == req.free_count[static_cast<size_t>(best)] && Before(spec, g, best))) {
        best = g;
      }
    }
    if (best < 0) {
      if (!req.must_gpus.empty()) {
        return absl::ResourceExhaustedError(absl::StrCat(
            spec.name, ": no single GPU has ", k, " free shares including the required ones; ",
            uuid_of(req.must_gpus.front()), ", which holds them, has ", most, " free"));
      }
      if (fits_at_cap >= 0) {
        return absl::ResourceExhaustedError(absl::StrCat(
            spec.name, ": no GPU can take another MPS client for a request of ", k,
            " shares: ", uuid_of(fits_at_cap), " has room but its MPS server already serves ",
            MpsClientCap(spec.gpus[static_cast<size_t>(fits_at_cap)]),
            " clients, the most it accepts; the most free on a GPU below the cap is ", most));
      }
      return absl::ResourceExhaustedError(absl::StrCat(spec.name, ": no single GPU has ", k,
                                                       " free shares; the most free on one GPU is ",
                                                       most));
    }
    std::vector<std::string> out = MustIds(spec, req);
    AppendFreeShares(spec, req, best, static_cast<size_t>(k), &out);
    return out;
  }

  if (k % n != 0) return internal::UnevenRequestError(spec, k);
  if (k > n && spec.gpus.front().IsMig()) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec.name, ": a request for ", k,
        " shares needs more than one MIG device; under MPS a container can use one MIG device "
        "(each has its own MPS daemon), so at most ",
        n, " shares"));
  }
  const auto m = static_cast<size_t>(k / n);
  for (int g : req.must_gpus) {
    if (req.free_count[static_cast<size_t>(g)] != n) {
      return absl::ResourceExhaustedError(absl::StrCat(
          spec.name, ": a request for ", k, " shares takes ", m,
          " whole GPU(s), but required shares are on ", uuid_of(g), ", which has only ",
          req.free_count[static_cast<size_t>(g)], " of its ", n, " shares free"));
    }
  }
  if (req.must_gpus.size() > m) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec.name, ": a request for ", k, " shares takes ", m,
        " whole GPU(s), but the required shares are on ", req.must_gpus.size(), " GPUs"));
  }
  std::vector<int> whole;
  for (int g = 0; g < static_cast<int>(spec.gpus.size()); ++g) {
    if (req.free_count[static_cast<size_t>(g)] == n &&
        req.must_count[static_cast<size_t>(g)] == 0) {
      whole.push_back(g);
    }
  }
  const size_t need = m - req.must_gpus.size();
  if (whole.size() < need) {
    const size_t free_gpus = whole.size() + req.must_gpus.size();
    std::string have = "none is";
    if (free_gpus == 1) have = "only 1 is";
    if (free_gpus > 1) have = absl::StrCat("only ", free_gpus, " are");
    return absl::ResourceExhaustedError(absl::StrCat(
        spec.name, ": a request for ", k, " shares needs ", m, " completely free GPU(s) (", n,
        " free shares each); ", have, " completely free"));
  }
  std::vector<int> picked = req.must_gpus;
  for (int g : PickGpus(spec, whole, req.must_gpus, need)) picked.push_back(g);
  std::vector<std::string> out = MustIds(spec, req);
  out.reserve(static_cast<size_t>(k));
  for (int g : picked) {
    AppendFreeShares(spec, req, g, static_cast<size_t>(k), &out);
  }
  return out;
}

// Upstream's greedy replica pick: one share at a time from the GPU with the
// fewest (distributed) or most (packed) shares in use, counting required shares
// and earlier picks as in use; ties to the lowest GPU index, and the lowest
// free share of that GPU.
std::vector<std::string> Greedy(const ResourceSpec& spec, const Request& req, int size) {
  const size_t gpus = spec.gpus.size();
  std::vector<int> left(gpus), used(gpus), cursor(gpus, 0);
  for (size_t g = 0; g < gpus; ++g) {
    left[g] = req.free_count[g] - req.must_count[g];
    used[g] = req.slots - left[g];
  }
  const bool packed = spec.policy == config::AllocationPolicy::kPacked;
  std::vector<std::string> out = MustIds(spec, req);
  while (out.size() < static_cast<size_t>(size)) {
    int best = -1;
    for (int g = 0; g < static_cast<int>(gpus); ++g) {
      const auto ug = static_cast<size_t>(g);
      if (left[ug] == 0) continue;
      if (best < 0) {
        best = g;
        continue;
      }
      const auto ub = static_cast<size_t>(best);
      const bool better = packed ? used[ug] > used[ub] : used[ug] < used[ub];
      if (better || (used[ug] == used[ub] && Before(spec, g, best))) best = g;
    }
    if (best < 0) break;  // unreachable: size <= total free was checked
    const auto ub = static_cast<size_t>(best);
    int& r = cursor[ub];
    while (!req.Candidate(best, r)) {
      ++r;
    }
    out.push_back(internal::IdOf(spec, Slot{best, r}));
    ++r;
    --left[ub];
    ++used[ub];
  }
  return out;
}

std::vector<std::string> Exclusive(const ResourceSpec& spec, const Request& req, int size) {
  std::vector<int> candidates;
  for (int g = 0; g < static_cast<int>(spec.gpus.size()); ++g) {
    if (req.free_count[static_cast<size_t>(g)] > 0 && req.must_count[static_cast<size_t>(g)] == 0) {
      candidates.push_back(g);
    }
  }
  std::vector<std::string> out = MustIds(spec, req);
  const size_t need = static_cast<size_t>(size) - out.size();
  for (int g : PickGpus(spec, candidates, req.must_gpus, need)) {
    out.push_back(spec.gpus[static_cast<size_t>(g)].uuid);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> PreferredAllocation(
    const ResourceSpec& spec, const std::vector<std::string>& available,
    const std::vector<std::string>& must_include, int allocation_size,
    const PreferenceHints& hints) {
  auto req = ReadRequest(spec, available, must_include, allocation_size);
  if (!req.ok()) return req.status();
  if (spec.mode == Mode::kExclusive) return Exclusive(spec, *req, allocation_size);
  if (spec.fail_requests_greater_than_one && allocation_size > 1) {
    return internal::TooManyError(spec, static_cast<size_t>(allocation_size));
  }
  if (internal::PerContainerMps(spec)) return PerContainerMps(spec, *req, allocation_size, hints);
  return Greedy(spec, *req, allocation_size);
}

}  // namespace nvdp::sharing
