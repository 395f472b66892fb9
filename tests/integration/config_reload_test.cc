// Config through the real daemon: a bad config at start-up, `validate`, and SIGHUP reloads that
// keep unchanged resources, re-create changed ones, remove dropped ones and reject bad configs.
#include <signal.h>

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/daemon_harness.h"

namespace nvdp::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kGpu[] = "nvidia.com/gpu";
constexpr char kShared[] = "nvidia.com/gpu.shared";

std::string TimeSlicing(int replicas, const std::string& devices = "[0, 1]") {
  return "version: v1\n"
         "sharing:\n"
         "  timeSlicing:\n"
         "    resources:\n"
         "    - name: gpu\n"
         "      rename: gpu.shared\n"
         "      devices: " +
         devices +
         "\n"
         "      replicas: " +
         std::to_string(replicas) + "\n";
}

bool SizeIs(const std::vector<DeviceState>& devices, size_t n) { return devices.size() == n; }

TEST(ConfigDaemonTest, BadConfigAtStartUpExitsWithEveryProblem) {
  DaemonHarness h;
  h.StartKubelet();
  h.WriteConfig(
      "version: v1\nflags:\n  migStrategy: foo\nsharing:\n  timeSlicing:\n"
      "    resources:\n    - name: gpu\n      replicas: 1\n");
  h.StartDaemon();
  auto status = h.WaitForExit();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->exit_code, 1);
  const std::string log = h.DaemonLog();
  EXPECT_THAT(log, HasSubstr("flags.migStrategy"));
  EXPECT_THAT(log, HasSubstr("sharing.timeSlicing.resources[0].replicas"));
  EXPECT_EQ(h.kubelet().Registrations(kGpu), 0);
}

TEST(ConfigDaemonTest, ValidateReportsByExitStatus) {
  DaemonHarness h;
  h.WriteConfig(TimeSlicing(1));
  mps::CommandSpec validate;
  validate.program = BinDir() + "/nvidia-device-plugin";
  validate.args = {"validate", "--config-file=" + h.config_path()};
  auto bad = mps::RealProcessRunner().Run(validate);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status.exit_code, 1);
  EXPECT_THAT(bad->err, HasSubstr("sharing.timeSlicing.resources[0].replicas: 1"));

  h.WriteConfig(TimeSlicing(4));
  auto good = mps::RealProcessRunner().Run(validate);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good->status.exit_code, 0) << good->err;
}

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.StartKubelet();
    h_.WriteConfig(TimeSlicing(4));
    h_.StartDaemon();
    ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 1, kWait));
    ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kShared, 1, kWait));
    ASSERT_TRUE(h_.kubelet().WaitForDevices(
        kGpu, [](auto& d) { return SizeIs(d, 6); }, kWait));
    ASSERT_TRUE(h_.kubelet().WaitForDevices(
        kShared, [](auto& d) { return SizeIs(d, 8); }, kWait));
  }
  std::string SharedSocket() const { return h_.plugin_dir() + "/nvidia-gpu.shared.sock"; }

  DaemonHarness h_;
};

TEST_F(ReloadTest, ChangedResourceIsServedAgainUnchangedOneKeepsItsRegistration) {
  h_.WriteConfig(TimeSlicing(2));
  h_.Signal(SIGHUP);
  ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kShared, 2, kWait));
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kShared, [](auto& d) { return SizeIs(d, 4); }, kWait));
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 1);
}

TEST_F(ReloadTest, RemovedResourceIsUnregisteredAndItsSocketRemoved) {
  h_.WriteConfig("version: v1\n");
  h_.Signal(SIGHUP);
  ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 2, kWait));  // now all 8 GPUs
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kGpu, [](auto& d) { return SizeIs(d, 8); }, kWait));
  EXPECT_TRUE(WaitUntil([&] { return !std::filesystem::exists(SharedSocket()); }));
  EXPECT_EQ(h_.kubelet().Registrations(kShared), 1);
}

TEST_F(ReloadTest, BadConfigIsRejectedAndTheRunningOneKept) {
  h_.WriteConfig(TimeSlicing(1));
  h_.Signal(SIGHUP);
  ASSERT_TRUE(
      WaitUntil([&] { return h_.DaemonLog().find("reload rejected") != std::string::npos; }));
  EXPECT_THAT(h_.DaemonLog(), HasSubstr("sharing.timeSlicing.resources[0].replicas: 1"));
  EXPECT_TRUE(std::filesystem::exists(SharedSocket()));
  EXPECT_EQ(h_.kubelet().Registrations(kShared), 1);
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 1);
  auto admission = h_.kubelet().Admit(kShared, 1);
  EXPECT_TRUE(admission.ok()) << admission.status();

  // A config valid as a file but impossible on this node (GPU 9) is rejected too.
  h_.WriteConfig(TimeSlicing(4, "[9]"));
  h_.Signal(SIGHUP);
  ASSERT_TRUE(WaitUntil([&] {
    auto log = h_.DaemonLog();
    return log.find("reload rejected") != log.rfind("reload rejected");
  }));
  EXPECT_EQ(h_.kubelet().Registrations(kShared), 1);
}

}  // namespace
}  // namespace nvdp::testing
