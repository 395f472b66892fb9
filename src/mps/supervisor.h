// Supervisor: runs and watches one MPS control daemon per MPS resource (the
// `mps-control-daemon` binary's job; the plugin only probes, see probe.h).
//
// Per resource: create <mpsRoot>/<resource>/{pipe,log}; optionally set the
// resource's GPUs to EXCLUSIVE_PROCESS with nvidia-smi; send `quit` to a daemon
// left over from an earlier run; start `nvidia-cuda-mps-control` with
// CUDA_MPS_PIPE_DIRECTORY, CUDA_MPS_LOG_DIRECTORY and CUDA_VISIBLE_DEVICES
// (exactly the resource's GPUs); wait until it answers the probe command;
// configure its defaults (ConfigureCommands); touch .started. When every
// resource is up, touch <mpsRoot>/.ready. Afterwards a liveness probe runs
// every `liveness_period`; a daemon that died, fails the probe or does not
// answer within `probe_timeout` is marked down (its .started and the .ready
// marker are removed), stopped (`quit`, then SIGTERM/SIGKILL for a child we
// own) and restarted after an exponential backoff (1 s, 2 s, 4 s, ... capped at
// `backoff_max`; the sequence starts over once a daemon stayed up for
// `backoff_reset_after`). Every transition is logged. StopAll sends `quit`,
// reaps, removes the markers and restores compute mode DEFAULT. The plugin
// watches the markers (marker_watcher.h), so removing .started at once is how a
// death reaches kubelet.
//
// Launch modes (both work with the real binary):
//   kForeground (default): `nvidia-cuda-mps-control -f` is our child. Every Tick
//     reaps it without a probe (waitpid), and Wake (the binary calls it on
//     SIGCHLD) runs a Tick at once, so its death is seen immediately. A hung
//     daemon can always be killed and reaped, so a restart cannot collide with
//     it.
//   kBackground: `nvidia-cuda-mps-control -d`, as the upstream plugin does: the
//   launcher forks the
//     daemon away and exits 0 once it is up. Death is seen only through the
//     probe, and a hung daemon that ignores `quit` cannot be killed (its pid is
//     unknown), so restarts fail until it goes away on its own.
//
// Every external command runs under a timeout, so no call blocks for long:
// StartAll and Tick take at most about ready_timeout + a few command timeouts
// per resource, and RequestStop cuts readiness waits short.
//
// Thread-safety: StartAll, Tick, Run and StopAll serialise on an internal lock
// (call them from one supervising thread); RequestStop, Wake, Statuses and
// WaitForStatus may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
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

struct DaemonGpu {
  std::string uuid;
  unsigned index = 0;         // host NVML index (for messages only)
  uint64_t memory_bytes = 0;  // total device memory; 0 when unknown (no memory limit is set)

  bool operator==(const DaemonGpu&) const = default;
};

// One MPS resource's daemon.
struct DaemonSpec {
  // Full resource name, "<domain>/<name>" ("nvidia.com/gpu"): the daemon's
  // files are <mpsRoot>/nvidia.com/gpu/{pipe,log,.started}, as upstream's.
  std::string name;
  std::vector<DaemonGpu> gpus;  // in CUDA_VISIBLE_DEVICES order
  int replicas = 1;             // shares per GPU
  // true: each container's own env sets its limits, the daemon sets thread
  // percentage 100 and no memory limit. false (upstream "uniform" mode):
  // daemon-wide 100/replicas % and memory/replicas.
  bool per_container_limits = true;
  bool uniform_memory_limit = true;  // uniform mode only: false = no pinned memory limit

  bool operator==(const DaemonSpec&) const = default;
};

// The commands sent to a freshly started daemon, in order.
//   per-container: set_default_active_thread_percentage 100
//   uniform:       set_default_device_pinned_mem_limit <ordinal>
//   <bytes/replicas/MiB>M (each GPU)
//                  set_default_active_thread_percentage <100/replicas>
// <ordinal> is the GPU's position in the spec (0..m-1), not its host index: the
// daemon runs with CUDA_VISIBLE_DEVICES=<the resource's UUIDs>, so the devices
// it sees are numbered in that order. (Upstream uses host indices, which is
// right only because it leaves CUDA_VISIBLE_DEVICES unset.)
std::vector<std::string> ConfigureCommands(const DaemonSpec& spec);

enum class LaunchMode { kForeground, kBackground };

struct SupervisorOptions {
  std::string mps_root;  // required, absolute
  std::string control_binary = kDefaultControlBinary;
  std::string nvidia_smi = "nvidia-smi";
  bool set_compute_mode = true;  // EXCLUSIVE_PROCESS while running, DEFAULT after StopAll
  LaunchMode launch_mode = LaunchMode::kForeground;
  // The environment children start from (e.g. InheritedEnvironment()); the MPS
  // variables are set on top of it.
  std::vector<std::string> base_env;

  absl::Duration command_timeout = absl::Seconds(10);  // configure commands, nvidia-smi
  absl::Duration launch_timeout = absl::Seconds(30);   // `-d` launcher
  absl::Duration ready_timeout = absl::Seconds(60);    // start -> first successful probe
  absl::Duration ready_poll_interval = absl::Milliseconds(250);
  absl::Duration probe_timeout = absl::Seconds(5);
  absl::Duration liveness_period = absl::Seconds(30);
  absl::Duration stop_timeout = absl::Seconds(10);  // `quit` and the child's exit after it
  absl::Duration kill_grace = absl::Seconds(2);     // SIGTERM -> SIGKILL
  absl::Duration backoff_initial = absl::Seconds(1);
  absl::Duration backoff_max = absl::Seconds(60);
  absl::Duration backoff_reset_after = absl::Minutes(2);
};

enum class DaemonState {
  kStopped,  // not started yet, or after StopAll
  kUp,       // answered the probe and is configured (.started exists)
  kDown,     // failed to start or died; a restart is scheduled at `next_attempt`
};
const char* DaemonStateName(DaemonState state);

struct DaemonStatus {
  std::string name;
  DaemonState state = DaemonState::kStopped;
  int starts = 0;                // successful starts (the first one included)
  int failures = 0;              // failed starts and detected deaths, all together
  int consecutive_failures = 0;  // drives the backoff
  absl::Status last_error;       // the most recent failure (OK if none yet)
  absl::Time next_attempt = absl::InfinitePast();  // kDown: when the restart is due
  std::optional<int> pid;  // foreground mode: the daemon's pid while it runs
};

class Supervisor {
 public:
  // REQUIRES: `runner` and `clock` outlive the supervisor.
  Supervisor(std::vector<DaemonSpec> specs, SupervisorOptions options, ProcessRunner& runner,
             Clock& clock);
  // Stops any daemon still running (as StopAll). REQUIRES: Run has returned.
  ~Supervisor();

  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Removes stale markers, then brings every daemon up once. OK when all are up
  // (then .ready exists); otherwise an error listing each resource that failed
  // and why. Failed resources are left kDown with a restart scheduled, so
  // Tick/Run keep trying. InvalidArgument for bad specs (nothing is started
  // then).
  absl::Status StartAll();

  // One supervision step at clock.Now(): liveness probes that are due, restarts
  // that are due, .ready when all are up. Returns when the next step is due.
  absl::Time Tick();

  // Tick, then sleep on the clock until the next step or a Wake, until
  // RequestStop. Does not stop daemons.
  void Run();

  // Makes Run return and cuts short any readiness wait in progress. Safe from
  // any thread (not from a signal handler).
  void RequestStop();

  // Makes Run tick now (a foreground daemon may have exited: call it on
  // SIGCHLD). Cheap: a Tick reaps exited children; it probes only what is due.
  // Safe from any thread (not from a signal handler).
  void Wake();

  // quit every daemon (SIGTERM/SIGKILL for a foreground child that does not
  // exit), remove the markers, restore compute mode DEFAULT where it was set.
  // Errors list what could not be undone. Idempotent.
  absl::Status StopAll();

  // A reload while running (after StartAll): daemons whose spec is unchanged keep running
  // untouched; changed and removed ones are stopped as StopAll stops them; new and changed ones are
  // started before it returns (failures are retried by Tick, as after StartAll). .ready follows.
  // InvalidArgument for bad specs, and nothing changes then. Call from any thread; it waits for a
  // Tick in progress.
  absl::Status Update(std::vector<DaemonSpec> specs);

  std::vector<DaemonStatus> Statuses() const;

  // Waits (real time) until `predicate(Statuses())` holds or `timeout` passes;
  // returns whether it holds. For tests and for logging progress.
  bool WaitForStatus(const std::function<bool(const std::vector<DaemonStatus>&)>& predicate,
                     absl::Duration timeout) const;

 private:
  struct Daemon;

  absl::Status StartOne(Daemon& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  absl::Status SetComputeMode(Daemon& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  absl::Status RestoreComputeMode(Daemon& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  absl::Status QuitStaleDaemon(Daemon& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  absl::Status Launch(Daemon& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  absl::Status AwaitReady(Daemon& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  absl::Status CheckAlive(Daemon& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  // Foreground: reaps the child if it exited, and says how. OK while it runs (or
  // with no child).
  absl::Status CheckChildExited(Daemon& d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  // Best-effort `quit` + reap; returns what went wrong.
  absl::Status ShutDown(Daemon& d, absl::Duration quit_timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  void MarkDown(Daemon& d, const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  std::unique_ptr<Daemon> MakeDaemon(DaemonSpec spec) const;
  // StopAll's work for one daemon; appends what could not be undone to `problems`.
  void StopOne(Daemon& d, std::vector<std::string>& problems)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  void UpdateReadyMarker() ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  absl::StatusOr<std::string> Control(Daemon& d, const std::string& command, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);
  void Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(work_mu_);

  const SupervisorOptions options_;
  ProcessRunner& runner_;
  Clock& clock_;
  std::atomic<bool> stop_once_{false};
  absl::Notification stop_requested_;
  Wakeup wakeup_;  // Run's sleep, cut short by Wake and RequestStop

  mutable absl::Mutex work_mu_;
  std::vector<std::unique_ptr<Daemon>> daemons_ ABSL_GUARDED_BY(work_mu_);
  bool ready_marker_ ABSL_GUARDED_BY(work_mu_) = false;
  bool started_ ABSL_GUARDED_BY(work_mu_) = false;

  mutable absl::Mutex status_mu_;
  std::vector<DaemonStatus> published_ ABSL_GUARDED_BY(status_mu_);
};

}  // namespace nvdp::mps
