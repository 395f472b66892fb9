#include "app/mps_gates.h"

#include <atomic>
#include <map>

#include "absl/strings/str_cat.h"
#include "logging/logging.h"
#include "mps/clock.h"
#include "mps/control.h"
#include "mps/process.h"
#include "spdlog/spdlog.h"

namespace nvdp::app {
namespace {

// Remembers, at the start of every probe, how many marker changes the monitor had been told of, so
// that those a successful readiness probe supersedes can be dropped (a marker removed and created
// again before the daemon was found ready is no outage to report).
class CountingProber final : public mps::Prober {
 public:
  CountingProber(mps::Prober& probe, const mps::DaemonMonitor& monitor)
      : probe_(probe), monitor_(monitor) {}
  absl::Status Probe(absl::Duration timeout) override {
    changes_before_last_probe_.store(monitor_.MarkerChanges());
    return probe_.Probe(timeout);
  }
  std::string Describe() const override { return probe_.Describe(); }
  uint64_t changes_before_last_probe() const { return changes_before_last_probe_.load(); }

 private:
  mps::Prober& probe_;
  const mps::DaemonMonitor& monitor_;
  std::atomic<uint64_t> changes_before_last_probe_{0};
};

}  // namespace

MpsGates::MpsGates(PluginManager& manager, MpsGateOptions options)
    : manager_(manager), options_(std::move(options)) {}

MpsGates::~MpsGates() { Sync({}, std::nullopt); }

mps::MarkerWatcher* MpsGates::Watcher() {
  if (watcher_ == nullptr && !watcher_failed_) {
    auto watcher = mps::MarkerWatcher::Create();
    if (watcher.ok()) {
      watcher_ = *std::move(watcher);
    } else {
      watcher_failed_ = true;
      spdlog::warn("cannot watch the MPS daemons' markers ({}); their health is probed only",
                   std::string(watcher.status().message()));
    }
  }
  return watcher_.get();
}

void MpsGates::Sync(const std::vector<sharing::ResourceSpec>& resources,
                    const std::optional<std::string>& mps_root) {
  // Daemon key -> resource. Full GPUs: the resource's full name (the daemon's files are
  // <mpsRoot>/nvidia.com/gpu/..., as upstream's); MIG devices: one daemon each
  // (<mpsRoot>/nvidia.com/mig-1g.5gb/MIG-<uuid>/...).
  std::map<std::string, std::string> wanted;
  if (mps_root && !mps_root->empty()) {
    for (const auto& spec : resources) {
      if (spec.mode != sharing::Mode::kMps) continue;
      for (const auto& device : spec.gpus)
        wanted.emplace(sharing::MpsDaemonKey(spec, device), spec.name);
    }
  }
  for (auto it = gates_.begin(); it != gates_.end();) {
    const auto want = wanted.find(it->first);
    if (want != wanted.end() && want->second == it->second->resource &&
        it->second->key == absl::StrCat(*mps_root, "/", it->first)) {
      ++it;
      continue;
    }
    Gate& gate = *it->second;
    if (gate.watch.has_value()) watcher_->Remove(*gate.watch);
    gate.stop.Notify();
    gate.monitor->RequestStop();
    gate.thread.join();
    {
      absl::MutexLock lock(&ready_mu_);
      auto& daemons = ready_[gate.resource];
      daemons.erase(it->first);
      if (daemons.empty()) ready_.erase(gate.resource);
    }
    it = gates_.erase(it);
  }
  for (const auto& [daemon, resource] : wanted) {
    if (gates_.contains(daemon)) continue;
    auto gate = std::make_unique<Gate>();
    gate->key = absl::StrCat(*mps_root, "/", daemon);
    gate->resource = resource;
    {
      absl::MutexLock lock(&ready_mu_);
      ready_[resource][daemon] = false;
    }
    mps::DaemonProbeOptions probe_options;
    probe_options.mps_root = *mps_root;
    probe_options.resource = daemon;
    probe_options.control_binary = options_.control_binary;
    probe_options.base_env = mps::InheritedEnvironment();
    gate->probe = std::make_unique<mps::DaemonProbe>(probe_options, mps::RealProcessRunner());
    mps::MonitorOptions monitor_options;
    monitor_options.period = options_.probe_period;
    gate->monitor = std::make_unique<mps::DaemonMonitor>(
        *gate->probe, mps::RealClock(), monitor_options,
        [this, daemon = daemon, resource = resource](bool healthy, const absl::Status& why) {
          if (!healthy) spdlog::warn("{}: {}", daemon, std::string(why.message()));
          SetDaemonReady(resource, daemon, healthy);
        });
    if (mps::MarkerWatcher* watcher = Watcher(); watcher != nullptr) {
      const mps::ResourcePaths paths = mps::PathsFor(*mps_root, daemon);
      mps::DaemonMonitor* monitor = gate->monitor.get();
      auto watch = watcher->Add(paths.dir, ".started",
                                [monitor](bool exists) { monitor->MarkerChanged(exists); });
      if (watch.ok()) {
        gate->watch = *watch;
      } else {
        spdlog::warn("{}: {}; the daemon's health is probed only", daemon,
                     std::string(watch.status().message()));
      }
    }
    Gate* raw = gate.get();
    gate->thread = std::thread([this, daemon = daemon, raw] {
      logging::NameThisThread("nvdp-mps-gate");
      RunGate(daemon, *raw);
    });
    gates_.emplace(daemon, std::move(gate));
  }
}

void MpsGates::SetDaemonReady(const std::string& resource, const std::string& daemon, bool ready) {
  bool all = true;
  {
    absl::MutexLock lock(&ready_mu_);
    auto& daemons = ready_[resource];
    daemons[daemon] = ready;
    for (const auto& [name, up] : daemons) all = all && up;
  }
  manager_.SetResourceReady(resource, all);
}

void MpsGates::RunGate(const std::string& daemon, Gate& gate) {
  CountingProber probe(*gate.probe, *gate.monitor);
  auto ready =
      mps::WaitUntilReady(probe, mps::RealClock(), {}, &gate.stop,
                          [&](const std::string& line) { spdlog::info("{}: {}", daemon, line); });
  if (!ready.ok()) return;  // cancelled
  gate.monitor->ForgetMarkerChangesThrough(probe.changes_before_last_probe());
  SetDaemonReady(gate.resource, daemon, true);
  gate.monitor->Run();
}

}  // namespace nvdp::app
