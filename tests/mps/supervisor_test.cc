// The supervisor against a simulated nvidia-cuda-mps-control and a fake clock:
// which commands are sent in which mode, markers, compute mode, failure
// reporting, liveness, backoff.
#include "mps/supervisor.h"

#include <optional>
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
using testing::Exists;
using testing::FakeClock;
using testing::FakeRunner;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::Mode;
using ::testing::Not;
using testing::TempDir;

constexpr uint64_t kGiB = uint64_t{1} << 30;

DaemonSpec TwoGpuSpec() {
  DaemonSpec spec;
  spec.name = "nvidia.com/gpu";
  spec.gpus = {{"GPU-aaaa", 3, 40 * kGiB}, {"GPU-bbbb", 5, 80 * kGiB}};
  spec.replicas = 4;
  return spec;
}

class MpsSupervisorTest : public ::testing::Test {
 protected:
  MpsSupervisorTest() : runner_(clock_) {
    options_.mps_root = root_.path() + "/mps";
    options_.set_compute_mode = false;
    options_.base_env = {"PATH=/usr/bin:/bin", "CUDA_MPS_PIPE_DIRECTORY=/wrong"};
  }

  std::unique_ptr<Supervisor> Make(std::vector<DaemonSpec> specs = {TwoGpuSpec()}) {
    return std::make_unique<Supervisor>(std::move(specs), options_, runner_, clock_);
  }
  std::string Pipe(const std::string& name = "nvidia.com/gpu") const {
    return options_.mps_root + "/" + name + "/pipe";
  }
  std::string Started(const std::string& name = "nvidia.com/gpu") const {
    return options_.mps_root + "/" + name + "/.started";
  }
  std::string Ready() const { return options_.mps_root + "/.ready"; }
  DaemonStatus Status(const Supervisor& s, size_t i = 0) const { return s.Statuses().at(i); }

  // Kills the daemon, then ticks at the next liveness probe; returns the
  // backoff chosen.
  absl::Duration FailAndTick(Supervisor& s) {
    runner_.KillDaemon(Pipe());
    clock_.Advance(options_.liveness_period);
    s.Tick();
    return Status(s).next_attempt - clock_.Now();
  }

  TempDir root_;
  FakeClock clock_;
  FakeRunner runner_;
  SupervisorOptions options_;
};

TEST(MpsConfigureCommandsTest, PerContainerSetsOnlyThreadPercentage100) {
  DaemonSpec spec = TwoGpuSpec();
  spec.per_container_limits = true;
  EXPECT_THAT(ConfigureCommands(spec), ElementsAre("set_default_active_thread_percentage 100"));
}

TEST(MpsConfigureCommandsTest, UniformUsesContainerOrdinalsAndUpstreamArithmetic) {
  DaemonSpec spec = TwoGpuSpec();  // host indices 3 and 5
  spec.per_container_limits = false;
  EXPECT_THAT(ConfigureCommands(spec), ElementsAre("set_default_device_pinned_mem_limit 0 10240M",
                                                   "set_default_device_pinned_mem_limit 1 20480M",
                                                   "set_default_active_thread_percentage 25"));
  spec.replicas = 3;  // 40 GiB / 3 = 13653.33 MiB, 100 / 3 = 33
  EXPECT_THAT(ConfigureCommands(spec), Contains("set_default_device_pinned_mem_limit 0 13653M"));
  EXPECT_THAT(ConfigureCommands(spec), Contains("set_default_active_thread_percentage 33"));
  spec.replicas = 200;  // never 0%
  EXPECT_THAT(ConfigureCommands(spec), Contains("set_default_active_thread_percentage 1"));
}

TEST(MpsConfigureCommandsTest, UniformWithoutMemoryLimit) {
  DaemonSpec spec = TwoGpuSpec();
  spec.per_container_limits = false;
  spec.uniform_memory_limit = false;
  EXPECT_THAT(ConfigureCommands(spec), ElementsAre("set_default_active_thread_percentage 25"));
}

TEST_F(MpsSupervisorTest, PerContainerStartScopesTheDaemonAndSetsNoCaps) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());

  const auto launches = runner_.Launches();
  ASSERT_EQ(launches.size(), 1u);
  EXPECT_EQ(launches[0].kind, "spawn");
  EXPECT_EQ(launches[0].spec.program, "nvidia-cuda-mps-control");
  EXPECT_THAT(launches[0].spec.args, ElementsAre("-f"));
  EXPECT_THAT(launches[0].spec.env,
              AllOf(Contains("PATH=/usr/bin:/bin"), Contains("CUDA_MPS_PIPE_DIRECTORY=" + Pipe()),
                    Contains("CUDA_MPS_LOG_DIRECTORY=" + options_.mps_root + "/nvidia.com/gpu/log"),
                    Contains("CUDA_VISIBLE_DEVICES=GPU-aaaa,GPU-bbbb"),
                    Not(Contains("CUDA_MPS_PIPE_DIRECTORY=/wrong"))));
  EXPECT_THAT(runner_.Commands(Pipe(), /*with_probes=*/false),
              ElementsAre("set_default_active_thread_percentage 100"));
  EXPECT_THAT(runner_.SmiCalls(), IsEmpty());

  EXPECT_EQ(Mode(options_.mps_root + "/nvidia.com"), 0755);
  EXPECT_EQ(Mode(options_.mps_root + "/nvidia.com/gpu"), 0755);
  EXPECT_EQ(Mode(Pipe()), 0755);
  EXPECT_EQ(Mode(options_.mps_root + "/nvidia.com/gpu/log"), 0755);
  EXPECT_TRUE(Exists(Started()));
  EXPECT_TRUE(Exists(Ready()));
  EXPECT_EQ(Status(*s).state, DaemonState::kUp);
  EXPECT_EQ(Status(*s).pid, 4242);
}

TEST_F(MpsSupervisorTest, UniformModeSendsUpstreamDefaults) {
  DaemonSpec spec = TwoGpuSpec();
  spec.per_container_limits = false;
  auto s = Make({spec});
  ASSERT_TRUE(s->StartAll().ok());
  EXPECT_THAT(runner_.Commands(Pipe(), false),
              ElementsAre("set_default_device_pinned_mem_limit 0 10240M",
                          "set_default_device_pinned_mem_limit 1 20480M",
                          "set_default_active_thread_percentage 25"));
}

TEST_F(MpsSupervisorTest, ProbesBeforeLaunchThenUntilReady) {
  FakeRunner::Knobs knobs;
  knobs.probes_fail_after_start = 3;
  runner_.SetKnobs(knobs);
  auto s = Make();
  const absl::Time start = clock_.Now();
  ASSERT_TRUE(s->StartAll().ok());
  // One probe for a left-over daemon, then 3 failing and 1 answering probe,
  // then configuration.
  EXPECT_THAT(runner_.Commands(Pipe()),
              ElementsAre(kProbeCommand, kProbeCommand, kProbeCommand, kProbeCommand, kProbeCommand,
                          "set_default_active_thread_percentage 100"));
  EXPECT_EQ(clock_.Now() - start,
            3 * options_.ready_poll_interval);  // fake sleeps only
}

TEST_F(MpsSupervisorTest, ComputeModeSetBeforeLaunchAndRestoredOnStop) {
  options_.set_compute_mode = true;
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  EXPECT_THAT(runner_.SmiCalls(),
              ElementsAre("-i GPU-aaaa -c EXCLUSIVE_PROCESS", "-i GPU-bbbb -c EXCLUSIVE_PROCESS"));
  const auto calls = runner_.calls();
  ASSERT_GE(calls.size(), 3u);
  EXPECT_EQ(calls[0].spec.program, "nvidia-smi");  // before anything else
  EXPECT_EQ(calls[1].spec.program, "nvidia-smi");

  runner_.ClearCalls();
  ASSERT_TRUE(s->StopAll().ok());
  EXPECT_THAT(runner_.Commands(Pipe()), ElementsAre("quit"));
  EXPECT_THAT(runner_.SmiCalls(), ElementsAre("-i GPU-aaaa -c DEFAULT", "-i GPU-bbbb -c DEFAULT"));
  EXPECT_FALSE(Exists(Started()));
  EXPECT_FALSE(Exists(Ready()));
  EXPECT_FALSE(runner_.DaemonRunning(Pipe()));
  EXPECT_EQ(Status(*s).state, DaemonState::kStopped);
}

TEST_F(MpsSupervisorTest, ComputeModeSetOnlyOnceAcrossRestarts) {
  options_.set_compute_mode = true;
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  FailAndTick(*s);
  clock_.Advance(absl::Seconds(1));
  s->Tick();
  EXPECT_EQ(Status(*s).state, DaemonState::kUp);
  EXPECT_EQ(runner_.SmiCalls().size(), 2u);
}

TEST_F(MpsSupervisorTest, ComputeModeFailureIsClearAndTheDaemonIsNotStarted) {
  options_.set_compute_mode = true;
  FakeRunner::Knobs knobs;
  knobs.smi_exit_code = 4;
  knobs.smi_output =
      "Unable to set the compute mode for GPU 00000000:07:00.0: Insufficient "
      "Permissions";
  runner_.SetKnobs(knobs);
  auto s = Make();
  absl::Status status = s->StartAll();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("EXCLUSIVE_PROCESS"), HasSubstr("GPU-aaaa"), HasSubstr("index 3"),
                    HasSubstr("exit status 4"), HasSubstr("Insufficient Permissions"),
                    HasSubstr("--set-compute-mode=false")));
  EXPECT_THAT(runner_.Launches(), IsEmpty());
  EXPECT_EQ(Status(*s).state, DaemonState::kDown);
  EXPECT_FALSE(Exists(Ready()));
}

TEST_F(MpsSupervisorTest, ComputeModeOffRunsNoNvidiaSmi) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  ASSERT_TRUE(s->StopAll().ok());
  EXPECT_THAT(runner_.SmiCalls(), IsEmpty());
}

// MPS on MIG: one daemon per MIG device, named <resource>/MIG-<uuid> (sharing::MpsDaemonKey), its
// directory under the resource's, CUDA_VISIBLE_DEVICES the MIG UUID, and no compute mode change
// (it belongs to the whole GPU and MPS on MIG does not need it).
TEST_F(MpsSupervisorTest, MigDeviceDaemonsAreScopedToTheirDeviceAndLeaveComputeModeAlone) {
  options_.set_compute_mode = true;
  std::vector<DaemonSpec> specs;
  for (const char* uuid : {"MIG-aaaa", "MIG-bbbb"}) {
    DaemonSpec spec;
    spec.name = std::string("nvidia.com/mig-1g.5gb/") + uuid;
    spec.gpus = {{uuid, 0, 4864ull << 20}};
    spec.replicas = 10;
    specs.push_back(spec);
  }
  auto s = Make(specs);
  ASSERT_TRUE(s->StartAll().ok());
  const auto launches = runner_.Launches();
  ASSERT_EQ(launches.size(), 2u);
  EXPECT_THAT(launches[1].spec.env,
              AllOf(Contains("CUDA_MPS_PIPE_DIRECTORY=" + Pipe("nvidia.com/mig-1g.5gb/MIG-bbbb")),
                    Contains("CUDA_VISIBLE_DEVICES=MIG-bbbb")));
  EXPECT_THAT(runner_.SmiCalls(), IsEmpty());
  EXPECT_TRUE(Exists(Started("nvidia.com/mig-1g.5gb/MIG-aaaa")));
  EXPECT_TRUE(Exists(Ready()));
  ASSERT_TRUE(s->StopAll().ok());
  EXPECT_THAT(runner_.SmiCalls(), IsEmpty());
}

TEST_F(MpsSupervisorTest, MissingControlBinaryIsReported) {
  FakeRunner::Knobs knobs;
  knobs.control_binary_missing = true;
  runner_.SetKnobs(knobs);
  auto s = Make();
  absl::Status status = s->StartAll();
  EXPECT_THAT(
      std::string(status.message()),
      AllOf(HasSubstr("nvidia.com/gpu"), HasSubstr("nvidia-cuda-mps-control: not found in PATH")));
  EXPECT_EQ(Status(*s).state, DaemonState::kDown);
  EXPECT_TRUE(absl::IsNotFound(Status(*s).last_error));
}

TEST_F(MpsSupervisorTest, BackgroundLaunchFailureCarriesTheLaunchersOutput) {
  options_.launch_mode = LaunchMode::kBackground;
  FakeRunner::Knobs knobs;
  knobs.launcher_exit_code = 1;
  knobs.launcher_stderr = "An instance of this daemon is already running";
  runner_.SetKnobs(knobs);
  auto s = Make();
  absl::Status status = s->StartAll();
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("nvidia-cuda-mps-control -d` failed (exit status 1)"),
                    HasSubstr("already running"), HasSubstr("control.log")));
}

TEST_F(MpsSupervisorTest, BackgroundModeUsesTheLauncherAndQuit) {
  options_.launch_mode = LaunchMode::kBackground;
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  const auto launches = runner_.Launches();
  ASSERT_EQ(launches.size(), 1u);
  EXPECT_EQ(launches[0].kind, "run");
  EXPECT_THAT(launches[0].spec.args, ElementsAre("-d"));
  EXPECT_THAT(launches[0].spec.env, Contains("CUDA_VISIBLE_DEVICES=GPU-aaaa,GPU-bbbb"));
  EXPECT_FALSE(Status(*s).pid.has_value());
  ASSERT_TRUE(s->StopAll().ok());
  EXPECT_FALSE(runner_.DaemonRunning(Pipe()));
}

TEST_F(MpsSupervisorTest, HangingLauncherIsReported) {
  options_.launch_mode = LaunchMode::kBackground;
  FakeRunner::Knobs knobs;
  knobs.launcher_hangs = true;
  runner_.SetKnobs(knobs);
  auto s = Make();
  absl::Status status = s->StartAll();
  EXPECT_THAT(std::string(status.message()), HasSubstr("did not finish within 30s"));
  EXPECT_EQ(Status(*s).state, DaemonState::kDown);
}

TEST_F(MpsSupervisorTest, DaemonThatExitsAtOnceIsReported) {
  FakeRunner::Knobs knobs;
  knobs.exit_at_once = true;
  runner_.SetKnobs(knobs);
  auto s = Make();
  absl::Status status = s->StartAll();
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("exited at once (exit status 1)"), HasSubstr("control.log")));
  EXPECT_EQ(Status(*s).state, DaemonState::kDown);
}

TEST_F(MpsSupervisorTest, ReadyTimeoutStopsTheDaemon) {
  options_.ready_timeout = absl::Seconds(5);
  FakeRunner::Knobs knobs;
  knobs.probes_fail_after_start = 1000;
  runner_.SetKnobs(knobs);
  auto s = Make();
  const absl::Time start = clock_.Now();
  absl::Status status = s->StartAll();
  EXPECT_TRUE(absl::IsUnavailable(status));
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("did not answer within 5s"), HasSubstr("Cannot find MPS control")));
  EXPECT_GE(clock_.Now() - start, absl::Seconds(5));
  EXPECT_LT(clock_.Now() - start, absl::Seconds(6));
  EXPECT_FALSE(runner_.DaemonRunning(Pipe()));
  EXPECT_TRUE(absl::IsDeadlineExceeded(Status(*s).last_error));
}

TEST_F(MpsSupervisorTest, RejectedConfigurationShutsTheDaemonDown) {
  FakeRunner::Knobs knobs;
  knobs.reject_verb = "set_default_active_thread_percentage";
  runner_.SetKnobs(knobs);
  auto s = Make();
  absl::Status status = s->StartAll();
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("configuring the daemon"),
                    HasSubstr("`set_default_active_thread_percentage 100`"),
                    HasSubstr("exit status 1"), HasSubstr("rejected")));
  EXPECT_THAT(runner_.Commands(Pipe()), Contains("quit"));
  EXPECT_FALSE(runner_.DaemonRunning(Pipe()));
  EXPECT_FALSE(Exists(Started()));
}

TEST_F(MpsSupervisorTest, LeftOverDaemonIsQuitBeforeStarting) {
  runner_.StartDaemonOutsideSupervisor(Pipe());
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  EXPECT_THAT(runner_.Commands(Pipe()),
              ElementsAre(kProbeCommand, "quit", kProbeCommand, kProbeCommand,
                          "set_default_active_thread_percentage 100"));
}

TEST_F(MpsSupervisorTest, StaleMarkersAreRemovedAtStart) {
  options_.set_compute_mode = true;
  FakeRunner::Knobs knobs;
  knobs.smi_exit_code = 9;
  runner_.SetKnobs(knobs);
  std::filesystem::create_directories(options_.mps_root + "/nvidia.com/gpu");
  testing::WriteFile(Ready(), "");
  testing::WriteFile(Started(), "");
  auto s = Make();
  EXPECT_FALSE(s->StartAll().ok());
  EXPECT_FALSE(Exists(Ready()));
  EXPECT_FALSE(Exists(Started()));
}

TEST_F(MpsSupervisorTest, DeadDaemonIsMarkedDownAndRestarted) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  runner_.ClearCalls();

  EXPECT_EQ(FailAndTick(*s), absl::Seconds(1));
  EXPECT_EQ(Status(*s).state, DaemonState::kDown);
  EXPECT_THAT(std::string(Status(*s).last_error.message()), HasSubstr("exited (exit status 1)"));
  EXPECT_FALSE(Exists(Started()));
  EXPECT_FALSE(Exists(Ready()));
  EXPECT_THAT(runner_.Commands(Pipe()),
              IsEmpty());  // the child's exit was seen without a probe

  clock_.Advance(absl::Milliseconds(999));
  s->Tick();
  EXPECT_EQ(Status(*s).state, DaemonState::kDown);  // not due yet
  clock_.Advance(absl::Milliseconds(1));
  s->Tick();
  EXPECT_EQ(Status(*s).state, DaemonState::kUp);
  EXPECT_EQ(Status(*s).starts, 2);
  EXPECT_EQ(Status(*s).failures, 1);
  EXPECT_TRUE(Exists(Started()));
  EXPECT_TRUE(Exists(Ready()));
  EXPECT_THAT(runner_.Commands(Pipe(), false),
              ElementsAre("set_default_active_thread_percentage 100"));
}

TEST_F(MpsSupervisorTest, ExitedChildIsSeenAtTheNextTickWithoutWaitingForItsProbe) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  runner_.ClearCalls();
  runner_.KillDaemon(Pipe());
  s->Tick();  // what Wake (SIGCHLD) triggers: no probe is due yet
  EXPECT_EQ(Status(*s).state, DaemonState::kDown);
  EXPECT_THAT(std::string(Status(*s).last_error.message()), HasSubstr("exited (exit status 1)"));
  EXPECT_FALSE(Exists(Started()));
  EXPECT_FALSE(Exists(Ready()));
  EXPECT_THAT(runner_.Commands(Pipe()), IsEmpty());
  EXPECT_EQ(Status(*s).next_attempt, clock_.Now() + options_.backoff_initial);
  clock_.Set(Status(*s).next_attempt);
  s->Tick();
  EXPECT_EQ(Status(*s).state, DaemonState::kUp);
  EXPECT_TRUE(Exists(Started()));
  EXPECT_TRUE(Exists(Ready()));
}

TEST_F(MpsSupervisorTest, BackgroundDaemonIsStillOnlyProbedWhenDue) {
  options_.launch_mode = LaunchMode::kBackground;
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  runner_.KillDaemon(Pipe());
  s->Tick();  // no child to reap, no probe due: nothing is known yet
  EXPECT_EQ(Status(*s).state, DaemonState::kUp);
  clock_.Advance(options_.liveness_period);
  s->Tick();
  EXPECT_EQ(Status(*s).state, DaemonState::kDown);
}

TEST_F(MpsSupervisorTest, WakeCutsRunsSleepShort) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  // Run sleeps until the next probe, 10 s of the fake clock away; Wake makes it tick first. The
  // fake clock's sleeps return at once, so this only checks that Run keeps going and stops.
  std::thread run([&] { s->Run(); });
  s->Wake();
  runner_.KillDaemon(Pipe());
  s->Wake();
  EXPECT_TRUE(
      s->WaitForStatus([](const std::vector<DaemonStatus>& st) { return st.at(0).failures >= 1; },
                       absl::Seconds(20)));
  s->RequestStop();
  run.join();
}

TEST_F(MpsSupervisorTest, FailedLivenessProbeInBackgroundModeRestarts) {
  options_.launch_mode = LaunchMode::kBackground;
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  FailAndTick(*s);
  EXPECT_EQ(Status(*s).state, DaemonState::kDown);
  EXPECT_THAT(std::string(Status(*s).last_error.message()),
              AllOf(HasSubstr("liveness probe failed"), HasSubstr("Cannot find MPS control")));
  clock_.Advance(absl::Seconds(1));
  s->Tick();
  EXPECT_EQ(Status(*s).state, DaemonState::kUp);
}

TEST_F(MpsSupervisorTest, HungDaemonIsKilledAndRestarted) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  runner_.HangDaemon(Pipe());
  clock_.Advance(options_.liveness_period);
  s->Tick();
  EXPECT_EQ(Status(*s).state, DaemonState::kDown);
  EXPECT_TRUE(absl::IsDeadlineExceeded(Status(*s).last_error));
  EXPECT_THAT(std::string(Status(*s).last_error.message()), HasSubstr("no answer within 5s"));
  EXPECT_EQ(runner_.terminations(), 1);  // quit hung too, so SIGTERM/SIGKILL
  EXPECT_FALSE(runner_.DaemonRunning(Pipe()));
  clock_.Set(Status(*s).next_attempt);
  s->Tick();
  EXPECT_EQ(Status(*s).state, DaemonState::kUp);
}

TEST_F(MpsSupervisorTest, HealthyDaemonIsProbedEveryPeriod) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  runner_.ClearCalls();
  EXPECT_EQ(s->Tick(),
            clock_.Now() + options_.liveness_period);  // nothing due yet
  EXPECT_THAT(runner_.Commands(Pipe()), IsEmpty());
  clock_.Advance(options_.liveness_period);
  EXPECT_EQ(s->Tick(), clock_.Now() + options_.liveness_period);
  EXPECT_THAT(runner_.Commands(Pipe()), ElementsAre(kProbeCommand));
  EXPECT_EQ(Status(*s).state, DaemonState::kUp);
}

TEST_F(MpsSupervisorTest, BackoffDoublesUpToTheCap) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  FakeRunner::Knobs knobs;
  knobs.exit_at_once = true;  // every restart fails
  runner_.SetKnobs(knobs);
  std::vector<int64_t> delays = {absl::ToInt64Seconds(FailAndTick(*s))};
  for (int i = 0; i < 8; ++i) {
    const absl::Time due = Status(*s).next_attempt;
    // Tick says when to come back: the restart, or the next period if that is
    // sooner.
    EXPECT_EQ(s->Tick(), std::min(due, clock_.Now() + options_.liveness_period));
    clock_.Set(due);
    s->Tick();
    delays.push_back(absl::ToInt64Seconds(Status(*s).next_attempt - clock_.Now()));
  }
  EXPECT_THAT(delays, ElementsAre(1, 2, 4, 8, 16, 32, 60, 60, 60));
  EXPECT_EQ(Status(*s).consecutive_failures, 9);
  EXPECT_FALSE(Exists(Ready()));
}

TEST_F(MpsSupervisorTest, BackoffStartsOverAfterSustainedHealth) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  EXPECT_EQ(FailAndTick(*s), absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  s->Tick();  // back up
  EXPECT_EQ(FailAndTick(*s),
            absl::Seconds(2));  // died again soon: keep backing off
  clock_.Advance(absl::Seconds(2));
  s->Tick();
  clock_.Advance(options_.backoff_reset_after);
  s->Tick();
  EXPECT_EQ(Status(*s).state, DaemonState::kUp);
  EXPECT_EQ(FailAndTick(*s), absl::Seconds(1));
}

TEST_F(MpsSupervisorTest, ReadyOnlyWhenEveryResourceIsUp) {
  DaemonSpec other = TwoGpuSpec();
  other.name = "nvidia.com/gpu-b";
  other.gpus = {{"GPU-cccc", 0, 16 * kGiB}};
  auto s = Make({TwoGpuSpec(), other});
  ASSERT_TRUE(s->StartAll().ok());
  EXPECT_TRUE(Exists(Ready()));
  runner_.KillDaemon(Pipe("nvidia.com/gpu-b"));
  clock_.Advance(options_.liveness_period);
  s->Tick();
  EXPECT_FALSE(Exists(Ready()));
  EXPECT_TRUE(Exists(Started()));
  EXPECT_FALSE(Exists(Started("nvidia.com/gpu-b")));
  clock_.Advance(absl::Seconds(1));
  s->Tick();
  EXPECT_TRUE(Exists(Ready()));
  EXPECT_TRUE(Exists(Started("nvidia.com/gpu-b")));
  // The second daemon only got its own GPU.
  EXPECT_THAT(runner_.Launches().back().spec.env, Contains("CUDA_VISIBLE_DEVICES=GPU-cccc"));
}

TEST_F(MpsSupervisorTest, StopRequestCutsReadinessShort) {
  FakeRunner::Knobs knobs;
  knobs.probes_fail_after_start = 1000;
  runner_.SetKnobs(knobs);
  auto s = Make();
  runner_.on_run = [&](const CommandSpec& spec) {
    if (!runner_.Launches().empty() && spec.stdin_text == std::string(kProbeCommand) + "\n") {
      s->RequestStop();
    }
  };
  const absl::Time start = clock_.Now();
  absl::Status status = s->StartAll();
  EXPECT_THAT(std::string(status.message()), HasSubstr("stop requested"));
  EXPECT_EQ(clock_.Now(), start);  // no readiness wait at all
  EXPECT_TRUE(absl::IsCancelled(Status(*s).last_error));
  EXPECT_FALSE(runner_.DaemonRunning(Pipe()));
  s->Run();  // returns at once
}

TEST_F(MpsSupervisorTest, StopRequestedBeforeStartStartsNothing) {
  auto s = Make();
  s->RequestStop();
  EXPECT_FALSE(s->StartAll().ok());
  EXPECT_THAT(runner_.Launches(), IsEmpty());
}

TEST_F(MpsSupervisorTest, InvalidSpecsStartNothing) {
  DaemonSpec empty = TwoGpuSpec();
  empty.name = "nvidia.com/x";
  empty.gpus.clear();
  std::vector<DaemonSpec> specs = {empty};
  // Full names "<domain>/<name>" (or "<domain>/<name>/MIG-<uuid>") only, no part hidden, and never
  // the shm directory.
  for (const char* name : {"gpu", "shm/gpu", "nvidia.com/gpu/pipe", "/gpu", "nvidia.com/", "../gpu",
                           "nvidia.com/..", ".ready/gpu", "", "nvidia.com/gpu/MIG-a/b"}) {
    DaemonSpec bad = TwoGpuSpec();
    bad.name = name;
    specs.push_back(bad);
  }
  auto s = Make(specs);
  absl::Status status = s->StartAll();
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("invalid MPS resource name \"gpu\" (need <domain>/<name>"),
                    HasSubstr("invalid MPS resource name \"shm/gpu\""),
                    HasSubstr("invalid MPS resource name \"nvidia.com/gpu/pipe\""),
                    HasSubstr("invalid MPS resource name \"/gpu\""),
                    HasSubstr("invalid MPS resource name \"nvidia.com/\""),
                    HasSubstr("invalid MPS resource name \"../gpu\""),
                    HasSubstr("invalid MPS resource name \"nvidia.com/..\""),
                    HasSubstr("invalid MPS resource name \".ready/gpu\""),
                    HasSubstr("invalid MPS resource name \"\""),
                    HasSubstr("invalid MPS resource name \"nvidia.com/gpu/MIG-a/b\""),
                    HasSubstr("\"nvidia.com/x\" has no GPUs")));
  EXPECT_THAT(std::string(status.message()),
              Not(HasSubstr("invalid MPS resource name \"nvidia.com/x\"")));
  EXPECT_THAT(runner_.calls(), IsEmpty());

  options_.mps_root = "relative";
  EXPECT_TRUE(absl::IsInvalidArgument(Make()->StartAll()));
}

TEST_F(MpsSupervisorTest, DestructorStopsDaemons) {
  {
    auto s = Make();
    ASSERT_TRUE(s->StartAll().ok());
  }
  EXPECT_FALSE(runner_.DaemonRunning(Pipe()));
  EXPECT_FALSE(Exists(Ready()));
}

TEST_F(MpsSupervisorTest, StopAllIsIdempotent) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  ASSERT_TRUE(s->StopAll().ok());
  runner_.ClearCalls();
  ASSERT_TRUE(s->StopAll().ok());
  EXPECT_THAT(runner_.calls(), IsEmpty());
}

TEST_F(MpsSupervisorTest, WaitForStatusSeesPublishedState) {
  auto s = Make();
  EXPECT_FALSE(s->WaitForStatus([](const auto& st) { return st[0].state == DaemonState::kUp; },
                                absl::ZeroDuration()));
  ASSERT_TRUE(s->StartAll().ok());
  EXPECT_TRUE(s->WaitForStatus([](const auto& st) { return st[0].state == DaemonState::kUp; },
                               absl::ZeroDuration()));
}

TEST(MpsConfigureCommandsTest, UniformSkipsTheMemoryLimitOfAGpuOfUnknownSize) {
  DaemonSpec spec = TwoGpuSpec();
  spec.per_container_limits = false;
  spec.gpus[0].memory_bytes = 0;  // NVML could not report it
  EXPECT_THAT(ConfigureCommands(spec), ElementsAre("set_default_device_pinned_mem_limit 1 20480M",
                                                   "set_default_active_thread_percentage 25"));
}

// A reload keeps unchanged daemons running, restarts changed ones, stops removed ones and starts
// new ones; .ready follows.
TEST_F(MpsSupervisorTest, UpdateRestartsOnlyWhatChanged) {
  auto named = [](const std::string& name, const std::string& uuid, int replicas) {
    DaemonSpec spec;
    spec.name = name;
    spec.gpus = {{uuid, 0, 40 * kGiB}};
    spec.replicas = replicas;
    spec.per_container_limits = false;  // uniform: the replicas show in the commands
    return spec;
  };
  auto s = Make({named("nvidia.com/a", "GPU-a", 4), named("nvidia.com/b", "GPU-b", 4),
                 named("nvidia.com/c", "GPU-c", 4)});
  ASSERT_TRUE(s->StartAll().ok());
  ASSERT_EQ(runner_.Launches().size(), 3u);
  const auto pid_of = [&](const std::string& name) -> std::optional<int> {
    for (const auto& status : s->Statuses()) {
      if (status.name == name) return status.pid;
    }
    return std::nullopt;
  };
  const auto a = pid_of("nvidia.com/a");

  // a unchanged, b changed, c removed, d new.
  ASSERT_TRUE(s->Update({named("nvidia.com/a", "GPU-a", 4), named("nvidia.com/b", "GPU-b", 8),
                         named("nvidia.com/d", "GPU-d", 4)})
                  .ok());
  const auto launches = runner_.Launches();
  ASSERT_EQ(launches.size(), 5u);  // b again and d
  EXPECT_THAT(launches[3].spec.env, Contains("CUDA_VISIBLE_DEVICES=GPU-b"));
  EXPECT_THAT(launches[4].spec.env, Contains("CUDA_VISIBLE_DEVICES=GPU-d"));
  EXPECT_EQ(pid_of("nvidia.com/a"), a);
  EXPECT_EQ(pid_of("nvidia.com/c"), std::nullopt);
  EXPECT_THAT(runner_.Commands(Pipe("nvidia.com/c"), false), Contains("quit"));
  EXPECT_THAT(runner_.Commands(Pipe("nvidia.com/a"), false), Not(Contains("quit")));
  EXPECT_THAT(runner_.Commands(Pipe("nvidia.com/b"), false),
              Contains("set_default_active_thread_percentage 12"));
  EXPECT_FALSE(Exists(Started("nvidia.com/c")));
  EXPECT_TRUE(Exists(Started("nvidia.com/d")));
  EXPECT_TRUE(Exists(Ready()));
}

TEST_F(MpsSupervisorTest, UpdateWithInvalidSpecsChangesNothing) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  DaemonSpec bad = TwoGpuSpec();
  bad.name = "no-domain";
  EXPECT_EQ(s->Update({bad}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(runner_.Launches().size(), 1u);
  EXPECT_EQ(Status(*s).state, DaemonState::kUp);
  EXPECT_TRUE(Exists(Ready()));
}

}  // namespace
}  // namespace nvdp::mps
