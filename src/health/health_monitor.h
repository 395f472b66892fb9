// HealthMonitor: turns NVML events into device health, with upstream's rules: only Xid critical
// errors act; Xids 13, 31, 43, 45, 68, 109 are application errors and ignored;
// DP_DISABLE_HEALTHCHECKS (`all`, `xids`, or a comma list of extra Xids to ignore) and
// DP_ENABLE_HEALTHCHECKS (`all`, or a comma list of Xids to stop ignoring) adjust that.
//
// Owns one thread that waits on the NVML event set; the callback is called from it. Stop() (or the
// destructor) ends it within one wait period. Thread-safe to Stop from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "nvml/nvml.h"

namespace nvdp::health {

struct HealthSettings {
  bool enabled = true;
  std::set<uint64_t> ignored_xids = {13, 31, 43, 45, 68, 109};
};

// Applies DP_DISABLE_HEALTHCHECKS / DP_ENABLE_HEALTHCHECKS values (nullopt when unset).
HealthSettings ParseHealthSettings(const std::optional<std::string>& disable,
                                   const std::optional<std::string>& enable);

// True if an event marks its GPU unhealthy under `settings`.
bool IsCritical(const nvml::Event& event, const HealthSettings& settings);

class HealthMonitor {
 public:
  using Callback = std::function<void(const std::string& gpu_uuid, bool healthy)>;

  HealthMonitor(nvml::Nvml& nvml, std::vector<std::string> gpu_uuids, HealthSettings settings,
                Callback callback,
                std::chrono::milliseconds wait_period = std::chrono::milliseconds(250));
  ~HealthMonitor();

  // Registers for events and starts the thread. A no-op when health checks are disabled.
  absl::Status Start();
  void Stop();

 private:
  void Run();

  nvml::Nvml& nvml_;
  const std::vector<std::string> gpu_uuids_;
  const HealthSettings settings_;
  const Callback callback_;
  const std::chrono::milliseconds wait_period_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace nvdp::health
