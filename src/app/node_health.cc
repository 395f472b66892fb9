#include "app/node_health.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace nvdp::app {

NodeHealth::NodeHealth(nvml::Nvml& nvml, health::HealthSettings settings,
                       health::HealthMonitor::Callback callback)
    : nvml_(nvml), settings_(std::move(settings)), callback_(std::move(callback)) {}

NodeHealth::~NodeHealth() { Stop(); }

void NodeHealth::Watch(const device::Inventory& inventory) {
  std::vector<std::string> gpus;
  std::vector<health::MigDeviceRef> migs;
  std::vector<std::string> watched;
  for (const auto& gpu : inventory.gpus) {
    gpus.push_back(gpu.uuid);
    watched.push_back(gpu.uuid);
  }
  for (const auto& device : inventory.mig_devices) {
    if (!device.mig) continue;
    migs.push_back({.parent_uuid = device.mig->parent_uuid,
                    .gi_id = device.mig->gi_id,
                    .ci_id = device.mig->ci_id,
                    .uuid = device.uuid});
    watched.push_back(absl::StrCat(device.mig->parent_uuid, "/", device.mig->gi_id, "/",
                                   device.mig->ci_id, "=", device.uuid));
  }
  if (current_ && watched == watched_) return;
  if (current_) {
    spdlog::info("health: the node's devices changed; watching {} GPU(s) and {} MIG device(s)",
                 gpus.size(), migs.size());
    if (!current_->Stop()) retired_.push_back(std::move(current_));
    current_.reset();
  }
  // Monitors replaced earlier whose wait has ended since are done with.
  std::erase_if(retired_, [](const auto& monitor) {
    return monitor->AwaitThreadExit(std::chrono::milliseconds(0));
  });
  watched_ = std::move(watched);
  current_ = std::make_unique<health::HealthMonitor>(nvml_, std::move(gpus), std::move(migs),
                                                     settings_, callback_);
  if (auto status = current_->Start(); !status.ok()) {
    spdlog::warn("health checks unavailable: {}", std::string(status.message()));
  }
}

bool NodeHealth::Stop() {
  bool idle = current_ ? current_->Stop() : true;
  for (const auto& monitor : retired_) {
    idle = monitor->AwaitThreadExit(std::chrono::milliseconds(0)) && idle;
  }
  return idle;
}

}  // namespace nvdp::app
