// MpsGates: for every MPS resource, waits for its control daemon to answer before the plugin
// manager may register it, then tracks the daemon and marks the resource's devices unhealthy while
// it is down (healthy again when it is back). A resource of MIG devices has one daemon per MIG
// device (sharing::MpsDaemonKey): it is served once any of them answers, and a daemon that is down
// marks only its own MIG device's shares unhealthy (PluginManager::SetDevicesDown).
//
// Tracking: one MarkerWatcher (one thread, inotify) for all gates follows each daemon's
// <mpsRoot>/<resource>/.started, which mps-control-daemon removes the moment its daemon dies and
// creates again once the restarted daemon is configured: removal marks the devices unhealthy at
// once, creation is probed at once (also while waiting for a new daemon) and marks them healthy
// when the daemon answers. The periodic probe (`probe_period`) stays as the backstop (e.g. for a
// daemon that hangs, or upstream's).
//
// Threads: the watcher's, and one ("nvdp-mps-gates") that probes every daemon in turn, whatever
// the number of daemons (a node with 8 GPUs of 7 MIG devices each has 56). Probes run one at a
// time, each bounded by its timeout. Sync() adds gates for new MPS daemons and drops those of
// daemons that are gone. Thread-safety: Sync and the destructor from one thread (the daemon's main
// loop); the gate thread calls PluginManager, which is thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "app/plugin_manager.h"
#include "mps/marker_watcher.h"
#include "mps/probe.h"
#include "sharing/sharing.h"

namespace nvdp::app {

struct MpsGateOptions {
  std::string control_binary = "nvidia-cuda-mps-control";
  absl::Duration probe_period = absl::Seconds(10);  // liveness, once ready (the backstop)
};

class MpsGates {
 public:
  MpsGates(PluginManager& manager, MpsGateOptions options);
  ~MpsGates();

  MpsGates(const MpsGates&) = delete;
  MpsGates& operator=(const MpsGates&) = delete;

  void Sync(const std::vector<sharing::ResourceSpec>& resources,
            const std::optional<std::string>& mps_root);

 private:
  struct Gate;
  struct DaemonState {
    bool up = false;
    std::string device_uuid;  // the MIG device it serves; empty: the whole resource
  };

  void Run();
  // Probes or steps one gate if it is due; returns when it is next due.
  absl::Time Step(const std::string& daemon, Gate& gate);
  void Wake();
  // Records one daemon's state and tells the manager what it means for `resource`: served while
  // any of its daemons is up, and which devices' daemons are down.
  void SetDaemonReady(const std::string& resource, const std::string& daemon, bool ready);
  void ApplyLocked(const std::string& resource) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ready_mu_);
  // The marker watcher, created on first use; null when inotify is unavailable (probes only).
  mps::MarkerWatcher* Watcher();

  PluginManager& manager_;
  const MpsGateOptions options_;
  std::unique_ptr<mps::MarkerWatcher> watcher_;
  bool watcher_failed_ = false;

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Gate>> gates_ ABSL_GUARDED_BY(mu_);  // by daemon key
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // started with the first gate

  absl::Mutex ready_mu_;
  // Resource -> daemon key -> state; written by the gate thread and Sync.
  std::map<std::string, std::map<std::string, DaemonState>> ready_ ABSL_GUARDED_BY(ready_mu_);
};

}  // namespace nvdp::app
