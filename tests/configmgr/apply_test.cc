#include "configmgr/apply.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>
#include <vector>

#include "configmgr/signaler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/temp_dir.h"

namespace nvdp::configmgr {
namespace {

using mps::testing::Mode;
using mps::testing::ReadFile;
using mps::testing::TempDir;
using mps::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FakeSignaler final : public ProcessSignaler {
 public:
  absl::StatusOr<int> SignalAll(const std::string& name, int signal) override {
    calls.emplace_back(name, signal);
    return result;
  }
  std::vector<std::pair<std::string, int>> calls;
  absl::StatusOr<int> result = 1;
};

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(WriteFileAtomicallyTest, WritesAndReplacesLeavingNoTempFile) {
  TempDir tmp;
  const std::string path = tmp.path() + "/config/config.yaml";  // the directory is created
  ASSERT_TRUE(WriteFileAtomically(path, "one").ok());
  EXPECT_EQ(ReadFile(path), "one");
  EXPECT_EQ(Mode(path), 0644);
  ASSERT_TRUE(WriteFileAtomically(path, "two\n").ok());
  EXPECT_EQ(ReadFile(path), "two\n");
  EXPECT_THAT(DirEntries(tmp.path() + "/config"), ElementsAre("config.yaml"));
}

TEST(WriteFileAtomicallyTest, ReplacesTheFileNotItsContent) {
  // A reader holding the old file keeps the old content (rename, not truncate-and-write).
  TempDir tmp;
  const std::string path = tmp.path() + "/config.yaml";
  WriteFile(path, "old");
  std::ifstream held(path);
  ASSERT_TRUE(WriteFileAtomically(path, "new").ok());
  std::string seen((std::istreambuf_iterator<char>(held)), {});
  EXPECT_EQ(seen, "old");
  EXPECT_EQ(ReadFile(path), "new");
}

TEST(WriteFileAtomicallyTest, AnUnwritableDirectoryIsAnErrorNamingThePath) {
  TempDir tmp;
  WriteFile(tmp.path() + "/file", "x");
  auto status = WriteFileAtomically(tmp.path() + "/file/config.yaml", "x");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr(tmp.path() + "/file"));
}

class ApplyTest : public ::testing::Test {
 protected:
  ApplyTest() {
    std::filesystem::create_directory(src());
    WriteFile(src() + "/a", "version: v1\n# a\n");
    WriteFile(src() + "/b", "version: v1\n# b\n");
    options_.srcdir = src();
    options_.dst = dst();
    options_.selection.default_config = "a";
  }
  std::string src() const { return tmp_.path() + "/available-configs"; }
  std::string dst() const { return tmp_.path() + "/config/config.yaml"; }
  ConfigApplier Applier() { return ConfigApplier(options_, &signaler_); }

  TempDir tmp_;
  ApplyOptions options_;
  FakeSignaler signaler_;
};

TEST_F(ApplyTest, WritesTheLabelledConfigAndSignalsThePlugin) {
  auto applier = Applier();
  auto result = applier.Apply("b");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->written);
  EXPECT_EQ(result->selection.name, "b");
  EXPECT_EQ(result->signalled, 1);
  EXPECT_EQ(ReadFile(dst()), "version: v1\n# b\n");
  EXPECT_THAT(signaler_.calls, ElementsAre(std::make_pair(std::string("nvidia-device-plugin"), 1)));
}

TEST_F(ApplyTest, UnchangedContentIsNeitherWrittenNorSignalled) {
  ASSERT_TRUE(WriteFileAtomically(dst(), "version: v1\n# a\n").ok());
  const auto before = std::filesystem::last_write_time(dst());
  auto applier = Applier();
  auto result = applier.Apply(std::nullopt);  // the default, "a": already there
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->written);
  EXPECT_EQ(result->selection.reason, "default config");
  EXPECT_TRUE(signaler_.calls.empty());
  EXPECT_EQ(std::filesystem::last_write_time(dst()), before);
}

TEST_F(ApplyTest, SameNameNewContentIsWritten) {
  auto applier = Applier();
  ASSERT_TRUE(applier.Apply("a").ok());
  WriteFile(src() + "/a", "version: v1\n# a, edited\n");
  auto result = applier.Apply("a");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->written);
  EXPECT_EQ(ReadFile(dst()), "version: v1\n# a, edited\n");
  EXPECT_EQ(signaler_.calls.size(), 2u);
}

TEST_F(ApplyTest, AnUnknownLabelKeepsTheCurrentConfigAndSignalsNothing) {
  auto applier = Applier();
  ASSERT_TRUE(applier.Apply("a").ok());
  auto result = applier.Apply("nope");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("\"nope\""));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("a, b"));
  EXPECT_EQ(ReadFile(dst()), "version: v1\n# a\n");
  EXPECT_EQ(signaler_.calls.size(), 1u);
}

TEST_F(ApplyTest, TheEmptyFallbackWritesAnEmptyConfig) {
  options_.selection = {.default_config = "", .fallbacks = {Fallback::kEmpty}};
  auto applier = Applier();
  auto result = applier.Apply(std::nullopt);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->written);
  EXPECT_TRUE(std::filesystem::exists(dst()));
  EXPECT_EQ(ReadFile(dst()), "");
}

TEST_F(ApplyTest, WithoutSendSignalNothingIsSignalled) {
  options_.send_signal = false;
  auto applier = Applier();
  auto result = applier.Apply("b");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->written);
  EXPECT_TRUE(signaler_.calls.empty());
}

TEST_F(ApplyTest, TheConfiguredSignalAndProcessAreUsed) {
  options_.signal = 10;
  options_.process_to_signal = "my-plugin";
  signaler_.result = 0;
  auto applier = Applier();
  auto result = applier.Apply("b");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->signalled, 0);  // none found: still written, not an error
  EXPECT_THAT(signaler_.calls, ElementsAre(std::make_pair(std::string("my-plugin"), 10)));
}

TEST_F(ApplyTest, ASignallingFailureIsReportedButTheConfigIsWritten) {
  signaler_.result = absl::PermissionDeniedError("no");
  auto applier = Applier();
  auto result = applier.Apply("b");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->written);
  EXPECT_EQ(result->signal_status.code(), absl::StatusCode::kPermissionDenied);
}

// A fake /proc: <pid>/comm and <pid>/cmdline.
void AddProcess(const std::string& root, int pid, const std::string& comm,
                const std::string& argv0) {
  const std::string dir = root + "/" + std::to_string(pid);
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/comm", comm + "\n");
  std::ofstream(dir + "/cmdline", std::ios::binary) << argv0 << '\0' << "--flag" << '\0';
}

TEST(FindProcessesTest, MatchesCommAndLongNamesByArgv0) {
  TempDir tmp;
  const std::string root = tmp.path();
  AddProcess(root, 10, "nvidia-device-p", "/usr/bin/nvidia-device-plugin");
  AddProcess(root, 11, "nvidia-device-p", "nvidia-device-plugin");
  AddProcess(root, 12, "nvidia-device-p", "/usr/bin/nvidia-device-pxyz");  // another program
  AddProcess(root, 13, "config-manager", "/usr/bin/config-manager");
  AddProcess(root, 14, "nvidia-device-p", "/usr/bin/nvidia-device-plugin");  // "self"
  AddProcess(root, 15, "sleepy", "/bin/sleepy");
  std::filesystem::create_directories(root + "/self");  // not a pid
  WriteFile(root + "/uptime", "1 1");

  auto pids = FindProcesses(root, "nvidia-device-plugin", 14);
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_THAT(*pids, ElementsAre(10, 11));

  pids = FindProcesses(root, "sleepy", 0);
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_THAT(*pids, ElementsAre(15));

  pids = FindProcesses(root, "sleep", 0);  // names match whole
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_THAT(*pids, ElementsAre());
}

// A process that exits while it is scanned leaves /proc files that open but fail to read (ESRCH);
// a `comm` that is a directory fails the same way (EISDIR). Such an entry is skipped, never fatal.
TEST(FindProcessesTest, AnEntryThatFailsToReadIsSkipped) {
  TempDir tmp;
  const std::string root = tmp.path();
  std::filesystem::create_directories(root + "/20/comm");
  AddProcess(root, 21, "sleepy", "/bin/sleepy");
  auto pids = FindProcesses(root, "sleepy", 0);
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_THAT(*pids, ElementsAre(21));
}

TEST(FindProcessesTest, AnUnreadableRootIsAnError) {
  EXPECT_FALSE(FindProcesses("/nonexistent/proc", "x", 0).ok());
}

TEST(ProcSignalerTest, NoneFoundIsZeroNotAnError) {
  TempDir tmp;
  ProcSignaler signaler(tmp.path());
  auto sent = signaler.SignalAll("nvidia-device-plugin", SIGHUP);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 0);
}

}  // namespace
}  // namespace nvdp::configmgr
