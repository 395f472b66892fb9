// DirWatcher on real directories, and Register against the test kubelet over real sockets.
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "absl/synchronization/mutex.h"
#include "fakes/kubelet/test_kubelet.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kubelet/dir_watcher.h"
#include "kubelet/registrar.h"
#include "plugin/device_plugin_server.h"

namespace nvdp::kubelet {
namespace {

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/nvdp-kl-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Collects DirWatcher events and lets a test await one.
class EventLog {
 public:
  DirWatcher::Callback Callback() {
    return [this](const std::string& name, DirWatcher::Change change) {
      absl::MutexLock lock(&mu_);
      events_.push_back((change == DirWatcher::Change::kCreated ? "+" : "-") + name);
    };
  }
  bool WaitFor(const std::string& event) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return std::find(events_.begin(), events_.end(), event) != events_.end();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), absl::Seconds(20));
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

TEST(DirWatcherTest, ReportsCreatedAndDeletedFiles) {
  TempDir dir;
  EventLog log;
  auto watcher = DirWatcher::Create(dir.path(), log.Callback());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  std::ofstream(dir.path() + "/kubelet.sock").close();
  EXPECT_TRUE(log.WaitFor("+kubelet.sock"));
  std::filesystem::remove(dir.path() + "/kubelet.sock");
  EXPECT_TRUE(log.WaitFor("-kubelet.sock"));
}

TEST(DirWatcherTest, FollowsADirectoryThatIsRemovedAndCreatedAgain) {
  TempDir parent;
  const std::string dir = parent.path() + "/device-plugins";
  std::filesystem::create_directory(dir);
  EventLog log;
  auto watcher = DirWatcher::Create(dir, log.Callback());
  ASSERT_TRUE(watcher.ok());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directory(dir);
  std::ofstream(dir + "/kubelet.sock").close();
  EXPECT_TRUE(log.WaitFor("+kubelet.sock"));
}

TEST(DirWatcherTest, MissingDirectoryIsAnError) {
  auto watcher = DirWatcher::Create("/nonexistent/device-plugins", [](auto&&, auto) {});
  EXPECT_EQ(watcher.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(watcher.status().message(), HasSubstr("/nonexistent/device-plugins"));
}

TEST(RegistrarTest, RegistersAServingPlugin) {
  TempDir dir;
  auto kubelet = testing::TestKubelet::Start(dir.path());
  ASSERT_TRUE(kubelet.ok());
  sharing::ResourceSpec spec;
  spec.name = "nvidia.com/gpu";
  device::Gpu gpu;
  gpu.uuid = "GPU-0";
  spec.gpus = {gpu};
  plugin::DevicePluginServer server(spec, {}, dir.path() + "/nvidia-gpu.sock");
  ASSERT_TRUE(server.Start().ok());

  auto status = Register((*kubelet)->socket_path(), {"nvidia-gpu.sock", "nvidia.com/gpu"},
                         std::chrono::seconds(10));
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ((*kubelet)->Registrations("nvidia.com/gpu"), 1);
  EXPECT_TRUE((*kubelet)->WaitForDevices(
      "nvidia.com/gpu", [](const auto& devices) { return devices.size() == 1; },
      std::chrono::seconds(20)));
}

TEST(RegistrarTest, KubeletRefusesAReservedResourceName) {
  TempDir dir;
  auto kubelet = testing::TestKubelet::Start(dir.path());
  ASSERT_TRUE(kubelet.ok());
  auto status = Register((*kubelet)->socket_path(), {"nvidia-gpu.sock", "kubernetes.io/gpu"},
                         std::chrono::seconds(10));
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("kubernetes.io/gpu"));
}

TEST(RegistrarTest, NoKubeletIsUnavailable) {
  TempDir dir;
  auto status = Register(dir.path() + "/kubelet.sock", {"nvidia-gpu.sock", "nvidia.com/gpu"},
                         std::chrono::milliseconds(500));
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("kubelet.sock"));
}

}  // namespace
}  // namespace nvdp::kubelet
