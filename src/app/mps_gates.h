// MpsGates: for every MPS resource, waits for its control daemon to answer before the plugin
// manager may register it, then tracks the daemon and marks the resource's devices unhealthy while
// it is down (healthy again when it is back). A resource of MIG devices has one daemon per MIG
// device (sharing::MpsDaemonKey): one gate each, and the resource is ready while all of them are.
//
// Tracking: one MarkerWatcher (one thread, inotify) for all gates follows each daemon's
// <mpsRoot>/<resource>/.started, which mps-control-daemon removes the moment its daemon dies and
// creates again once the restarted daemon is configured: removal marks the devices unhealthy at
// once, creation is probed at once and marks them healthy when the daemon answers. The periodic
// probe (`probe_period`) stays as the backstop (e.g. for a daemon that hangs, or upstream's).
//
// Owns the watcher's thread and one thread per MPS daemon (its probes). Sync() adds gates for new
// MPS resources and stops those of resources that are gone. Thread-safety: Sync and the destructor
// from one thread (the daemon's main loop); gate threads call PluginManager::SetResourceReady,
// which is thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
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
  struct Gate {
    std::string key;       // mps root + daemon key: a changed root is a new gate
    std::string resource;  // the resource the daemon serves
    std::unique_ptr<mps::DaemonProbe> probe;
    std::unique_ptr<mps::DaemonMonitor> monitor;
    std::optional<int> watch;  // the .started watch, when the watcher could take it
    absl::Notification stop;
    std::thread thread;
  };
  void RunGate(const std::string& daemon, Gate& gate);
  // Records one daemon's state and tells the manager whether all of `resource`'s daemons are up.
  void SetDaemonReady(const std::string& resource, const std::string& daemon, bool ready);
  // The marker watcher, created on first use; null when inotify is unavailable (probes only).
  mps::MarkerWatcher* Watcher();

  PluginManager& manager_;
  const MpsGateOptions options_;
  std::unique_ptr<mps::MarkerWatcher> watcher_;
  bool watcher_failed_ = false;
  std::map<std::string, std::unique_ptr<Gate>> gates_;  // by daemon key
  absl::Mutex ready_mu_;
  // Resource -> daemon key -> up; written by gate threads and Sync.
  std::map<std::string, std::map<std::string, bool>> ready_ ABSL_GUARDED_BY(ready_mu_);
};

}  // namespace nvdp::app
