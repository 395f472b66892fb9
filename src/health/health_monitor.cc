#include "health/health_monitor.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "logging/logging.h"
#include "spdlog/spdlog.h"

namespace nvdp::health {

HealthSettings ParseHealthSettings(const std::optional<std::string>& disable,
                                   const std::optional<std::string>& enable) {
  HealthSettings settings;
  // Calls `word` for `all`/`xids` and `xid` for each number of a comma list; warns about the rest.
  auto for_each_item = [](const std::string& list, auto&& word, auto&& xid) {
    const std::string lower = absl::AsciiStrToLower(list);
    for (absl::string_view part : absl::StrSplit(lower, ',', absl::SkipWhitespace())) {
      part = absl::StripAsciiWhitespace(part);
      uint64_t number = 0;
      if (part == "all" || part == "xids") {
        word(part);
      } else if (absl::SimpleAtoi(part, &number)) {
        xid(number);
      } else {
        spdlog::warn("ignoring health-check setting '{}': not an Xid number", std::string(part));
      }
    }
  };
  if (disable) {
    // As upstream: `all` or `xids` anywhere in the list turns the checks off; numbers are extra
    // Xids to ignore.
    for_each_item(
        *disable, [&](absl::string_view) { settings.enabled = false; },
        [&](uint64_t xid) { settings.ignored_xids.insert(xid); });
  }
  if (enable) {
    for_each_item(
        *enable,
        [&](absl::string_view word) {
          if (word == "all") settings.ignored_xids.clear();
        },
        [&](uint64_t xid) { settings.ignored_xids.erase(xid); });
  }
  return settings;
}

bool IsCritical(const nvml::Event& event, const HealthSettings& settings) {
  return settings.enabled && event.type == nvml::kEventXidCritical &&
         !settings.ignored_xids.contains(event.xid);
}

// The state the thread needs. It is shared with the thread so that a thread Stop() detached (still
// blocked in NVML's event wait) never touches the monitor, which may be gone when the wait returns.
struct HealthMonitor::Shared {
  Shared(nvml::Nvml& nvml_in, std::vector<std::string> gpu_uuids_in, HealthSettings settings_in,
         Callback callback_in, std::chrono::milliseconds wait_period_in)
      : nvml(nvml_in),
        gpu_uuids(std::move(gpu_uuids_in)),
        settings(std::move(settings_in)),
        wait_period(wait_period_in),
        callback(std::move(callback_in)) {}

  nvml::Nvml& nvml;  // not owned; used only by the thread, and only while `stop` is false
  const std::vector<std::string> gpu_uuids;
  const HealthSettings settings;
  const std::chrono::milliseconds wait_period;

  absl::Mutex mu;
  bool stop ABSL_GUARDED_BY(mu) = false;
  bool running ABSL_GUARDED_BY(mu) = false;  // the thread has not ended
  bool in_wait ABSL_GUARDED_BY(mu) = false;  // the thread is in (or entering) nvml.WaitForEvent
  Callback callback ABSL_GUARDED_BY(mu);     // called only with `mu` held; cleared by Stop
};

HealthMonitor::HealthMonitor(nvml::Nvml& nvml, std::vector<std::string> gpu_uuids,
                             HealthSettings settings, Callback callback,
                             std::chrono::milliseconds wait_period)
    : shared_(std::make_shared<Shared>(nvml, std::move(gpu_uuids), std::move(settings),
                                       std::move(callback), wait_period)) {}

HealthMonitor::~HealthMonitor() { Stop(); }

absl::Status HealthMonitor::Start() {
  if (!shared_->settings.enabled) {
    spdlog::info("health checks disabled (DP_DISABLE_HEALTHCHECKS)");
    return absl::OkStatus();
  }
  if (auto status = shared_->nvml.WatchEvents(shared_->gpu_uuids, nvml::kEventXidCritical |
                                                                      nvml::kEventDoubleBitEcc |
                                                                      nvml::kEventSingleBitEcc);
      !status.ok()) {
    return status;
  }
  {
    absl::MutexLock lock(&shared_->mu);
    if (shared_->stop) return absl::OkStatus();
    shared_->running = true;
  }
  absl::MutexLock lock(&thread_mu_);
  thread_ = std::thread(&HealthMonitor::Run, shared_);
  return absl::OkStatus();
}

// Why the thread is detached rather than woken: NVML has no call that interrupts
// nvmlEventSetWait_v2 (freeing the set or shutting NVML down under a waiter is undefined), and a
// short wait only to notice a stop flag costs idle wake-ups (4 per second at 250 ms) and up to one
// wait period on every stop. The daemon stops only to exit, so it skips nvmlShutdown and leaves
// the Nvml loaded when Stop returns false (see RunDaemon).
bool HealthMonitor::Stop() {
  absl::MutexLock thread_lock(&thread_mu_);
  bool blocked_in_nvml = false;
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->stop = true;
    shared_->callback = nullptr;
    blocked_in_nvml = shared_->in_wait;
  }
  if (thread_.joinable()) {
    // Not in the wait: it sees `stop` at once (a callback in progress already finished above).
    if (blocked_in_nvml) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }
  absl::MutexLock lock(&shared_->mu);
  return !shared_->in_wait;
}

bool HealthMonitor::AwaitThreadExit(std::chrono::milliseconds timeout) {
  Shared& s = *shared_;
  absl::MutexLock lock(&s.mu);
  auto ended = [&s]() ABSL_SHARED_LOCKS_REQUIRED(s.mu) { return !s.running; };
  return s.mu.AwaitWithTimeout(absl::Condition(&ended), absl::FromChrono(timeout));
}

void HealthMonitor::Run(std::shared_ptr<Shared> shared) {
  logging::NameThisThread("nvdp-health");
  Shared& s = *shared;
  s.mu.Lock();
  while (!s.stop) {
    s.in_wait = true;
    s.mu.Unlock();
    auto event = s.nvml.WaitForEvent(s.wait_period);
    s.mu.Lock();
    s.in_wait = false;
    // Stopped meanwhile: Stop may have returned (and the daemon be exiting), so nothing more, not
    // even a log line.
    if (s.stop) break;
    if (!event.ok()) {
      spdlog::error("NVML event wait failed: {}; marking every GPU unhealthy",
                    std::string(event.status().message()));
      for (const auto& uuid : s.gpu_uuids) s.callback(uuid, false);
      break;
    }
    if (!event->has_value()) continue;
    const nvml::Event& e = **event;
    if (!IsCritical(e, s.settings)) {
      spdlog::info("GPU {}: event type {:#x} Xid {} ignored", e.gpu_uuid, e.type, e.xid);
      continue;
    }
    spdlog::warn("GPU {}: critical Xid {}; marking it unhealthy", e.gpu_uuid, e.xid);
    s.callback(e.gpu_uuid, false);
  }
  s.running = false;
  s.mu.Unlock();
}

}  // namespace nvdp::health
