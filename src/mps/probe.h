// The plugin's view of an MPS control daemon: is it usable? (The daemon itself
// is run by the separate `mps-control-daemon` binary; see supervisor.h.)
//
// Use, for each MPS resource before registering it with kubelet:
//
//   mps::DaemonProbe probe({.mps_root = root, .resource = "nvidia.com/gpu",
//                           .base_env = mps::InheritedEnvironment()},
//                          mps::RealProcessRunner());
//   absl::Status ready = mps::WaitUntilReady(probe, mps::RealClock(), {},
//   &stop,
//       [](const std::string& line) { spdlog::info("nvidia.com/gpu: {}", line);
//       });
//   if (!ready.ok()) { /* do not register; report `ready` */ }
//
// and afterwards, to flip the resource's shares unhealthy while the daemon is
// down:
//
//   mps::DaemonMonitor monitor(probe, mps::RealClock(), {},
//       [&](bool healthy, const absl::Status& why) { MarkAllShares(healthy,
//       why); });
//   watcher.Add(paths.dir, ".started",
//               [&](bool exists) { monitor.MarkerChanged(exists); });
//   std::thread([&] { monitor.Run(); });  // until monitor.RequestStop()
//
// The marker is the fast path: its removal is reported unhealthy at once, its
// creation is probed at once; the periodic probe is the backstop.
//
// Thread-safety: DaemonProbe::Probe may be called from several threads at once.
// A DaemonMonitor is driven by one thread (CheckOnce, Step or Run);
// MarkerChanged, MarkerChanges, ForgetMarkerChangesThrough, RequestStop and
// healthy() may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "mps/clock.h"
#include "mps/control.h"
#include "mps/process.h"

namespace nvdp::mps {

// "Is it usable?" behind an interface, so plugin tests can fake it.
class Prober {
 public:
  virtual ~Prober() = default;
  // OK when the daemon is up and configured. Returns within about `timeout`.
  virtual absl::Status Probe(absl::Duration timeout) = 0;
  // What is probed, for log lines, e.g. "the MPS control daemon for
  // 'nvidia.com/gpu' (/run/nvidia/mps/nvidia.com/gpu)".
  virtual std::string Describe() const = 0;
};

struct DaemonProbeOptions {
  std::string mps_root;  // as the daemon sees it; the plugin must mount it at
                         // the same path
  std::string resource;  // full resource name, e.g. "nvidia.com/gpu"
  std::string control_binary = kDefaultControlBinary;
  std::vector<std::string> base_env;  // e.g. InheritedEnvironment(); empty is fine (upstream)
  // Also require <mpsRoot>/<resource>/.started: the daemon answers a moment
  // before it is configured, and a missing marker gives the clearest message.
  bool require_started_marker = true;
};

// Probes like the upstream plugin: `get_default_active_thread_percentage`
// through the control client with the resource's pipe and log directories; exit
// status 0 = ready.
class DaemonProbe final : public Prober {
 public:
  // REQUIRES: `runner` outlives the probe.
  DaemonProbe(DaemonProbeOptions options, ProcessRunner& runner);

  absl::Status Probe(absl::Duration timeout) override;
  std::string Describe() const override;

 private:
  const DaemonProbeOptions options_;
  const ResourcePaths paths_;
  ProcessRunner& runner_;
};

struct WaitOptions {
  absl::Duration timeout = absl::InfiniteDuration();  // give up after this long
  absl::Duration interval = absl::Seconds(1);         // between probes
  absl::Duration probe_timeout = absl::Seconds(5);
  absl::Duration log_every = absl::Seconds(30);  // repeat the "waiting for" line this often
};

// Probes until OK, `options.timeout` passes (DeadlineExceeded with the last
// reason) or `cancel` (may be null) is notified (Cancelled). Logs through `log`
// (default: spdlog info) a line saying what it waits for and why it is not
// ready yet, when it starts waiting and every `log_every`, and a line when the
// daemon is ready after having waited.
absl::Status WaitUntilReady(Prober& probe, Clock& clock, const WaitOptions& options = {},
                            const absl::Notification* cancel = nullptr,
                            const std::function<void(const std::string&)>& log = nullptr);

struct MonitorOptions {
  absl::Duration period = absl::Seconds(10);
  absl::Duration probe_timeout = absl::Seconds(5);
  int failure_threshold = 2;  // consecutive failed probes before reporting unhealthy
  // After the marker reappears: probe at once, then every `recheck_interval`
  // until the daemon answers, for at most `recheck_for` (then the periodic probe
  // takes over).
  absl::Duration recheck_interval = absl::Milliseconds(100);
  absl::Duration recheck_for = absl::Seconds(10);
};

// Liveness for the plugin. Starts out healthy (call it after WaitUntilReady
// succeeded), then calls `on_change(false, why)` when
//   - the daemon's .started marker is removed (MarkerChanged(false)): at once,
//     without a probe, or
//   - the periodic probe failed `failure_threshold` times in a row,
// and `on_change(true, OkStatus())` at the first successful probe after that:
// the one made as soon as the marker is created again (MarkerChanged(true)), or
// a periodic one. Marker changes are handled in order of arrival, so a removal
// quickly followed by a creation is still reported (unhealthy, then healthy).
class DaemonMonitor {
 public:
  using Callback = std::function<void(bool healthy, const absl::Status& why)>;

  // REQUIRES: `probe` and `clock` outlive the monitor.
  DaemonMonitor(Prober& probe, Clock& clock, MonitorOptions options, Callback on_change);

  // One periodic probe; invokes the callback on a transition. Returns the
  // health after it.
  bool CheckOnce();

  // The daemon's .started marker was created (true) or removed (false). Queued
  // for the driving thread (Step / Run), which it wakes. Any thread.
  void MarkerChanged(bool exists);
  // How many marker changes were reported so far. Any thread.
  uint64_t MarkerChanges() const;
  // Drops the queued changes among the first `count` reported: a successful
  // probe that started after them supersedes them (e.g. WaitUntilReady's last
  // one). Any thread.
  void ForgetMarkerChangesThrough(uint64_t count);

  // One round: the queued marker changes in order, then the probe after a
  // marker creation if one is due, then the periodic probe if it is due.
  // Returns when the next round is due (absent marker changes).
  absl::Time Step();

  // Step, then sleep until the next one is due or a marker change, until
  // RequestStop. The first periodic probe is made at once.
  void Run();
  void RequestStop();  // any thread

  bool healthy() const { return healthy_.load(); }

 private:
  struct Change {
    uint64_t number;  // 1 for the first MarkerChanged
    bool exists;
  };

  void Report(bool healthy, const absl::Status& why);

  Prober& probe_;
  Clock& clock_;
  const MonitorOptions options_;
  const Callback on_change_;
  std::atomic<bool> healthy_{true};
  std::atomic<bool> stop_{false};
  Wakeup wakeup_;
  // Touched only by the driving thread.
  int failures_ = 0;
  absl::Time next_probe_ = absl::InfinitePast();
  std::optional<absl::Time> recheck_until_;  // set after a marker creation, until it answers
  absl::Time next_recheck_ = absl::InfinitePast();

  mutable absl::Mutex changes_mu_;
  uint64_t changes_seen_ ABSL_GUARDED_BY(changes_mu_) = 0;
  std::deque<Change> changes_ ABSL_GUARDED_BY(changes_mu_);
};

}  // namespace nvdp::mps
