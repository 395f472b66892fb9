// Health rules (upstream's Xid filter and DP_*_HEALTHCHECKS) and the monitor loop against a
// scripted Nvml.
#include "health/health_monitor.h"

#include <chrono>
#include <deque>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nvdp::health {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

nvml::Event Xid(uint64_t xid) { return {"GPU-0", nvml::kEventXidCritical, xid}; }

TEST(HealthSettingsTest, DefaultsIgnoreApplicationXids) {
  HealthSettings settings = ParseHealthSettings(std::nullopt, std::nullopt);
  EXPECT_TRUE(settings.enabled);
  for (uint64_t xid : {13, 31, 43, 45, 68, 109}) EXPECT_FALSE(IsCritical(Xid(xid), settings));
  EXPECT_TRUE(IsCritical(Xid(79), settings));
  EXPECT_TRUE(IsCritical(Xid(48), settings));
  // Only Xid events act (as upstream): ECC events are logged, not acted on.
  EXPECT_FALSE(IsCritical({"GPU-0", nvml::kEventDoubleBitEcc, 0}, settings));
}

TEST(HealthSettingsTest, DisableAllOrXidsTurnsChecksOff) {
  EXPECT_FALSE(ParseHealthSettings("all", std::nullopt).enabled);
  EXPECT_FALSE(ParseHealthSettings(" XIDS ", std::nullopt).enabled);
  EXPECT_FALSE(IsCritical(Xid(79), ParseHealthSettings("all", std::nullopt)));
}

// Upstream disables the checks when `all` or `xids` appears anywhere in the list.
TEST(HealthSettingsTest, AllOrXidsAnywhereInTheListTurnsChecksOff) {
  EXPECT_FALSE(ParseHealthSettings("48,xids", std::nullopt).enabled);
  EXPECT_FALSE(ParseHealthSettings("79, All ,48", std::nullopt).enabled);
  EXPECT_TRUE(ParseHealthSettings("79,48", std::nullopt).enabled);
  EXPECT_TRUE(ParseHealthSettings("xid", std::nullopt).enabled);
}

TEST(HealthSettingsTest, ListsAddAndRemoveIgnoredXids) {
  auto settings = ParseHealthSettings("79, 48", "13,31");
  EXPECT_FALSE(IsCritical(Xid(79), settings));
  EXPECT_FALSE(IsCritical(Xid(48), settings));
  EXPECT_TRUE(IsCritical(Xid(13), settings));
  EXPECT_TRUE(IsCritical(Xid(31), settings));
  EXPECT_FALSE(IsCritical(Xid(43), settings));
  EXPECT_TRUE(IsCritical(Xid(43), ParseHealthSettings(std::nullopt, "all")));
}

// Replays a list of wait results (more can be pushed later); with nothing queued, WaitForEvent
// blocks until its timeout, a Push or Release, like NVML's event wait.
class ScriptedNvml : public nvml::Nvml {
 public:
  explicit ScriptedNvml(std::deque<absl::StatusOr<std::optional<nvml::Event>>> script)
      : script_(std::move(script)) {}
  absl::Status Init() override { return absl::OkStatus(); }
  absl::Status Shutdown() override { return absl::OkStatus(); }
  absl::StatusOr<std::string> DriverVersion() override { return std::string("test"); }
  absl::StatusOr<unsigned> GpuCount() override { return 0u; }
  absl::StatusOr<nvml::GpuInfo> GpuByIndex(unsigned) override { return absl::NotFoundError(""); }
  absl::StatusOr<nvml::GpuInfo> GpuByUuid(const std::string&) override {
    return absl::NotFoundError("");
  }
  absl::StatusOr<std::vector<nvml::MigDeviceInfo>> MigDevices(unsigned) override {
    return std::vector<nvml::MigDeviceInfo>{};
  }
  absl::Status WatchEvents(const std::vector<std::string>& uuids, uint64_t types) override {
    watched_ = uuids;
    types_ = types;
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<nvml::Event>> WaitForEvent(
      std::chrono::milliseconds timeout) override {
    absl::MutexLock lock(&mu_);
    ++waiting_;
    auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !script_.empty() || released_; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::FromChrono(timeout));
    --waiting_;
    if (script_.empty()) return std::optional<nvml::Event>();
    auto next = script_.front();
    script_.pop_front();
    return next;
  }

  void Push(absl::StatusOr<std::optional<nvml::Event>> result) {
    absl::MutexLock lock(&mu_);
    script_.push_back(std::move(result));
  }
  // Makes every wait, current and future, return at once.
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  // Waits until a thread is blocked in WaitForEvent with nothing queued.
  bool AwaitBlockedWaiter() {
    absl::MutexLock lock(&mu_);
    auto blocked = [this]()
                       ABSL_SHARED_LOCKS_REQUIRED(mu_) { return waiting_ > 0 && script_.empty(); };
    return mu_.AwaitWithTimeout(absl::Condition(&blocked), absl::Seconds(20));
  }

  std::vector<std::string> watched_;
  uint64_t types_ = 0;

 private:
  absl::Mutex mu_;
  std::deque<absl::StatusOr<std::optional<nvml::Event>>> script_ ABSL_GUARDED_BY(mu_);
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

class Recorder {
 public:
  HealthMonitor::Callback Callback() {
    return [this](const std::string& uuid, bool healthy) {
      absl::MutexLock lock(&mu_);
      calls_.emplace_back(uuid, healthy);
    };
  }
  std::vector<std::pair<std::string, bool>> Calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::vector<std::pair<std::string, bool>> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return calls_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(20));
    return calls_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<std::string, bool>> calls_ ABSL_GUARDED_BY(mu_);
};

TEST(HealthMonitorTest, MarksOnlyGpusWithCriticalXids) {
  ScriptedNvml nvml(
      {std::optional<nvml::Event>(nvml::Event{"GPU-1", nvml::kEventXidCritical, 43}),
       std::optional<nvml::Event>(),
       std::optional<nvml::Event>(nvml::Event{"GPU-1", nvml::kEventXidCritical, 79})});
  Recorder recorder;
  HealthMonitor monitor(nvml, {"GPU-0", "GPU-1"}, {}, recorder.Callback(),
                        std::chrono::milliseconds(1));
  ASSERT_TRUE(monitor.Start().ok());
  EXPECT_THAT(recorder.WaitFor(1), ElementsAre(Pair("GPU-1", false)));
  nvml.Release();
  monitor.Stop();
  EXPECT_TRUE(monitor.AwaitThreadExit(std::chrono::seconds(20)));  // before `nvml` goes
  EXPECT_THAT(nvml.watched_, ElementsAre("GPU-0", "GPU-1"));
  EXPECT_EQ(nvml.types_,
            nvml::kEventXidCritical | nvml::kEventDoubleBitEcc | nvml::kEventSingleBitEcc);
}

TEST(HealthMonitorTest, BrokenEventSetMarksEveryGpuUnhealthy) {
  ScriptedNvml nvml({absl::InternalError("GPU is lost")});
  Recorder recorder;
  HealthMonitor monitor(nvml, {"GPU-0", "GPU-1"}, {}, recorder.Callback(),
                        std::chrono::milliseconds(1));
  ASSERT_TRUE(monitor.Start().ok());
  EXPECT_THAT(recorder.WaitFor(2), ElementsAre(Pair("GPU-0", false), Pair("GPU-1", false)));
  // The thread ended after the error: nothing of it is left in the Nvml.
  EXPECT_TRUE(monitor.AwaitThreadExit(std::chrono::seconds(20)));
  EXPECT_TRUE(monitor.Stop());
}

// The thread blocks in a wait far longer than any test; Stop returns without waiting for it, and
// an event that ends the wait after Stop reaches no callback.
TEST(HealthMonitorTest, StopDoesNotWaitForABlockedEventWait) {
  ScriptedNvml nvml({});
  Recorder recorder;
  HealthMonitor monitor(nvml, {"GPU-0"}, {}, recorder.Callback(), std::chrono::hours(1));
  ASSERT_TRUE(monitor.Start().ok());
  ASSERT_TRUE(nvml.AwaitBlockedWaiter());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(monitor.Stop());  // detached: still inside nvml.WaitForEvent
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  EXPECT_FALSE(monitor.AwaitThreadExit(std::chrono::milliseconds(50)));
  nvml.Push(std::optional<nvml::Event>(nvml::Event{"GPU-0", nvml::kEventXidCritical, 79}));
  // The nvml must outlive the detached thread's wait.
  EXPECT_TRUE(monitor.AwaitThreadExit(std::chrono::seconds(20)));
  EXPECT_TRUE(monitor.Stop());
  EXPECT_TRUE(recorder.Calls().empty());
}

TEST(HealthMonitorTest, TimeoutsKeepWatching) {
  ScriptedNvml nvml({});
  Recorder recorder;
  HealthMonitor monitor(nvml, {"GPU-0"}, {}, recorder.Callback(), std::chrono::milliseconds(1));
  ASSERT_TRUE(monitor.Start().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // several timed-out waits
  nvml.Push(std::optional<nvml::Event>(nvml::Event{"GPU-0", nvml::kEventXidCritical, 48}));
  EXPECT_THAT(recorder.WaitFor(1), ElementsAre(Pair("GPU-0", false)));
  nvml.Release();
  monitor.Stop();
  EXPECT_TRUE(monitor.AwaitThreadExit(std::chrono::seconds(20)));
}

TEST(HealthMonitorTest, DisabledChecksDoNotWatch) {
  ScriptedNvml nvml({});
  Recorder recorder;
  HealthMonitor monitor(nvml, {"GPU-0"}, ParseHealthSettings("all", std::nullopt),
                        recorder.Callback());
  ASSERT_TRUE(monitor.Start().ok());
  EXPECT_TRUE(monitor.Stop());
  EXPECT_TRUE(nvml.watched_.empty());
}

// NVML attributes an Xid to a GI/CI on the parent GPU; the monitor reports the MIG device's UUID.
TEST(HealthMonitorMigTest, EventsWithGpuAndComputeInstanceNameTheMigDevice) {
  auto xid = [](std::string gpu, uint64_t code, std::optional<unsigned> gi,
                std::optional<unsigned> ci) {
    return std::optional<nvml::Event>(
        nvml::Event{std::move(gpu), nvml::kEventXidCritical, code, gi, ci});
  };
  ScriptedNvml nvml({
      xid("GPU-0", 79, 9, 0),    // MIG-0b
      xid("GPU-0", 79, 5, 0),    // GI 5 is no listed MIG device of GPU-0: ignored (as upstream)
      xid("GPU-0", 48, 2, 0),    // MIG-0a
      xid("GPU-0", 31, 2, 0),    // an application Xid: ignored whatever it names
      xid("GPU-1", 79, 1, 0),    // GPU-1 has no listed MIG devices: the GPU
      xid("GPU-0", 94, {}, {}),  // the whole GPU
  });
  Recorder recorder;
  HealthMonitor monitor(
      nvml, {"GPU-1", "MIG-0a"},
      {MigDeviceRef{"GPU-0", 2, 0, "MIG-0a"}, MigDeviceRef{"GPU-0", 9, 0, "MIG-0b"},
       MigDeviceRef{"GPU-2", 2, 0, "MIG-2a"}},
      {}, recorder.Callback(), std::chrono::milliseconds(1));
  ASSERT_TRUE(monitor.Start().ok());
  EXPECT_THAT(recorder.WaitFor(4), ElementsAre(Pair("MIG-0b", false), Pair("MIG-0a", false),
                                               Pair("GPU-1", false), Pair("GPU-0", false)));
  nvml.Release();
  monitor.Stop();
  EXPECT_TRUE(monitor.AwaitThreadExit(std::chrono::seconds(20)));
  // Events are registered on full GPUs only: the listed ones and the MIG devices' parents, once.
  EXPECT_THAT(nvml.watched_, ElementsAre("GPU-1", "GPU-0", "GPU-2"));
}

TEST(HealthMonitorMigTest, BrokenEventSetMarksTheWatchedGpus) {
  ScriptedNvml nvml({absl::InternalError("GPU is lost")});
  Recorder recorder;
  HealthMonitor monitor(nvml, {}, {MigDeviceRef{"GPU-0", 2, 0, "MIG-0a"}}, {}, recorder.Callback(),
                        std::chrono::milliseconds(1));
  ASSERT_TRUE(monitor.Start().ok());
  EXPECT_THAT(recorder.WaitFor(1), ElementsAre(Pair("GPU-0", false)));
  EXPECT_TRUE(monitor.AwaitThreadExit(std::chrono::seconds(20)));
  EXPECT_TRUE(monitor.Stop());
}

}  // namespace
}  // namespace nvdp::health
