#include "app/plugin_manager.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kubelet/registrar.h"
#include "logging/logging.h"
#include "spdlog/spdlog.h"

namespace nvdp::app {
namespace {

bool KeepsLedger(const sharing::ResourceSpec& spec) {
  return spec.mode == sharing::Mode::kMps && spec.per_container_limits;
}

bool SameResource(const sharing::ResourceSpec& a, const sharing::ResourceSpec& b) {
  if (a.name != b.name || a.mode != b.mode || a.replicas != b.replicas ||
      a.fail_requests_greater_than_one != b.fail_requests_greater_than_one ||
      a.per_container_limits != b.per_container_limits || a.memory_limit != b.memory_limit ||
      a.policy != b.policy || a.capacity_shaping != b.capacity_shaping ||
      a.gpus.size() != b.gpus.size()) {
    return false;
  }
  for (size_t i = 0; i < a.gpus.size(); ++i) {
    if (a.gpus[i].uuid != b.gpus[i].uuid) return false;
  }
  return true;
}

bool SameResponseOptions(const plugin::ResponseOptions& a, const plugin::ResponseOptions& b) {
  const auto& p = a.plugin;
  const auto& q = b.plugin;
  return p.pass_device_specs == q.pass_device_specs &&
         p.device_list_strategy == q.device_list_strategy &&
         p.device_id_strategy == q.device_id_strategy &&
         p.cdi_annotation_prefix == q.cdi_annotation_prefix &&
         p.container_driver_root == q.container_driver_root &&
         p.shared_devices_allocation_policy == q.shared_devices_allocation_policy &&
         a.dev_root == b.dev_root && a.mps_root == b.mps_root &&
         a.gdrcopy_enabled == b.gdrcopy_enabled && a.gds_enabled == b.gds_enabled &&
         a.mofed_enabled == b.mofed_enabled;
}

}  // namespace

namespace {

// How often a resource whose socket another live process serves tries again.
constexpr absl::Duration kOwnerRetryPeriod = absl::Seconds(1);

std::string PluginDirFor(const ManagerOptions& options) {
  if (!options.plugin_dir.empty()) return options.plugin_dir;
  if (options.kubelet_socket.empty()) return kDefaultPluginDir;
  return std::filesystem::path(options.kubelet_socket).parent_path().string();
}

}  // namespace

PluginManager::PluginManager(ManagerOptions options)
    : plugin_dir_(PluginDirFor(options)),
      kubelet_socket_name_(std::filesystem::path(options.kubelet_socket).filename().string()),
      ledgers_(options.ledgers),
      options_(std::move(options)) {}

PluginManager::~PluginManager() { Stop(); }

std::string PluginManager::SocketPath(const sharing::ResourceSpec& spec) const {
  return absl::StrCat(plugin_dir_, "/", plugin::SocketNameFor(spec));
}

plugin::Accounting PluginManager::AccountingFor(const sharing::ResourceSpec& spec) const {
  if (ledgers_ == nullptr || !KeepsLedger(spec)) return {};
  ledger::LedgerBook* book = ledgers_;
  return {book->For(spec), [book] { book->RefreshNow().IgnoreError(); },
          [book] { book->RefreshSoon(); }};
}

bool PluginManager::EnsureWatcher() {
  {
    absl::MutexLock lock(&mu_);
    if (watching_) return true;
  }
  auto watcher = kubelet::DirWatcher::Create(
      plugin_dir_, [this](const std::string& file, kubelet::DirWatcher::Change change) {
        OnDirChange(file, change);
      });
  if (!watcher.ok()) {
    if (!logged_missing_dir_) {
      spdlog::warn("waiting for the device-plugin directory {}: {}", plugin_dir_,
                   std::string(watcher.status().message()));
      logged_missing_dir_ = true;
    }
    return false;
  }
  watcher_ = std::move(*watcher);
  absl::MutexLock lock(&mu_);
  watching_ = true;
  spdlog::info("watching the device-plugin directory {}", plugin_dir_);
  return true;
}

absl::Status PluginManager::Start(std::vector<sharing::ResourceSpec> resources) {
  {
    absl::MutexLock lock(&mu_);
    for (auto& spec : resources) {
      Entry entry;
      entry.gated = options_.gate_mps_resources && spec.mode == sharing::Mode::kMps;
      entry.ready = readiness_[spec.name];
      entry.backoff = options_.initial_backoff;
      std::string name = spec.name;
      entry.spec = std::move(spec);
      if (entry.gated && !entry.ready) {
        spdlog::info("{}: waiting for its MPS control daemon to answer before registering", name);
      }
      entries_.emplace(name, std::move(entry));
    }
  }
  thread_ = std::thread([this] {
    logging::NameThisThread("nvdp-manager");
    Run();
  });
  return absl::OkStatus();
}

void PluginManager::Update(std::vector<sharing::ResourceSpec> resources,
                           plugin::ResponseOptions response) {
  absl::MutexLock lock(&mu_);
  const bool response_changed = !SameResponseOptions(options_.response, response);
  options_.response = std::move(response);
  std::set<std::string> wanted, with_ledger;
  for (auto& spec : resources) {
    wanted.insert(spec.name);
    if (KeepsLedger(spec)) with_ledger.insert(spec.name);
    auto it = entries_.find(spec.name);
    if (it != entries_.end() && !it->second.remove && !response_changed &&
        SameResource(it->second.spec, spec)) {
      continue;  // unchanged: keeps its socket and registration
    }
    if (it == entries_.end()) {
      Entry entry;
      entry.gated = options_.gate_mps_resources && spec.mode == sharing::Mode::kMps;
      entry.ready = readiness_[spec.name];
      entry.backoff = options_.initial_backoff;
      it = entries_.emplace(spec.name, std::move(entry)).first;
      spdlog::info("{}: new resource", spec.name);
    } else {
      spdlog::info("{}: configuration changed; serving it again", spec.name);
    }
    it->second.spec = std::move(spec);
    it->second.remove = false;
    it->second.needs_serve = true;
    it->second.serve_requests++;
    RequestRegister(it->second);
  }
  if (ledgers_ != nullptr) ledgers_->Retain(with_ledger);
  for (auto& [name, entry] : entries_) {
    if (!wanted.contains(name) && !entry.remove) {
      spdlog::info("{}: no longer configured; stopping it", name);
      entry.remove = true;
      entry.next_attempt = absl::InfinitePast();
    }
  }
}

void PluginManager::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
    // A registration in flight would otherwise hold the worker for kubelet's 10 s dial.
    for (auto& [name, entry] : entries_) {
      if (entry.registering) entry.registering->Cancel();
    }
  }
  if (thread_.joinable()) thread_.join();
  std::vector<std::unique_ptr<plugin::DevicePluginServer>> servers;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [name, entry] : entries_) servers.push_back(std::move(entry.server));
    entries_.clear();
  }
  // All stop at once (sockets removed, streams ended), then their gRPC shutdowns finish together,
  // beside the watcher's teardown: closing an inotify descriptor waits for the kernel (an RCU
  // grace period, about 20 ms here).
  for (auto& server : servers) {
    if (server) server->Stop();
  }
  std::thread close_watcher([watcher = std::move(watcher_)]() mutable {
    logging::NameThisThread("nvdp-close");
    watcher.reset();
  });
  servers.clear();
  close_watcher.join();
}

void PluginManager::SetGpuHealthy(const std::string& gpu_uuid, bool healthy) {
  absl::MutexLock lock(&mu_);
  if (healthy) {
    unhealthy_gpus_.erase(gpu_uuid);
  } else {
    unhealthy_gpus_.insert(gpu_uuid);
  }
  for (auto& [name, entry] : entries_) {
    if (entry.server) entry.server->SetGpuHealthy(gpu_uuid, healthy);
  }
}

void PluginManager::SetResourceReady(const std::string& resource_name, bool ready) {
  absl::MutexLock lock(&mu_);
  bool& known = readiness_[resource_name];
  if (known != ready) {
    spdlog::info("{}: MPS control daemon {}", resource_name,
                 ready ? "is ready" : "is not answering; marking its devices unhealthy");
  }
  known = ready;
  auto it = entries_.find(resource_name);
  if (it == entries_.end()) return;
  it->second.ready = ready;
  if (it->second.server) it->second.server->SetResourceAvailable(ready);
}

void PluginManager::SetDevicesDown(const std::string& resource_name,
                                   std::set<std::string> device_uuids) {
  absl::MutexLock lock(&mu_);
  auto& known = devices_down_[resource_name];
  known = std::move(device_uuids);
  auto it = entries_.find(resource_name);
  if (it != entries_.end() && it->second.server) {
    it->second.server->SetDevicesUnavailable({known.begin(), known.end()});
  }
}

std::vector<std::string> PluginManager::RegisteredResources() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [name, entry] : entries_) {
    if (entry.server && !entry.needs_register && !entry.remove) names.push_back(name);
  }
  return names;
}

void PluginManager::ApplyHealth(Entry& entry) {
  entry.server->SetResourceAvailable(!entry.gated || entry.ready);
  for (const auto& uuid : unhealthy_gpus_) entry.server->SetGpuHealthy(uuid, false);
  if (auto down = devices_down_.find(entry.spec.name); down != devices_down_.end()) {
    entry.server->SetDevicesUnavailable({down->second.begin(), down->second.end()});
  }
}

void PluginManager::RequestServe(const std::string& name, const char* why) {
  auto it = entries_.find(name);
  if (it == entries_.end() || it->second.remove) return;
  spdlog::info("{}: {}; serving and registering again", name, why);
  Entry& entry = it->second;
  entry.needs_serve = true;
  entry.serve_requests++;
  RequestRegister(entry);
}

void PluginManager::RequestRegister(Entry& entry) {
  entry.needs_register = true;
  entry.register_requests++;
  entry.next_attempt = absl::InfinitePast();
  entry.backoff = options_.initial_backoff;
  // A registration in flight went to the kubelet that is gone, or points at a socket that is.
  if (entry.registering) entry.registering->Cancel();
}

void PluginManager::OnDirChange(const std::string& file, kubelet::DirWatcher::Change change) {
  absl::MutexLock lock(&mu_);
  if (file == kubelet_socket_name_) {
    if (change != kubelet::DirWatcher::Change::kCreated) return;
    // A new kubelet. A socket it has not wiped still serves: register it again without the cost of
    // restarting its server. Anything else is served anew first.
    for (auto& [name, entry] : entries_) {
      if (entry.remove) continue;
      // A serve already pending (kubelet's wipe removed our socket a moment ago) registers when it
      // is done: asking for another would throw away the server being started, and a kubelet
      // dialling back meanwhile would wait out its reconnect backoff.
      if (entry.needs_serve || (entry.server && entry.server->SocketIsOurs())) {
        spdlog::info("{}: kubelet.sock was created; registering again", name);
        RequestRegister(entry);
      } else {
        RequestServe(name, "kubelet.sock was created");
      }
    }
    if (options_.on_kubelet_restart) options_.on_kubelet_restart();
    return;
  }
  if (change != kubelet::DirWatcher::Change::kDeleted) return;
  for (auto& [name, entry] : entries_) {
    // Our own restarts remove and re-create the socket: act only when the socket this server
    // bound is gone. (A socket removed while a server starts is caught by Work.)
    if (plugin::SocketNameFor(entry.spec) == file && entry.server &&
        !entry.server->SocketIsOurs()) {
      RequestServe(name, "its socket was removed");
    }
  }
}

bool PluginManager::HasWorkDue() const {
  if (stop_) return true;
  const absl::Time now = absl::Now();
  for (const auto& [name, entry] : entries_) {
    if (entry.next_attempt > now) continue;
    if (entry.remove) return true;
    if (entry.gated && !entry.ready && !entry.server) continue;
    if (entry.needs_serve || entry.needs_register) return true;
  }
  return false;
}

void PluginManager::Run() {
  // Sockets can only go into an existing directory, and kubelet's restarts are seen through it.
  while (!EnsureWatcher()) {
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Seconds(1))) return;
  }
  absl::MutexLock lock(&mu_);
  while (true) {
    absl::Time deadline = absl::InfiniteFuture();
    for (const auto& [name, entry] : entries_) {
      if ((entry.needs_serve || entry.needs_register || entry.remove) &&
          entry.next_attempt > absl::Now()) {
        deadline = std::min(deadline, entry.next_attempt);
      }
    }
    mu_.AwaitWithDeadline(absl::Condition(this, &PluginManager::HasWorkDue), deadline);
    if (stop_) return;
    std::vector<std::string> due;
    const absl::Time now = absl::Now();
    for (const auto& [name, entry] : entries_) {
      if (entry.next_attempt > now) continue;
      if (entry.remove || ((entry.needs_serve || entry.needs_register) &&
                           !(entry.gated && !entry.ready && !entry.server))) {
        due.push_back(name);
      }
    }
    mu_.Unlock();
    for (const auto& name : due) Work(name);
    mu_.Lock();
  }
}

void PluginManager::Work(const std::string& name) {
  std::unique_ptr<plugin::DevicePluginServer> old;
  sharing::ResourceSpec spec;
  plugin::ResponseOptions response;
  std::string kubelet_socket;
  absl::Duration register_timeout;
  bool remove = false;
  bool serve = false;
  uint64_t serve_requests = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return;
    Entry& entry = it->second;
    remove = entry.remove;
    serve = entry.needs_serve || !entry.server;
    if (remove || serve) old = std::move(entry.server);
    spec = entry.spec;
    serve_requests = entry.serve_requests;
    response = options_.response;
    kubelet_socket = options_.kubelet_socket;
    register_timeout = options_.register_timeout;
  }
  // Stops serving and removes the socket at once; gRPC's shutdown finishes beside us, and `old` is
  // destroyed when Work returns, after the new server has registered.
  if (old) old->Stop();

  auto schedule_retry = [&](const absl::Status& status, const char* what) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return;
    Entry& entry = it->second;
    entry.next_attempt = absl::Now() + entry.backoff;
    spdlog::warn("{}: {} failed: {}; retrying in {}", name, what, std::string(status.message()),
                 absl::FormatDuration(entry.backoff));
    entry.backoff = std::min(entry.backoff * 2, options_.max_backoff);
  };

  if (remove) {
    absl::MutexLock lock(&mu_);
    entries_.erase(name);
    return;
  }
  if (serve) {
    auto server = std::make_unique<plugin::DevicePluginServer>(spec, response, SocketPath(spec),
                                                               AccountingFor(spec));
    if (auto status = server->Start(); !status.ok()) {
      if (status.code() == absl::StatusCode::kAlreadyExists) {
        // Another live instance serves our socket. Its exit removes the socket, which the watcher
        // reports; the periodic retry is a backstop. Never delete a live process's socket.
        absl::MutexLock lock(&mu_);
        auto it = entries_.find(name);
        if (it == entries_.end()) return;
        if (!it->second.waiting_for_owner) spdlog::warn("{}", std::string(status.message()));
        it->second.waiting_for_owner = true;
        it->second.next_attempt = absl::Now() + kOwnerRetryPeriod;
        return;
      }
      schedule_retry(status, "serving");
      return;
    }
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return;
    if (it->second.waiting_for_owner) {
      spdlog::info("{}: the other process released {}; serving it now", name, SocketPath(spec));
    }
    it->second.waiting_for_owner = false;
    it->second.server = std::move(server);
    it->second.needs_register = true;
    ApplyHealth(it->second);
    // Kubelet may have wiped the directory while the server started (its socket is gone), or a
    // restart was asked for meanwhile: serve again before registering.
    if (!it->second.server->SocketIsOurs()) {
      RequestServe(name, "its socket was removed while it started");
      return;
    }
    if (it->second.serve_requests != serve_requests) return;
    it->second.needs_serve = false;
  }

  if (kubelet_socket.empty()) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return;
    if (!it->second.needs_serve) it->second.needs_register = false;
    spdlog::info("{}: serving at {}; not registering with kubelet (the kubelet socket is empty)",
                 name, SocketPath(spec));
    return;
  }
  auto cancellation = std::make_shared<kubelet::Cancellation>();
  uint64_t register_requests = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it == entries_.end() || stop_) return;
    it->second.registering = cancellation;
    register_requests = it->second.register_requests;
  }
  const auto status = kubelet::Register(
      kubelet_socket, {plugin::SocketNameFor(spec), spec.name},
      std::chrono::milliseconds(absl::ToInt64Milliseconds(register_timeout)), cancellation.get());
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return;
    Entry& entry = it->second;
    entry.registering = nullptr;
    if (status.ok()) {
      // A request to register again that came in meanwhile (kubelet restarted) still stands.
      if (!entry.needs_serve && entry.register_requests == register_requests) {
        entry.needs_register = false;
      }
      entry.backoff = options_.initial_backoff;
      spdlog::info("{}: registered with kubelet ({} device(s))", name,
                   sharing::AdvertisedDevices(spec).size());
      // A new kubelet may have changed what is held (its checkpoint survives restarts).
      if (ledgers_ != nullptr) ledgers_->RefreshSoon();
      return;
    }
    if (status.code() == absl::StatusCode::kCancelled) return;  // whoever cancelled asked again
  }
  schedule_retry(status, "registration");
}

}  // namespace nvdp::app
