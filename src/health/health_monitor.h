// HealthMonitor: turns NVML events into device health, with upstream's rules: only Xid critical
// errors act; Xids 13, 31, 43, 45, 68, 109 are application errors and ignored;
// DP_DISABLE_HEALTHCHECKS (`all`, `xids`, or a comma list of extra Xids to ignore) and
// DP_ENABLE_HEALTHCHECKS (`all`, or a comma list of Xids to stop ignoring) adjust that.
//
// MIG: NVML reports events on the parent GPU, with the GPU/compute instance an Xid is attributable
// to. Given the MIG devices to report on (MigDeviceRef), the monitor registers on their parents
// and calls the callback with the MIG device's UUID for an event naming its GI and CI; an event
// without GI/CI names the full GPU's UUID (whoever owns the callback then marks everything on that
// GPU). An event naming a GI/CI that none of the listed MIG devices of that GPU has is ignored, as
// upstream does, when the GPU has listed MIG devices; otherwise it names the full GPU.
//
// Owns one thread that blocks in Nvml::WaitForEvent with a long timeout (it does not poll: it
// wakes for an event or once per `wait_period`) and calls the callback from there. Stop() never
// waits for that NVML wait: a thread blocked in it is detached and ends by itself when the wait
// returns, touching only state it shares with the monitor (never the callback, never the Nvml
// again). The Nvml must then stay alive and initialised until that wait returns or the process
// exits; Stop()'s result says which case applies. Stop and AwaitThreadExit may be called from any
// thread (also concurrently) except from within the callback.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
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

// A MIG device the monitor reports on by its own UUID: where NVML's events place it.
struct MigDeviceRef {
  std::string parent_uuid{};
  unsigned gi_id = 0;
  unsigned ci_id = 0;
  std::string uuid{};  // "MIG-..."
};

class HealthMonitor {
 public:
  using Callback = std::function<void(const std::string& gpu_uuid, bool healthy)>;

  // Upstream's event wait (5 s): at most 0.2 idle wake-ups per second, and a timeout real drivers
  // are known to handle. Stop does not depend on it; longer would gain little and keep DlNvml's
  // event-set lock (which WatchEvents and its destructor take) held longer.
  static constexpr std::chrono::milliseconds kDefaultWaitPeriod{5000};

  // Watches the full GPUs `gpu_uuids`.
  HealthMonitor(nvml::Nvml& nvml, std::vector<std::string> gpu_uuids, HealthSettings settings,
                Callback callback, std::chrono::milliseconds wait_period = kDefaultWaitPeriod);
  // Watches the full GPUs `gpu_uuids` and the parents of `mig_devices` (a MIG UUID in `gpu_uuids`
  // is dropped: NVML registers events on full GPUs only), reporting MIG devices by their UUID.
  HealthMonitor(nvml::Nvml& nvml, std::vector<std::string> gpu_uuids,
                std::vector<MigDeviceRef> mig_devices, HealthSettings settings, Callback callback,
                std::chrono::milliseconds wait_period = kDefaultWaitPeriod);
  // Calls Stop().
  ~HealthMonitor();

  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Registers for events and starts the thread. A no-op when health checks are disabled.
  absl::Status Start();

  // Ends health watching without waiting for NVML: after it returns the callback is never called
  // again (a callback in progress is waited for). Returns true when no thread of the monitor is
  // inside the Nvml any more (joined, or never started); false when the thread is blocked in
  // Nvml::WaitForEvent and was detached: the caller must then neither destroy the Nvml nor shut
  // it down until that wait has returned (AwaitThreadExit) or the process has exited.
  // Idempotent; later calls return whether the thread has finished by then.
  bool Stop();

  // After Stop: waits up to `timeout` for a detached thread to leave the Nvml and end. True when
  // it has (or there was none).
  bool AwaitThreadExit(std::chrono::milliseconds timeout);

 private:
  struct Shared;

  static void Run(std::shared_ptr<Shared> shared);

  const std::shared_ptr<Shared> shared_;
  absl::Mutex thread_mu_;  // guards thread_ (Start, Stop)
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
};

}  // namespace nvdp::health
