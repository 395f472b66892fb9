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
//   std::thread([&] { monitor.Run(stop); });
//
// Thread-safety: DaemonProbe::Probe may be called from several threads at once.
// A DaemonMonitor is driven by one thread (CheckOnce or Run); healthy() may be
// read from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
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
};

// Periodic liveness for the plugin: calls `on_change(false, why)` once the
// probe failed `failure_threshold` times in a row, and `on_change(true,
// OkStatus())` at the first success after that. Starts out healthy (call it
// after WaitUntilReady succeeded).
class DaemonMonitor {
 public:
  using Callback = std::function<void(bool healthy, const absl::Status& why)>;

  // REQUIRES: `probe` and `clock` outlive the monitor.
  DaemonMonitor(Prober& probe, Clock& clock, MonitorOptions options, Callback on_change);

  // One probe; invokes the callback on a transition. Returns the health after
  // it.
  bool CheckOnce();

  // CheckOnce every `period` until `stop` is notified.
  void Run(const absl::Notification& stop);

  bool healthy() const { return healthy_.load(); }

 private:
  Prober& probe_;
  Clock& clock_;
  const MonitorOptions options_;
  const Callback on_change_;
  std::atomic<bool> healthy_{true};
  int failures_ = 0;  // touched only by the driving thread
};

}  // namespace nvdp::mps
