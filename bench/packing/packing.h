// The packing simulator's model (bench/packing/README.md): one node of 8 GPUs x 100 shares under
// per-container MPS, pods arriving as a Poisson stream with exponential lifetimes, a count-only
// scheduler, and kubelet admitting each scheduled pod through the real
// sharing::PreferredAllocation and sharing::GrantContainer. It measures how many scheduled pods
// fail admission, and the node's utilisation, with and without capacity shaping
// (sharing::ShapeCapacity).
//
// RunCell is a pure function of its parameters (its own seeded generator, no I/O, no shared
// state), so cells may run on any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sharing/sharing.h"

namespace nvdp::packing {

// What the plugin reports Healthy, and when the scheduler learns the count.
enum class Policy {
  kUnshaped,   // every share Healthy (no shaping)
  kShaped,     // sharing::ShapeCapacity; the scheduler sees the node's allocatable at once
  kShapedLag,  // ShapeCapacity; the scheduler's allocatable is refreshed every lag_seconds
};
inline constexpr Policy kPolicies[] = {Policy::kUnshaped, Policy::kShaped, Policy::kShapedLag};
// "unshaped", "shaped", "shaped-lag".
std::string_view PolicyName(Policy policy);

// Pod sizes (shares), each drawn with equal probability.
struct Mix {
  std::string name;
  std::vector<int> sizes;
};
// "10-50", "10-90" and "10,30,50,70,100,200".
std::vector<Mix> DefaultMixes();

inline constexpr int kGpus = 8;
inline constexpr int kSharesPerGpu = 100;
// The node: per-container MPS, 100 shares on each of 8 A100-SXM4-40GB-like GPUs.
sharing::ResourceSpec PackingNode();

struct CellParams {
  Policy policy = Policy::kUnshaped;
  // Offered load: arrival rate * mean size * mean life / node shares.
  double load = 0.9;
  Mix mix;
  int64_t arrivals = 10000;  // pods offered; the run ends at the last arrival
  double mean_life_seconds = 60;
  double lag_seconds = 10;  // kShapedLag only
  uint64_t seed = 1;
};

struct CellResult {
  int64_t arrivals = 0;
  int64_t not_scheduled = 0;  // the scheduler's count said no: the pod is lost
  int64_t scheduled = 0;      // sent to the node by the scheduler
  // Scheduled pods that fail admission: kubelet has fewer Healthy free devices than the request
  // (only possible with a stale allocatable), or PreferredAllocation refuses, or GrantContainer
  // refuses PreferredAllocation's answer (a bug; never expected).
  int64_t failed_count = 0;
  int64_t failed_preferred = 0;
  int64_t failed_grant = 0;
  // Integral of allocated shares over time, and the time simulated.
  double share_seconds = 0;
  double seconds = 0;
  // Calls made to PreferredAllocation (for the run-time report).
  int64_t preferred_calls = 0;

  int64_t Failed() const { return failed_count + failed_preferred + failed_grant; }
  // Failed / scheduled, in percent (0 when nothing was scheduled).
  double FailPercent() const;
  // Time-weighted allocated shares / node shares, in percent.
  double UtilPercent() const;
  // Not scheduled / arrivals, in percent.
  double LostPercent() const;
  // Adds the counts and times of another run of the same cell.
  void Add(const CellResult& other);
};

// Simulates one cell. Runs with equal seed, load, mix and lifetimes see the same pods at the same
// times whatever the policy (common random numbers).
CellResult RunCell(const CellParams& params);

}  // namespace nvdp::packing
