// Benchmarks of the sharing logic on the RPC paths kubelet drives:
// PreferredAllocation (GetPreferredAllocation) and GrantContainer (Allocate),
// on 8 GPUs x 100 shares and 8 GPUs x 1000 shares with a realistically
// part-used node (GPUs 0-7 at 30, 70, 0, 100, 50, 10, 0 and 90 % in use),
// `available` in the scrambled order kubelet's sets produce, and request sizes
// of 5 %, 30 %, one GPU and two GPUs. The uniform-MPS / time-slicing greedy
// pick is measured too, and capacity shaping with the ledger's refresh from a
// PodResources List.
//
// Single-threaded; every benchmark builds its inputs before timing.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "ledger/ledger.h"
#include "sharing/capacity.h"
#include "sharing/sharing.h"

namespace nvdp::sharing {
namespace {

constexpr int kGpus = 8;
constexpr int kUsedPercent[kGpus] = {30, 70, 0, 100, 50, 10, 0, 90};

ResourceSpec Node(Mode mode, int replicas) {
  ResourceSpec spec;
  spec.name = "nvidia.com/gpu";
  spec.mode = mode;
  spec.replicas = replicas;
  spec.per_container_limits = mode == Mode::kMps;
  for (int i = 0; i < kGpus; ++i) {
    device::Gpu gpu;
    gpu.uuid = "GPU-a100a100-0000-4000-8000-00000000000" + std::to_string(i);
    gpu.index = static_cast<unsigned>(i);
    gpu.name = "NVIDIA A100-SXM4-40GB";
    gpu.memory_bytes = 42949672960ULL;
    gpu.numa_node = i < 4 ? 0 : 1;
    spec.gpus.push_back(gpu);
  }
  return spec;
}

// Every share not in use, scrambled with a fixed seed.
std::vector<std::string> Available(const ResourceSpec& spec) {
  std::vector<std::string> out;
  for (int g = 0; g < kGpus; ++g) {
    const int used = spec.replicas * kUsedPercent[g] / 100;
    for (int r = used; r < spec.replicas; ++r) {
      out.push_back(FormatShareId(spec.gpus[static_cast<size_t>(g)].uuid, r));
    }
  }
  std::mt19937 rng(42);
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

// Args: shares per GPU, request size in percent of one GPU.
int RequestSize(const benchmark::State& state) {
  return static_cast<int>(state.range(0) * state.range(1) / 100);
}

void BM_PreferredAllocation(benchmark::State& state) {
  const ResourceSpec spec = Node(Mode::kMps, static_cast<int>(state.range(0)));
  const std::vector<std::string> available = Available(spec);
  const int k = RequestSize(state);
  for (auto _ : state) {
    auto ids = PreferredAllocation(spec, available, {}, k);
    if (!ids.ok()) state.SkipWithError("PreferredAllocation failed");
    benchmark::DoNotOptimize(ids);
  }
  state.counters["available"] = static_cast<double>(available.size());
}

void BM_GrantContainer(benchmark::State& state) {
  const ResourceSpec spec = Node(Mode::kMps, static_cast<int>(state.range(0)));
  auto ids = PreferredAllocation(spec, Available(spec), {}, RequestSize(state));
  if (!ids.ok()) {
    state.SkipWithError("PreferredAllocation failed");
    return;
  }
  for (auto _ : state) {
    auto grant = GrantContainer(spec, *ids);
    if (!grant.ok()) state.SkipWithError("GrantContainer failed");
    benchmark::DoNotOptimize(grant);
  }
}

// Uniform MPS / time-slicing: upstream's distributed pick.
void BM_PreferredAllocationGreedy(benchmark::State& state) {
  const ResourceSpec spec = Node(Mode::kTimeSlicing, static_cast<int>(state.range(0)));
  const std::vector<std::string> available = Available(spec);
  const int k = RequestSize(state);
  for (auto _ : state) {
    auto ids = PreferredAllocation(spec, available, {}, k);
    if (!ids.ok()) state.SkipWithError("PreferredAllocation failed");
    benchmark::DoNotOptimize(ids);
  }
}

// The node's occupancy as the ledger reports it (kUsedPercent of each GPU, one container per 10%).
Occupancy Used(const ResourceSpec& spec) {
  Occupancy occupancy = EmptyOccupancy(spec);
  for (int g = 0; g < kGpus; ++g) {
    const int used = spec.replicas * kUsedPercent[g] / 100;
    for (int r = 0; r < used; ++r)
      occupancy.allocated[static_cast<size_t>(g * spec.replicas + r)] = 1;
    occupancy.clients[static_cast<size_t>(g)] = kUsedPercent[g] / 10;
  }
  return occupancy;
}

// Capacity shaping, recomputed after every grant and release.
void BM_ShapeCapacity(benchmark::State& state) {
  ResourceSpec spec = Node(Mode::kMps, static_cast<int>(state.range(0)));
  spec.capacity_shaping = true;
  const Occupancy occupancy = Used(spec);
  const std::vector<char> usable(kGpus, 1);
  for (auto _ : state) benchmark::DoNotOptimize(ShapeCapacity(spec, occupancy, usable));
}

// Applying one PodResources List to a ledger: the part-used node as one container per 10% of a
// GPU, every refresh period.
void BM_LedgerApplyList(benchmark::State& state) {
  const ResourceSpec spec = Node(Mode::kMps, static_cast<int>(state.range(0)));
  std::vector<podresources::ContainerDevices> listed;
  for (int g = 0; g < kGpus; ++g) {
    const int step = spec.replicas / 10;
    for (int c = 0; c < kUsedPercent[g] / 10; ++c) {
      podresources::ContainerDevices entry{
          "default", "pod-" + std::to_string(g * 10 + c), "app", spec.name, {}};
      for (int r = c * step; r < (c + 1) * step; ++r) {
        entry.device_ids.push_back(FormatShareId(spec.gpus[static_cast<size_t>(g)].uuid, r));
      }
      listed.push_back(std::move(entry));
    }
  }
  ledger::Ledger ledger(spec);
  ledger.ApplyList(listed);
  for (auto _ : state) ledger.ApplyList(listed);
  state.counters["containers"] = static_cast<double>(listed.size());
}

void Sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"shares", "pct"});
  for (int shares : {100, 1000}) {
    for (int pct : {5, 30, 100, 200}) b->Args({shares, pct});
  }
}

void GreedySizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"shares", "pct"});
  for (int shares : {100, 1000}) {
    for (int pct : {1, 30}) b->Args({shares, pct});
  }
}

BENCHMARK(BM_PreferredAllocation)->Apply(Sizes);
BENCHMARK(BM_GrantContainer)->Apply(Sizes);
BENCHMARK(BM_PreferredAllocationGreedy)->Apply(GreedySizes);
BENCHMARK(BM_ShapeCapacity)->ArgName("shares")->Arg(100)->Arg(1000);
BENCHMARK(BM_LedgerApplyList)->ArgName("shares")->Arg(100)->Arg(1000);

}  // namespace
}  // namespace nvdp::sharing

BENCHMARK_MAIN();
