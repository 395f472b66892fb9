// GrantContainer (Allocate) in every mode, called directly with the IDs a
// kubelet could send, including IDs that do not follow PreferredAllocation.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sharing/test_node.h"

namespace nvdp::sharing {
namespace {

using testing::A100Uuid;
using ::testing::ElementsAre;
using testing::Indices;
using testing::Share;
using testing::Shares;

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// --- per-container MPS -------------------------------------------------------

TEST(GrantPerContainerMps, SharesBelowOneGpu) {
  auto grant = GrantContainer(testing::MpsSpec(), Shares(3, 10, 40));
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_THAT(Indices(*grant), ElementsAre(3u));
  ASSERT_TRUE(grant->mps_limits);
  EXPECT_EQ(grant->mps_limits->active_thread_percentage, 30);
  EXPECT_EQ(grant->mps_limits->pinned_mem_limit, "0=12288M");
}

TEST(GrantPerContainerMps, SharesNeedNotBeContiguousOrSorted) {
  auto grant = GrantContainer(testing::MpsSpec(), {Share(2, 99), Share(2, 7), Share(2, 50)});
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_THAT(Indices(*grant), ElementsAre(2u));
  EXPECT_EQ(grant->mps_limits->active_thread_percentage, 3);
  EXPECT_EQ(grant->mps_limits->pinned_mem_limit, "0=1228M");  // 1228.8
}

// Kubelet hands an app container IDs out of its init containers' set at random (init 200 / app
// 80 can give 43 + 37 on two GPUs); Allocate grants them per GPU.
TEST(GrantPerContainerMps, ReusedSetSpanningGpusIsGrantedPerGpu) {
  const auto ids = Concat(Shares(4, 0, 37), Shares(2, 10, 53));
  EXPECT_FALSE(GrantContainer(testing::MpsSpec(), ids).ok()) << "not a reuse: the rules hold";
  auto grant = GrantContainer(testing::MpsSpec(), ids, {.reuses_held_ids = true});
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_THAT(Indices(*grant), ElementsAre(2u, 4u));
  ASSERT_TRUE(grant->mps_limits);
  EXPECT_EQ(grant->mps_limits->active_thread_percentage, 43);
  EXPECT_EQ(grant->mps_limits->pinned_mem_limit, "0=17612M,1=15155M");  // 43% and 37% of 40 GiB
}

TEST(GrantPerContainerMps, ReusedUnevenSetAboveOneGpu) {
  // init 200 / app 150.
  const auto ids = Concat(Shares(0, 0, 100), Shares(1, 0, 50));
  auto grant = GrantContainer(testing::MpsSpec(), ids, {.reuses_held_ids = true});
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_THAT(Indices(*grant), ElementsAre(0u, 1u));
  EXPECT_EQ(grant->mps_limits->active_thread_percentage, 100);
  EXPECT_EQ(grant->mps_limits->pinned_mem_limit, "0=40960M,1=20480M");
}

TEST(GrantPerContainerMps, ReusedSetOfValidShapeGetsTheUsualLimits) {
  auto one_gpu = GrantContainer(testing::MpsSpec(), Shares(3, 10, 50), {.reuses_held_ids = true});
  ASSERT_TRUE(one_gpu.ok());
  EXPECT_EQ(one_gpu->mps_limits->active_thread_percentage, 40);
  EXPECT_EQ(one_gpu->mps_limits->pinned_mem_limit, "0=16384M");
  auto whole = GrantContainer(testing::MpsSpec(), Concat(Shares(5, 0, 100), Shares(1, 0, 100)),
                              {.reuses_held_ids = true});
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->mps_limits->pinned_mem_limit, "0=40960M,1=40960M");
}

TEST(GrantPerContainerMps, ReuseDoesNotExcuseDuplicatesOrUnknownIds) {
  EXPECT_FALSE(
      GrantContainer(testing::MpsSpec(), {Share(0, 1), Share(0, 1)}, {.reuses_held_ids = true})
          .ok());
  EXPECT_FALSE(GrantContainer(testing::MpsSpec(), {"GPU-x::1"}, {.reuses_held_ids = true}).ok());
}

TEST(GrantPerContainerMps, WholeGpu) {
  auto grant = GrantContainer(testing::MpsSpec(), Shares(6, 0, 100));
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_THAT(Indices(*grant), ElementsAre(6u));
  EXPECT_EQ(grant->mps_limits->active_thread_percentage, 100);
  EXPECT_EQ(grant->mps_limits->pinned_mem_limit, "0=40960M");
}

TEST(GrantPerContainerMps, WholeGpusInIndexOrderWhateverTheRequestOrder) {
  auto ids = Concat(Concat(Shares(5, 0, 100), Shares(1, 0, 100)), Shares(3, 0, 100));
  auto grant = GrantContainer(testing::MpsSpec(), ids);
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_THAT(Indices(*grant), ElementsAre(1u, 3u, 5u));
  EXPECT_EQ(grant->mps_limits->active_thread_percentage, 100);
  EXPECT_EQ(grant->mps_limits->pinned_mem_limit, "0=40960M,1=40960M,2=40960M");
}

TEST(GrantPerContainerMps, MemoryOrdinalsFollowEachGpusOwnSize) {
  ResourceSpec spec = testing::MpsSpec(10, 2);
  spec.gpus[1].memory_bytes = 85899345920ULL;  // 80 GiB
  auto grant = GrantContainer(spec, Concat(Shares(1, 0, 10), Shares(0, 0, 10)));
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->mps_limits->pinned_mem_limit, "0=40960M,1=81920M");
  auto one = GrantContainer(spec, Shares(1, 0, 3));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->mps_limits->pinned_mem_limit, "0=24576M");
}

TEST(GrantPerContainerMps, MemoryLimitNoneKeepsThreads) {
  ResourceSpec spec = testing::MpsSpec();
  spec.memory_limit = config::MemoryLimit::kNone;
  auto small = GrantContainer(spec, Shares(0, 0, 25));
  ASSERT_TRUE(small.ok());
  ASSERT_TRUE(small->mps_limits);
  EXPECT_EQ(small->mps_limits->active_thread_percentage, 25);
  EXPECT_FALSE(small->mps_limits->pinned_mem_limit);
  auto whole = GrantContainer(spec, Concat(Shares(0, 0, 100), Shares(1, 0, 100)));
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->mps_limits->active_thread_percentage, 100);
  EXPECT_FALSE(whole->mps_limits->pinned_mem_limit);
}

TEST(GrantPerContainerMps, LargeGpusAndManySharesDoNotOverflow) {
  ResourceSpec spec = testing::MpsSpec(1000, 1);
  spec.gpus[0].memory_bytes = 18446744073709551615ULL;  // 2^64 - 1
  auto grant = GrantContainer(spec, Shares(0, 0, 999));
  ASSERT_TRUE(grant.ok());
  // floor((2^64-1) * 999 / 1000 / 2^20) = 17574593858371
  EXPECT_EQ(grant->mps_limits->pinned_mem_limit, "0=17574593858371M");
  EXPECT_EQ(grant->mps_limits->active_thread_percentage, 99);
}

TEST(GrantPerContainerMps, RefusesSubGpuRequestSpreadOverGpus) {
  auto grant = GrantContainer(testing::MpsSpec(), Concat(Shares(0, 0, 20), Shares(4, 0, 10)));
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(grant.status().message(),
            "nvidia.com/gpu: request for 30 shares: all shares of a request "
            "below one GPU must come from one GPU; got shares of " +
                A100Uuid(0) + " and " + A100Uuid(4));
}

TEST(GrantPerContainerMps, RefusesOneGpuWorthSpreadOverGpus) {
  auto grant = GrantContainer(testing::MpsSpec(), Concat(Shares(0, 0, 50), Shares(1, 50, 100)));
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().message(),
            "nvidia.com/gpu: request for 100 shares must take 1 whole GPU(s) "
            "(all 100 shares of each); got 50 of " +
                A100Uuid(0) + " and 50 of " + A100Uuid(1));
}

TEST(GrantPerContainerMps, RefusesMultipleThatDoesNotCoverWholeGpus) {
  auto ids = Concat(Concat(Shares(0, 0, 100), Shares(1, 0, 50)), Shares(2, 0, 50));
  auto grant = GrantContainer(testing::MpsSpec(), ids);
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().message(),
            "nvidia.com/gpu: request for 200 shares must take 2 whole GPU(s) "
            "(all 100 shares of each); got 100 of " +
                A100Uuid(0) + ", 50 of " + A100Uuid(1) + " and 50 of " + A100Uuid(2));
}

TEST(GrantPerContainerMps, RefusesUnevenRequests) {
  auto grant = GrantContainer(testing::MpsSpec(), Concat(Shares(0, 0, 100), Shares(1, 0, 50)));
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(grant.status().message(),
            "nvidia.com/gpu: request for 150 shares cannot be satisfied: "
            "shares are 100 per GPU, so a request must be below 100 (one GPU) "
            "or a multiple of 100 (whole GPUs); ask for 100 or 200");
  auto big = GrantContainer(testing::MpsSpec(),
                            Concat(Concat(Shares(0, 0, 100), Shares(1, 0, 100)), Shares(2, 0, 1)));
  ASSERT_FALSE(big.ok());
  EXPECT_THAT(std::string(big.status().message()), ::testing::EndsWith("ask for 200 or 300"));
}

TEST(GrantPerContainerMps, RefusesDuplicates) {
  auto grant =
      GrantContainer(testing::MpsSpec(), {Share(0, 1), Share(0, 2), Share(0, 1), Share(0, 1)});
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(grant.status().message(),
            "nvidia.com/gpu: duplicate device IDs: \"" + Share(0, 1) + "\"");
}

TEST(GrantPerContainerMps, RefusesUnknownIdsNamingEveryOne) {
  auto grant = GrantContainer(testing::MpsSpec(),
                              {Share(0, 1), Share(0, 100), A100Uuid(2), "GPU-nope::3", "junk::x"});
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(grant.status().message(), "nvidia.com/gpu: unknown device IDs: \"" + Share(0, 100) +
                                          "\", \"" + A100Uuid(2) +
                                          "\", \"GPU-nope::3\", \"junk::x\"");
}

TEST(GrantPerContainerMps, RefusesEmptyRequest) {
  auto grant = GrantContainer(testing::MpsSpec(), {});
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().message(), "nvidia.com/gpu: empty allocation request");
}

TEST(GrantPerContainerMps, ExplicitFailRequestsGreaterThanOneIsHonoured) {
  ResourceSpec spec = testing::MpsSpec(10);
  spec.fail_requests_greater_than_one = true;
  auto one = GrantContainer(spec, {Share(0, 3)});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->mps_limits->active_thread_percentage, 10);
  auto two = GrantContainer(spec, {Share(0, 3), Share(0, 4)});
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.status().message(),
            "nvidia.com/gpu: maximum request size for shared resources is 1; "
            "found 2");
}

// --- uniform MPS and time-slicing (upstream) --------------------------------

ResourceSpec Uniform(int replicas = 10) {
  ResourceSpec spec = testing::Spec(Mode::kMps, replicas);
  spec.per_container_limits = false;
  spec.fail_requests_greater_than_one = true;  // the resolved MPS default
  return spec;
}

TEST(GrantUniformMps, OneShareGetsItsGpuAndNoLimits) {
  auto grant = GrantContainer(Uniform(), {Share(5, 7)});
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_THAT(Indices(*grant), ElementsAre(5u));
  EXPECT_FALSE(grant->mps_limits);
}

TEST(GrantUniformMps, MoreThanOneIsRefusedWithUpstreamText) {
  auto grant = GrantContainer(Uniform(), {Share(0, 0), Share(0, 1), Share(1, 0)});
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(grant.status().message(),
            "nvidia.com/gpu: maximum request size for shared resources is 1; "
            "found 3");
}

TEST(GrantUniformMps, WithoutFailRequestsStripsAndDeduplicates) {
  ResourceSpec spec = Uniform();
  spec.fail_requests_greater_than_one = false;
  auto grant =
      GrantContainer(spec, {Share(3, 0), Share(1, 4), Share(3, 1), Share(1, 4), Share(0, 9)});
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_THAT(Indices(*grant), ElementsAre(3u, 1u, 0u));
  EXPECT_FALSE(grant->mps_limits);
}

TEST(GrantTimeSlicing, DefaultAllowsSeveralReplicasAndDeduplicates) {
  ResourceSpec spec = testing::Spec(Mode::kTimeSlicing, 4);
  auto grant = GrantContainer(spec, {Share(6, 1), Share(2, 0), Share(6, 3), Share(6, 1)});
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_THAT(Indices(*grant), ElementsAre(6u, 2u));
  EXPECT_FALSE(grant->mps_limits);
}

TEST(GrantTimeSlicing, FailRequestsGreaterThanOne) {
  ResourceSpec spec = testing::Spec(Mode::kTimeSlicing, 4);
  spec.fail_requests_greater_than_one = true;
  EXPECT_TRUE(GrantContainer(spec, {Share(0, 0)}).ok());
  auto grant = GrantContainer(spec, {Share(0, 0), Share(0, 1)});
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().message(),
            "nvidia.com/gpu: maximum request size for shared resources is 1; "
            "found 2");
}

TEST(GrantTimeSlicing, RefusesUnknownIds) {
  ResourceSpec spec = testing::Spec(Mode::kTimeSlicing, 4);
  auto grant = GrantContainer(spec, {Share(0, 4), A100Uuid(1)});
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().message(),
            "nvidia.com/gpu: unknown device IDs: \"" + Share(0, 4) + "\", \"" + A100Uuid(1) + "\"");
}

// --- exclusive ---------------------------------------------------------------

TEST(GrantExclusive, GpusInRequestOrder) {
  ResourceSpec spec = testing::Spec(Mode::kExclusive, 1);
  auto grant = GrantContainer(spec, {A100Uuid(7), A100Uuid(0), A100Uuid(3)});
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_THAT(Indices(*grant), ElementsAre(7u, 0u, 3u));
  EXPECT_FALSE(grant->mps_limits);
}

TEST(GrantExclusive, UnknownIdsNamedWithTheResource) {
  ResourceSpec spec = testing::Spec(Mode::kExclusive, 1);
  spec.name = "nvidia.com/a100";
  auto grant = GrantContainer(spec, {A100Uuid(1), "GPU-unknown", Share(2, 0), A100Uuid(9)});
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(grant.status().message(), "nvidia.com/a100: unknown device IDs: \"GPU-unknown\", \"" +
                                          Share(2, 0) + "\", \"" + A100Uuid(9) + "\"");
}

TEST(GrantExclusive, EmptyAndDuplicateRequests) {
  ResourceSpec spec = testing::Spec(Mode::kExclusive, 1);
  auto empty = GrantContainer(spec, {});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().message(), "nvidia.com/gpu: empty allocation request");
  auto dup = GrantContainer(spec, {A100Uuid(1), A100Uuid(1)});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().message(),
            "nvidia.com/gpu: duplicate device IDs: \"" + A100Uuid(1) + "\"");
}

// A GPU whose memory size NVML could not report (0) gets no memory limit, never "0=0M".
TEST(GrantPerContainerMps, UnknownMemorySizeLeavesTheMemoryLimitOut) {
  ResourceSpec spec = testing::MpsSpec();
  spec.gpus[1].memory_bytes = 0;
  auto below = GrantContainer(spec, Shares(1, 0, 30));
  ASSERT_TRUE(below.ok()) << below.status();
  EXPECT_EQ(below->mps_limits->active_thread_percentage, 30);
  EXPECT_EQ(below->mps_limits->pinned_mem_limit, std::nullopt);
  auto whole = GrantContainer(spec, Concat(Shares(0, 0, 100), Shares(1, 0, 100)));
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->mps_limits->pinned_mem_limit, "0=40960M");
}

// A hostile request naming 400 long unknown IDs still gets a short message: gRPC carries it in a
// header of limited size, and it lands in the log.
TEST(GrantErrors, UnknownIdListIsBounded) {
  std::vector<std::string> ids;
  for (int i = 0; i < 400; ++i) ids.push_back("GPU-" + std::string(200, 'x') + std::to_string(i));
  auto grant = GrantContainer(testing::MpsSpec(), ids);
  ASSERT_FALSE(grant.ok());
  const std::string clipped = "\"GPU-" + std::string(73, 'x') + "...\"";
  EXPECT_EQ(grant.status().message(), "nvidia.com/gpu: unknown device IDs: " + clipped + ", " +
                                          clipped + ", " + clipped + ", " + clipped + ", " +
                                          clipped + " and 395 more");
}

TEST(GrantErrors, ControlCharactersInIdsAreNotEchoed) {
  auto grant = GrantContainer(testing::MpsSpec(), {std::string("GPU-\n\x1b[2J")});
  ASSERT_FALSE(grant.ok());
  EXPECT_EQ(grant.status().message(), "nvidia.com/gpu: unknown device IDs: \"GPU-??[2J\"");
}

}  // namespace
}  // namespace nvdp::sharing
