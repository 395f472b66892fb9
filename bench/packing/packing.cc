// The packing simulator's model (packing.h): a discrete-event loop over arrivals, departures and,
// with a lagging scheduler, node-status refreshes; kubelet's device manager is modelled by the set
// of Healthy free device IDs it would send to GetPreferredAllocation.
#include "packing/packing.h"

#include <cstddef>
#include <limits>
#include <numeric>
#include <queue>
#include <random>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sharing/capacity.h"

namespace nvdp::packing {
namespace {

constexpr size_t kSlots = static_cast<size_t>(kGpus) * kSharesPerGpu;

// A pod on the node, until it ends.
struct Departure {
  double time = 0;
  std::vector<int> slots;
};
struct Later {
  bool operator()(const Departure& a, const Departure& b) const { return a.time > b.time; }
};

// The node as kubelet and the plugin see it: who holds which share, what the plugin reports
// Healthy, and the Healthy free IDs (kept incrementally, in no particular order, as kubelet's
// sets have none).
class Node {
 public:
  explicit Node(Policy policy)
      : shaped_(policy != Policy::kUnshaped),
        spec_(PackingNode()),
        occupancy_(sharing::EmptyOccupancy(spec_)),
        usable_(static_cast<size_t>(kGpus), 1),
        healthy_(kSlots, 1),
        position_(kSlots, -1) {
    for (const auto& device : sharing::AdvertisedDevices(spec_)) {
      slot_of_.emplace(device.id, static_cast<int>(ids_.size()));
      ids_.push_back(device.id);
    }
    Refresh();
  }

  int allocated() const { return allocated_; }
  // The node's allocatable: the count of Healthy devices.
  int healthy() const { return healthy_count_; }

  // Kubelet's admission of a scheduled pod of `k` shares. On success, fills `slots`.
  enum class Outcome { kAdmitted, kTooFewDevices, kPreferredRefused, kGrantRefused };
  Outcome Admit(int k, std::vector<int>* slots, int64_t* preferred_calls) {
    if (available_.size() < static_cast<size_t>(k)) return Outcome::kTooFewDevices;
    ++*preferred_calls;
    auto ids = sharing::PreferredAllocation(spec_, available_, {}, k);
    if (!ids.ok()) return Outcome::kPreferredRefused;
    if (!sharing::GrantContainer(spec_, *ids).ok()) return Outcome::kGrantRefused;
    slots->clear();
    std::vector<char> on_gpu(static_cast<size_t>(kGpus), 0);
    for (const auto& id : *ids) {
      const int slot = slot_of_.at(id);
      slots->push_back(slot);
      occupancy_.allocated[static_cast<size_t>(slot)] = 1;
      on_gpu[static_cast<size_t>(slot / kSharesPerGpu)] = 1;
    }
    for (size_t g = 0; g < on_gpu.size(); ++g) occupancy_.clients[g] += on_gpu[g];
    allocated_ += k;
    Refresh();
    return Outcome::kAdmitted;
  }

  void Release(const std::vector<int>& slots) {
    std::vector<char> on_gpu(static_cast<size_t>(kGpus), 0);
    for (int slot : slots) {
      occupancy_.allocated[static_cast<size_t>(slot)] = 0;
      on_gpu[static_cast<size_t>(slot / kSharesPerGpu)] = 1;
    }
    for (size_t g = 0; g < on_gpu.size(); ++g) occupancy_.clients[g] -= on_gpu[g];
    allocated_ -= static_cast<int>(slots.size());
    Refresh();
  }

 private:
  // Re-shapes (the plugin's ListAndWatch update) and brings `available_` in line.
  void Refresh() {
    if (shaped_) healthy_ = sharing::ShapeCapacity(spec_, occupancy_, usable_);
    healthy_count_ = 0;
    for (size_t s = 0; s < kSlots; ++s) {
      healthy_count_ += healthy_[s];
      const bool want = healthy_[s] != 0 && occupancy_.allocated[s] == 0;
      const bool have = position_[s] >= 0;
      if (want && !have) {
        position_[s] = static_cast<int>(available_.size());
        available_.push_back(ids_[s]);
        available_slot_.push_back(static_cast<int>(s));
      } else if (!want && have) {
        const auto at = static_cast<size_t>(position_[s]);
        const int last = available_slot_.back();
        available_[at] = std::move(available_.back());
        available_slot_[at] = last;
        position_[static_cast<size_t>(last)] = static_cast<int>(at);
        available_.pop_back();
        available_slot_.pop_back();
        position_[s] = -1;
      }
    }
  }

  const bool shaped_;
  const sharing::ResourceSpec spec_;
  std::vector<std::string> ids_;  // per slot
  std::unordered_map<std::string, int> slot_of_;
  sharing::Occupancy occupancy_;
  const std::vector<char> usable_;
  std::vector<char> healthy_;  // per slot
  int healthy_count_ = 0;
  int allocated_ = 0;
  // Healthy free IDs, the slot of each, and each slot's position in them (-1: not there).
  std::vector<std::string> available_;
  std::vector<int> available_slot_;
  std::vector<int> position_;
};

}  // namespace

std::string_view PolicyName(Policy policy) {
  switch (policy) {
    case Policy::kUnshaped:
      return "unshaped";
    case Policy::kShaped:
      return "shaped";
    case Policy::kShapedLag:
      return "shaped-lag";
  }
  return "unknown";
}

std::vector<Mix> DefaultMixes() {
  return {
      {"10-50", {10, 20, 30, 40, 50}},
      {"10-90", {10, 20, 30, 40, 50, 60, 70, 80, 90}},
      {"10,30,50,70,100,200", {10, 30, 50, 70, 100, 200}},
  };
}

sharing::ResourceSpec PackingNode() {
  sharing::ResourceSpec spec;
  spec.name = "nvidia.com/gpu";
  spec.mode = sharing::Mode::kMps;
  spec.replicas = kSharesPerGpu;
  spec.per_container_limits = true;
  for (int i = 0; i < kGpus; ++i) {
    device::Gpu gpu;
    gpu.uuid = absl::StrCat("GPU-a100a100-0000-4000-8000-00000000000", i);
    gpu.index = static_cast<unsigned>(i);
    gpu.minor = static_cast<unsigned>(i);
    gpu.name = "NVIDIA A100-SXM4-40GB";
    gpu.memory_bytes = 42949672960ULL;  // 40 GiB
    gpu.cc_major = 8;
    gpu.cc_minor = 0;
    gpu.pci_bus_id = absl::StrCat("0000:", 7 + i * 8, ":00.0");
    gpu.numa_node = i < kGpus / 2 ? 0 : 1;
    spec.gpus.push_back(gpu);
  }
  return spec;
}

double CellResult::FailPercent() const {
  return scheduled > 0 ? 100.0 * static_cast<double>(Failed()) / static_cast<double>(scheduled) : 0;
}

double CellResult::UtilPercent() const {
  return seconds > 0 ? 100.0 * share_seconds / (seconds * static_cast<double>(kSlots)) : 0;
}

double CellResult::LostPercent() const {
  return arrivals > 0 ? 100.0 * static_cast<double>(not_scheduled) / static_cast<double>(arrivals)
                      : 0;
}

void CellResult::Add(const CellResult& other) {
  arrivals += other.arrivals;
  not_scheduled += other.not_scheduled;
  scheduled += other.scheduled;
  failed_count += other.failed_count;
  failed_preferred += other.failed_preferred;
  failed_grant += other.failed_grant;
  share_seconds += other.share_seconds;
  seconds += other.seconds;
  preferred_calls += other.preferred_calls;
}

CellResult RunCell(const CellParams& params) {
  CellResult out;
  if (params.mix.sizes.empty() || params.load <= 0 || params.mean_life_seconds <= 0) return out;
  const double mean_size = std::accumulate(params.mix.sizes.begin(), params.mix.sizes.end(), 0.0) /
                           static_cast<double>(params.mix.sizes.size());
  const double rate =
      params.load * static_cast<double>(kSlots) / (mean_size * params.mean_life_seconds);

  std::mt19937_64 rng(params.seed);
  std::exponential_distribution<double> gap(rate);
  std::exponential_distribution<double> life(1.0 / params.mean_life_seconds);
  std::uniform_int_distribution<size_t> pick(0, params.mix.sizes.size() - 1);

  Node node(params.policy);
  std::priority_queue<Departure, std::vector<Departure>, Later> departures;
  constexpr double kNever = std::numeric_limits<double>::infinity();
  const bool lag = params.policy == Policy::kShapedLag && params.lag_seconds > 0;
  double next_refresh = lag ? params.lag_seconds : kNever;
  int seen_allocatable = node.healthy();  // what the scheduler last heard
  double now = 0;
  auto advance = [&](double t) {
    out.share_seconds += static_cast<double>(node.allocated()) * (t - now);
    now = t;
  };

  std::vector<int> slots;
  for (int64_t i = 0; i < params.arrivals; ++i) {
    // Draw every pod's numbers whatever happens to it, so all policies see the same pods.
    const double arrival = now + gap(rng);
    const int k = params.mix.sizes[pick(rng)];
    const double lifetime = life(rng);

    for (;;) {
      const double end = departures.empty() ? kNever : departures.top().time;
      if (end <= arrival && end <= next_refresh) {
        advance(end);
        node.Release(departures.top().slots);
        departures.pop();
      } else if (next_refresh <= arrival) {
        advance(next_refresh);
        seen_allocatable = node.healthy();
        next_refresh += params.lag_seconds;
      } else {
        break;
      }
    }
    advance(arrival);
    ++out.arrivals;

    // The scheduler: allocatable (fresh, or as of the last refresh) minus the requests of the pods
    // bound to the node (always fresh).
    const int allocatable = lag ? seen_allocatable : node.healthy();
    if (allocatable - node.allocated() < k) {
      ++out.not_scheduled;
      continue;
    }
    ++out.scheduled;
    switch (node.Admit(k, &slots, &out.preferred_calls)) {
      case Node::Outcome::kAdmitted:
        departures.push({arrival + lifetime, slots});
        break;
      case Node::Outcome::kTooFewDevices:
        ++out.failed_count;
        break;
      case Node::Outcome::kPreferredRefused:
        ++out.failed_preferred;
        break;
      case Node::Outcome::kGrantRefused:
        ++out.failed_grant;
        break;
    }
  }
  out.seconds = now;
  return out;
}

}  // namespace nvdp::packing
