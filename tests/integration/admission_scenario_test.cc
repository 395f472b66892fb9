// Admission end to end: the real daemon (per-container MPS, 8 GPUs of 100 shares) watches kubelet's
// PodResources List (--pod-resources-socket) and shapes the capacity it advertises; the test
// kubelet admits pods as kubelet 1.26 does, and the scheduler is simulated with a fresh view of the
// node. Thousands of random arrivals and departures must never meet an admission failure: every
// pod the scheduler places on the advertised capacity gets its shares.
//
// Run alone with `ctest -R admission_scenario` (label "integration").
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/loader.h"
#include "device/inventory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/daemon_harness.h"
#include "nlohmann/json.hpp"
#include "sharing/capacity.h"
#include "sharing/sharing.h"

namespace nvdp::testing {
namespace {

constexpr char kShared[] = "nvidia.com/gpu.shared";
constexpr char kNode[] = "a100-sxm4-40gb-x8.json";
constexpr int kReplicas = 100;
constexpr milliseconds kFreshWait{10000};  // per step; the daemon polls List every 100 ms

std::string GpuOf(const std::string& id) { return id.substr(0, id.find("::")); }

std::set<std::string> GpusOf(const std::vector<std::string>& ids) {
  std::set<std::string> gpus;
  for (const auto& id : ids) gpus.insert(GpuOf(id));
  return gpus;
}

// The node's inventory as the daemon discovers it from the fake NVML (what resource building
// reads: UUIDs, indices, minors, names, memory).
device::Inventory NodeInventory() {
  std::ifstream in(NodeFile(kNode));
  auto json = nlohmann::json::parse(in);
  device::Inventory inventory;
  inventory.driver_version = json.at("driver_version").get<std::string>();
  unsigned index = 0;
  for (const auto& entry : json.at("gpus")) {
    device::Gpu gpu;
    gpu.uuid = entry.at("uuid").get<std::string>();
    gpu.index = index++;
    gpu.minor = entry.at("minor").get<unsigned>();
    gpu.name = entry.at("name").get<std::string>();
    gpu.memory_bytes = entry.at("memory_mib").get<uint64_t>() << 20;
    gpu.cc_major = entry.at("cc_major").get<int>();
    gpu.cc_minor = entry.at("cc_minor").get<int>();
    inventory.gpus.push_back(std::move(gpu));
  }
  return inventory;
}

class AdmissionScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.StartKubelet();
    std::filesystem::create_directories(h_.tmp() + "/pod-resources");
    ASSERT_TRUE(h_.kubelet().StartPodResources(h_.pod_resources_socket()).ok());
    h_.WriteSharedMpsConfig(kReplicas);
    BuildSpec();
    h_.StartMpsDaemon();
    h_.StartDaemon(kNode, {"--pod-resources-period=100ms"});
    ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kShared, 1, kWait));
    ASSERT_TRUE(WaitFresh()) << "the daemon never advertised the empty node's capacity";
  }

  // The resource as the daemon builds it: the same config file, the same node.
  void BuildSpec() {
    config::FlagOverrides flags;
    flags.config_file = h_.config_path();
    auto loaded = config::LoadConfig(flags, {});
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    auto resources = sharing::BuildResources(loaded->config, NodeInventory());
    ASSERT_TRUE(resources.ok()) << resources.status();
    for (const auto& resource : *resources) {
      if (resource.name == kShared) spec_ = resource;
    }
    ASSERT_EQ(spec_.name, kShared);
    ASSERT_EQ(spec_.gpus.size(), 8u);
    ASSERT_EQ(spec_.replicas, kReplicas);
    for (size_t pos = 0; pos < spec_.gpus.size(); ++pos) gpu_pos_[spec_.gpus[pos].uuid] = pos;
  }

  size_t Slot(const std::string& id) const {
    auto share = sharing::ParseShareId(id);
    EXPECT_TRUE(share.ok() && share->replica.has_value()) << id;
    return gpu_pos_.at(share->gpu_uuid) * static_cast<size_t>(kReplicas) +
           static_cast<size_t>(share.ok() ? share->replica.value_or(0) : 0);
  }

  // What capacity shaping gives for the allocation kubelet's List shows now: shares of app
  // containers of live pods (deleted pods already gone), and per GPU the containers on it.
  std::vector<char> ExpectedHealthy() {
    sharing::Occupancy occupancy = sharing::EmptyOccupancy(spec_);
    for (const auto& entry : h_.kubelet().ListedDevices()) {
      if (entry.resource_name != kShared) continue;
      for (const auto& id : entry.device_ids) occupancy.allocated[Slot(id)] = 1;
      for (const auto& gpu : GpusOf(entry.device_ids)) occupancy.clients[gpu_pos_.at(gpu)]++;
    }
    return sharing::ShapeCapacity(spec_, occupancy, std::vector<char>(spec_.gpus.size(), 1));
  }

  std::vector<char> Advertised(const std::vector<DeviceState>& devices) const {
    std::vector<char> healthy(spec_.gpus.size() * kReplicas, 0);
    if (devices.size() != healthy.size()) return {};
    for (const auto& device : devices) healthy[Slot(device.id)] = device.healthy ? 1 : 0;
    return healthy;
  }

  // Healthy shares per GPU, for messages.
  std::string PerGpu(const std::vector<char>& healthy) const {
    std::vector<int> counts(spec_.gpus.size(), 0);
    for (size_t slot = 0; slot < healthy.size(); ++slot) counts[slot / kReplicas] += healthy[slot];
    return absl::StrJoin(counts, " ");
  }

  // Waits until the advertised Healthy set is what shaping gives for the true allocation.
  bool WaitFresh() {
    const std::vector<char> expected = ExpectedHealthy();
    if (h_.kubelet().WaitForDevices(
            kShared, [&](const auto& devices) { return Advertised(devices) == expected; },
            kFreshWait)) {
      return true;
    }
    ADD_FAILURE() << "advertised healthy shares per GPU "
                  << PerGpu(Advertised(h_.kubelet().Devices(kShared))) << ", expected "
                  << PerGpu(expected);
    return false;
  }

  static PodSpec Pod(const std::string& name, std::vector<int> init, std::vector<int> app) {
    PodSpec pod{name, {}, {}};
    for (size_t i = 0; i < init.size(); ++i) {
      pod.init_containers.push_back({"init" + std::to_string(i), {{kShared, init[i]}}});
    }
    for (size_t i = 0; i < app.size(); ++i) {
      pod.containers.push_back({"app" + std::to_string(i), {{kShared, app[i]}}});
    }
    return pod;
  }

  DaemonHarness h_;
  sharing::ResourceSpec spec_;
  std::map<std::string, size_t> gpu_pos_;
};

TEST_F(AdmissionScenarioTest, RandomArrivalsAndDeparturesNeverFailAdmission) {
  constexpr int kPods = 2000;
  // Before an arrival, with this probability a burst of departures: every live pod leaves with
  // probability kLeave. Bursts keep the node mostly full (so the scheduler turns pods away) while
  // limiting the steps that wait for a List poll.
  constexpr double kBurst = 0.15;
  constexpr double kLeave = 0.4;
  const std::vector<int> sizes = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200};
  std::mt19937 rng(20261129);
  h_.kubelet().SetSeed(42);

  int admitted = 0, turned_away = 0, failed = 0, departed = 0;
  std::vector<std::string> failures;
  // Pods live at least until kubelet's next List (the daemon reads it every 100 ms here, every 5 s
  // by default): by pod, the List count from which a List has shown it. A pod gone before any List
  // saw it is forgotten only after a grace (ledger_test covers that), which would make each such
  // step wait.
  std::map<std::string, int> listed_from;
  for (int i = 0; i < kPods; ++i) {
    if (std::bernoulli_distribution(kBurst)(rng)) {
      const int lists = h_.kubelet().ListCalls();
      for (const auto& name : h_.kubelet().LivePods()) {
        if (listed_from[name] > lists) continue;
        if (std::bernoulli_distribution(kLeave)(rng)) {
          h_.kubelet().DeletePod(name);
          ++departed;
        }
      }
    }
    ASSERT_TRUE(WaitFresh()) << "before pod " << i << " (" << admitted << " admitted so far)";
    const int size = sizes[std::uniform_int_distribution<size_t>(0, sizes.size() - 1)(rng)];
    const PodSpec pod = Pod("pod-" + std::to_string(i), {}, {size});
    if (!h_.kubelet().SchedulerFits(pod)) {
      ++turned_away;
      continue;
    }
    auto admission = h_.kubelet().AdmitPod(pod);
    if (admission.ok()) {
      ++admitted;
      listed_from[pod.name] = h_.kubelet().ListCalls() + 1;
    } else {
      ++failed;
      if (failures.size() < 10) {
        failures.push_back(absl::StrCat(
            pod.name, " (", size, " shares, ", h_.kubelet().Requested(kShared), " requested of ",
            h_.kubelet().Allocatable(kShared), "): ", admission.status().message()));
      }
    }
  }
  std::printf(
      "%d pods: %d admitted, %d turned away by the scheduler, %d failed admission, %d "
      "departed\n",
      kPods, admitted, turned_away, failed, departed);
  EXPECT_EQ(failed, 0) << absl::StrJoin(failures, "\n");
  EXPECT_GT(admitted, 1000);
  EXPECT_GT(turned_away, 0);
}

TEST_F(AdmissionScenarioTest, APodGoneBeforeAnyListSawItIsForgotten) {
  // 30 shares on GPU 0 and 50 on GPU 1: GPU 1's other 50 are hidden.
  ASSERT_TRUE(h_.kubelet().AdmitPod(Pod("a", {}, {30})).ok());
  ASSERT_TRUE(h_.kubelet().AdmitPod(Pod("b", {}, {50})).ok());
  ASSERT_TRUE(WaitFresh());
  // A pod placed and deleted at once (before the daemon's next List): its grant is dropped after
  // the ledger's grace, and GPU 1 shows everything again.
  ASSERT_TRUE(h_.kubelet().AdmitPod(Pod("quick", {}, {60})).ok());
  ASSERT_TRUE(h_.kubelet().DeletePod("quick"));
  ASSERT_TRUE(h_.kubelet().DeletePod("b"));
  EXPECT_TRUE(WaitFresh());
}

TEST_F(AdmissionScenarioTest, PodsWithInitContainersAreAdmittedThroughReuse) {
  h_.kubelet().SetSeed(7);
  // Init 200 / app 80: the init container gets two whole GPUs; the app container reuses 80 of
  // those shares in kubelet's random order, so they span both GPUs, and kubelet asks no preference.
  auto wide = h_.kubelet().AdmitPod(Pod("init-200-app-80", {200}, {80}));
  ASSERT_TRUE(wide.ok()) << wide.status();
  const Admission& wide_init = wide->init_containers.at(0).resources.at(kShared);
  const Admission& wide_app = wide->containers.at(0).resources.at(kShared);
  EXPECT_EQ(GpusOf(wide_init.device_ids).size(), 2u);
  EXPECT_FALSE(wide_app.asked_preference);
  EXPECT_THAT(wide_app.reused, ::testing::UnorderedElementsAreArray(wide_app.device_ids));
  EXPECT_EQ(GpusOf(wide_app.device_ids).size(), 2u);
  EXPECT_EQ(wide_app.device_ids.size(), 80u);
  // Limits follow the IDs, per GPU (container ordinals in GPU index order).
  std::map<size_t, int> per_gpu;  // GPU position -> shares
  for (const auto& id : wide_app.device_ids) per_gpu[Slot(id) / kReplicas]++;
  const int largest = std::max(per_gpu.begin()->second, per_gpu.rbegin()->second);
  const auto& envs = wide_app.response.envs();
  EXPECT_EQ(envs.at("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), std::to_string(largest));
  EXPECT_EQ(envs.at("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"),
            absl::StrCat("0=", 40960 * per_gpu.begin()->second / 100,
                         "M,1=", 40960 * per_gpu.rbegin()->second / 100, "M"));

  // Init 90 / app 40: one GPU, the app container's shares among the init container's.
  auto narrow = h_.kubelet().AdmitPod(Pod("init-90-app-40", {90}, {40}));
  ASSERT_TRUE(narrow.ok()) << narrow.status();
  const Admission& narrow_init = narrow->init_containers.at(0).resources.at(kShared);
  const Admission& narrow_app = narrow->containers.at(0).resources.at(kShared);
  EXPECT_EQ(GpusOf(narrow_init.device_ids).size(), 1u);
  EXPECT_EQ(GpusOf(narrow_app.device_ids), GpusOf(narrow_init.device_ids));
  EXPECT_THAT(GpusOf(narrow_init.device_ids),
              ::testing::Not(::testing::IsSubsetOf(GpusOf(wide_init.device_ids))));

  // A whole GPU handed from the init container to the app container, and two app containers
  // sharing one init container's shares (the second takes the rest of them and 10 more).
  auto whole = h_.kubelet().AdmitPod(Pod("init-100-app-100", {100}, {100}));
  EXPECT_TRUE(whole.ok()) << whole.status();
  auto two = h_.kubelet().AdmitPod(Pod("init-30-app-20-20", {30}, {20, 20}));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(GpusOf(two->containers.at(1).resources.at(kShared).device_ids),
            GpusOf(two->init_containers.at(0).resources.at(kShared).device_ids));
  EXPECT_EQ(h_.kubelet().Requested(kShared), 200 + 90 + 100 + 40);

  // List shows only the app containers, yet every share the init containers hold stays allocated
  // in the daemon's eyes: shaping never hides one, and the advertised set is what shaping gives
  // for kubelet's true allocation.
  sharing::Occupancy truth = sharing::EmptyOccupancy(spec_);
  const std::set<std::string> held = h_.kubelet().Allocated(kShared);
  for (const auto& id : held) truth.allocated[Slot(id)] = 1;
  const auto expected =
      sharing::ShapeCapacity(spec_, truth, std::vector<char>(spec_.gpus.size(), 1));
  // Three refreshes after the last grant: a grant that no List shows would be forgotten by now.
  ASSERT_TRUE(h_.kubelet().WaitForListCalls(h_.kubelet().ListCalls() + 3, kWait));
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kShared, [&](const auto& devices) { return Advertised(devices) == expected; }, kWait))
      << "advertised " << PerGpu(Advertised(h_.kubelet().Devices(kShared))) << ", expected "
      << PerGpu(expected);
}

}  // namespace
}  // namespace nvdp::testing
