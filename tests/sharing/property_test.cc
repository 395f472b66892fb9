// Property tests over random request / release sequences (seeded, so every
// run is the same): the fake kubelet admits containers through
// PreferredAllocation and GrantContainer, and after every step
// - no GPU has more shares allocated than it advertises,
// - a request below one GPU never spans GPUs, a larger one takes whole GPUs,
// - every ID handed out is valid, advertised and was free,
// - the limits are the ones of the allocation-rules table,
// - a refusal happens only when the rules say nothing could work.
// GrantContainer is also fed random ID sets that ignore the preference, and the
// greedy pick is compared with an upstream-style reference.
#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "sharing/test_node.h"

namespace nvdp::sharing {
namespace {

using testing::FakeKubelet;

int Uniform(std::mt19937& rng, int lo, int hi) {  // inclusive
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

// A per-container MPS resource of random shape: 1-8 GPUs of 16, 40 or 80 GiB.
ResourceSpec RandomMpsSpec(std::mt19937& rng) {
  static const int kReplicas[] = {2, 3, 4, 5, 7, 10, 16, 25, 100};
  const int n = kReplicas[Uniform(rng, 0, 8)];
  ResourceSpec spec = testing::MpsSpec(n, Uniform(rng, 1, 8));
  static const uint64_t kGiB[] = {16, 40, 80};
  for (auto& gpu : spec.gpus) gpu.memory_bytes = kGiB[Uniform(rng, 0, 2)] << 30;
  if (Uniform(rng, 0, 9) == 0) spec.memory_limit = config::MemoryLimit::kNone;
  return spec;
}

// Position of each GPU UUID in spec.gpus.
std::map<std::string, int> GpuPositions(const ResourceSpec& spec) {
  std::map<std::string, int> out;
  for (size_t i = 0; i < spec.gpus.size(); ++i) out[spec.gpus[i].uuid] = i;
  return out;
}

// Free shares per GPU given the allocated set.
std::vector<int> FreePerGpu(const ResourceSpec& spec,
                            const std::unordered_set<std::string>& allocated) {
  std::vector<int> free(spec.gpus.size(), spec.replicas);
  auto pos = GpuPositions(spec);
  for (const auto& id : allocated) {
    auto parsed = ParseShareId(id);
    if (parsed.ok()) --free[pos.at(parsed->gpu_uuid)];
  }
  return free;
}

// What the rules say a grant of `ids` (distinct, valid) must be; "" if refused.
// Memory sizes are whole MiB here, so floor(bytes*k/n/2^20) = MiB*k/n.
struct Expected {
  bool ok = false;
  std::vector<unsigned> gpus;
  int threads = 0;
  std::optional<std::string> memory;
};

Expected Rules(const ResourceSpec& spec, const std::vector<std::string>& ids) {
  Expected want;
  const int64_t k = static_cast<int64_t>(ids.size());
  const int64_t n = spec.replicas;
  auto pos = GpuPositions(spec);
  std::map<int, int64_t> count;  // GPU position -> shares
  std::vector<int> order;
  for (const auto& id : ids) {
    const int g = pos.at(ParseShareId(id)->gpu_uuid);
    if (count[g]++ == 0) order.push_back(g);
  }
  const bool proportional = spec.memory_limit == config::MemoryLimit::kProportional;
  if (k < n) {
    if (order.size() != 1) return want;
    const auto& gpu = spec.gpus[order[0]];
    want.ok = true;
    want.gpus = {gpu.index};
    want.threads = static_cast<int>(std::max<int64_t>(1, 100 * k / n));
    if (proportional) {
      want.memory = absl::StrCat("0=", static_cast<int64_t>(gpu.memory_bytes >> 20) * k / n, "M");
    }
    return want;
  }
  if (k % n != 0) return want;
  for (auto [g, c] : count) {
    if (c != n) return want;
  }
  std::vector<std::string> memory;
  for (auto [g, c] : count) {  // std::map: by position = by index here
    want.gpus.push_back(spec.gpus[g].index);
    memory.push_back(absl::StrCat(memory.size(), "=", spec.gpus[g].memory_bytes >> 20, "M"));
  }
  want.ok = true;
  want.threads = 100;
  if (proportional) want.memory = absl::StrJoin(memory, ",");
  return want;
}

void ExpectGrantMatches(const Grant& grant, const Expected& want) {
  std::vector<unsigned> got;
  for (const auto& g : grant.gpus) got.push_back(g.index);
  EXPECT_EQ(got, want.gpus);
  ASSERT_TRUE(grant.mps_limits.has_value());
  EXPECT_EQ(grant.mps_limits->active_thread_percentage, want.threads);
  EXPECT_EQ(grant.mps_limits->pinned_mem_limit, want.memory);
}

TEST(SharingProperty, PerContainerMpsRandomSequences) {
  int admitted = 0, refused = 0;
  for (uint32_t seed = 1; seed <= 1500; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937 rng(seed);
    const ResourceSpec spec = RandomMpsSpec(rng);
    const int n = spec.replicas;
    const int gpus = static_cast<int>(spec.gpus.size());
    FakeKubelet kubelet(spec, seed);
    std::unordered_set<std::string> advertised;
    for (const auto& d : AdvertisedDevices(spec)) advertised.insert(d.id);
    std::vector<std::vector<std::string>> live;
    // The test's own ledger of free shares per GPU.
    std::vector<int> free(spec.gpus.size(), n);
    auto gpu_of = [&](const std::string& id) {
      const std::string uuid = ParseShareId(id)->gpu_uuid;
      for (size_t g = 0; g < spec.gpus.size(); ++g) {
        if (spec.gpus[g].uuid == uuid) return g;
      }
      ADD_FAILURE() << "no GPU for " << id;
      return size_t{0};
    };

    for (int step = 0; step < 24; ++step) {
      if (!live.empty() && Uniform(rng, 0, 2) == 0) {
        const int i = Uniform(rng, 0, static_cast<int>(live.size()) - 1);
        for (const auto& id : live[i]) ++free[gpu_of(id)];
        kubelet.Release(live[i]);
        live.erase(live.begin() + i);
        continue;
      }
      int k = 0;
      switch (Uniform(rng, 0, 4)) {
        case 0:
        case 1:
        case 2:
          k = Uniform(rng, 1, std::max(1, n - 1));
          break;
        case 3:
          k = n * Uniform(rng, 1, gpus);
          break;
        default:
          k = Uniform(rng, 1, n * gpus);
      }
      const std::vector<int> free_before = free;
      int total_free = 0;
      for (int f : free_before) total_free += f;
      // Sometimes a share is already picked (kubelet's must_include).
      std::vector<std::string> must;
      if (k < n && total_free > 0 && Uniform(rng, 0, 4) == 0) {
        auto available = kubelet.Available();
        must.push_back(available[Uniform(rng, 0, available.size() - 1)]);
      }
      const size_t allocated_before = kubelet.allocated().size();
      auto result = kubelet.Admit(k, must);

      if (result.ok()) {
        ++admitted;
        const auto& ids = result->ids;
        ASSERT_EQ(ids.size(), static_cast<size_t>(k));
        // k distinct IDs that were all free: the allocated set grew by k.
        ASSERT_EQ(kubelet.allocated().size(), allocated_before + ids.size());
        for (const auto& id : ids) {
          ASSERT_TRUE(advertised.contains(id)) << id;
          --free[gpu_of(id)];
        }
        for (int g = 0; g < gpus; ++g) {  // never over-commit
          ASSERT_GE(free[g], 0) << "GPU " << g << " over-committed";
        }
        for (const auto& id : must) {
          EXPECT_NE(std::find(ids.begin(), ids.end(), id), ids.end());
        }
        const Expected want = Rules(spec, ids);
        ASSERT_TRUE(want.ok) << "granted against the rules: " << k;
        ExpectGrantMatches(result->grant, want);
        if (k < n && must.empty()) {  // best fit, ties to the lowest index
          const int chosen = static_cast<int>(result->grant.gpus[0].index);
          for (int g = 0; g < gpus; ++g) {
            if (free_before[g] < k) continue;
            EXPECT_TRUE(free_before[chosen] < free_before[g] ||
                        (free_before[chosen] == free_before[g] && chosen <= g))
                << "GPU " << chosen << " picked over GPU " << g;
          }
        }
        if (k >= n) {
          for (const auto& gpu : result->grant.gpus) {
            EXPECT_EQ(free_before[gpu.index], n) << "GPU was not wholly free";
          }
        }
        live.push_back(ids);
      } else {
        ++refused;
        // Refused only when nothing could have worked.
        if (k > total_free) {
          // kubelet itself refuses
        } else if (k > n && k % n != 0) {
          EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
        } else if (k < n) {
          int room = 0;
          if (must.empty()) {
            room = *std::max_element(free_before.begin(), free_before.end());
          } else {
            auto pos = GpuPositions(spec);
            room = free_before[pos.at(ParseShareId(must[0])->gpu_uuid)];
          }
          EXPECT_LT(room, k) << result.status();
        } else {
          const int whole = static_cast<int>(std::count(free_before.begin(), free_before.end(), n));
          EXPECT_LT(whole, k / n) << result.status();
        }
      }
    }
    // The ledger agrees with what the kubelet holds.
    EXPECT_EQ(FreePerGpu(spec, kubelet.allocated()), free);
  }
  // The generator exercises both outcomes.
  EXPECT_GT(admitted, 10000);
  EXPECT_GT(refused, 2000);
}

// Allocate re-checks the rules on any ID set, whatever kubelet picked.
TEST(SharingProperty, GrantAcceptsExactlyWhatTheRulesAllow) {
  int accepted = 0;
  for (uint32_t seed = 1; seed <= 4000; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937 rng(seed);
    const ResourceSpec spec = RandomMpsSpec(rng);
    const int n = spec.replicas;
    const int gpus = static_cast<int>(spec.gpus.size());
    std::vector<std::string> ids;
    // Shares from a few GPUs, sometimes whole ones, so valid sets come up.
    std::vector<int> chosen(gpus);
    for (int g = 0; g < gpus; ++g) chosen[g] = g;
    std::shuffle(chosen.begin(), chosen.end(), rng);
    chosen.resize(Uniform(rng, 1, std::min(gpus, 3)));
    for (int g : chosen) {
      std::vector<std::string> shares = testing::Shares(g, 0, n);
      std::shuffle(shares.begin(), shares.end(), rng);
      const int take = Uniform(rng, 0, 1) ? n : Uniform(rng, 1, n);
      ids.insert(ids.end(), shares.begin(), shares.begin() + take);
    }
    std::shuffle(ids.begin(), ids.end(), rng);
    auto grant = GrantContainer(spec, ids);
    const Expected want = Rules(spec, ids);
    ASSERT_EQ(grant.ok(), want.ok) << absl::StrJoin(ids, ",") << " " << grant.status();
    if (grant.ok()) {
      ++accepted;
      ExpectGrantMatches(*grant, want);
    } else {
      EXPECT_EQ(grant.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_GT(accepted, 1000);
}

// Upstream's distributed / packed pick, written the way upstream does it:
// re-sort the candidates before every pick.
std::vector<std::string> ReferenceGreedy(const ResourceSpec& spec,
                                         const std::vector<std::string>& available,
                                         const std::vector<std::string>& must, int size) {
  auto pos = GpuPositions(spec);
  std::vector<std::pair<int, int>> candidates;  // (gpu, replica)
  std::vector<int> left(spec.gpus.size(), 0);
  for (const auto& id : available) {
    if (std::find(must.begin(), must.end(), id) != must.end()) continue;
    auto p = ParseShareId(id);
    candidates.push_back({pos.at(p->gpu_uuid), *p->replica});
    ++left[candidates.back().first];
  }
  const bool packed = spec.policy == config::AllocationPolicy::kPacked;
  std::vector<std::string> out = must;
  while (out.size() < static_cast<size_t>(size)) {
    std::sort(candidates.begin(), candidates.end(), [&](auto a, auto b) {
      const int ua = spec.replicas - left[a.first];
      const int ub = spec.replicas - left[b.first];
      if (ua != ub) return packed ? ua > ub : ua < ub;
      return a < b;
    });
    auto [g, r] = candidates.front();
    candidates.erase(candidates.begin());
    --left[g];
    out.push_back(FormatShareId(spec.gpus[g].uuid, r));
  }
  return out;
}

TEST(SharingProperty, GreedyMatchesUpstreamReference) {
  for (uint32_t seed = 1; seed <= 1500; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937 rng(seed);
    const int n = Uniform(rng, 2, 8);
    const Mode mode = Uniform(rng, 0, 1) ? Mode::kTimeSlicing : Mode::kMps;
    ResourceSpec spec = testing::Spec(mode, n, Uniform(rng, 1, 8));
    spec.per_container_limits = false;
    spec.policy = Uniform(rng, 0, 1) ? config::AllocationPolicy::kPacked
                                     : config::AllocationPolicy::kDistributed;
    FakeKubelet kubelet(spec, seed);
    std::vector<std::vector<std::string>> live;
    for (int step = 0; step < 12; ++step) {
      if (!live.empty() && Uniform(rng, 0, 3) == 0) {
        const int i = Uniform(rng, 0, static_cast<int>(live.size()) - 1);
        kubelet.Release(live[i]);
        live.erase(live.begin() + i);
        continue;
      }
      auto available = kubelet.Available();
      if (available.empty()) break;
      const int size = Uniform(rng, 1, std::min<int>(available.size(), 2 * n));
      std::vector<std::string> must;
      if (Uniform(rng, 0, 3) == 0) must.push_back(available.front());
      auto got = PreferredAllocation(spec, available, must, size);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, ReferenceGreedy(spec, available, must, size));
      auto admitted = kubelet.Admit(size, must);
      ASSERT_TRUE(admitted.ok());
      // Allocate strips the suffix and de-duplicates the GPUs.
      std::set<std::string> uuids;
      for (const auto& id : admitted->ids) {
        uuids.insert(ParseShareId(id)->gpu_uuid);
      }
      EXPECT_EQ(admitted->grant.gpus.size(), uuids.size());
      EXPECT_FALSE(admitted->grant.mps_limits.has_value());
      live.push_back(admitted->ids);
    }
  }
}

}  // namespace
}  // namespace nvdp::sharing
