// The real ProcessRunner with small system programs: exit codes, output, stdin,
// environment, timeouts that kill, programs that cannot be run, and long-lived
// children.
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/process.h"
#include "mps/temp_dir.h"

namespace nvdp::mps {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TempDir;

CommandSpec Shell(const std::string& script, absl::Duration timeout = absl::Seconds(10)) {
  CommandSpec spec;
  spec.program = "/bin/sh";
  spec.args = {"-c", script};
  spec.env = {"PATH=/usr/bin:/bin"};
  spec.timeout = timeout;
  spec.kill_grace = absl::Milliseconds(300);
  return spec;
}

TEST(MpsProcessRunnerTest, ExitCodeAndBothOutputs) {
  auto result = RealProcessRunner().Run(Shell("echo out; echo err >&2; exit 3"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.exit_code, 3);
  EXPECT_EQ(result->status.signal, 0);
  EXPECT_FALSE(result->status.Success());
  EXPECT_EQ(result->status.ToString(), "exit status 3");
  EXPECT_EQ(result->out, "out\n");
  EXPECT_EQ(result->err, "err\n");
  EXPECT_EQ(result->OutputForMessage(), "err | out");
}

TEST(MpsProcessRunnerTest, StdinIsDelivered) {
  CommandSpec spec;
  spec.program = "cat";  // searched in the child's PATH
  spec.env = {"PATH=/usr/bin:/bin"};
  spec.stdin_text = "get_default_active_thread_percentage\nquit\n";
  auto result = RealProcessRunner().Run(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->status.Success());
  EXPECT_EQ(result->out, spec.stdin_text);
}

TEST(MpsProcessRunnerTest, EnvironmentIsExactlyTheGivenOne) {
  CommandSpec spec;
  spec.program = "/usr/bin/env";
  spec.env = {"CUDA_MPS_PIPE_DIRECTORY=/tmp/p", "CUDA_VISIBLE_DEVICES=GPU-a,GPU-b"};
  auto result = RealProcessRunner().Run(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->out, "CUDA_MPS_PIPE_DIRECTORY=/tmp/p\nCUDA_VISIBLE_DEVICES=GPU-a,GPU-b\n");
}

TEST(MpsProcessRunnerTest, LargeOutputDoesNotDeadlock) {
  auto result =
      RealProcessRunner().Run(Shell("head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->out.size(), 300000u);
  EXPECT_EQ(result->err.size(), 200000u);
}

TEST(MpsProcessRunnerTest, TimeoutKillsAHangingChild) {
  const absl::Time start = absl::Now();
  auto result =
      RealProcessRunner().Run(Shell("echo started; exec sleep 60", absl::Milliseconds(300)));
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(absl::IsDeadlineExceeded(result.status())) << result.status();
  EXPECT_THAT(std::string(result.status().message()),
              AllOf(HasSubstr("did not finish within 300ms and was killed"), HasSubstr("started")));
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Seconds(3));
}

TEST(MpsProcessRunnerTest, ChildIgnoringSigtermGetsSigkill) {
  const absl::Time start = absl::Now();
  // The shell and the sleeps it starts ignore TERM (SIG_IGN survives exec):
  // only SIGKILL, sent to the whole process group after the grace period, ends
  // them.
  auto result = RealProcessRunner().Run(
      Shell("trap '' TERM; while :; do sleep 0.05; done", absl::Milliseconds(200)));
  EXPECT_TRUE(absl::IsDeadlineExceeded(result.status())) << result.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST(MpsProcessRunnerTest, GrandchildHoldingTheOutputDoesNotBlock) {
  const absl::Time start = absl::Now();
  // The background sleep keeps stdout open after the shell exits (a daemon that
  // forgot to close its stdio); we return once the shell is gone, not when the
  // pipe closes.
  auto result = RealProcessRunner().Run(Shell("sleep 3 & echo hi"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->out, "hi\n");
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST(MpsProcessRunnerTest, MissingProgramIsNotFound) {
  CommandSpec spec;
  spec.program = "nvidia-cuda-mps-control-does-not-exist";
  spec.env = {"PATH=/nonexistent:/usr/bin"};
  auto result = RealProcessRunner().Run(spec);
  EXPECT_TRUE(absl::IsNotFound(result.status()));
  EXPECT_THAT(std::string(result.status().message()),
              HasSubstr("nvidia-cuda-mps-control-does-not-exist: not found in PATH "
                        "(/nonexistent:/usr/bin)"));
  spec.program = "/nonexistent/nvidia-cuda-mps-control";
  EXPECT_TRUE(absl::IsNotFound(RealProcessRunner().Run(spec).status()));
  EXPECT_TRUE(absl::IsNotFound(RealProcessRunner().Spawn(spec).status()));
}

TEST(MpsProcessRunnerTest, NonExecutableIsPermissionDenied) {
  TempDir dir;
  const std::string path = dir.path() + "/tool";
  testing::WriteFile(path, "#!/bin/sh\n");
  chmod(path.c_str(), 0644);
  CommandSpec spec;
  spec.program = path;
  EXPECT_TRUE(absl::IsPermissionDenied(RealProcessRunner().Run(spec).status()));
}

TEST(MpsProcessRunnerTest, TooMuchStdinIsRejected) {
  CommandSpec spec = Shell("true");
  spec.stdin_text = std::string(CommandSpec::kMaxStdin + 1, 'x');
  EXPECT_TRUE(absl::IsInvalidArgument(RealProcessRunner().Run(spec).status()));
}

TEST(MpsProcessRunnerTest, SpawnPollWaitTerminate) {
  auto child = RealProcessRunner().Spawn(Shell("exec sleep 60"));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_GT((*child)->pid(), 0);
  EXPECT_FALSE((*child)->Poll().has_value());
  EXPECT_FALSE((*child)->Wait(absl::Milliseconds(50)).has_value());
  auto exit = (*child)->Terminate(absl::Seconds(2));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->signal, SIGTERM);
  EXPECT_EQ(exit->ToString(), "killed by signal 15 (SIGTERM)");
  EXPECT_EQ((*child)->Poll()->signal, SIGTERM);  // stays reaped
}

TEST(MpsProcessRunnerTest, SpawnedChildThatExitsIsReaped) {
  auto child = RealProcessRunner().Spawn(Shell("exit 7"));
  ASSERT_TRUE(child.ok());
  auto exit = (*child)->Wait(absl::Seconds(5));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 7);
}

TEST(MpsProcessRunnerTest, ChildrenDoNotInheritBlockedSignals) {
  // Daemons block SIGTERM for sigwait; their children must still die of it.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  auto child = RealProcessRunner().Spawn(Shell("exec sleep 60"));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(child.ok());
  auto exit = (*child)->Terminate(absl::Seconds(2));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->signal, SIGTERM);
}

TEST(MpsProcessRunnerTest, DestroyingAHandleTerminatesTheChild) {
  int pid = 0;
  {
    auto child = RealProcessRunner().Spawn(Shell("exec sleep 60"));
    ASSERT_TRUE(child.ok());
    pid = (*child)->pid();
  }
  EXPECT_NE(kill(pid, 0), 0);  // gone and reaped
}

TEST(MpsResolveProgramTest, SearchesPath) {
  EXPECT_EQ(*ResolveProgram("sh", "/nonexistent:/bin"), "/bin/sh");
  EXPECT_EQ(*ResolveProgram("/bin/sh", ""), "/bin/sh");
  EXPECT_TRUE(absl::IsNotFound(ResolveProgram("sh", "/nonexistent").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ResolveProgram("", "/bin").status()));
}

// Driver programs: under the container driver root first (usr/bin, usr/sbin, bin, sbin), then
// PATH; a miss names every path tried.
TEST(MpsFindDriverProgramTest, DriverRootFirstThenPath) {
  testing::TempDir dir;
  const std::string root = dir.path() + "/driver-root";
  std::filesystem::create_directories(root + "/usr/sbin");
  std::filesystem::create_directories(root + "/usr/bin");
  testing::WriteFile(root + "/usr/sbin/tool", "#!/bin/sh\n");
  ASSERT_EQ(chmod((root + "/usr/sbin/tool").c_str(), 0755), 0);
  EXPECT_EQ(*FindDriverProgram("tool", root, "/bin"), root + "/usr/sbin/tool");
  EXPECT_EQ(*FindDriverProgram("sh", root, "/nonexistent:/bin"), "/bin/sh");
  testing::WriteFile(root + "/usr/bin/plain", "not executable");
  auto missing = FindDriverProgram("plain", root + "/", "/nonexistent");
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_EQ(missing.status().message(), "cannot find plain; tried " + root + "/usr/bin/plain, " +
                                            root + "/usr/sbin/plain, " + root + "/bin/plain, " +
                                            root + "/sbin/plain, /nonexistent/plain");
}

TEST(MpsInheritedEnvironmentTest, DropsMpsVariables) {
  setenv("CUDA_MPS_PIPE_DIRECTORY", "/somewhere", 1);
  setenv("CUDA_VISIBLE_DEVICES", "0", 1);
  setenv("NVDP_TEST_KEEP", "1", 1);
  std::vector<std::string> env = InheritedEnvironment();
  unsetenv("CUDA_MPS_PIPE_DIRECTORY");
  unsetenv("CUDA_VISIBLE_DEVICES");
  EXPECT_THAT(env, ::testing::Contains("NVDP_TEST_KEEP=1"));
  for (const std::string& entry : env) {
    EXPECT_FALSE(entry.rfind("CUDA_MPS_", 0) == 0) << entry;
    EXPECT_FALSE(entry.rfind("CUDA_VISIBLE_DEVICES=", 0) == 0) << entry;
  }
}

}  // namespace
}  // namespace nvdp::mps
