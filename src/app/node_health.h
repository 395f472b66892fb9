// NodeHealth: health watching for the node's current devices. Owns the HealthMonitor for the GPUs
// and MIG devices of the latest inventory and starts a new one when a reload finds different
// devices (a MIG layout changed while the node ran). The callback gets a GPU's UUID (everything on
// that GPU is affected) or a MIG device's (only that device).
//
// A replaced monitor is stopped without waiting for NVML (see HealthMonitor::Stop) and kept until
// its thread has left NVML's event wait. Not thread-safe: one owner (the daemon's main thread)
// calls Watch and Stop.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "device/inventory.h"
#include "health/health_monitor.h"
#include "nvml/nvml.h"

namespace nvdp::app {

class NodeHealth {
 public:
  // `nvml` must stay initialised while any monitor thread may be inside it (see Stop).
  NodeHealth(nvml::Nvml& nvml, health::HealthSettings settings,
             health::HealthMonitor::Callback callback);
  ~NodeHealth();

  NodeHealth(const NodeHealth&) = delete;
  NodeHealth& operator=(const NodeHealth&) = delete;

  // Watches `inventory`'s GPUs and MIG devices. A no-op when those are what is watched already;
  // otherwise the running monitor is replaced. A monitor that cannot start is logged (health
  // checks are then off until the next change).
  void Watch(const device::Inventory& inventory);

  // Stops watching. True when no monitor thread is inside NVML any more; false when one is still
  // blocked in its event wait: NVML must then be neither shut down nor unloaded before the
  // process exits.
  bool Stop();

 private:
  nvml::Nvml& nvml_;
  const health::HealthSettings settings_;
  const health::HealthMonitor::Callback callback_;
  // What the current monitor watches: GPU UUIDs, then "<parent>/<gi>/<ci>=<MIG uuid>" per device.
  std::vector<std::string> watched_;
  std::unique_ptr<health::HealthMonitor> current_;
  // Stopped monitors whose thread may still be in NVML's event wait.
  std::vector<std::unique_ptr<health::HealthMonitor>> retired_;
};

}  // namespace nvdp::app
