// Tests of capacity shaping (sharing/capacity.h): the MPS client cap, the hole rule and its ties,
// GPUs at the cap, unusable GPUs, modes without shaping, and a seeded property test: on random
// occupancies, every request the node's count of advertised free shares admits gets an answer
// from the real PreferredAllocation, which GrantContainer accepts, on GPUs below the client cap.
#include "sharing/capacity.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "sharing/test_node.h"

namespace nvdp::sharing {
namespace {

// Per GPU position: how many of its shares are held (the lowest ones) and by how many containers.
struct GpuUse {
  int used = 0;
  int clients = -1;  // -1: 1 when used > 0, else 0
};

Occupancy Occupy(const ResourceSpec& spec, const std::vector<GpuUse>& use) {
  Occupancy occ = EmptyOccupancy(spec);
  const auto n = static_cast<size_t>(spec.replicas);
  for (size_t g = 0; g < use.size(); ++g) {
    for (size_t r = 0; r < static_cast<size_t>(use[g].used); ++r) occ.allocated[g * n + r] = 1;
    occ.clients[g] = use[g].clients >= 0 ? use[g].clients : (use[g].used > 0 ? 1 : 0);
  }
  return occ;
}

std::vector<char> AllUsable(const ResourceSpec& spec) {
  return std::vector<char>(spec.gpus.size(), 1);
}

// Shares of GPU position `g` reported Healthy.
int HealthyOn(const ResourceSpec& spec, const std::vector<char>& healthy, size_t g) {
  const auto n = static_cast<size_t>(spec.replicas);
  return static_cast<int>(std::count(healthy.begin() + static_cast<std::ptrdiff_t>(g * n),
                                     healthy.begin() + static_cast<std::ptrdiff_t>((g + 1) * n),
                                     char{1}));
}

std::vector<int> HealthyPerGpu(const ResourceSpec& spec, const std::vector<char>& healthy) {
  std::vector<int> out;
  for (size_t g = 0; g < spec.gpus.size(); ++g) out.push_back(HealthyOn(spec, healthy, g));
  return out;
}

TEST(MpsClientCap, FromComputeCapability) {
  device::Gpu gpu = testing::A100(0);
  for (int major : {7, 8, 9, 10}) {
    gpu.cc_major = major;
    EXPECT_EQ(MpsClientCap(gpu), 48) << "cc " << major;
  }
  gpu.cc_major = 0;  // unknown
  EXPECT_EQ(MpsClientCap(gpu), kMpsClientCapVolta);
  for (int major : {3, 5, 6}) {
    gpu.cc_major = major;
    EXPECT_EQ(MpsClientCap(gpu), 16) << "cc " << major;
  }
  EXPECT_EQ(kMpsClientCapPreVolta, 16);
}

TEST(EmptyOccupancy, SizedForTheSpec) {
  const ResourceSpec mps = testing::MpsSpec(100, 8);
  Occupancy occ = EmptyOccupancy(mps);
  EXPECT_EQ(occ.allocated, std::vector<char>(800, 0));
  EXPECT_EQ(occ.clients, std::vector<int>(8, 0));

  occ = EmptyOccupancy(testing::Spec(Mode::kExclusive, 1, 3));
  EXPECT_EQ(occ.allocated.size(), 3u);
  EXPECT_EQ(occ.clients.size(), 3u);
}

TEST(ShapeCapacity, EmptyNodeShowsEverything) {
  const ResourceSpec spec = testing::MpsSpec(100, 8);
  EXPECT_EQ(ShapeCapacity(spec, EmptyOccupancy(spec), AllUsable(spec)), std::vector<char>(800, 1));
}

// The example of the brief: 40 + 30 + 30 free on three part-used GPUs used to count as 100 free.
TEST(ShapeCapacity, OnlyTheLargestHoleShows) {
  const ResourceSpec spec = testing::MpsSpec(100, 5);
  const Occupancy occ = Occupy(spec, {{60}, {70}, {70}, {0}, {100, 3}});
  const auto healthy = ShapeCapacity(spec, occ, AllUsable(spec));
  // GPU 0: 60 held + its 40 free; 1 and 2: only what is held; 3: free, all; 4: full.
  EXPECT_EQ(HealthyPerGpu(spec, healthy), (std::vector<int>{100, 70, 70, 100, 100}));
  for (size_t i = 0; i < healthy.size(); ++i) {
    if (occ.allocated[i] != 0) {
      EXPECT_EQ(healthy[i], 1) << "slot " << i;
    }
  }
}

TEST(ShapeCapacity, AllocatedSharesAlwaysShow) {
  const ResourceSpec spec = testing::MpsSpec(10, 3);
  Occupancy occ = EmptyOccupancy(spec);
  // Scattered shares: GPU 0 holds 1, 5, 9 (7 free); GPU 1 holds 0, 2 (8 free: the hole); GPU 2
  // holds 3 (9 free), but is at the cap.
  for (size_t i : {1, 5, 9, 10, 12, 23}) occ.allocated[i] = 1;
  occ.clients = {3, 2, kMpsClientCapVolta};
  const auto healthy = ShapeCapacity(spec, occ, AllUsable(spec));
  std::vector<char> want(30, 0);
  for (size_t i : {1, 5, 9, 23}) want[i] = 1;
  for (size_t i = 10; i < 20; ++i) want[i] = 1;
  EXPECT_EQ(healthy, want);
}

TEST(ShapeCapacity, TiesGoToTheLowestGpuIndex) {
  ResourceSpec spec = testing::MpsSpec(100, 4);
  EXPECT_EQ(HealthyPerGpu(spec, ShapeCapacity(spec, Occupy(spec, {{100}, {60}, {60}, {80}}),
                                              AllUsable(spec))),
            (std::vector<int>{100, 100, 60, 80}));

  // By NVML index, not by position: positions 0..3 hold GPUs 3, 2, 1, 0.
  std::reverse(spec.gpus.begin(), spec.gpus.end());
  EXPECT_EQ(HealthyPerGpu(
                spec, ShapeCapacity(spec, Occupy(spec, {{50}, {50}, {90}, {50}}), AllUsable(spec))),
            (std::vector<int>{50, 50, 90, 100}));
}

TEST(ShapeCapacity, FreeGpusAllShowWithoutAHole) {
  const ResourceSpec spec = testing::MpsSpec(100, 4);
  EXPECT_EQ(HealthyPerGpu(
                spec, ShapeCapacity(spec, Occupy(spec, {{0}, {100}, {0}, {100}}), AllUsable(spec))),
            (std::vector<int>{100, 100, 100, 100}));
}

TEST(ShapeCapacity, GpuAtTheClientCapIsNeverTheHole) {
  ResourceSpec spec = testing::MpsSpec(100, 3);
  // Volta and later: 48 clients close GPU 0; 47 leave GPU 1 open.
  auto healthy = ShapeCapacity(spec, Occupy(spec, {{50, 48}, {60, 47}, {70, 5}}), AllUsable(spec));
  EXPECT_EQ(HealthyPerGpu(spec, healthy), (std::vector<int>{50, 100, 70}));

  // Unknown compute capability counts as Volta.
  spec.gpus[0].cc_major = 0;
  healthy = ShapeCapacity(spec, Occupy(spec, {{50, 47}, {60, 5}, {70, 5}}), AllUsable(spec));
  EXPECT_EQ(HealthyPerGpu(spec, healthy), (std::vector<int>{100, 60, 70}));

  // Before Volta: 16 clients close a GPU, 15 do not.
  spec.gpus[0].cc_major = 6;
  spec.gpus[1].cc_major = 6;
  healthy = ShapeCapacity(spec, Occupy(spec, {{50, 16}, {60, 15}, {70, 5}}), AllUsable(spec));
  EXPECT_EQ(HealthyPerGpu(spec, healthy), (std::vector<int>{50, 100, 70}));

  // Every part-used GPU at the cap: no hole at all.
  healthy = ShapeCapacity(spec, Occupy(spec, {{50, 16}, {60, 16}, {0}}), AllUsable(spec));
  EXPECT_EQ(HealthyPerGpu(spec, healthy), (std::vector<int>{50, 60, 100}));
}

TEST(ShapeCapacity, UnusableGpusAreNeitherHoleNorFreeGpu) {
  const ResourceSpec spec = testing::MpsSpec(100, 4);
  const Occupancy occ = Occupy(spec, {{20}, {50}, {0}, {10}});
  const std::vector<char> usable = {1, 1, 0, 0};
  const auto healthy = ShapeCapacity(spec, occ, usable);
  // GPU 3 (90 free) and the free GPU 2 are unusable: GPU 0 is the hole, only GPU 3's held shares
  // show.
  EXPECT_EQ(HealthyPerGpu(spec, healthy), (std::vector<int>{100, 50, 0, 10}));
}

TEST(ShapeCapacity, OtherModesAreNotShaped) {
  for (ResourceSpec spec : {testing::Spec(Mode::kTimeSlicing, 10, 3),
                            testing::Spec(Mode::kExclusive, 1, 3), testing::MpsSpec(10, 3)}) {
    if (spec.mode == Mode::kMps) spec.per_container_limits = false;  // uniform MPS
    SCOPED_TRACE(absl::StrCat(std::string(ModeName(spec.mode)), " x", spec.replicas));
    const size_t slots = spec.gpus.size() * static_cast<size_t>(spec.replicas);
    Occupancy occ = EmptyOccupancy(spec);
    ASSERT_EQ(occ.allocated.size(), slots);
    occ.allocated[0] = 1;
    occ.clients[0] = 1;
    EXPECT_EQ(ShapeCapacity(spec, occ, AllUsable(spec)), std::vector<char>(slots, 1));
  }
}

TEST(ShapeCapacity, MismatchedSizesAreNotShaped) {
  const ResourceSpec spec = testing::MpsSpec(10, 3);
  const Occupancy occ = Occupy(spec, {{3}, {5}, {0}});
  const std::vector<char> all(30, 1);
  Occupancy short_slots = occ;
  short_slots.allocated.pop_back();
  EXPECT_EQ(ShapeCapacity(spec, short_slots, AllUsable(spec)), all);
  Occupancy short_clients = occ;
  short_clients.clients.pop_back();
  EXPECT_EQ(ShapeCapacity(spec, short_clients, AllUsable(spec)), all);
  EXPECT_EQ(ShapeCapacity(spec, occ, {1, 1}), all);
}

int Uniform(std::mt19937& rng, int lo, int hi) {  // inclusive
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

// The proof of capacity.h against the real code: with `available` the advertised free shares, as
// kubelet sends them, every request the count admits (k <= |available|) is answered, the answer is
// granted, and no container lands on a GPU at the client cap.
TEST(ShapeCapacityProperty, EveryRequestTheCountAdmitsFits) {
  static const int kReplicas[] = {2, 3, 4, 7, 10, 16, 25, 100};
  static const int kCcMajor[] = {0, 6, 7, 8, 9};
  int admitted = 0, refused = 0;
  for (uint32_t seed = 1; seed <= 600; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937 rng(seed);
    ResourceSpec spec = testing::MpsSpec(kReplicas[Uniform(rng, 0, 7)], Uniform(rng, 1, 8));
    for (auto& gpu : spec.gpus) gpu.cc_major = kCcMajor[Uniform(rng, 0, 4)];
    if (Uniform(rng, 0, 3) == 0) std::shuffle(spec.gpus.begin(), spec.gpus.end(), rng);
    const int n = spec.replicas;
    const auto slots = static_cast<size_t>(n);
    const size_t gpus = spec.gpus.size();

    Occupancy occ = EmptyOccupancy(spec);
    std::vector<char> usable(gpus, 1);
    for (size_t g = 0; g < gpus; ++g) {
      usable[g] = Uniform(rng, 0, 9) != 0 ? 1 : 0;
      const int kind = Uniform(rng, 0, 3);  // free, full, part used (twice as likely)
      int used = 0;
      for (size_t r = 0; r < slots; ++r) {
        const bool take = kind == 1 || (kind >= 2 && Uniform(rng, 0, 99) < 60);
        if (take) {
          occ.allocated[g * slots + r] = 1;
          ++used;
        }
      }
      if (used > 0) {
        const int cap = MpsClientCap(spec.gpus[g]);
        occ.clients[g] =
            Uniform(rng, 0, 3) == 0 ? std::min(used, cap) : Uniform(rng, 1, std::min(used, cap));
      }
    }

    const auto healthy = ShapeCapacity(spec, occ, usable);
    ASSERT_EQ(healthy.size(), occ.allocated.size());
    std::vector<std::string> available;
    std::vector<int> shown_free(gpus, 0);
    for (size_t g = 0; g < gpus; ++g) {
      for (size_t r = 0; r < slots; ++r) {
        const size_t i = g * slots + r;
        if (occ.allocated[i] != 0) {
          ASSERT_EQ(healthy[i], 1) << "allocated slot " << i;
        }
        if (healthy[i] != 0 && occ.allocated[i] == 0 && usable[g] != 0) {
          available.push_back(FormatShareId(spec.gpus[g].uuid, static_cast<int>(r)));
          ++shown_free[g];
        }
      }
    }
    // Free GPUs show whole; of the part-used ones only the open one with the most free shares
    // (lowest index on ties) shows its free shares.
    std::vector<int> free(gpus, 0);
    size_t hole = gpus;
    for (size_t g = 0; g < gpus; ++g) {
      free[g] = static_cast<int>(std::count(
          occ.allocated.begin() + static_cast<std::ptrdiff_t>(g * slots),
          occ.allocated.begin() + static_cast<std::ptrdiff_t>((g + 1) * slots), char{0}));
      const bool open = usable[g] != 0 && occ.clients[g] < MpsClientCap(spec.gpus[g]);
      if (!open || free[g] == 0 || free[g] == n) continue;
      if (hole == gpus || free[g] > free[hole] ||
          (free[g] == free[hole] && spec.gpus[g].index < spec.gpus[hole].index)) {
        hole = g;
      }
    }
    for (size_t g = 0; g < gpus; ++g) {
      const bool open = usable[g] != 0 && occ.clients[g] < MpsClientCap(spec.gpus[g]);
      const bool shows = open && (free[g] == n || g == hole);
      EXPECT_EQ(shown_free[g], shows ? free[g] : 0) << "GPU position " << g;
    }
    std::shuffle(available.begin(), available.end(), rng);

    std::vector<int> sizes;
    for (int k = 1; k < n; ++k) sizes.push_back(k);
    for (size_t m = 1; m <= gpus; ++m) sizes.push_back(static_cast<int>(m) * n);
    for (int k : sizes) {
      if (static_cast<size_t>(k) > available.size()) {
        ++refused;
        continue;
      }
      SCOPED_TRACE(absl::StrCat("k ", k, " of ", available.size(), " advertised free, n ", n));
      auto ids = PreferredAllocation(spec, available, {}, k);
      ASSERT_TRUE(ids.ok()) << ids.status();
      auto grant = GrantContainer(spec, *ids);
      ASSERT_TRUE(grant.ok()) << grant.status();
      for (const auto& gpu : grant->gpus) {
        size_t g = 0;
        while (spec.gpus[g].uuid != gpu.uuid) ++g;
        EXPECT_LT(occ.clients[g], MpsClientCap(spec.gpus[g])) << gpu.uuid;
        EXPECT_NE(usable[g], 0) << gpu.uuid;
      }
      ++admitted;
    }
  }
  // The sample covers both sides of the count.
  EXPECT_GT(admitted, 1000);
  EXPECT_GT(refused, 1000);
}

}  // namespace
}  // namespace nvdp::sharing
