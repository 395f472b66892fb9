// The ledger against kubelet's behaviour: grants recorded from Allocate, releases seen through
// `available` and PodResources List, init containers (never listed, held for the pod's life) tied
// to their pod through the IDs its app containers reuse, and the MPS client count per GPU.
#include "ledger/ledger.h"

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "sharing/test_node.h"

namespace nvdp::ledger {
namespace {

using sharing::FormatShareId;
using sharing::Mode;
using sharing::testing::A100Uuid;
using sharing::testing::Spec;

constexpr int kShares = 100;

// Shares [from, from + count) of GPU `gpu`.
std::vector<std::string> Shares(int gpu, int from, int count) {
  std::vector<std::string> ids;
  for (int i = from; i < from + count; ++i) ids.push_back(FormatShareId(A100Uuid(gpu), i));
  return ids;
}

std::vector<std::string> Join(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

podresources::ContainerDevices Listed(const std::string& pod, const std::string& container,
                                      std::vector<std::string> ids,
                                      const std::string& resource = "nvidia.com/gpu") {
  return {"default", pod, container, resource, std::move(ids)};
}

class LedgerTest : public ::testing::Test {
 protected:
  // Allocated shares on GPU `gpu`.
  int AllocatedOn(int gpu) const {
    const auto occupancy = ledger_.Occupancy();
    return std::accumulate(occupancy.allocated.begin() + gpu * kShares,
                           occupancy.allocated.begin() + (gpu + 1) * kShares, 0);
  }
  int ClientsOn(int gpu) const { return ledger_.Occupancy().clients[static_cast<size_t>(gpu)]; }

  Ledger ledger_{Spec(Mode::kMps, kShares, 4)};
};

TEST_F(LedgerTest, AllocateRecordsSharesAndOneClient) {
  ledger_.RecordAllocate(Shares(0, 0, 30));
  ledger_.RecordAllocate(Shares(0, 30, 20));
  EXPECT_EQ(AllocatedOn(0), 50);
  EXPECT_EQ(ClientsOn(0), 2);
  EXPECT_EQ(AllocatedOn(1), 0);
  EXPECT_FALSE(ledger_.Listed());
}

TEST_F(LedgerTest, UnknownIdsAreIgnored) {
  ledger_.RecordAllocate({"GPU-nope::1", "garbage"});
  EXPECT_EQ(ledger_.Occupancy().allocated, sharing::EmptyOccupancy(ledger_.spec()).allocated);
  EXPECT_FALSE(ledger_.AllHeld({"GPU-nope::1"}));
}

TEST_F(LedgerTest, AvailableFreesSharesButNotTheRequiredOnes) {
  ledger_.RecordAllocate(Shares(0, 0, 30));
  ledger_.RecordAllocate(Shares(1, 0, 50));
  // Kubelet offers GPU 0's shares 0-9 as free, and GPU 1's 0-19 as reused from an init container.
  ledger_.RecordAvailable(Join(Shares(0, 0, 10), Shares(1, 0, 20)), Shares(1, 0, 20));
  EXPECT_EQ(AllocatedOn(0), 20);
  EXPECT_EQ(AllocatedOn(1), 50);
}

TEST_F(LedgerTest, ListedContainerThatLeavesIsFreed) {
  ledger_.RecordAllocate(Shares(0, 0, 30));
  ledger_.ApplyList({Listed("a", "app", Shares(0, 0, 30))});
  EXPECT_TRUE(ledger_.Listed());
  EXPECT_EQ(AllocatedOn(0), 30);
  ledger_.ApplyList({});
  EXPECT_EQ(AllocatedOn(0), 0);
  EXPECT_EQ(ClientsOn(0), 0);
}

TEST_F(LedgerTest, GrantNotListedYetSurvivesAList) {
  // Kubelet records a grant only after Allocate returns: a List in between must not free it.
  ledger_.RecordAllocate(Shares(2, 0, 40));
  ledger_.ApplyList({});
  EXPECT_EQ(AllocatedOn(2), 40);
  ledger_.ApplyList({Listed("a", "app", Shares(2, 0, 40))});
  ledger_.ApplyList({});
  EXPECT_EQ(AllocatedOn(2), 0);
}

TEST_F(LedgerTest, ListAloneRebuildsTheLedgerAfterARestart) {
  ledger_.ApplyList({Listed("a", "app", Shares(0, 0, 30)), Listed("b", "app", Shares(0, 30, 10)),
                     Listed("c", "app", Shares(1, 0, 100))});
  EXPECT_EQ(AllocatedOn(0), 40);
  EXPECT_EQ(ClientsOn(0), 2);
  EXPECT_EQ(AllocatedOn(1), 100);
}

TEST_F(LedgerTest, OtherResourcesAreIgnored) {
  ledger_.ApplyList({Listed("a", "app", Shares(0, 0, 30), "nvidia.com/other")});
  EXPECT_EQ(AllocatedOn(0), 0);
}

TEST_F(LedgerTest, KubeletsListIsTheTruthForAListedContainer) {
  ledger_.RecordAllocate(Shares(0, 0, 30));
  ledger_.ApplyList({Listed("a", "app", Shares(0, 0, 30))});
  ledger_.ApplyList({Listed("a", "app", Shares(0, 0, 10))});
  EXPECT_EQ(AllocatedOn(0), 10);
}

TEST_F(LedgerTest, InitContainerReusedByTheAppStaysHeldForThePodsLife) {
  // init 90 / app 40: the app's 40 come out of the init container's 90.
  const auto init = Shares(0, 0, 90);
  ledger_.RecordAllocate(init);
  const auto app = Shares(0, 10, 40);
  EXPECT_TRUE(ledger_.AllHeld(app));
  ledger_.RecordAllocate(app);
  EXPECT_EQ(AllocatedOn(0), 90);
  EXPECT_EQ(ClientsOn(0), 1) << "the init container has exited; only the app is a client";

  // List shows only the app's 40; the init container's 90 stay held.
  ledger_.ApplyList({Listed("p", "app", app)});
  EXPECT_EQ(AllocatedOn(0), 90);
  ledger_.ApplyList({Listed("p", "app", app)});
  EXPECT_EQ(AllocatedOn(0), 90);

  // The pod is deleted: all 90 go with it.
  ledger_.ApplyList({});
  EXPECT_EQ(AllocatedOn(0), 0);
}

TEST_F(LedgerTest, InitContainerOnTwoGpusAndAnAppSpanningThem) {
  // init 200 / app 80: kubelet picks the app's 80 at random out of two whole GPUs.
  const auto init = Join(Shares(1, 0, 100), Shares(2, 0, 100));
  ledger_.RecordAllocate(init);
  const auto app = Join(Shares(1, 0, 43), Shares(2, 0, 37));
  EXPECT_TRUE(ledger_.AllHeld(app));
  ledger_.RecordAllocate(app);
  ledger_.ApplyList({Listed("p", "app", app)});
  EXPECT_EQ(AllocatedOn(1), 100);
  EXPECT_EQ(AllocatedOn(2), 100);
  EXPECT_EQ(ClientsOn(1), 1);
  EXPECT_EQ(ClientsOn(2), 1);
  ledger_.ApplyList({});
  EXPECT_EQ(AllocatedOn(1), 0);
  EXPECT_EQ(AllocatedOn(2), 0);
}

TEST_F(LedgerTest, TwoAppContainersReusingOneInitContainerLeaveTogether) {
  const auto init = Join(Shares(1, 0, 100), Shares(2, 0, 100));
  ledger_.RecordAllocate(init);
  ledger_.RecordAllocate(Shares(1, 0, 80));
  ledger_.RecordAllocate(Shares(2, 0, 80));
  ledger_.ApplyList({Listed("p", "a", Shares(1, 0, 80)), Listed("p", "b", Shares(2, 0, 80))});
  EXPECT_EQ(AllocatedOn(1) + AllocatedOn(2), 200);
  // One app container still listed: the pod lives, the init container's shares stay.
  ledger_.ApplyList({Listed("p", "b", Shares(2, 0, 80))});
  EXPECT_EQ(AllocatedOn(2), 100);
  ledger_.ApplyList({});
  EXPECT_EQ(AllocatedOn(1) + AllocatedOn(2), 0);
}

TEST_F(LedgerTest, GrantNoListShowsIsForgottenAfterTwoListsPastTheGrace) {
  // A short pod: granted, deleted before any List saw it.
  const absl::Time t0 = absl::Now();
  ledger_.RecordAllocate(Shares(3, 0, 60), t0);
  // Lists right after the grant may run before kubelet records it, or before the app container
  // that ties an init container to its pod is granted: they do not count.
  for (int i = 0; i < 5; ++i) ledger_.ApplyList({}, t0 + absl::Milliseconds(100 * i));
  EXPECT_EQ(AllocatedOn(3), 60);
  ledger_.ApplyList({}, t0 + absl::Seconds(1));
  EXPECT_EQ(AllocatedOn(3), 60);
  ledger_.ApplyList({}, t0 + absl::Seconds(2));
  EXPECT_EQ(AllocatedOn(3), 0);
}

TEST_F(LedgerTest, InitContainerOfAListedPodIsNotForgotten) {
  const absl::Time t0 = absl::Now();
  ledger_.RecordAllocate(Shares(0, 0, 90), t0);
  ledger_.RecordAllocate(Shares(0, 0, 40), t0);
  for (int i = 0; i < 5; ++i) {
    ledger_.ApplyList({Listed("p", "app", Shares(0, 0, 40))}, t0 + absl::Seconds(i + 1));
  }
  EXPECT_EQ(AllocatedOn(0), 90);
}

TEST_F(LedgerTest, HeldSharesKubeletSeesHealthyButDoesNotOfferAreLearned) {
  // An init container whose app containers use none of the resource: forgotten after two Lists,
  // learned back from kubelet's next request, and freed when kubelet offers its shares again.
  std::vector<char> offered(4 * kShares, 1);
  ledger_.RecordAvailable(Join(Join(Shares(3, 60, 40), Shares(0, 0, 100)), Shares(2, 0, 100)), {},
                          offered);
  EXPECT_EQ(AllocatedOn(3), 60);
  EXPECT_EQ(AllocatedOn(1), 100) << "GPU 1 was offered to no one: held";
  EXPECT_EQ(ClientsOn(3), 0) << "not known to be a running client";
  ledger_.ApplyList({}, absl::Now() + absl::Seconds(5));
  ledger_.ApplyList({}, absl::Now() + absl::Seconds(10));
  EXPECT_EQ(AllocatedOn(3), 60) << "only kubelet can free what was inferred";
  ledger_.RecordAvailable(Shares(3, 0, 100), {});
  EXPECT_EQ(AllocatedOn(3), 0);
  // Shares kubelet does not see Healthy (hidden by shaping) tell nothing.
  std::fill(offered.begin() + 2 * kShares, offered.end(), 0);
  ledger_.RecordAvailable(Join(Shares(0, 0, 100), Shares(1, 0, 100)), {}, offered);
  EXPECT_EQ(AllocatedOn(1), 0);
  EXPECT_EQ(AllocatedOn(2), 0);
  EXPECT_EQ(AllocatedOn(3), 0);
}

TEST_F(LedgerTest, NewGrantIsNotAReuse) {
  ledger_.RecordAllocate(Shares(0, 0, 30));
  EXPECT_FALSE(ledger_.AllHeld(Shares(0, 20, 20)));
  EXPECT_FALSE(ledger_.AllHeld({}));
}

TEST_F(LedgerTest, GpuAtTheClientCap) {
  for (int i = 0; i < sharing::kMpsClientCapVolta; ++i) ledger_.RecordAllocate(Shares(0, i, 1));
  EXPECT_EQ(ledger_.GpusAtClientCap(), (std::vector<char>{1, 0, 0, 0}));
  ledger_.RecordAvailable(Shares(0, 0, 1), {});
  EXPECT_EQ(ledger_.GpusAtClientCap(), (std::vector<char>{0, 0, 0, 0}));
}

TEST(LedgerPreVolta, CapIsSixteen) {
  sharing::ResourceSpec spec = Spec(Mode::kMps, kShares, 1);
  spec.gpus[0].cc_major = 6;
  Ledger ledger(spec);
  for (int i = 0; i < 15; ++i) ledger.RecordAllocate(Shares(0, i, 1));
  EXPECT_EQ(ledger.GpusAtClientCap(), std::vector<char>{0});
  ledger.RecordAllocate(Shares(0, 15, 1));
  EXPECT_EQ(ledger.GpusAtClientCap(), std::vector<char>{1});
}

TEST_F(LedgerTest, ChangeCallbackRunsOnChangesOnly) {
  int calls = 0;
  ledger_.SetOnChange([&] { ++calls; });
  ledger_.RecordAllocate(Shares(0, 0, 10));
  EXPECT_EQ(calls, 1);
  ledger_.RecordAvailable(Shares(0, 50, 10), {});  // already free
  EXPECT_EQ(calls, 1);
  ledger_.ApplyList({Listed("a", "app", Shares(0, 0, 10))});  // same picture
  EXPECT_EQ(calls, 1);
  ledger_.ApplyList({});
  EXPECT_EQ(calls, 2);
  ledger_.SetOnChange(nullptr);
  ledger_.RecordAllocate(Shares(0, 0, 10));
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace nvdp::ledger
