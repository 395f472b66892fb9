#include "health/health_monitor.h"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

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

namespace {

// The GPUs to register events on: `gpu_uuids` and the MIG devices' parents, each once, in order,
// without MIG devices.
std::vector<std::string> WatchedGpus(const std::vector<std::string>& gpu_uuids,
                                     const std::vector<MigDeviceRef>& mig_devices) {
  std::set<std::string> mig_uuids;
  for (const MigDeviceRef& mig : mig_devices) mig_uuids.insert(mig.uuid);
  std::vector<std::string> watched;
  std::set<std::string> seen;
  auto add = [&](const std::string& uuid) {
    if (mig_uuids.contains(uuid)) {
      spdlog::warn("{} is a MIG device: watching its parent GPU's events instead", uuid);
      return;
    }
    if (seen.insert(uuid).second) watched.push_back(uuid);
  };
  for (const std::string& uuid : gpu_uuids) add(uuid);
  for (const MigDeviceRef& mig : mig_devices) add(mig.parent_uuid);
  return watched;
}

}  // namespace

// The state the thread needs. It is shared with the thread so that a thread Stop() detached (still
// blocked in NVML's event wait) never touches the monitor, which may be gone when the wait returns.
struct HealthMonitor::Shared {
  Shared(nvml::Nvml& nvml_in, const std::vector<std::string>& gpu_uuids_in,
         const std::vector<MigDeviceRef>& mig_devices, HealthSettings settings_in,
         Callback callback_in, std::chrono::milliseconds wait_period_in)
      : nvml(nvml_in),
        gpu_uuids(WatchedGpus(gpu_uuids_in, mig_devices)),
        settings(std::move(settings_in)),
        wait_period(wait_period_in),
        callback(std::move(callback_in)) {
    for (const MigDeviceRef& mig : mig_devices) {
      mig_uuids[{mig.parent_uuid, mig.gi_id, mig.ci_id}] = mig.uuid;
      gpus_with_mig.insert(mig.parent_uuid);
    }
  }

  // The UUID an event is about: a listed MIG device's for an event naming its GI and CI, the GPU's
  // for one naming neither (or on a GPU without listed MIG devices); nullopt for a GI/CI of that
  // GPU that is not listed.
  std::optional<std::string> Subject(const nvml::Event& e) const {
    if (!e.gi_id || !e.ci_id) return e.gpu_uuid;
    auto it = mig_uuids.find({e.gpu_uuid, *e.gi_id, *e.ci_id});
    if (it != mig_uuids.end()) return it->second;
    if (gpus_with_mig.contains(e.gpu_uuid)) return std::nullopt;
    return e.gpu_uuid;
  }

  nvml::Nvml& nvml;  // not owned; used only by the thread, and only while `stop` is false
  const std::vector<std::string> gpu_uuids;  // the full GPUs registered for events
  // (parent UUID, GI, CI) -> MIG device UUID.
  std::map<std::tuple<std::string, unsigned, unsigned>, std::string> mig_uuids;
  std::set<std::string> gpus_with_mig;  // parents of the listed MIG devices
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
    : HealthMonitor(nvml, std::move(gpu_uuids), {}, std::move(settings), std::move(callback),
                    wait_period) {}

HealthMonitor::HealthMonitor(nvml::Nvml& nvml, std::vector<std::string> gpu_uuids,
                             std::vector<MigDeviceRef> mig_devices, HealthSettings settings,
                             Callback callback, std::chrono::milliseconds wait_period)
    : shared_(std::make_shared<Shared>(nvml, gpu_uuids, mig_devices, std::move(settings),
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
    const std::optional<std::string> subject = s.Subject(e);
    if (!subject) {
      spdlog::info(
          "GPU {}: critical Xid {} in GPU instance {} / compute instance {}, not one of "
          "the MIG devices watched; ignored",
          e.gpu_uuid, e.xid, *e.gi_id, *e.ci_id);
      continue;
    }
    if (*subject != e.gpu_uuid) {
      spdlog::warn("GPU {}: critical Xid {} in MIG device {} (GI {}, CI {}); marking it unhealthy",
                   e.gpu_uuid, e.xid, *subject, *e.gi_id, *e.ci_id);
    } else {
      spdlog::warn("GPU {}: critical Xid {}; marking it unhealthy", e.gpu_uuid, e.xid);
    }
    s.callback(*subject, false);
  }
  s.running = false;
  s.mu.Unlock();
}

}  // namespace nvdp::health
