// MpsGates: for every MPS resource, waits for its control daemon to answer before the plugin
// manager may register it, then keeps probing it and marks the resource's devices unhealthy while
// the daemon is down (healthy again when it is back).
//
// Owns one thread per MPS resource. Sync() adds gates for new MPS resources and stops those of
// resources that are gone. Thread-safety: Sync and the destructor from one thread (the daemon's
// main loop); gate threads call PluginManager::SetResourceReady, which is thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "app/plugin_manager.h"
#include "mps/probe.h"
#include "sharing/sharing.h"

namespace nvdp::app {

struct MpsGateOptions {
  std::string control_binary = "nvidia-cuda-mps-control";
  absl::Duration probe_period = absl::Seconds(10);  // liveness, once ready
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
    std::string key;  // mps root + resource name: a changed root is a new gate
    std::unique_ptr<mps::DaemonProbe> probe;
    absl::Notification stop;
    std::thread thread;
  };
  void RunGate(const std::string& resource_name, Gate& gate);

  PluginManager& manager_;
  const MpsGateOptions options_;
  std::map<std::string, std::unique_ptr<Gate>> gates_;  // by resource name
};

}  // namespace nvdp::app
