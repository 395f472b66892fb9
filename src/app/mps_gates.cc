#include "app/mps_gates.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "mps/clock.h"
#include "mps/process.h"
#include "spdlog/spdlog.h"

namespace nvdp::app {

MpsGates::MpsGates(PluginManager& manager, MpsGateOptions options)
    : manager_(manager), options_(std::move(options)) {}

MpsGates::~MpsGates() { Sync({}, std::nullopt); }

void MpsGates::Sync(const std::vector<sharing::ResourceSpec>& resources,
                    const std::optional<std::string>& mps_root) {
  // Full resource names: the daemon's files are <mpsRoot>/nvidia.com/gpu/..., as upstream's.
  std::set<std::string> wanted;
  if (mps_root && !mps_root->empty()) {
    for (const auto& spec : resources) {
      if (spec.mode == sharing::Mode::kMps) wanted.insert(spec.name);
    }
  }
  for (auto it = gates_.begin(); it != gates_.end();) {
    if (wanted.contains(it->first) && it->second->key == absl::StrCat(*mps_root, "/", it->first)) {
      ++it;
      continue;
    }
    it->second->stop.Notify();
    it->second->thread.join();
    it = gates_.erase(it);
  }
  for (const std::string& name : wanted) {
    if (gates_.contains(name)) continue;
    auto gate = std::make_unique<Gate>();
    gate->key = absl::StrCat(*mps_root, "/", name);
    mps::DaemonProbeOptions probe_options;
    probe_options.mps_root = *mps_root;
    probe_options.resource = name;
    probe_options.control_binary = options_.control_binary;
    probe_options.base_env = mps::InheritedEnvironment();
    gate->probe = std::make_unique<mps::DaemonProbe>(probe_options, mps::RealProcessRunner());
    Gate* raw = gate.get();
    gate->thread = std::thread([this, name = name, raw] { RunGate(name, *raw); });
    gates_.emplace(name, std::move(gate));
  }
}

void MpsGates::RunGate(const std::string& resource_name, Gate& gate) {
  auto ready = mps::WaitUntilReady(
      *gate.probe, mps::RealClock(), {}, &gate.stop,
      [&](const std::string& line) { spdlog::info("{}: {}", resource_name, line); });
  if (!ready.ok()) return;  // cancelled
  manager_.SetResourceReady(resource_name, true);
  mps::MonitorOptions monitor_options;
  monitor_options.period = options_.probe_period;
  mps::DaemonMonitor monitor(*gate.probe, mps::RealClock(), monitor_options,
                             [&](bool healthy, const absl::Status& why) {
                               if (!healthy) {
                                 spdlog::warn("{}: {}", resource_name, std::string(why.message()));
                               }
                               manager_.SetResourceReady(resource_name, healthy);
                             });
  monitor.Run(gate.stop);
}

}  // namespace nvdp::app
