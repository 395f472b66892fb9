#include "app/mps_gates.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <utility>

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
    changes_before_last_probe_ = monitor_.MarkerChanges();
    return probe_.Probe(timeout);
  }
  std::string Describe() const override { return probe_.Describe(); }
  uint64_t changes_before_last_probe() const { return changes_before_last_probe_; }

 private:
  mps::Prober& probe_;
  const mps::DaemonMonitor& monitor_;
  uint64_t changes_before_last_probe_ = 0;  // the gate thread's only
};

// Waiting for a new daemon: probes this often (and at once when its .started marker appears), and
// says what it waits for this often.
const mps::WaitOptions kWaitForReady;

}  // namespace

// One MPS daemon's gate. Until the daemon first answers (`ready`), the gate thread probes it every
// kWaitForReady.interval; afterwards its DaemonMonitor decides. Fields other than `marker_created`
// belong to the gate thread (set up by Sync before the gate is published).
struct MpsGates::Gate {
  std::string daemon;       // the daemon key (sharing::MpsDaemonKey)
  std::string key;          // mps root + daemon key: a changed root is a new gate
  std::string resource;     // the resource the daemon serves
  std::string device_uuid;  // the MIG device it serves; empty: the whole resource
  std::unique_ptr<mps::DaemonProbe> probe;
  std::unique_ptr<mps::DaemonMonitor> monitor;
  std::unique_ptr<CountingProber> counting;  // probe, as the readiness phase makes it
  std::optional<int> watch;                  // the .started watch, when the watcher could take it
  bool ready = false;
  absl::Time wait_start = absl::InfinitePast();
  absl::Time next_probe = absl::InfinitePast();
  absl::Time next_log = absl::InfinitePast();
  std::atomic<bool> marker_created{false};  // set by the watcher's thread
};

MpsGates::MpsGates(PluginManager& manager, MpsGateOptions options)
    : manager_(manager), options_(std::move(options)) {}

MpsGates::~MpsGates() {
  Sync({}, std::nullopt);
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

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

void MpsGates::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void MpsGates::Sync(const std::vector<sharing::ResourceSpec>& resources,
                    const std::optional<std::string>& mps_root) {
  // Daemon key -> {resource, device}. Full GPUs: the resource's full name (the daemon's files are
  // <mpsRoot>/nvidia.com/gpu/..., as upstream's), one daemon for all of them; MIG devices: one
  // daemon each (<mpsRoot>/nvidia.com/mig-1g.5gb/MIG-<uuid>/...).
  std::map<std::string, std::pair<std::string, std::string>> wanted;
  if (mps_root && !mps_root->empty()) {
    for (const auto& spec : resources) {
      if (spec.mode != sharing::Mode::kMps) continue;
      for (const auto& device : spec.gpus) {
        wanted.emplace(sharing::MpsDaemonKey(spec, device),
                       std::pair(spec.name, device.IsMig() ? device.uuid : std::string()));
      }
    }
  }
  std::vector<std::shared_ptr<Gate>> gone;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = gates_.begin(); it != gates_.end();) {
      const auto want = wanted.find(it->first);
      if (want != wanted.end() && want->second.first == it->second->resource &&
          it->second->key == absl::StrCat(*mps_root, "/", it->first)) {
        ++it;
        continue;
      }
      gone.push_back(it->second);
      it = gates_.erase(it);
    }
  }
  for (const auto& gate : gone) {
    // After Remove returns the watcher calls nothing of the gate's any more; a probe the gate
    // thread may still be making holds its own reference to the gate.
    if (gate->watch.has_value()) watcher_->Remove(*gate->watch);
    absl::MutexLock lock(&ready_mu_);
    auto resource = ready_.find(gate->resource);
    if (resource == ready_.end()) continue;
    resource->second.erase(gate->daemon);
    if (resource->second.empty()) {
      ready_.erase(resource);
    } else {
      ApplyLocked(gate->resource);
    }
  }

  bool added = false;
  for (const auto& [daemon, target] : wanted) {
    {
      absl::MutexLock lock(&mu_);
      if (gates_.contains(daemon)) continue;
    }
    const auto& [resource, device_uuid] = target;
    auto gate = std::make_shared<Gate>();
    gate->daemon = daemon;
    gate->key = absl::StrCat(*mps_root, "/", daemon);
    gate->resource = resource;
    gate->device_uuid = device_uuid;
    {
      absl::MutexLock lock(&ready_mu_);
      ready_[resource][daemon] = DaemonState{.up = false, .device_uuid = device_uuid};
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
    gate->counting = std::make_unique<CountingProber>(*gate->probe, *gate->monitor);
    if (mps::MarkerWatcher* watcher = Watcher(); watcher != nullptr) {
      const mps::ResourcePaths paths = mps::PathsFor(*mps_root, daemon);
      Gate* raw = gate.get();
      auto watch = watcher->Add(paths.dir, ".started", [this, raw](bool exists) {
        raw->monitor->MarkerChanged(exists);
        if (exists) raw->marker_created = true;
        Wake();
      });
      if (watch.ok()) {
        gate->watch = *watch;
      } else {
        spdlog::warn("{}: {}; the daemon's health is probed only", daemon,
                     std::string(watch.status().message()));
      }
    }
    absl::MutexLock lock(&mu_);
    gates_.emplace(daemon, std::move(gate));
    added = true;
  }
  if (!added) return;
  Wake();
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
}

void MpsGates::Run() {
  logging::NameThisThread("nvdp-mps-gates");
  while (true) {
    std::vector<std::pair<std::string, std::shared_ptr<Gate>>> gates;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      wake_ = false;
      gates.assign(gates_.begin(), gates_.end());
    }
    absl::Time next = absl::InfiniteFuture();
    for (const auto& [daemon, gate] : gates) {
      next = std::min(next, Step(daemon, *gate));
      absl::MutexLock lock(&mu_);
      if (stop_) return;  // between probes: a stop never waits for the other daemons' probes
    }
    absl::MutexLock lock(&mu_);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return wake_ || stop_; };
    mu_.AwaitWithDeadline(absl::Condition(&woken), next);
  }
}

absl::Time MpsGates::Step(const std::string& daemon, Gate& gate) {
  if (gate.ready) return gate.monitor->Step();
  absl::Time now = mps::RealClock().Now();
  const bool marker_created = gate.marker_created.exchange(false);
  if (now < gate.next_probe && !marker_created) return gate.next_probe;
  if (gate.wait_start == absl::InfinitePast()) gate.wait_start = now;
  const absl::Status status = gate.counting->Probe(kWaitForReady.probe_timeout);
  now = mps::RealClock().Now();
  if (status.ok()) {
    if (gate.next_log != absl::InfinitePast()) {
      spdlog::info("{}: {} is ready (after {})", daemon, gate.counting->Describe(),
                   absl::FormatDuration(now - gate.wait_start));
    }
    gate.monitor->ForgetMarkerChangesThrough(gate.counting->changes_before_last_probe());
    gate.ready = true;
    SetDaemonReady(gate.resource, daemon, true);
    return gate.monitor->Step();
  }
  if (now >= gate.next_log) {
    spdlog::info("{}: waiting for {} to be ready: {}", daemon, gate.counting->Describe(),
                 std::string(status.message()));
    gate.next_log = now + kWaitForReady.log_every;
  }
  gate.next_probe = now + kWaitForReady.interval;
  return gate.next_probe;
}

void MpsGates::SetDaemonReady(const std::string& resource, const std::string& daemon, bool ready) {
  absl::MutexLock lock(&ready_mu_);
  auto it = ready_.find(resource);
  if (it == ready_.end()) return;
  auto state = it->second.find(daemon);
  if (state == it->second.end()) return;  // dropped by a reload meanwhile
  state->second.up = ready;
  ApplyLocked(resource);
}

void MpsGates::ApplyLocked(const std::string& resource) {
  bool any_up = false;
  std::set<std::string> down;
  for (const auto& [daemon, state] : ready_[resource]) {
    if (state.up) {
      any_up = true;
    } else if (!state.device_uuid.empty()) {
      down.insert(state.device_uuid);
    }
  }
  // Calls are made under ready_mu_, so the manager sees them in the order the states changed.
  manager_.SetResourceReady(resource, any_up);
  manager_.SetDevicesDown(resource, std::move(down));
}

}  // namespace nvdp::app
