// The mps-control-daemon binary end to end: config file + fake NVML (8x
// A100-40GB) + fake-mps-control, over real processes. Waits poll observable
// files with deadlines.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/process.h"
#include "mps/temp_dir.h"

namespace nvdp::mps {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using testing::Exists;
using ::testing::HasSubstr;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

std::string Env(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}
std::string BinDir() {
#ifdef NVDP_TEST_BIN_DIR
  return Env("NVDP_BIN_DIR", NVDP_TEST_BIN_DIR);
#else
  return Env("NVDP_BIN_DIR", "bin");
#endif
}
std::string SourceDir() {
#ifdef NVDP_TEST_SOURCE_DIR
  return Env("NVDP_SOURCE_DIR", NVDP_TEST_SOURCE_DIR);
#else
  return Env("NVDP_SOURCE_DIR", ".");
#endif
}

std::vector<std::string> Lines(const std::string& path) {
  return absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty());
}

bool Eventually(const std::function<bool()>& condition,
                absl::Duration timeout = absl::Seconds(15)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

class MpsdBinaryTest : public ::testing::Test {
 protected:
  ~MpsdBinaryTest() override {
    if (HasFailure())
      std::fprintf(stderr, "--- mps-control-daemon log ---\n%s", ReadFile(DaemonLogPath()).c_str());
    if (daemon_ && !daemon_->Poll().has_value()) daemon_->Terminate(absl::Seconds(5));
    const std::string pid = ReadFile(Log("fake-daemon.pid"));
    if (!pid.empty()) kill(std::stoi(pid), SIGKILL);
  }

  std::string Root() const { return dir_.path() + "/mps"; }
  std::string Log(const std::string& file) const { return Root() + "/nvidia.com/gpu/log/" + file; }

  CommandSpec Command(const std::string& sharing_yaml, std::vector<std::string> extra_args = {}) {
    WriteFile(dir_.path() + "/config.yaml",
              absl::StrCat("version: v1\nflags:\n  mpsRoot: ", Root(), "\n", sharing_yaml));
    CommandSpec spec;
    spec.program = BinDir() + "/mps-control-daemon";
    spec.args = {"--config-file=" + dir_.path() + "/config.yaml",
                 "--nvml-library=" + BinDir() + "/../lib/fake-nvml/libnvidia-ml.so.1",
                 "--mps-control-binary=" + BinDir() + "/fake-mps-control",
                 "--set-compute-mode=false", "--liveness-period=0.2"};
    spec.args.insert(spec.args.end(), extra_args.begin(), extra_args.end());
    spec.env = InheritedEnvironment();
    spec.env.push_back("FAKE_NVML_NODE=" + SourceDir() +
                       "/tests/fakes/nvml/nodes/a100-sxm4-40gb-x8.json");
    spec.env.push_back("NVDP_SYSFS_ROOT=" + SourceDir() + "/tests/fakes/nvml/nodes/a100-sysfs");
    spec.env.push_back("FAKE_MPS_MAX_LIFETIME_S=120");
    return spec;
  }

  void Start(const std::string& sharing_yaml) {
    auto child = RealProcessRunner().Spawn(LoggedTo(Command(sharing_yaml), DaemonLogPath()));
    ASSERT_TRUE(child.ok()) << child.status();
    daemon_ = std::move(*child);
  }

  // Runs `spec` with its stderr appended to `log` (through sh, which then execs the program).
  static CommandSpec LoggedTo(CommandSpec spec, const std::string& log) {
    std::vector<std::string> args = {"-c", "exec \"$0\" \"$@\" 2>>\"" + log + "\"", spec.program};
    args.insert(args.end(), spec.args.begin(), spec.args.end());
    spec.program = "/bin/sh";
    spec.args = std::move(args);
    return spec;
  }
  std::string DaemonLogPath() const { return dir_.path() + "/mpsd.log"; }
  bool LogHas(const std::string& path, const std::string& text) const {
    return ReadFile(path).find(text) != std::string::npos;
  }
  // Rewrites the config (as Command does) and sends SIGHUP.
  void Reload(const std::string& sharing_yaml) {
    WriteFile(dir_.path() + "/config.yaml",
              absl::StrCat("version: v1\nflags:\n  mpsRoot: ", Root(), "\n", sharing_yaml));
    kill(daemon_->pid(), SIGHUP);
  }
  std::string PidOf(const std::string& resource) const {
    return ReadFile(Root() + "/nvidia.com/" + resource + "/log/fake-daemon.pid");
  }

  std::optional<ExitStatus> Stop() {
    kill(daemon_->pid(), SIGTERM);
    return daemon_->Wait(absl::Seconds(15));
  }

  TempDir dir_;
  std::unique_ptr<ChildProcess> daemon_;
};

constexpr char kPerContainer[] = R"(sharing:
  mps:
    perContainerLimits: true
    resources:
    - name: nvidia.com/gpu
      replicas: 100
)";

TEST_F(MpsdBinaryTest, PerContainerDaemonRunsScopedAndStopsCleanly) {
  Start(kPerContainer);
  ASSERT_TRUE(Eventually([&] { return Exists(Root() + "/.ready"); }));
  EXPECT_TRUE(Exists(Root() + "/nvidia.com/gpu/.started"));
  const std::vector<std::string> starts = Lines(Log("fake-daemon.log"));
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_THAT(starts[0],
              AllOf(HasSubstr("launch=-f"),
                    HasSubstr("CUDA_VISIBLE_DEVICES=GPU-a100a100-0000-4000-8000-"
                              "000000000000,GPU-a100a100-0000-4000-8000-000000000001,")));
  std::vector<std::string> configured;
  for (const std::string& line : Lines(Log("fake-commands.log"))) {
    if (line.rfind("set_", 0) == 0) configured.push_back(line);
  }
  EXPECT_THAT(configured, ElementsAre("set_default_active_thread_percentage 100"));

  auto exit = Stop();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->Success()) << exit->ToString();
  EXPECT_EQ(Lines(Log("fake-commands.log")).back(), "quit");
  EXPECT_FALSE(Exists(Root() + "/.ready"));
  EXPECT_FALSE(Exists(Root() + "/nvidia.com/gpu/.started"));
}

// An upstream config (no perContainerLimits) is upstream's uniform mode.
TEST_F(MpsdBinaryTest, UniformModeSetsUpstreamDefaults) {
  Start(R"(sharing:
  mps:
    resources:
    - name: nvidia.com/gpu
      replicas: 4
)");
  ASSERT_TRUE(Eventually([&] { return Exists(Root() + "/.ready"); }));
  std::vector<std::string> configured;
  for (const std::string& line : Lines(Log("fake-commands.log"))) {
    if (line.rfind("set_", 0) == 0) configured.push_back(line);
  }
  ASSERT_EQ(configured.size(), 9u);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(configured[i], absl::StrCat("set_default_device_pinned_mem_limit ", i, " 10240M"));
  }
  EXPECT_EQ(configured[8], "set_default_active_thread_percentage 25");
  ASSERT_TRUE(Stop().has_value());
}

TEST_F(MpsdBinaryTest, KilledDaemonIsRestarted) {
  Start(kPerContainer);
  ASSERT_TRUE(Eventually([&] { return Exists(Root() + "/.ready"); }));
  const int first = std::stoi(ReadFile(Log("fake-daemon.pid")));
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(Eventually([&] { return Lines(Log("fake-daemon.log")).size() == 2; }));
  ASSERT_TRUE(Eventually([&] { return Exists(Root() + "/.ready"); }));
  EXPECT_NE(std::stoi(ReadFile(Log("fake-daemon.pid"))), first);
  auto exit = Stop();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->Success());
}

TEST_F(MpsdBinaryTest, MissingControlBinaryExitsWithAClearError) {
  CommandSpec spec =
      Command(kPerContainer, {"--mps-control-binary=" + dir_.path() + "/nvidia-cuda-mps-control"});
  spec.timeout = absl::Seconds(15);
  auto result = RealProcessRunner().Run(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.exit_code, 1);
  EXPECT_THAT(result->out + result->err,
              AllOf(HasSubstr("cannot find the MPS control binary"),
                    HasSubstr(dir_.path() + "/nvidia-cuda-mps-control: No such file")));
}

TEST_F(MpsdBinaryTest, NoMpsSharingIdlesUntilStopped) {
  Start("");
  EXPECT_FALSE(daemon_->Wait(absl::Milliseconds(300)).has_value());
  auto exit = Stop();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->Success());
  EXPECT_FALSE(Exists(Root() + "/.ready"));
}

// A bad config on SIGHUP is rejected as the plugin rejects it: the daemons keep running.
TEST_F(MpsdBinaryTest, ReloadWithAnInvalidConfigKeepsTheDaemons) {
  Start(kPerContainer);
  ASSERT_TRUE(Eventually([&] { return Exists(Root() + "/.ready"); }));
  const std::string pid = PidOf("gpu");
  Reload("sharing:\n  mps:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 1\n");
  ASSERT_TRUE(Eventually([&] { return LogHas(DaemonLogPath(), "reload rejected"); }));
  EXPECT_FALSE(daemon_->Poll().has_value()) << "the daemon exited on a bad reload";
  EXPECT_EQ(PidOf("gpu"), pid);
  EXPECT_TRUE(Exists(Root() + "/.ready"));
  EXPECT_THAT(Lines(Log("fake-commands.log")), ::testing::Not(::testing::Contains("quit")));
  auto exit = Stop();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->Success()) << exit->ToString();
}

// A good config on SIGHUP restarts only the daemons whose resource changed: an unchanged one keeps
// running (the same process), a changed one is restarted. (Several resources at once are covered
// in supervisor_test.)
TEST_F(MpsdBinaryTest, ReloadRestartsADaemonOnlyWhenItsResourceChanged) {
  Start(kPerContainer);
  ASSERT_TRUE(Eventually([&] { return Exists(Root() + "/.ready"); }));
  const std::string first = PidOf("gpu");
  Reload(kPerContainer);
  ASSERT_TRUE(Eventually([&] {
    return LogHas(DaemonLogPath(), "resource 'nvidia.com/gpu' unchanged; kept running");
  }));
  EXPECT_EQ(PidOf("gpu"), first);

  Reload(R"(sharing:
  mps:
    perContainerLimits: true
    resources:
    - name: nvidia.com/gpu
      replicas: 50
)");
  ASSERT_TRUE(Eventually([&] { return !PidOf("gpu").empty() && PidOf("gpu") != first; }));
  ASSERT_TRUE(Eventually([&] { return Exists(Root() + "/.ready"); }));
  auto exit = Stop();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->Success()) << exit->ToString();
}

// Two instances on one MPS root would quit each other's daemons: the second waits for the first.
TEST_F(MpsdBinaryTest, ASecondInstanceOnTheSameRootWaitsForTheFirst) {
  Start(kPerContainer);
  ASSERT_TRUE(Eventually([&] { return Exists(Root() + "/.ready"); }));
  const std::string first_daemon = PidOf("gpu");
  const std::string second_log = dir_.path() + "/second.log";
  auto second = RealProcessRunner().Spawn(LoggedTo(Command(kPerContainer), second_log));
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(Eventually([&] {
    return LogHas(second_log, "another mps-control-daemon (pid ") &&
           LogHas(second_log, "holds " + Root() + "/.lock");
  }));
  EXPECT_EQ(PidOf("gpu"), first_daemon);
  EXPECT_THAT(Lines(Log("fake-commands.log")), ::testing::Not(::testing::Contains("quit")));

  auto exit = Stop();  // the first goes; the second takes over
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->Success());
  ASSERT_TRUE(Eventually([&] { return LogHas(second_log, "released"); }));
  ASSERT_TRUE(Eventually([&] { return Exists(Root() + "/.ready"); }));
  EXPECT_NE(PidOf("gpu"), first_daemon);
  kill((*second)->pid(), SIGTERM);
  auto second_exit = (*second)->Wait(absl::Seconds(15));
  ASSERT_TRUE(second_exit.has_value());
  EXPECT_TRUE(second_exit->Success());
}

// Without --mps-control-binary the daemon finds nvidia-cuda-mps-control under the container driver
// root, as upstream does (the driver's binaries mounted at /driver-root by default).
TEST_F(MpsdBinaryTest, FindsTheControlBinaryUnderTheDriverRoot) {
  const std::string root = dir_.path() + "/driver-root";
  std::filesystem::create_directories(root + "/usr/bin");
  std::filesystem::copy_file(BinDir() + "/fake-mps-control",
                             root + "/usr/bin/nvidia-cuda-mps-control");
  CommandSpec spec = Command(kPerContainer, {"--driver-root-ctr-path=" + root});
  std::erase_if(spec.args,
                [](const std::string& arg) { return arg.rfind("--mps-control-binary=", 0) == 0; });
  auto child = RealProcessRunner().Spawn(LoggedTo(spec, DaemonLogPath()));
  ASSERT_TRUE(child.ok()) << child.status();
  daemon_ = std::move(*child);
  ASSERT_TRUE(Eventually([&] { return Exists(Root() + "/.ready"); }));
  EXPECT_EQ(Lines(Log("fake-daemon.log")).size(), 1u);
  auto exit = Stop();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->Success()) << exit->ToString();
}

TEST_F(MpsdBinaryTest, MissingDriverProgramsNameEveryPathTried) {
  const std::string root = dir_.path() + "/empty-driver-root";
  CommandSpec spec = Command(kPerContainer, {"--driver-root-ctr-path=" + root});
  std::erase_if(spec.args,
                [](const std::string& arg) { return arg.rfind("--mps-control-binary=", 0) == 0; });
  std::erase_if(spec.env, [](const std::string& e) { return e.rfind("PATH=", 0) == 0; });
  spec.env.push_back("PATH=" + dir_.path() + "/nowhere");
  spec.timeout = absl::Seconds(15);
  auto result = RealProcessRunner().Run(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.exit_code, 1);
  EXPECT_THAT(
      result->err,
      HasSubstr("cannot find the MPS control binary: cannot find nvidia-cuda-mps-control; "
                "tried " +
                root + "/usr/bin/nvidia-cuda-mps-control, " + root +
                "/usr/sbin/nvidia-cuda-mps-control, " + root + "/bin/nvidia-cuda-mps-control, " +
                root + "/sbin/nvidia-cuda-mps-control, " + dir_.path() +
                "/nowhere/nvidia-cuda-mps-control"));
}

}  // namespace
}  // namespace nvdp::mps
