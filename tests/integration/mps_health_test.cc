// MPS daemon health as kubelet sees it, through the real binaries: mps-control-daemon supervising
// the fake nvidia-cuda-mps-control, the plugin watching its markers, the test kubelet. A control
// daemon killed under mps-control-daemon makes every share of its resource unhealthy until the
// restarted daemon answers, even when that takes less than the plugin's probe period. No durations
// are asserted here; bench/mps_health_latency measures them.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/daemon_harness.h"

namespace nvdp::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kShared[] = "nvidia.com/gpu.shared";
constexpr size_t kShares = 40;  // 4 GPUs x 10

bool AllHealthy(const std::vector<DeviceState>& devices) {
  return devices.size() == kShares &&
         std::all_of(devices.begin(), devices.end(), [](const auto& d) { return d.healthy; });
}
bool AllUnhealthy(const std::vector<DeviceState>& devices) {
  return devices.size() == kShares &&
         std::none_of(devices.begin(), devices.end(), [](const auto& d) { return d.healthy; });
}

class MpsHealthTest : public ::testing::Test {
 protected:
  void WriteMpsConfig() { h_.WriteSharedMpsConfig(10, "[0, 1, 2, 3]"); }
  void StartAll() {
    h_.StartKubelet();
    WriteMpsConfig();
    h_.StartMpsDaemon();
    h_.StartDaemon();
    ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kShared, 1, kWait));
    ASSERT_TRUE(h_.kubelet().WaitForDevices(kShared, AllHealthy, kWait));
  }
  // Waits for the running fake control daemon of the resource and returns its pid.
  int ControlDaemonPid() {
    std::optional<int> pid;
    EXPECT_TRUE(WaitUntil([&] {
      pid = h_.FakeMpsControlPid(kShared);
      return pid.has_value() && ::kill(*pid, 0) == 0;
    }));
    return pid.value_or(-1);
  }
  // Waits until kubelet has been sent a list with every share unhealthy and, after it, one with
  // every share healthy. Every list kubelet gets is looked at (the predicate runs under the test
  // kubelet's lock at each update), so an outage shorter than any poll is still caught.
  bool WaitForOutageAndRecovery() {
    bool saw_outage = false;
    return h_.kubelet().WaitForDevices(
        kShared,
        [&](const std::vector<DeviceState>& devices) {
          if (AllUnhealthy(devices)) saw_outage = true;
          return saw_outage && AllHealthy(devices);
        },
        kWait);
  }
  std::string MpsdLog() const {
    std::ifstream in(h_.tmp() + "/mpsd.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  DaemonHarness h_;
};

TEST_F(MpsHealthTest, KilledControlDaemonMakesEveryShareUnhealthyUntilItIsRestarted) {
  StartAll();
  const int pid = ControlDaemonPid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(h_.kubelet().WaitForDevices(kShared, AllUnhealthy, kWait));
  ASSERT_TRUE(h_.kubelet().WaitForDevices(kShared, AllHealthy, kWait));
  EXPECT_NE(ControlDaemonPid(), pid);
  EXPECT_EQ(h_.kubelet().Registrations(kShared), 1);  // only health changed
  EXPECT_THAT(MpsdLog(), HasSubstr("exited (killed by signal 9"));
  // Shares are handed out again.
  auto admission = h_.kubelet().Admit(kShared, 5);
  EXPECT_TRUE(admission.ok()) << admission.status();
}

TEST_F(MpsHealthTest, AnOutageShorterThanTheProbePeriodIsStillReported) {
  // With probes an hour apart only the markers can tell the plugin.
  h_.set_mps_probe_period("3600");
  StartAll();
  const int updates = h_.kubelet().DeviceListUpdates(kShared);
  const int pid = ControlDaemonPid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitForOutageAndRecovery());
  EXPECT_GE(h_.kubelet().DeviceListUpdates(kShared), updates + 2);
  EXPECT_NE(ControlDaemonPid(), pid);

  // Twice in a row (the restart backoff has grown: still seen).
  const int second = ControlDaemonPid();
  ASSERT_GT(second, 0);
  ASSERT_EQ(::kill(second, SIGKILL), 0);
  ASSERT_TRUE(WaitForOutageAndRecovery());
  EXPECT_EQ(h_.kubelet().Registrations(kShared), 1);
}

TEST_F(MpsHealthTest, StopAndStartOfTheDaemonSetAreSeenThroughTheMarkersAlone) {
  h_.set_mps_probe_period("3600");
  h_.StartKubelet();
  WriteMpsConfig();
  // No MPS root at all when the plugin starts: it watches from further up until it appears.
  std::filesystem::remove_all(h_.mps_root());
  h_.StartDaemon();
  h_.StartMpsDaemon();
  ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kShared, 1, kWait));
  ASSERT_TRUE(h_.kubelet().WaitForDevices(kShared, AllHealthy, kWait));

  h_.StopMpsDaemon();  // removes the markers
  ASSERT_TRUE(h_.kubelet().WaitForDevices(kShared, AllUnhealthy, kWait));
  h_.StartMpsDaemon();
  ASSERT_TRUE(h_.kubelet().WaitForDevices(kShared, AllHealthy, kWait));

  // The whole MPS root removed and created again by the next daemon.
  h_.StopMpsDaemon();
  ASSERT_TRUE(h_.kubelet().WaitForDevices(kShared, AllUnhealthy, kWait));
  std::filesystem::remove_all(h_.mps_root());
  h_.StartMpsDaemon();
  ASSERT_TRUE(h_.kubelet().WaitForDevices(kShared, AllHealthy, kWait));
  EXPECT_EQ(h_.kubelet().Registrations(kShared), 1);
}

}  // namespace
}  // namespace nvdp::testing
