// PreferredAllocation called directly: input validation, must_include, the
// per-container MPS picks, upstream's distributed / packed greedy pick and the
// NUMA-aware exclusive pick.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sharing/test_node.h"

namespace nvdp::sharing {
namespace {

using testing::A100Uuid;
using ::testing::ElementsAre;
using testing::Share;
using testing::Shares;

std::vector<std::string> All(const ResourceSpec& spec) {
  std::vector<std::string> out;
  for (const auto& d : AdvertisedDevices(spec)) out.push_back(d.id);
  return out;
}

std::vector<std::string> Without(std::vector<std::string> ids,
                                 const std::vector<std::string>& drop) {
  std::erase_if(ids, [&](const std::string& id) {
    return std::find(drop.begin(), drop.end(), id) != drop.end();
  });
  return ids;
}

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// --- validation
// ----------------------------------------------------------------

TEST(PreferredValidation, SizeMustBePositive) {
  const ResourceSpec spec = testing::MpsSpec();
  for (int size : {0, -3}) {
    auto got = PreferredAllocation(spec, All(spec), {}, size);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(got.status().message(),
              "nvidia.com/gpu: allocation size must be positive; got " + std::to_string(size));
  }
}

TEST(PreferredValidation, UnknownIdsAreNamed) {
  const ResourceSpec spec = testing::MpsSpec(10);
  auto got = PreferredAllocation(spec, {Share(0, 0), Share(0, 10), "x"}, {"GPU-gone::1"}, 1);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(),
            "nvidia.com/gpu: unknown device IDs: \"" + Share(0, 10) + "\", \"x\", \"GPU-gone::1\"");
}

TEST(PreferredValidation, MustIncludeMustBeAvailable) {
  const ResourceSpec spec = testing::MpsSpec(10);
  auto got = PreferredAllocation(spec, Shares(0, 0, 5), {Share(0, 1), Share(0, 7)}, 3);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message(),
            "nvidia.com/gpu: required device IDs are not among the available "
            "ones: \"" +
                Share(0, 7) + "\"");
}

TEST(PreferredValidation, MustIncludeNoLargerThanSize) {
  const ResourceSpec spec = testing::MpsSpec(10);
  auto got = PreferredAllocation(spec, Shares(0, 0, 10), Shares(0, 0, 3), 2);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(),
            "nvidia.com/gpu: 3 required device IDs exceed the allocation size "
            "2");
}

TEST(PreferredValidation, SizeNoLargerThanAvailable) {
  const ResourceSpec spec = testing::MpsSpec(10);
  auto got = PreferredAllocation(spec, Shares(0, 0, 4), {}, 5);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(got.status().message(), "nvidia.com/gpu: cannot pick 5 of 4 available devices");
}

TEST(PreferredValidation, DuplicatesInTheInputAreHarmless) {
  const ResourceSpec spec = testing::MpsSpec(10);
  auto got = PreferredAllocation(spec, Concat(Shares(1, 0, 3), Shares(1, 0, 3)),
                                 {Share(1, 2), Share(1, 2)}, 3);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAre(Share(1, 2), Share(1, 0), Share(1, 1)));
}

// --- per-container MPS -------------------------------------------------------

TEST(PreferredPerContainerMps, BestFitWithTiesToLowestIndex) {
  const ResourceSpec spec = testing::MpsSpec(10, 4);
  // free: GPU 0: 10, GPU 1: 4, GPU 2: 6, GPU 3: 6
  auto available =
      Concat(Concat(Shares(0, 0, 10), Shares(1, 6, 10)), Concat(Shares(2, 4, 10), Shares(3, 0, 6)));
  auto three = PreferredAllocation(spec, available, {}, 3);
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(*three, Shares(1, 6, 9));
  auto five = PreferredAllocation(spec, available, {}, 5);
  ASSERT_TRUE(five.ok());
  EXPECT_EQ(*five, Shares(2, 4, 9));
  auto seven = PreferredAllocation(spec, available, {}, 7);
  ASSERT_TRUE(seven.ok());
  EXPECT_EQ(*seven, Shares(0, 0, 7));
}

TEST(PreferredPerContainerMps, PassesOverGpusAtTheMpsClientCap) {
  const ResourceSpec spec = testing::MpsSpec(10, 4);
  // free: GPU 0: 10, GPU 1: 4, GPU 2: 6, GPU 3: 6; GPU 1 and 2 serve as many clients as MPS takes.
  auto available =
      Concat(Concat(Shares(0, 0, 10), Shares(1, 6, 10)), Concat(Shares(2, 4, 10), Shares(3, 0, 6)));
  PreferenceHints hints{.gpu_at_client_cap = {0, 1, 1, 0}};
  auto three = PreferredAllocation(spec, available, {}, 3, hints);
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(*three, Shares(3, 0, 3));

  hints.gpu_at_client_cap = {1, 1, 1, 1};
  auto none = PreferredAllocation(spec, available, {}, 3, hints);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(none.status().message()),
              ::testing::HasSubstr("already serves 48 clients, the most it accepts"));
  // Whole GPUs take no share of anyone's server.
  hints.gpu_at_client_cap = {0, 1, 1, 1};
  auto whole = PreferredAllocation(spec, available, {}, 10, hints);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(*whole, Shares(0, 0, 10));
}

TEST(PreferredPerContainerMps, MustIncludePinsTheGpu) {
  const ResourceSpec spec = testing::MpsSpec(10, 4);
  auto available = Concat(Shares(0, 0, 10), Shares(1, 6, 10));
  // Best fit alone would pick GPU 1; the required share is on GPU 0.
  auto got = PreferredAllocation(spec, available, {Share(0, 5)}, 3);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, ElementsAre(Share(0, 5), Share(0, 0), Share(0, 1)));
}

TEST(PreferredPerContainerMps, MustIncludeOnAGpuTooFull) {
  const ResourceSpec spec = testing::MpsSpec(10, 4);
  auto available = Concat(Shares(0, 8, 10), Shares(1, 0, 10));
  auto got = PreferredAllocation(spec, available, {Share(0, 9)}, 4);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(got.status().message(),
            "nvidia.com/gpu: no single GPU has 4 free shares including the "
            "required ones; " +
                A100Uuid(0) + ", which holds them, has 2 free");
}

TEST(PreferredPerContainerMps, MustIncludeSpanningGpusBelowOneGpu) {
  const ResourceSpec spec = testing::MpsSpec(10, 4);
  auto got = PreferredAllocation(spec, All(spec), {Share(0, 0), Share(2, 0)}, 5);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(),
            "nvidia.com/gpu: a request for 5 shares must come from one GPU, "
            "but the required shares are on " +
                A100Uuid(0) + " and " + A100Uuid(2));
}

TEST(PreferredPerContainerMps, WholeGpusPreferOneNumaNode) {
  const ResourceSpec spec = testing::MpsSpec(10);
  // GPUs 0 and 1 partly used: whole free are 2, 3 (NUMA 0) and 4-7 (NUMA 1).
  auto available = Without(All(spec), {Share(0, 0), Share(1, 0)});
  auto two = PreferredAllocation(spec, available, {}, 20);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(*two, Concat(Shares(2, 0, 10), Shares(3, 0, 10)));
  auto three = PreferredAllocation(spec, available, {}, 30);
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(*three, Concat(Concat(Shares(4, 0, 10), Shares(5, 0, 10)), Shares(6, 0, 10)));
  auto five = PreferredAllocation(spec, available, {}, 50);
  ASSERT_TRUE(five.ok());  // no node has 5: the larger node first
  std::vector<std::string> want;
  for (int g : {4, 5, 6, 7, 2}) want = Concat(want, Shares(g, 0, 10));
  EXPECT_EQ(*five, want);
}

TEST(PreferredPerContainerMps, WholeGpusFollowMustInclude) {
  const ResourceSpec spec = testing::MpsSpec(10);
  auto got = PreferredAllocation(spec, All(spec), {Share(6, 3)}, 20);
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<std::string> want = {Share(6, 3)};
  want = Concat(want, Without(Shares(6, 0, 10), {Share(6, 3)}));
  want = Concat(want, Shares(4, 0, 10));  // same NUMA node as GPU 6
  EXPECT_EQ(*got, want);
}

TEST(PreferredPerContainerMps, WholeGpuMustIncludeNotWhollyFree) {
  const ResourceSpec spec = testing::MpsSpec(10);
  auto available = Without(All(spec), {Share(6, 0)});
  auto got = PreferredAllocation(spec, available, {Share(6, 3)}, 10);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(),
            "nvidia.com/gpu: a request for 10 shares takes 1 whole GPU(s), "
            "but required shares are on " +
                A100Uuid(6) + ", which has only 9 of its 10 shares free");
}

TEST(PreferredPerContainerMps, UnevenRequestRefused) {
  const ResourceSpec spec = testing::MpsSpec(100);
  auto got = PreferredAllocation(spec, All(spec), {}, 150);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message(),
            "nvidia.com/gpu: request for 150 shares cannot be satisfied: "
            "shares are 100 per GPU, so a request must be below 100 (one GPU) "
            "or a multiple of 100 (whole GPUs); ask for 100 or 200");
}

TEST(PreferredPerContainerMps, FailRequestsGreaterThanOne) {
  ResourceSpec spec = testing::MpsSpec(10);
  spec.fail_requests_greater_than_one = true;
  auto got = PreferredAllocation(spec, All(spec), {}, 2);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(),
            "nvidia.com/gpu: maximum request size for shared resources is 1; "
            "found 2");
}

// --- time-slicing and uniform MPS: upstream's greedy pick --------------------

ResourceSpec Replicated(Mode mode, config::AllocationPolicy policy) {
  ResourceSpec spec = testing::Spec(mode, 4, 4);
  spec.per_container_limits = false;
  spec.policy = policy;
  return spec;
}

TEST(PreferredGreedy, DistributedSpreadsOverTheLeastUsedGpus) {
  for (Mode mode : {Mode::kTimeSlicing, Mode::kMps}) {
    const ResourceSpec spec = Replicated(mode, config::AllocationPolicy::kDistributed);
    auto fresh = PreferredAllocation(spec, All(spec), {}, 4);
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    EXPECT_THAT(*fresh, ElementsAre(Share(0, 0), Share(1, 0), Share(2, 0), Share(3, 0)));
    // GPU 0 has 2 in use, GPU 1 has 1, GPUs 2 and 3 none.
    auto available = Without(All(spec), {Share(0, 0), Share(0, 1), Share(1, 2)});
    auto got = PreferredAllocation(spec, available, {}, 5);
    ASSERT_TRUE(got.ok());
    EXPECT_THAT(*got, ElementsAre(Share(2, 0), Share(3, 0), Share(1, 0), Share(2, 1), Share(3, 1)));
  }
}

TEST(PreferredGreedy, PackedFillsTheMostUsedGpuFirst) {
  for (Mode mode : {Mode::kTimeSlicing, Mode::kMps}) {
    const ResourceSpec spec = Replicated(mode, config::AllocationPolicy::kPacked);
    auto fresh = PreferredAllocation(spec, All(spec), {}, 6);
    ASSERT_TRUE(fresh.ok());
    EXPECT_EQ(*fresh, Concat(Shares(0, 0, 4), Shares(1, 0, 2)));
    auto available = Without(All(spec), {Share(2, 0), Share(2, 1), Share(1, 3)});
    auto got = PreferredAllocation(spec, available, {}, 3);
    ASSERT_TRUE(got.ok());
    EXPECT_THAT(*got, ElementsAre(Share(2, 2), Share(2, 3), Share(1, 0)));
  }
}

TEST(PreferredGreedy, MustIncludeFirstAndCountedAsUsed) {
  const ResourceSpec spec = Replicated(Mode::kTimeSlicing, config::AllocationPolicy::kDistributed);
  auto got = PreferredAllocation(spec, All(spec), {Share(1, 3)}, 3);
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(*got, ElementsAre(Share(1, 3), Share(0, 0), Share(2, 0)));
}

TEST(PreferredGreedy, UniformMpsDefaultRefusesMoreThanOne) {
  ResourceSpec spec = Replicated(Mode::kMps, config::AllocationPolicy::kDistributed);
  spec.fail_requests_greater_than_one = true;
  auto one = PreferredAllocation(spec, Without(All(spec), {Share(0, 0)}), {}, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_THAT(*one, ElementsAre(Share(1, 0)));
  auto two = PreferredAllocation(spec, All(spec), {}, 2);
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.status().message(),
            "nvidia.com/gpu: maximum request size for shared resources is 1; "
            "found 2");
}

// --- exclusive
// -----------------------------------------------------------------

TEST(PreferredExclusive, StaysOnOneNumaNode) {
  const ResourceSpec spec = testing::Spec(Mode::kExclusive, 1);
  auto available = Without(All(spec), {A100Uuid(0)});
  // NUMA 0 has 3 free, NUMA 1 has 4: 4 GPUs fit only on NUMA 1.
  auto four = PreferredAllocation(spec, available, {}, 4);
  ASSERT_TRUE(four.ok());
  EXPECT_THAT(*four, ElementsAre(A100Uuid(4), A100Uuid(5), A100Uuid(6), A100Uuid(7)));
  // 2 fit on both: the tighter node keeps the other whole.
  auto two = PreferredAllocation(spec, available, {}, 2);
  ASSERT_TRUE(two.ok());
  EXPECT_THAT(*two, ElementsAre(A100Uuid(1), A100Uuid(2)));
}

TEST(PreferredExclusive, MustIncludeFirstThenItsNumaNode) {
  const ResourceSpec spec = testing::Spec(Mode::kExclusive, 1);
  auto got = PreferredAllocation(spec, All(spec), {A100Uuid(5)}, 3);
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(*got, ElementsAre(A100Uuid(5), A100Uuid(4), A100Uuid(6)));
  auto spill = PreferredAllocation(spec, All(spec), {A100Uuid(5)}, 6);
  ASSERT_TRUE(spill.ok());
  EXPECT_THAT(*spill, ElementsAre(A100Uuid(5), A100Uuid(4), A100Uuid(6), A100Uuid(7), A100Uuid(0),
                                  A100Uuid(1)));
}

TEST(PreferredExclusive, UnknownNumaFallsBackToIndexOrder) {
  ResourceSpec spec = testing::Spec(Mode::kExclusive, 1, 4);
  for (auto& gpu : spec.gpus) gpu.numa_node.reset();
  auto got = PreferredAllocation(spec, {A100Uuid(3), A100Uuid(1), A100Uuid(2)}, {}, 2);
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(*got, ElementsAre(A100Uuid(1), A100Uuid(2)));
}

TEST(PreferredExclusive, ShareIdsAreUnknown) {
  const ResourceSpec spec = testing::Spec(Mode::kExclusive, 1);
  auto got = PreferredAllocation(spec, {A100Uuid(0), Share(1, 0)}, {}, 1);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(), "nvidia.com/gpu: unknown device IDs: \"" + Share(1, 0) + "\"");
}

}  // namespace
}  // namespace nvdp::sharing
