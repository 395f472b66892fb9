// Sharing through the real binaries: per-container MPS limits with mps-control-daemon and the fake
// MPS control binary, shares released and reused, refusals, health of shares, time-slicing.
#include <signal.h>

#include <algorithm>
#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/daemon_harness.h"
#include "plugin/response_fields.h"

namespace nvdp::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kGpu[] = "nvidia.com/gpu";
constexpr char kShared[] = "nvidia.com/gpu.shared";

std::string GpuOf(const Admission& admission) {
  const std::string& id = admission.device_ids.at(0);
  return id.substr(0, id.find("::"));
}

size_t CountHealthy(const std::vector<DeviceState>& devices) {
  return std::count_if(devices.begin(), devices.end(), [](const auto& d) { return d.healthy; });
}

class MpsDaemonTest : public ::testing::Test {
 protected:
  void WriteMpsConfig() { h_.WriteSharedMpsConfig(100, "[0, 1, 2, 3]"); }
  void StartAll() {
    h_.StartKubelet();
    WriteMpsConfig();
    h_.StartMpsDaemon();
    h_.StartDaemon();
    ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kShared, 1, kWait));
    ASSERT_TRUE(h_.kubelet().WaitForDevices(
        kShared, [](const auto& d) { return d.size() == 400 && CountHealthy(d) == 400; }, kWait));
  }

  DaemonHarness h_;
  std::vector<NodeGpu> node_ = ReadNodeGpus(NodeFile("a100-sxm4-40gb-x8.json"));
};

TEST_F(MpsDaemonTest, ThirtyAndSeventyPercentShareOneGpuWithTheirOwnLimits) {
  StartAll();
  auto a = h_.kubelet().Admit(kShared, 30);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = h_.kubelet().Admit(kShared, 70);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(GpuOf(*a), node_[0].uuid);
  EXPECT_EQ(GpuOf(*b), node_[0].uuid);

  const std::string pipe = h_.mps_root() + "/nvidia.com/gpu.shared/pipe";
  EXPECT_EQ(ResponseFields(a->response),
            (std::vector<std::string>{"env CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30",
                                      "env CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=12288M",
                                      "env CUDA_MPS_PIPE_DIRECTORY=/mps/nvidia.com/gpu.shared/pipe",
                                      "env CUDA_VISIBLE_DEVICES=" + node_[0].uuid,
                                      "env NVIDIA_VISIBLE_DEVICES=" + node_[0].uuid,
                                      "mount " + pipe + " -> /mps/nvidia.com/gpu.shared/pipe rw",
                                      "mount " + h_.mps_root() + "/shm -> /dev/shm rw"}));
  EXPECT_EQ(b->response.envs().at("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "70");
  EXPECT_EQ(b->response.envs().at("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"), "0=28672M");

  // The whole-GPU resource is unaffected: GPUs 4-7.
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kGpu, [](const auto& d) { return d.size() == 4; }, kWait));
}

TEST_F(MpsDaemonTest, ReleasedSharesAreReusedAndUnevenRequestsRefused) {
  StartAll();
  auto a = h_.kubelet().Admit(kShared, 60);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = h_.kubelet().Admit(kShared, 60);  // does not fit next to a: GPU 1
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(GpuOf(*a), GpuOf(*b));

  h_.kubelet().Release(kShared, a->device_ids);
  auto c = h_.kubelet().Admit(kShared, 100);  // a whole GPU: GPU 0 is free again
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(GpuOf(*c), node_[0].uuid);
  EXPECT_EQ(c->response.envs().at("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"), "0=40960M");

  // Kubelet ignoring the preference and spreading a sub-GPU request over free shares: Allocate
  // refuses it (IDs that no container holds are no init container's either).
  auto spread = h_.kubelet().Allocate(kShared, {{node_[2].uuid + "::0", node_[3].uuid + "::0"}});
  ASSERT_FALSE(spread.ok());
  EXPECT_EQ(spread.status().code(), absl::StatusCode::kInvalidArgument);

  auto d = h_.kubelet().Admit(kShared, 200);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->response.envs().at("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "100");
  EXPECT_EQ(d->response.envs().at("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"), "0=40960M,1=40960M");

  auto uneven = h_.kubelet().Admit(kShared, 150);
  ASSERT_FALSE(uneven.ok());
  EXPECT_THAT(uneven.status().message(), HasSubstr(kShared));
  EXPECT_THAT(uneven.status().message(), HasSubstr("150"));
}

TEST_F(MpsDaemonTest, AnUnhealthyGpuMakesAllItsSharesUnhealthy) {
  StartAll();
  h_.InjectEvent("xid " + node_[1].uuid + " 79");
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kShared,
      [&](const auto& devices) {
        for (const auto& d : devices) {
          bool on_gpu1 = d.id.rfind(node_[1].uuid + "::", 0) == 0;
          if (d.healthy == on_gpu1) return false;
        }
        return true;
      },
      kWait));
}

TEST_F(MpsDaemonTest, WaitsForTheControlDaemonAndTracksItsHealth) {
  h_.StartKubelet();
  WriteMpsConfig();
  h_.StartDaemon();  // no MPS control daemon yet
  ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 1, kWait));
  EXPECT_EQ(h_.kubelet().Registrations(kShared), 0);
  EXPECT_TRUE(WaitUntil(
      [&] { return h_.DaemonLog().find("nvidia.com/gpu.shared: waiting") != std::string::npos; }));

  h_.StartMpsDaemon();
  ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kShared, 1, kWait));
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kShared, [](const auto& d) { return d.size() == 400 && CountHealthy(d) == 400; }, kWait));

  h_.StopMpsDaemon();  // quits the control daemon: every share becomes unhealthy
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kShared, [](const auto& d) { return d.size() == 400 && CountHealthy(d) == 0; }, kWait));

  h_.StartMpsDaemon();  // back: healthy again, without a new registration
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kShared, [](const auto& d) { return CountHealthy(d) == 400; }, kWait));
  EXPECT_EQ(h_.kubelet().Registrations(kShared), 1);
}

TEST_F(MpsDaemonTest, NoGpuGetsMoreContainersThanItsMpsServerAccepts) {
  h_.StartKubelet();
  h_.WriteSharedMpsConfig(100, "[0]");
  h_.StartMpsDaemon();
  h_.StartDaemon();
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kShared, [](const auto& d) { return d.size() == 100 && CountHealthy(d) == 100; }, kWait));
  for (int i = 0; i < 48; ++i) {
    auto admitted = h_.kubelet().Admit(kShared, 1);
    ASSERT_TRUE(admitted.ok()) << i << ": " << admitted.status();
  }
  // The 49th container: kubelet's preference call is refused, and so is an Allocate that skips it.
  auto refused = h_.kubelet().Admit(kShared, 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("already serves 48 clients"));
  auto forced = h_.kubelet().Allocate(kShared, {{node_[0].uuid + "::99"}});
  ASSERT_FALSE(forced.ok());
  EXPECT_EQ(forced.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(forced.status().message(), HasSubstr("already serves 48 MPS clients"));

  // No PodResources server here: one warning (however many refreshes failed), and the list is not
  // shaped: GPU 0's 52 free shares stay Healthy.
  const std::string log = h_.DaemonLog();
  size_t warnings = 0;
  for (size_t at = log.find("capacity shaping is off"); at != std::string::npos;
       at = log.find("capacity shaping is off", at + 1)) {
    ++warnings;
  }
  EXPECT_EQ(warnings, 1u) << log;
  EXPECT_EQ(CountHealthy(h_.kubelet().Devices(kShared)), 100u);
}

TEST(TimeSlicingDaemonTest, ReplicasAreAdvertisedAndDeduplicated) {
  DaemonHarness h;
  h.StartKubelet();
  h.WriteConfig(
      "version: v1\n"
      "sharing:\n"
      "  timeSlicing:\n"
      "    renameByDefault: true\n"
      "    resources:\n"
      "    - name: gpu\n"
      "      replicas: 4\n");
  h.StartDaemon();
  ASSERT_TRUE(h.kubelet().WaitForRegistrations(kShared, 1, kWait));
  ASSERT_TRUE(h.kubelet().WaitForDevices(
      kShared, [](const auto& d) { return d.size() == 32; }, kWait));
  auto node = ReadNodeGpus(NodeFile("a100-sxm4-40gb-x8.json"));
  auto response = h.kubelet().Allocate(kShared, {{node[0].uuid + "::0", node[0].uuid + "::3"}});
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES"), node[0].uuid);
  EXPECT_FALSE(response->container_responses(0).envs().contains("CUDA_MPS_PIPE_DIRECTORY"));

  // distributed (default): two replicas come from two different GPUs.
  auto admission = h.kubelet().Admit(kShared, 2);
  ASSERT_TRUE(admission.ok()) << admission.status();
  EXPECT_NE(admission->device_ids[0].substr(0, admission->device_ids[0].find("::")),
            admission->device_ids[1].substr(0, admission->device_ids[1].find("::")));
}

}  // namespace
}  // namespace nvdp::testing
