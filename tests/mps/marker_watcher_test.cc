// MarkerWatcher on real directories (inotify): creation and removal of the marker, its directory
// appearing later (several levels), removed and created again, blips, several watches.
#include "mps/marker_watcher.h"

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/temp_dir.h"

namespace nvdp::mps {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::TempDir;

constexpr absl::Duration kWait = absl::Seconds(20);  // upper bound for awaited events, never slept

// Records a watch's callbacks as "+" (created) and "-" (removed).
class EventLog {
 public:
  MarkerWatcher::Callback Callback() {
    return [this](bool exists) {
      absl::MutexLock lock(&mu_);
      events_.push_back(exists ? "+" : "-");
    };
  }
  // Waits until `count` events were seen; returns them all.
  std::vector<std::string> WaitFor(size_t count) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return events_.size() >= count; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kWait);
    return events_;
  }
  std::vector<std::string> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

void Touch(const std::string& path) { testing::WriteFile(path, ""); }

class MarkerWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto watcher = MarkerWatcher::Create();
    ASSERT_TRUE(watcher.ok()) << watcher.status();
    watcher_ = *std::move(watcher);
  }
  int Watch(const std::string& dir, EventLog& log, const std::string& file = ".started") {
    auto id = watcher_->Add(dir, file, log.Callback());
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : -1;
  }
  // A change made after all the others, whose report proves that the watcher has handled those.
  void Barrier() {
    const std::string dir = root_.path() + "/barrier";
    std::filesystem::create_directories(dir);
    EventLog log;
    const int id = Watch(dir, log);
    Touch(dir + "/.started");
    EXPECT_THAT(log.WaitFor(1), ElementsAre("+"));
    watcher_->Remove(id);
    std::filesystem::remove(dir + "/.started");
  }

  TempDir root_;
  std::unique_ptr<MarkerWatcher> watcher_;
};

TEST_F(MarkerWatcherTest, ReportsCreationAndRemoval) {
  const std::string dir = root_.path() + "/nvidia.com/gpu";
  std::filesystem::create_directories(dir);
  EventLog log;
  Watch(dir, log);
  Touch(dir + "/.started");
  EXPECT_THAT(log.WaitFor(1), ElementsAre("+"));
  std::filesystem::remove(dir + "/.started");
  EXPECT_THAT(log.WaitFor(2), ElementsAre("+", "-"));
  // Other files in the directory are not reported.
  Touch(dir + "/other");
  Touch(dir + "/.started");
  EXPECT_THAT(log.WaitFor(3), ElementsAre("+", "-", "+"));
}

TEST_F(MarkerWatcherTest, StartsFromTheStateAtAdd) {
  const std::string dir = root_.path() + "/nvidia.com/gpu";
  std::filesystem::create_directories(dir);
  Touch(dir + "/.started");
  EventLog log;
  Watch(dir, log);
  Touch(dir + "/.started");  // already there: no change
  std::filesystem::remove(dir + "/.started");
  EXPECT_THAT(log.WaitFor(1), ElementsAre("-"));
}

TEST_F(MarkerWatcherTest, ARemovalQuicklyUndoneIsReportedInOrder) {
  const std::string dir = root_.path() + "/nvidia.com/gpu";
  std::filesystem::create_directories(dir);
  Touch(dir + "/.started");
  EventLog log;
  Watch(dir, log);
  for (int i = 0; i < 20; ++i) {
    std::filesystem::remove(dir + "/.started");
    Touch(dir + "/.started");
  }
  std::vector<std::string> expected;
  for (int i = 0; i < 20; ++i) expected.insert(expected.end(), {"-", "+"});
  EXPECT_EQ(log.WaitFor(40), expected);
}

TEST_F(MarkerWatcherTest, FollowsADirectoryThatAppearsLaterSeveralLevelsDown) {
  // Neither the MPS root nor the resource directory exists yet.
  const std::string mps_root = root_.path() + "/run/mps";
  const std::string dir = mps_root + "/nvidia.com/gpu";
  EventLog log;
  Watch(dir, log);
  std::filesystem::create_directories(mps_root);
  std::filesystem::create_directories(dir);
  Touch(dir + "/.started");
  EXPECT_THAT(log.WaitFor(1), ElementsAre("+"));
  std::filesystem::remove(dir + "/.started");
  EXPECT_THAT(log.WaitFor(2), ElementsAre("+", "-"));
}

TEST_F(MarkerWatcherTest, ADirectoryCreatedWithItsMarkerAlreadyInsideIsReported) {
  const std::string dir = root_.path() + "/mps/nvidia.com/gpu";
  EventLog log;
  Watch(dir, log);
  // Built elsewhere and renamed into place: the marker never appears inside a watched directory.
  const std::string staging = root_.path() + "/staging";
  std::filesystem::create_directories(staging + "/nvidia.com/gpu");
  Touch(staging + "/nvidia.com/gpu/.started");
  std::filesystem::create_directories(root_.path() + "/mps");
  std::filesystem::rename(staging + "/nvidia.com", root_.path() + "/mps/nvidia.com");
  EXPECT_THAT(log.WaitFor(1), ElementsAre("+"));
}

TEST_F(MarkerWatcherTest, FollowsADirectoryRemovedAndCreatedAgain) {
  const std::string mps_root = root_.path() + "/mps";
  const std::string dir = mps_root + "/nvidia.com/gpu";
  std::filesystem::create_directories(dir);
  Touch(dir + "/.started");
  EventLog log;
  Watch(dir, log);
  std::filesystem::remove_all(mps_root);
  EXPECT_THAT(log.WaitFor(1), ElementsAre("-"));
  std::filesystem::create_directories(dir);
  Touch(dir + "/.started");
  EXPECT_THAT(log.WaitFor(2), ElementsAre("-", "+"));
  // And again, the directory moved away with its marker this time.
  std::filesystem::rename(dir, mps_root + "/old");
  EXPECT_THAT(log.WaitFor(3), ElementsAre("-", "+", "-"));
  std::filesystem::create_directories(dir);
  Touch(dir + "/.started");
  EXPECT_THAT(log.WaitFor(4), ElementsAre("-", "+", "-", "+"));
  Touch(mps_root + "/old/.other");  // the old directory is no longer watched
  std::filesystem::remove(mps_root + "/old/.started");
  Barrier();
  EXPECT_EQ(log.events().size(), 4u);
}

TEST_F(MarkerWatcherTest, WatchesSharingDirectoriesAreIndependent) {
  const std::string mps_root = root_.path() + "/mps";
  std::filesystem::create_directories(mps_root + "/nvidia.com/gpu");
  EventLog gpu, shared, ready;
  Watch(mps_root + "/nvidia.com/gpu", gpu);
  const int shared_id = Watch(mps_root + "/nvidia.com/gpu.shared", shared);  // not there yet
  Watch(mps_root, ready, ".ready");
  std::filesystem::create_directories(mps_root + "/nvidia.com/gpu.shared");
  Touch(mps_root + "/nvidia.com/gpu.shared/.started");
  EXPECT_THAT(shared.WaitFor(1), ElementsAre("+"));
  Touch(mps_root + "/nvidia.com/gpu/.started");
  EXPECT_THAT(gpu.WaitFor(1), ElementsAre("+"));
  Touch(mps_root + "/.ready");
  EXPECT_THAT(ready.WaitFor(1), ElementsAre("+"));
  watcher_->Remove(shared_id);
  std::filesystem::remove(mps_root + "/nvidia.com/gpu.shared/.started");
  std::filesystem::remove(mps_root + "/nvidia.com/gpu/.started");
  EXPECT_THAT(gpu.WaitFor(2), ElementsAre("+", "-"));
  Barrier();
  EXPECT_THAT(shared.events(), ElementsAre("+"));
  EXPECT_THAT(ready.events(), ElementsAre("+"));
}

TEST_F(MarkerWatcherTest, RemovedWatchIsNotCalledAgain) {
  const std::string dir = root_.path() + "/nvidia.com/gpu";
  std::filesystem::create_directories(dir);
  EventLog log;
  watcher_->Remove(Watch(dir, log));
  Touch(dir + "/.started");
  Barrier();
  EXPECT_THAT(log.events(), IsEmpty());
}

TEST_F(MarkerWatcherTest, BadArgumentsAreRefused) {
  EventLog log;
  EXPECT_FALSE(watcher_->Add("relative/dir", ".started", log.Callback()).ok());
  EXPECT_FALSE(watcher_->Add(root_.path(), "a/b", log.Callback()).ok());
  EXPECT_FALSE(watcher_->Add(root_.path(), "", log.Callback()).ok());
}

}  // namespace
}  // namespace nvdp::mps
