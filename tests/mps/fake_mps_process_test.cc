// The supervisor through the real spawn code against fake-mps-control (a real
// executable that behaves like nvidia-cuda-mps-control), in both launch modes,
// including its failure modes. Waits are on observable state with deadlines
// (the supervisor's WaitForStatus, files the fake writes), never fixed sleeps.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/probe.h"
#include "mps/supervisor.h"
#include "mps/temp_dir.h"

namespace nvdp::mps {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using testing::Exists;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

constexpr uint64_t kGiB = uint64_t{1} << 30;

std::string FakeBinary() {
  const char* dir = std::getenv("NVDP_BIN_DIR");  // set by ctest
#ifdef NVDP_TEST_BIN_DIR
  if (dir == nullptr) dir = NVDP_TEST_BIN_DIR;  // running the test binary by hand
#endif
  return std::string(dir != nullptr ? dir : "bin") + "/fake-mps-control";
}

std::vector<std::string> Lines(const std::string& path) {
  return absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty());
}

// Polls observable state until it holds or the deadline passes.
bool Eventually(const std::function<bool()>& condition,
                absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

bool ProcessGone(int pid) {
  if (kill(pid, 0) != 0) return true;
  // An orphaned zombie (reparented to an init that does not reap) counts as
  // gone.
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

std::string ParamName(const ::testing::TestParamInfo<LaunchMode>& param) {
  return param.param == LaunchMode::kForeground ? "Foreground" : "Background";
}

class FakeMpsTest : public ::testing::TestWithParam<LaunchMode> {
 protected:
  FakeMpsTest() {
    options_.mps_root = dir_.path() + "/mps";
    options_.control_binary = FakeBinary();
    options_.set_compute_mode = false;
    options_.launch_mode = GetParam();
    options_.command_timeout = absl::Seconds(5);
    options_.launch_timeout = absl::Seconds(5);
    options_.ready_timeout = absl::Seconds(5);
    options_.ready_poll_interval = absl::Milliseconds(20);
    options_.probe_timeout = absl::Seconds(2);
    options_.liveness_period = absl::Milliseconds(100);
    options_.stop_timeout = absl::Seconds(5);
    options_.kill_grace = absl::Milliseconds(500);
    options_.backoff_initial = absl::Milliseconds(50);
    options_.backoff_max = absl::Milliseconds(400);
    SetMode("");
  }
  ~FakeMpsTest() override {
    // Belt and braces: no fake daemon outlives a failed test (they also exit
    // when the temp dir and so their socket disappear).
    const std::string pid = ReadFile(Log("fake-daemon.pid"));
    if (!pid.empty()) kill(std::stoi(pid), SIGKILL);
  }

  void SetMode(const std::string& mode) {
    options_.base_env = {"PATH=/usr/bin:/bin", "FAKE_MPS_MODE=" + mode,
                         "FAKE_MPS_MODE_FILE=" + dir_.path() + "/mode",
                         "FAKE_MPS_MAX_LIFETIME_S=120"};
  }
  DaemonSpec Spec() const {
    DaemonSpec spec;
    spec.name = "nvidia.com/gpu";
    spec.gpus = {{"GPU-aaaa", 4, 16 * kGiB}, {"GPU-bbbb", 6, 16 * kGiB}};
    spec.replicas = 2;
    return spec;
  }
  std::unique_ptr<Supervisor> Make(std::vector<DaemonSpec> specs) {
    return std::make_unique<Supervisor>(std::move(specs), options_, RealProcessRunner(),
                                        RealClock());
  }
  std::unique_ptr<Supervisor> Make() { return Make({Spec()}); }
  std::string Log(const std::string& file) const {
    return options_.mps_root + "/nvidia.com/gpu/log/" + file;
  }
  std::vector<std::string> Commands() const { return Lines(Log("fake-commands.log")); }
  int DaemonPid() const {
    const std::string pid = ReadFile(Log("fake-daemon.pid"));
    return pid.empty() ? 0 : std::stoi(pid);
  }
  static bool UpAfterRestart(const std::vector<DaemonStatus>& st) {
    return st[0].state == DaemonState::kUp && st[0].starts >= 2;
  }

  TempDir dir_;
  SupervisorOptions options_;
};

TEST_P(FakeMpsTest, StartsConfiguresAndStops) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  EXPECT_EQ(Commands().back(), "set_default_active_thread_percentage 100");
  EXPECT_THAT(Commands(), Not(Contains(HasSubstr("pinned_mem_limit"))));
  const std::vector<std::string> starts = Lines(Log("fake-daemon.log"));
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_THAT(starts[0],
              AllOf(HasSubstr(GetParam() == LaunchMode::kForeground ? "launch=-f" : "launch=-d"),
                    HasSubstr("CUDA_VISIBLE_DEVICES=GPU-aaaa,GPU-bbbb")));
  EXPECT_TRUE(Exists(options_.mps_root + "/nvidia.com/gpu/.started"));
  EXPECT_TRUE(Exists(options_.mps_root + "/.ready"));
  EXPECT_TRUE(Exists(Log("control.log")));
  const int pid = DaemonPid();
  ASSERT_GT(pid, 0);
  EXPECT_FALSE(ProcessGone(pid));
  if (GetParam() == LaunchMode::kForeground) {
    EXPECT_EQ(s->Statuses()[0].pid, pid);
  }

  ASSERT_TRUE(s->StopAll().ok());
  EXPECT_EQ(Commands().back(), "quit");
  EXPECT_FALSE(Exists(options_.mps_root + "/nvidia.com/gpu/.started"));
  EXPECT_FALSE(Exists(options_.mps_root + "/.ready"));
  EXPECT_TRUE(Eventually([&] { return ProcessGone(pid); }));
}

TEST_P(FakeMpsTest, UniformModeLimitsUseTheDaemonsOrdinals) {
  DaemonSpec spec = Spec();  // host indices 4 and 6; the fake rejects ordinals >= 2
  spec.per_container_limits = false;
  auto s = Make({spec});
  ASSERT_TRUE(s->StartAll().ok()) << s->Statuses()[0].last_error;
  std::vector<std::string> configured;
  for (const std::string& command : Commands()) {
    if (command != kProbeCommand) configured.push_back(command);
  }
  EXPECT_THAT(configured, ::testing::ElementsAre("set_default_device_pinned_mem_limit 0 8192M",
                                                 "set_default_device_pinned_mem_limit 1 8192M",
                                                 "set_default_active_thread_percentage 50"));
}

TEST_P(FakeMpsTest, KilledDaemonIsRestarted) {
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  const int first = DaemonPid();
  std::thread supervisor([&] { s->Run(); });
  ASSERT_EQ(kill(first, SIGKILL), 0);
  EXPECT_TRUE(s->WaitForStatus(UpAfterRestart, absl::Seconds(10)));
  s->RequestStop();
  supervisor.join();
  const DaemonStatus status = s->Statuses()[0];
  EXPECT_EQ(status.failures, 1);
  EXPECT_NE(DaemonPid(), first);
  EXPECT_FALSE(ProcessGone(DaemonPid()));
  EXPECT_TRUE(Exists(options_.mps_root + "/.ready"));
  EXPECT_EQ(Lines(Log("fake-daemon.log")).size(), 2u);
  ASSERT_TRUE(s->StopAll().ok());
}

TEST_P(FakeMpsTest, DaemonCrashingLaterIsRestarted) {
  WriteFile(dir_.path() + "/mode",
            "crash-after=2");  // the probe and the configuration
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  WriteFile(dir_.path() + "/mode", "");  // the restarted one behaves
  std::thread supervisor([&] { s->Run(); });
  EXPECT_TRUE(s->WaitForStatus(UpAfterRestart, absl::Seconds(10)));
  s->RequestStop();
  supervisor.join();
  EXPECT_GE(s->Statuses()[0].failures, 1);
}

TEST_P(FakeMpsTest, MissingBinaryIsAClearError) {
  options_.control_binary = dir_.path() + "/nvidia-cuda-mps-control";
  auto s = Make();
  const absl::Time start = absl::Now();
  absl::Status status = s->StartAll();
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr(dir_.path() + "/nvidia-cuda-mps-control"),
                    HasSubstr("No such file or directory")));
  EXPECT_TRUE(absl::IsNotFound(s->Statuses()[0].last_error));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_P(FakeMpsTest, DaemonThatExitsAtOnce) {
  SetMode("exit-at-once");
  options_.ready_timeout = absl::Seconds(1);
  auto s = Make();
  const absl::Time start = absl::Now();
  absl::Status status = s->StartAll();
  EXPECT_FALSE(status.ok());
  if (GetParam() == LaunchMode::kForeground) {
    // We see our child exit.
    EXPECT_THAT(std::string(status.message()), HasSubstr("exited at once (exit status 1)"));
  } else {
    // -d reported success; only the probe can tell.
    EXPECT_THAT(std::string(status.message()), HasSubstr("did not answer within 1s"));
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
  EXPECT_EQ(s->Statuses()[0].state, DaemonState::kDown);
}

TEST_P(FakeMpsTest, CrashOnStart) {
  SetMode("crash-on-start");
  auto s = Make();
  absl::Status status = s->StartAll();
  if (GetParam() == LaunchMode::kForeground) {
    EXPECT_THAT(std::string(status.message()), HasSubstr("exited at once (exit status 1)"));
  } else {
    EXPECT_THAT(std::string(status.message()),
                AllOf(HasSubstr("-d` failed (exit status 1)"), HasSubstr("crash-on-start")));
  }
}

TEST_P(FakeMpsTest, LauncherThatNeverReturnsOrNeverListens) {
  SetMode("hang-start");
  options_.launch_timeout = absl::Milliseconds(300);
  options_.ready_timeout = absl::Milliseconds(600);
  options_.kill_grace = absl::Milliseconds(200);
  auto s = Make();
  const absl::Time start = absl::Now();
  absl::Status status = s->StartAll();
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(GetParam() == LaunchMode::kForeground ? "did not answer within 600ms"
                                                              : "did not finish within 300ms"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

TEST_P(FakeMpsTest, HangingDaemonDoesNotHangTheSupervisor) {
  SetMode("hang");
  options_.probe_timeout = absl::Milliseconds(200);
  options_.ready_timeout = absl::Milliseconds(600);
  options_.kill_grace = absl::Milliseconds(200);
  auto s = Make();
  const absl::Time start = absl::Now();
  absl::Status status = s->StartAll();
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("did not answer within 600ms"), HasSubstr("no answer within 200ms")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  if (GetParam() == LaunchMode::kForeground) {
    const int pid = DaemonPid();
    EXPECT_TRUE(Eventually([&] { return ProcessGone(pid); }));  // killed: it ignored quit
  }
}

TEST_P(FakeMpsTest, RejectedCommandIsReported) {
  SetMode("reject=set_default_active_thread_percentage");
  auto s = Make();
  absl::Status status = s->StartAll();
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("configuring the daemon"),
                    HasSubstr("fake rejection of 'set_default_active_thread_percentage'")));
  EXPECT_FALSE(Exists(options_.mps_root + "/nvidia.com/gpu/.started"));
  EXPECT_EQ(Commands().back(), "quit");
}

INSTANTIATE_TEST_SUITE_P(LaunchModes, FakeMpsTest,
                         ::testing::Values(LaunchMode::kForeground, LaunchMode::kBackground),
                         ParamName);

class FakeMpsForegroundTest : public FakeMpsTest {};

TEST_P(FakeMpsForegroundTest, HungDaemonIsKilledAndRestarted) {
  // Answers the ready probe, the configuration and one liveness probe, then
  // hangs.
  WriteFile(dir_.path() + "/mode", "hang-after=3");
  options_.probe_timeout = absl::Milliseconds(300);
  options_.kill_grace = absl::Milliseconds(200);
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  const int first = DaemonPid();
  WriteFile(dir_.path() + "/mode", "");
  std::thread supervisor([&] { s->Run(); });
  EXPECT_TRUE(s->WaitForStatus(UpAfterRestart, absl::Seconds(10)));
  s->RequestStop();
  supervisor.join();
  EXPECT_TRUE(absl::IsDeadlineExceeded(s->Statuses()[0].last_error)) << s->Statuses()[0].last_error;
  EXPECT_TRUE(ProcessGone(first));
  ASSERT_TRUE(s->StopAll().ok());
}

TEST_P(FakeMpsForegroundTest, FoundByNameInPath) {
  std::filesystem::create_directories(dir_.path() + "/bin");
  std::filesystem::create_symlink(FakeBinary(), dir_.path() + "/bin/nvidia-cuda-mps-control");
  options_.control_binary = kDefaultControlBinary;
  options_.base_env[0] = "PATH=" + dir_.path() + "/bin:/usr/bin:/bin";
  auto s = Make();
  EXPECT_TRUE(s->StartAll().ok());
}

TEST_P(FakeMpsForegroundTest, LeftOverDaemonIsReplaced) {
  const std::string pipe = options_.mps_root + "/nvidia.com/gpu/pipe";
  const std::string log = options_.mps_root + "/nvidia.com/gpu/log";
  std::filesystem::create_directories(pipe);
  std::filesystem::create_directories(log);
  CommandSpec launch;
  launch.program = FakeBinary();
  launch.args = {"-d"};
  launch.env = {"CUDA_MPS_PIPE_DIRECTORY=" + pipe, "CUDA_MPS_LOG_DIRECTORY=" + log};
  auto launched = RealProcessRunner().Run(launch);
  ASSERT_TRUE(launched.ok() && launched->status.Success());
  const int stale = DaemonPid();

  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  EXPECT_THAT(Commands(), Contains("quit"));
  EXPECT_NE(DaemonPid(), stale);
  EXPECT_TRUE(Eventually([&] { return ProcessGone(stale); }));
  const std::vector<std::string> starts = Lines(Log("fake-daemon.log"));
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_THAT(starts[0], HasSubstr("CUDA_VISIBLE_DEVICES=(unset)"));
  EXPECT_THAT(starts[1], HasSubstr("CUDA_VISIBLE_DEVICES=GPU-aaaa,GPU-bbbb"));
}

TEST_P(FakeMpsForegroundTest, DaemonProbeFollowsTheDaemon) {
  DaemonProbe probe({.mps_root = options_.mps_root,
                     .resource = "nvidia.com/gpu",
                     .control_binary = FakeBinary(),
                     .base_env = {}},
                    RealProcessRunner());
  EXPECT_TRUE(absl::IsUnavailable(probe.Probe(absl::Seconds(2))));
  auto s = Make();
  ASSERT_TRUE(s->StartAll().ok());
  EXPECT_TRUE(probe.Probe(absl::Seconds(2)).ok());
  EXPECT_TRUE(WaitUntilReady(probe, RealClock(), {.timeout = absl::Seconds(2)}).ok());
  ASSERT_TRUE(s->StopAll().ok());
  EXPECT_FALSE(probe.Probe(absl::Seconds(2)).ok());
}

INSTANTIATE_TEST_SUITE_P(Foreground, FakeMpsForegroundTest,
                         ::testing::Values(LaunchMode::kForeground), ParamName);

// The fake's own client behaviour, as the real tool's.
class FakeMpsClientTest : public ::testing::Test {
 protected:
  absl::StatusOr<CommandResult> Client(const std::string& commands) {
    CommandSpec spec;
    spec.program = FakeBinary();
    spec.env = {"CUDA_MPS_PIPE_DIRECTORY=" + dir_.path(), "CUDA_MPS_LOG_DIRECTORY=" + dir_.path(),
                "CUDA_VISIBLE_DEVICES=GPU-a,GPU-b"};
    spec.stdin_text = commands;
    spec.timeout = absl::Seconds(5);
    return RealProcessRunner().Run(spec);
  }
  absl::StatusOr<CommandResult> Launch() {
    CommandSpec spec;
    spec.program = FakeBinary();
    spec.args = {"-d"};
    spec.env = {"CUDA_MPS_PIPE_DIRECTORY=" + dir_.path(), "CUDA_MPS_LOG_DIRECTORY=" + dir_.path(),
                "CUDA_VISIBLE_DEVICES=GPU-a,GPU-b"};
    spec.timeout = absl::Seconds(5);
    return RealProcessRunner().Run(spec);
  }
  void StartDaemon() {
    auto result = Launch();
    ASSERT_TRUE(result.ok() && result->status.Success()) << result->OutputForMessage();
  }
  TempDir dir_;
};

TEST_F(FakeMpsClientTest, NoDaemonExitsNonZero) {
  auto result = Client("get_default_active_thread_percentage\n");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->status.exit_code, 1);
  EXPECT_THAT(result->err, HasSubstr("Cannot find MPS control daemon"));
}

TEST_F(FakeMpsClientTest, CommandsRepliesAndErrors) {
  StartDaemon();
  auto result = Client(
      "get_default_active_thread_percentage\nset_default_active_thread_"
      "percentage 30\n"
      "get_default_active_thread_percentage\nset_default_device_pinned_mem_"
      "limit 1 2G\n"
      "get_default_device_pinned_mem_limit 1\n");
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->status.Success()) << result->err;
  EXPECT_EQ(result->out, "100.0\n30.0\n30.0\n2G\n");

  for (const char* bad :
       {"bogus\n", "set_default_device_pinned_mem_limit 2 1G\n",
        "set_default_device_pinned_mem_limit 0 1T\n", "set_default_active_thread_percentage 0\n"}) {
    auto rejected = Client(bad);
    ASSERT_TRUE(rejected.ok());
    EXPECT_EQ(rejected->status.exit_code, 1) << bad;
  }
  auto second = Launch();
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->status.exit_code, 1);
  EXPECT_THAT(second->err, HasSubstr("already running"));
  EXPECT_TRUE(Client("quit\n")->status.Success());
  EXPECT_EQ(Client(std::string(kProbeCommand) + "\n")->status.exit_code, 1);
  EXPECT_THAT(Lines(dir_.path() + "/fake-commands.log"), Contains("quit"));
}

}  // namespace
}  // namespace nvdp::mps
