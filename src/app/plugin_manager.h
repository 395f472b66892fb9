// PluginManager: keeps one DevicePluginServer per resource served and registered with kubelet,
// through kubelet restarts, config reloads and MPS daemon outages.
//
// One background thread does all serving and registering, driven by events: start, reload,
// kubelet.sock re-created (registers again), one of our sockets deleted (serves and registers
// again), a gated resource becoming ready, and retry timers (exponential backoff from 5 ms while
// kubelet is away). A ListAndWatch stream ending is not such an event: any local client can open
// and cancel streams, so only kubelet's own signals count. A registration in flight is cancelled
// when kubelet restarts meanwhile or the manager stops, so neither waits for kubelet's 10 s dial.
// A socket another live process serves (a second plugin instance) is waited on, never replaced.
// A missing device-plugin directory is waited for. The manager is the source of truth for health
// (unhealthy GPUs, unavailable resources) and re-applies it to every server it creates.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kubelet/dir_watcher.h"
#include "kubelet/registrar.h"
#include "ledger/book.h"
#include "plugin/device_plugin_server.h"
#include "sharing/sharing.h"

namespace nvdp::app {

inline constexpr char kDefaultPluginDir[] = "/var/lib/kubelet/device-plugins";

struct ManagerOptions {
  // Empty: serve every resource but never register it (upstream's KUBELET_SOCKET=""), e.g. for a
  // kubelet that is pointed at the sockets some other way.
  std::string kubelet_socket = "/var/lib/kubelet/device-plugins/kubelet.sock";
  // Where the plugin sockets go. Empty: the kubelet socket's directory, or kDefaultPluginDir when
  // the kubelet socket is empty.
  std::string plugin_dir;
  plugin::ResponseOptions response;
  // MPS resources are served only once SetResourceReady(name, true) was called (their control
  // daemon answered). Off: served at once.
  bool gate_mps_resources = false;
  // Ledgers for per-container MPS resources (capacity shaping, client cap, init-container reuse);
  // null: none. Not owned; must outlive the manager.
  ledger::LedgerBook* ledgers = nullptr;
  // Called (with the manager's lock held: keep it short, never call back into the manager) when
  // kubelet.sock is created anew, i.e. kubelet restarted. Optional.
  std::function<void()> on_kubelet_restart;
  absl::Duration initial_backoff = absl::Milliseconds(5);
  absl::Duration max_backoff = absl::Seconds(30);
  absl::Duration register_timeout = absl::Seconds(10);
};

class PluginManager {
 public:
  explicit PluginManager(ManagerOptions options);
  ~PluginManager();

  PluginManager(const PluginManager&) = delete;
  PluginManager& operator=(const PluginManager&) = delete;

  // Watches the device-plugin directory and starts serving `resources` in the background.
  absl::Status Start(std::vector<sharing::ResourceSpec> resources);
  // Applies a new set of resources: unchanged ones keep their socket and registration, changed ones
  // are served and registered again, removed ones stop (socket removed).
  void Update(std::vector<sharing::ResourceSpec> resources, plugin::ResponseOptions response);
  // Stops every server (sockets removed) and the background thread. Idempotent.
  void Stop();

  void SetGpuHealthy(const std::string& gpu_uuid, bool healthy);
  // For gated (MPS) resources: ready=true lets it be served (first time) or marks its devices
  // healthy again; false marks all its devices unhealthy.
  void SetResourceReady(const std::string& resource_name, bool ready);
  // For resources with one MPS daemon per device (MIG devices): the devices whose daemon is down,
  // marked unhealthy while the rest of the resource serves. Replaces the previous set.
  void SetDevicesDown(const std::string& resource_name, std::set<std::string> device_uuids);

  // Names of the resources currently registered with kubelet (for logs and tests).
  std::vector<std::string> RegisteredResources() const;

 private:
  struct Entry {
    sharing::ResourceSpec spec;
    std::unique_ptr<plugin::DevicePluginServer> server;
    bool gated = false;           // waits for SetResourceReady(true) before first serving
    bool ready = false;           // the gate's latest answer
    bool needs_serve = true;      // (re)create the server
    uint64_t serve_requests = 0;  // counts RequestServe calls, so none is lost mid-restart
    bool needs_register = true;
    uint64_t register_requests = 0;  // counts RequestRegister calls, so none is lost mid-call
    bool remove = false;             // stop and forget
    bool waiting_for_owner = false;  // another process serves our socket (logged once)
    absl::Time next_attempt = absl::InfinitePast();
    absl::Duration backoff;
    // The registration in flight, if any; cancelled when kubelet restarts or the manager stops.
    std::shared_ptr<kubelet::Cancellation> registering;
  };

  void Run();
  bool HasWorkDue() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void Work(const std::string& name);
  void RequestServe(const std::string& name, const char* why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RequestRegister(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Creates the directory watcher once the device-plugin directory exists. REQUIRES: mu_ not held.
  bool EnsureWatcher();
  void OnDirChange(const std::string& file, kubelet::DirWatcher::Change change);
  void ApplyHealth(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string SocketPath(const sharing::ResourceSpec& spec) const;
  plugin::Accounting AccountingFor(const sharing::ResourceSpec& spec) const;

  const std::string plugin_dir_;
  const std::string kubelet_socket_name_;
  ledger::LedgerBook* const ledgers_;

  mutable absl::Mutex mu_;
  ManagerOptions options_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> unhealthy_gpus_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> readiness_ ABSL_GUARDED_BY(mu_);  // gate answers, by resource name
  // Devices whose own MPS daemon is down, by resource name.
  std::map<std::string, std::set<std::string>> devices_down_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool watching_ ABSL_GUARDED_BY(mu_) = false;  // the directory watcher runs

  std::unique_ptr<kubelet::DirWatcher> watcher_;  // created by the worker thread, reset in Stop
  bool logged_missing_dir_ = false;               // worker thread only
  std::thread thread_;
};

}  // namespace nvdp::app
