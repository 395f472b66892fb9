// The plugin-side probe, WaitUntilReady and DaemonMonitor, with fakes (no
// processes, no sleeps).
#include "mps/probe.h"

#include <string>
#include <thread>
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
  DaemonMonitor monitor(probe, clock, {}, nullptr);
  probe.Then(absl::OkStatus());
  std::thread runner([&] { monitor.Run(); });
  while (probe.probes() < 5) absl::SleepFor(absl::Milliseconds(1));
  monitor.RequestStop();
  runner.join();
  EXPECT_GE(clock.sleeps(), 4);
}

// Records the monitor's callbacks as "healthy" / "unhealthy: <why>".
class Changes {
 public:
  DaemonMonitor::Callback Callback() {
    return [this](bool healthy, const absl::Status& why) {
      absl::MutexLock lock(&mu_);
      seen_.push_back(healthy ? "healthy" : "unhealthy: " + std::string(why.message()));
    };
  }
  std::vector<std::string> seen() const {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

TEST(MpsDaemonMonitorTest, MarkerRemovalIsUnhealthyAtOnceWithoutAProbe) {
  FakeClock clock;
  FakeProber probe({});
  Changes changes;
  DaemonMonitor monitor(probe, clock, {}, changes.Callback());
  monitor.Step();  // the first periodic probe
  ASSERT_EQ(probe.probes(), 1);
  probe.Then(absl::UnavailableError("down"));
  monitor.MarkerChanged(false);
  const absl::Time next = monitor.Step();
  EXPECT_EQ(probe.probes(), 1);
  EXPECT_FALSE(monitor.healthy());
  EXPECT_THAT(changes.seen(), ElementsAre(HasSubstr("unhealthy: its .started marker was removed")));
  EXPECT_EQ(next, clock.Now() + absl::Seconds(10));  // the backstop probe stays periodic
  // Failed periodic probes report nothing more.
  clock.Set(next);
  monitor.Step();
  EXPECT_EQ(changes.seen().size(), 1u);
}

TEST(MpsDaemonMonitorTest, MarkerCreationIsProbedAtOnceAndRetriedBriefly) {
  FakeClock clock;
  FakeProber probe({});
  Changes changes;
  MonitorOptions options;
  DaemonMonitor monitor(probe, clock, options, changes.Callback());
  monitor.Step();
  monitor.MarkerChanged(false);
  monitor.Step();
  // Back, but the daemon answers only at the third probe.
  probe.Then(absl::UnavailableError("not yet"));
  monitor.MarkerChanged(true);
  const int before = probe.probes();
  absl::Time next = monitor.Step();
  EXPECT_EQ(probe.probes(), before + 1);
  EXPECT_EQ(next, clock.Now() + options.recheck_interval);
  clock.Set(next);
  monitor.Step();
  EXPECT_FALSE(monitor.healthy());
  probe.Then(absl::OkStatus());
  clock.Advance(options.recheck_interval);
  next = monitor.Step();
  EXPECT_TRUE(monitor.healthy());
  EXPECT_EQ(probe.probes(), before + 3);
  EXPECT_EQ(next, clock.Now() + options.period);  // rechecks end once it answers
  EXPECT_THAT(changes.seen(), ElementsAre(HasSubstr("unhealthy"), "healthy"));
}

TEST(MpsDaemonMonitorTest, RechecksGiveUpAfterAWhileAndLeaveItToThePeriodicProbe) {
  FakeClock clock;
  FakeProber probe({});
  MonitorOptions options;
  DaemonMonitor monitor(probe, clock, options, nullptr);
  monitor.Step();
  monitor.MarkerChanged(false);
  probe.Then(absl::UnavailableError("hung"));
  monitor.MarkerChanged(true);
  absl::Time next = monitor.Step();
  const absl::Time give_up = clock.Now() + options.recheck_for;
  while (next < give_up) {
    clock.Set(next);
    next = monitor.Step();
  }
  clock.Set(next);
  next = monitor.Step();
  EXPECT_GT(next - clock.Now(), options.recheck_interval);
  EXPECT_FALSE(monitor.healthy());
}

TEST(MpsDaemonMonitorTest, ABlipIsReportedInOrderEvenWhenHandledAtOnce) {
  FakeClock clock;
  FakeProber probe({});
  Changes changes;
  DaemonMonitor monitor(probe, clock, {}, changes.Callback());
  monitor.Step();
  // Down and back before the monitor looked: both are reported.
  monitor.MarkerChanged(false);
  monitor.MarkerChanged(true);
  monitor.Step();
  EXPECT_TRUE(monitor.healthy());
  EXPECT_THAT(changes.seen(), ElementsAre(HasSubstr("unhealthy"), "healthy"));
  // Back, then down again: stays unhealthy, no probe is believed over the marker.
  monitor.MarkerChanged(false);
  monitor.MarkerChanged(true);
  monitor.MarkerChanged(false);
  const int before = probe.probes();
  monitor.Step();
  EXPECT_EQ(probe.probes(), before);
  EXPECT_FALSE(monitor.healthy());
  EXPECT_EQ(changes.seen().size(), 3u);
}

TEST(MpsDaemonMonitorTest, ChangesSupersededByAReadinessProbeAreForgotten) {
  FakeClock clock;
  FakeProber probe({}, absl::UnavailableError("no marker"));
  Changes changes;
  DaemonMonitor monitor(probe, clock, {}, changes.Callback());
  monitor.MarkerChanged(false);  // a stale marker removed, then the daemon's own created
  monitor.MarkerChanged(true);
  const uint64_t before_ready_probe = monitor.MarkerChanges();
  EXPECT_EQ(before_ready_probe, 2u);
  monitor.MarkerChanged(false);  // after the readiness probe began: a real outage
  monitor.ForgetMarkerChangesThrough(before_ready_probe);
  monitor.Step();
  EXPECT_THAT(changes.seen(), ElementsAre(HasSubstr("unhealthy")));
}

TEST(MpsDaemonMonitorTest, RunWakesForMarkerChanges) {
  // The real clock and a period of an hour: only the marker can make Run act.
  FakeProber probe({});
  Changes changes;
  MonitorOptions options;
  options.period = absl::Hours(1);
  DaemonMonitor monitor(probe, RealClock(), options, changes.Callback());
  std::thread runner([&] { monitor.Run(); });
  monitor.MarkerChanged(false);
  monitor.MarkerChanged(true);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (changes.seen().size() < 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  monitor.RequestStop();
  runner.join();
  EXPECT_THAT(changes.seen(), ElementsAre(HasSubstr("unhealthy"), "healthy"));
}

TEST(MpsWakeupTest, AWakeIsNeverLost) {
  FakeClock clock;
  Wakeup wakeup;
  wakeup.Wake();  // before the sleep: the sleep returns at once
  const absl::Time start = clock.Now();
  EXPECT_FALSE(wakeup.SleepUntil(clock, start + absl::Hours(1)));
  EXPECT_EQ(clock.Now(), start);
  EXPECT_TRUE(wakeup.SleepUntil(clock, start + absl::Hours(1)));  // consumed: a full sleep
  EXPECT_EQ(clock.Now(), start + absl::Hours(1));

  Wakeup real;
  std::thread waker([&] { real.Wake(); });
  real.SleepUntil(RealClock(), absl::InfiniteFuture());  // returns: woken during or before
  waker.join();
}

}  // namespace
}  // namespace nvdp::mps
