// The plugin-side probe, WaitUntilReady and DaemonMonitor, with fakes (no
// processes, no sleeps).
#include "mps/probe.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/mps_fakes.h"
#include "mps/temp_dir.h"

namespace nvdp::mps {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using testing::FakeClock;
using testing::FakeProber;
using testing::FakeRunner;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::TempDir;

// Upstream's layout, keyed by the full resource name.
TEST(MpsPathsTest, UpstreamLayoutKeyedByTheFullResourceName) {
  const ResourcePaths paths = PathsFor("/run/nvidia/mps", "nvidia.com/gpu");
  EXPECT_EQ(paths.dir, "/run/nvidia/mps/nvidia.com/gpu");
  EXPECT_EQ(paths.pipe_dir, "/run/nvidia/mps/nvidia.com/gpu/pipe");
  EXPECT_EQ(paths.log_dir, "/run/nvidia/mps/nvidia.com/gpu/log");
  EXPECT_EQ(paths.started_marker, "/run/nvidia/mps/nvidia.com/gpu/.started");
  EXPECT_EQ(PathsFor("/x", "nvidia.com/gpu.shared").pipe_dir, "/x/nvidia.com/gpu.shared/pipe");
  EXPECT_EQ(ReadyMarker("/run/nvidia/mps"), "/run/nvidia/mps/.ready");
  EXPECT_EQ(ShmDir("/run/nvidia/mps"), "/run/nvidia/mps/shm");
}

class MpsDaemonProbeTest : public ::testing::Test {
 protected:
  MpsDaemonProbeTest() : runner_(clock_) {
    std::filesystem::create_directories(root_.path() + "/nvidia.com/gpu/pipe");
  }
  DaemonProbe MakeProbe(bool require_marker = true) {
    return DaemonProbe({.mps_root = root_.path(),
                        .resource = "nvidia.com/gpu",
                        .control_binary = "/opt/bin/nvidia-cuda-mps-control",
                        .base_env = {"PATH=/bin"},
                        .require_started_marker = require_marker},
                       runner_);
  }

  TempDir root_;
  FakeClock clock_;
  FakeRunner runner_;
};

TEST_F(MpsDaemonProbeTest, MissingStartedMarkerSaysWhatIsMissing) {
  DaemonProbe probe = MakeProbe();
  absl::Status status = probe.Probe(absl::Seconds(1));
  EXPECT_TRUE(absl::IsUnavailable(status));
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr(root_.path() + "/nvidia.com/gpu/.started does not exist"),
                    HasSubstr("mps-control-daemon")));
  EXPECT_THAT(runner_.calls(), IsEmpty());
  EXPECT_EQ(probe.Describe(),
            "the MPS control daemon for 'nvidia.com/gpu' (" + root_.path() + "/nvidia.com/gpu)");
}

TEST_F(MpsDaemonProbeTest, RunsTheClientWithThePipeAndLogDirectories) {
  testing::WriteFile(root_.path() + "/nvidia.com/gpu/.started", "");
  const std::string pipe = root_.path() + "/nvidia.com/gpu/pipe";
  DaemonProbe probe = MakeProbe();
  EXPECT_FALSE(probe.Probe(absl::Seconds(1)).ok());  // no daemon answering
  runner_.StartDaemonOutsideSupervisor(pipe);
  EXPECT_TRUE(probe.Probe(absl::Seconds(1)).ok());
  const auto calls = runner_.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].spec.program, "/opt/bin/nvidia-cuda-mps-control");
  EXPECT_THAT(calls[1].spec.args, IsEmpty());
  EXPECT_EQ(calls[1].spec.stdin_text, "get_default_active_thread_percentage\n");
  EXPECT_EQ(calls[1].spec.timeout, absl::Seconds(1));
  EXPECT_THAT(calls[1].spec.env,
              ElementsAre("PATH=/bin", "CUDA_MPS_PIPE_DIRECTORY=" + pipe,
                          "CUDA_MPS_LOG_DIRECTORY=" + root_.path() + "/nvidia.com/gpu/log"));
}

TEST_F(MpsDaemonProbeTest, HungDaemonIsATimeout) {
  const std::string pipe = root_.path() + "/nvidia.com/gpu/pipe";
  runner_.StartDaemonOutsideSupervisor(pipe);
  runner_.HangDaemon(pipe);
  absl::Status status = MakeProbe(false).Probe(absl::Seconds(2));
  EXPECT_TRUE(absl::IsDeadlineExceeded(status));
  EXPECT_THAT(std::string(status.message()), HasSubstr("no answer within 2s"));
}

TEST(MpsWaitUntilReadyTest, LogsWhatItWaitsForThenReady) {
  FakeClock clock;
  FakeProber probe({absl::UnavailableError("not started: .started does not exist"),
                    absl::UnavailableError("not started: .started does not exist"),
                    absl::UnavailableError("not started: .started does not exist")});
  std::vector<std::string> lines;
  const absl::Time start = clock.Now();
  absl::Status status = WaitUntilReady(probe, clock, {}, nullptr,
                                       [&](const std::string& line) { lines.push_back(line); });
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(probe.probes(), 4);
  EXPECT_EQ(clock.Now() - start, absl::Seconds(3));  // 3 fake one-second waits
  EXPECT_THAT(lines, ElementsAre("waiting for the fake daemon to be ready: not started: "
                                 ".started does not exist",
                                 "the fake daemon is ready (after 3s)"));
}

TEST(MpsWaitUntilReadyTest, ReadyAtOnceLogsNothing) {
  FakeClock clock;
  FakeProber probe({});
  std::vector<std::string> lines;
  EXPECT_TRUE(WaitUntilReady(probe, clock, {}, nullptr, [&](const std::string& line) {
                lines.push_back(line);
              }).ok());
  EXPECT_THAT(lines, IsEmpty());
}

TEST(MpsWaitUntilReadyTest, RepeatsTheWaitingLineAndTimesOut) {
  FakeClock clock;
  FakeProber probe({}, absl::UnavailableError("no daemon"));
  std::vector<std::string> lines;
  WaitOptions options;
  options.timeout = absl::Seconds(65);
  absl::Status status = WaitUntilReady(probe, clock, options, nullptr,
                                       [&](const std::string& line) { lines.push_back(line); });
  EXPECT_TRUE(absl::IsDeadlineExceeded(status));
  EXPECT_EQ(std::string(status.message()), "the fake daemon not ready after 1m5s: no daemon");
  EXPECT_EQ(lines.size(), 3u);  // at 0 s, 30 s, 60 s
}

TEST(MpsWaitUntilReadyTest, CancelStopsWaiting) {
  FakeClock clock;
  FakeProber probe({}, absl::UnavailableError("no daemon"));
  absl::Notification cancel;
  cancel.Notify();
  absl::Status status = WaitUntilReady(probe, clock, {}, &cancel, [](const std::string&) {});
  EXPECT_TRUE(absl::IsCancelled(status));
  EXPECT_EQ(probe.probes(), 1);
}

TEST(MpsDaemonMonitorTest, UnhealthyAfterThresholdAndHealthyAgain) {
  FakeClock clock;
  FakeProber probe({absl::OkStatus(), absl::UnavailableError("down"),
                    absl::UnavailableError("down"), absl::UnavailableError("down"),
                    absl::OkStatus(), absl::UnavailableError("blip"), absl::OkStatus()});
  std::vector<std::string> changes;
  DaemonMonitor monitor(probe, clock, {}, [&](bool healthy, const absl::Status& why) {
    changes.push_back(healthy ? "healthy" : "unhealthy: " + std::string(why.message()));
  });
  std::vector<bool> health;
  for (int i = 0; i < 7; ++i) health.push_back(monitor.CheckOnce());
  EXPECT_THAT(health, ElementsAre(true, true, false, false, true, true, true));
  EXPECT_THAT(changes, ElementsAre("unhealthy: down", "healthy"));
  EXPECT_TRUE(monitor.healthy());
}

TEST(MpsDaemonMonitorTest, RunProbesEveryPeriodUntilStopped) {
  FakeClock clock;
  FakeProber probe({});
  absl::Notification stop;
  DaemonMonitor monitor(probe, clock, {}, nullptr);
  probe.Then(absl::OkStatus());
  std::thread runner([&] { monitor.Run(stop); });
  while (probe.probes() < 5) absl::SleepFor(absl::Milliseconds(1));
  stop.Notify();
  runner.join();
  EXPECT_GE(clock.sleeps(), 4);
}

}  // namespace
}  // namespace nvdp::mps
