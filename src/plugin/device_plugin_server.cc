#include "plugin/device_plugin_server.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "logging/logging.h"
#include "rpc/unix_channel.h"
#include "sharing/capacity.h"
#include "spdlog/spdlog.h"

namespace nvdp::plugin {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

std::vector<std::string> ToVector(const google::protobuf::RepeatedPtrField<std::string>& field) {
  return {field.begin(), field.end()};
}

// The self-dial fails fast when the socket is gone (kubelet wiped the directory meanwhile): the
// caller serves again at once rather than waiting on a file that no longer exists.
constexpr auto kSelfDialTimeout = std::chrono::seconds(1);

enum class SocketState { kAbsent, kStale, kLive, kNotASocket };

// What is at `path`: a socket someone accepts connections on is live; one that refuses is stale.
SocketState ProbeSocketPath(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return SocketState::kAbsent;
  if (!S_ISSOCK(st.st_mode)) return SocketState::kNotASocket;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return SocketState::kStale;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);  // length checked by Start
  const bool accepted =
      ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return accepted ? SocketState::kLive : SocketState::kStale;
}
// Streams are ended before the server shuts down: the grace only lets an answer already given
// (an Allocate during a reload) leave; calls still open after it (a client that never reads its
// last message) are cancelled. It runs beside the caller (see Stop).
constexpr auto kShutdownGrace = std::chrono::milliseconds(50);

// gRPC 1.51 runs every callback-API server of a process on one shared completion queue, served by
// "nexting" threads. Each waits at most a second for an event and then sleeps 100 ms before it
// waits again, so a server idle for a second can leave every such thread asleep: the next call
// (kubelet dialling back, the self-dial of a new server) or the end of a shutdown then waits up
// to 100 ms. And the last server to go shuts the queue down and joins those threads, sleeping
// ones included. So a server that serves nothing (no port) is kept for the life of the process,
// which keeps the queue and its threads, and a heartbeat calls it over an in-process channel
// more often than once a second: the thread that took the latest call is then still waiting when
// the others sleep (any period under a second does; 750 ms leaves room for scheduling delays and
// costs about 9 more context switches a second, idle). Built on first use; the heartbeat stops
// at exit, the rest is never destroyed (the process exit ends its threads).
constexpr absl::Duration kHeartbeatPeriod = absl::Milliseconds(750);

struct CallbackQueueKeeper {
  grpc::Server* server = nullptr;
  absl::Mutex mu;
  bool stop ABSL_GUARDED_BY(mu) = false;
  std::thread heartbeat;
};

void KeepCallbackQueueForever() {
  static CallbackQueueKeeper* const keeper = [] {
    auto* k = new CallbackQueueKeeper();
    auto* service = new v1beta1::DevicePlugin::CallbackService();  // answers UNIMPLEMENTED
    grpc::ServerBuilder builder;
    builder.RegisterService(service);
    k->server = builder.BuildAndStart().release();
    if (k->server == nullptr) return k;
    k->heartbeat = std::thread([k, channel = k->server->InProcessChannel({})] {
      logging::NameThisThread("nvdp-heartbeat");
      auto stub = v1beta1::DevicePlugin::NewStub(channel);
      absl::MutexLock lock(&k->mu);
      while (!k->mu.AwaitWithTimeout(absl::Condition(&k->stop), kHeartbeatPeriod)) {
        k->mu.Unlock();
        grpc::ClientContext context;
        v1beta1::DevicePluginOptions options;
        (void)stub->GetDevicePluginOptions(&context, v1beta1::Empty(), &options);
        k->mu.Lock();
      }
    });
    // Before gRPC's own statics go.
    std::atexit([] {
      {
        absl::MutexLock lock(&keeper->mu);
        keeper->stop = true;
      }
      if (keeper->heartbeat.joinable()) keeper->heartbeat.join();
    });
    return k;
  }();
}

}  // namespace

std::string SocketNameFor(const sharing::ResourceSpec& spec) {
  return config::PluginSocketName(spec.ShortName());
}

// One open ListAndWatch stream. Keeps at most one write in flight and always sends the newest
// device list (shared with the other streams, never copied). Lock order: the owner's mu_ may be
// held while taking this reactor's mu_, never the reverse; the reactor never calls into the owner
// while holding its own lock.
class DevicePluginServer::ListAndWatchReactor
    : public grpc::ServerWriteReactor<v1beta1::ListAndWatchResponse> {
 public:
  explicit ListAndWatchReactor(DevicePluginServer* owner) : owner_(owner) {
    // Pushes the current list; a refused stream (too many, or stopping) ends at once.
    if (grpc::Status status = owner_->AddWatcher(this); !status.ok()) {
      owner_ = nullptr;
      absl::MutexLock lock(&mu_);
      RequestFinishLocked(status);
    }
  }

  // A newer device list to send.
  void Push(DeviceListPtr list) {
    absl::MutexLock lock(&mu_);
    if (finish_requested_) return;
    next_ = std::move(list);
    MaybeWriteLocked();
  }

  // Ends the stream with OK (server stopping).
  void End() {
    absl::MutexLock lock(&mu_);
    RequestFinishLocked(grpc::Status::OK);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      RequestFinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed by peer"));
    }
    if (finish_requested_) {
      FinishOnceLocked();
      return;
    }
    MaybeWriteLocked();
  }

  void OnCancel() override {
    // A cancelled stream no longer counts against kMaxStreams, even before gRPC calls OnDone: a
    // client that opens and cancels streams quickly must not crowd out the next one (kubelet's).
    if (owner_ != nullptr) owner_->RemoveWatcher(this);
    absl::MutexLock lock(&mu_);
    RequestFinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    if (owner_ != nullptr) owner_->RemoveWatcher(this);
    delete this;
  }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || next_ == nullptr || finish_requested_) return;
    current_ = std::move(next_);
    next_ = nullptr;
    writing_ = true;
    StartWrite(current_.get());
  }

  void RequestFinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_requested_) return;
    finish_requested_ = true;
    finish_status_ = status;
    if (!writing_) FinishOnceLocked();
  }

  void FinishOnceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(finish_status_);
  }

  DevicePluginServer* owner_;  // null for a refused stream
  absl::Mutex mu_;
  DeviceListPtr current_ ABSL_GUARDED_BY(mu_);  // being written
  DeviceListPtr next_ ABSL_GUARDED_BY(mu_);     // newest list not yet written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

class DevicePluginServer::Service : public v1beta1::DevicePlugin::CallbackService {
 public:
  explicit Service(DevicePluginServer* owner) : owner_(owner) {}

  grpc::ServerUnaryReactor* GetDevicePluginOptions(
      grpc::CallbackServerContext* context, const v1beta1::Empty*,
      v1beta1::DevicePluginOptions* response) override {
    response->set_pre_start_required(false);
    response->set_get_preferred_allocation_available(true);
    return Done(context, grpc::Status::OK);
  }

  grpc::ServerWriteReactor<v1beta1::ListAndWatchResponse>* ListAndWatch(
      grpc::CallbackServerContext*, const v1beta1::Empty*) override {
    return new ListAndWatchReactor(owner_);
  }

  grpc::ServerUnaryReactor* GetPreferredAllocation(
      grpc::CallbackServerContext* context, const v1beta1::PreferredAllocationRequest* request,
      v1beta1::PreferredAllocationResponse* response) override {
    const auto& spec = owner_->spec_;
    const auto& ledger = owner_->accounting_.ledger;
    for (const auto& container : request->container_requests()) {
      const auto available = ToVector(container.available_deviceids());
      const auto must_include = ToVector(container.must_include_deviceids());
      sharing::PreferenceHints hints;
      if (ledger) {
        // What kubelet offers is free right now: the freshest view of releases there is.
        ledger->RecordAvailable(available, must_include, owner_->SettledHealthy());
        hints.gpu_at_client_cap = ledger->GpusAtClientCap();
      }
      auto picked = sharing::PreferredAllocation(spec, available, must_include,
                                                 container.allocation_size(), hints);
      if (!picked.ok()) {
        spdlog::warn("{}: GetPreferredAllocation refused: {}", spec.name,
                     std::string(picked.status().message()));
        return Done(context, ToGrpc(picked.status()));
      }
      auto* out = response->add_container_responses();
      for (auto& id : *picked) out->add_deviceids(std::move(id));
    }
    return Done(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* Allocate(grpc::CallbackServerContext* context,
                                     const v1beta1::AllocateRequest* request,
                                     v1beta1::AllocateResponse* response) override {
    const auto& spec = owner_->spec_;
    if (request->container_requests().empty()) {
      return Done(context,
                  grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                               absl::StrCat(spec.name, ": Allocate request names no containers")));
    }
    const auto& ledger = owner_->accounting_.ledger;
    std::vector<std::vector<std::string>> granted;
    for (const auto& container : request->container_requests()) {
      auto ids = ToVector(container.devices_ids());
      sharing::GrantOptions options;
      options.reuses_held_ids = ledger != nullptr && ledger->AllHeld(ids);
      auto grant = sharing::GrantContainer(spec, ids, options);
      absl::Status status = grant.status();
      if (status.ok() && !options.reuses_held_ids) {
        status = owner_->CheckClientCap(*grant, ids.size());
      }
      if (!status.ok()) {
        spdlog::warn("{}: Allocate refused: {}", spec.name, std::string(status.message()));
        return Done(context, ToGrpc(status));
      }
      auto container_response = BuildContainerResponse(spec, *grant, owner_->options_);
      if (!container_response.ok()) {
        spdlog::warn("{}: Allocate refused: {}", spec.name,
                     std::string(container_response.status().message()));
        return Done(context, ToGrpc(container_response.status()));
      }
      *response->add_container_responses() = *std::move(container_response);
      spdlog::info("{}: allocated {} device ID(s) on {} GPU(s){}", spec.name, ids.size(),
                   grant->gpus.size(),
                   options.reuses_held_ids ? " (reused from the pod's init containers)" : "");
      granted.push_back(std::move(ids));
    }
    if (ledger) {
      for (const auto& ids : granted) ledger->RecordAllocate(ids);
      if (owner_->accounting_.refresh_soon) owner_->accounting_.refresh_soon();
    }
    return Done(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* PreStartContainer(grpc::CallbackServerContext* context,
                                              const v1beta1::PreStartContainerRequest*,
                                              v1beta1::PreStartContainerResponse*) override {
    return Done(context, grpc::Status::OK);
  }

 private:
  static grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context,
                                        const grpc::Status& status) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  }

  DevicePluginServer* const owner_;
};

DevicePluginServer::DevicePluginServer(sharing::ResourceSpec spec, ResponseOptions options,
                                       std::string socket_path, Accounting accounting)
    : spec_(std::move(spec)),
      options_(std::move(options)),
      socket_path_(std::move(socket_path)),
      devices_(sharing::AdvertisedDevices(spec_)),
      accounting_(std::move(accounting)),
      shaping_(accounting_.ledger != nullptr && spec_.mode == sharing::Mode::kMps &&
               spec_.per_container_limits && spec_.capacity_shaping),
      service_(std::make_unique<Service>(this)) {
  absl::MutexLock lock(&mu_);
  shown_.assign(devices_.size(), 1);
  ReshapeLocked();
  device_list_ = BuildDeviceListLocked();
}

bool DevicePluginServer::ReshapeLocked() {
  if (!shaping_) return false;
  std::vector<char> shown(devices_.size(), 1);
  // Until PodResources answered, releases are not seen: run unshaped rather than on a guess.
  if (accounting_.ledger->Listed()) {
    std::vector<char> usable(spec_.gpus.size(), 1);
    for (size_t g = 0; g < spec_.gpus.size(); ++g) {
      usable[g] = unhealthy_gpus_.contains(spec_.gpus[g].uuid) ? 0 : 1;
    }
    shown = sharing::ShapeCapacity(spec_, accounting_.ledger->Occupancy(), usable);
  }
  if (shown == shown_) return false;
  shown_ = std::move(shown);
  return true;
}

void DevicePluginServer::Reshape() {
  absl::MutexLock lock(&mu_);
  if (ReshapeLocked()) NotifyWatchers();
}

absl::Status DevicePluginServer::CheckClientCap(const sharing::Grant& grant, size_t share_count) {
  const auto& ledger = accounting_.ledger;
  // Only a request below one GPU joins a GPU that others use; whole GPUs were free.
  if (!ledger || grant.gpus.size() != 1 || !grant.mps_limits ||
      share_count >= static_cast<size_t>(spec_.replicas)) {
    return absl::OkStatus();
  }
  size_t gpu = 0;
  while (gpu < spec_.gpus.size() && spec_.gpus[gpu].uuid != grant.gpus[0].uuid) ++gpu;
  auto at_cap = [&] {
    const auto full = ledger->GpusAtClientCap();
    return gpu < full.size() && full[gpu] != 0;
  };
  if (!at_cap()) return absl::OkStatus();
  // A container that left since the last refresh may be what fills the GPU: look again first.
  if (accounting_.refresh_now) accounting_.refresh_now();
  if (!at_cap()) return absl::OkStatus();
  const int cap = sharing::MpsClientCap(spec_.gpus[gpu]);
  return absl::ResourceExhaustedError(
      absl::StrCat(spec_.name, ": ", spec_.gpus[gpu].uuid, " already serves ", cap,
                   " MPS clients, the most its MPS server accepts (",
                   cap == sharing::kMpsClientCapVolta ? "Volta and later" : "before Volta",
                   "); another container there would fail to start"));
}

absl::Status DevicePluginServer::ClearSocketPath() const {
  switch (ProbeSocketPath(socket_path_)) {
    case SocketState::kAbsent:
      return absl::OkStatus();
    case SocketState::kLive:
      return absl::AlreadyExistsError(absl::StrCat(
          spec_.name, ": another process is serving ", socket_path_,
          " (a second plugin instance, e.g. during a rolling update?); waiting for it to stop"));
    case SocketState::kNotASocket: {
      spdlog::warn("{}: {} is not a socket; removing it (the directory belongs to kubelet)",
                   spec_.name, socket_path_);
      std::error_code error;
      std::filesystem::remove_all(socket_path_, error);
      if (error) {
        return absl::InternalError(
            absl::StrCat("cannot remove ", socket_path_, ": ", error.message()));
      }
      return absl::OkStatus();
    }
    case SocketState::kStale:
      break;
  }
  if (::unlink(socket_path_.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(
        absl::StrCat("cannot remove stale socket ", socket_path_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

DevicePluginServer::~DevicePluginServer() {
  Stop();
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
  server_.reset();
}

absl::Status DevicePluginServer::Start() {
  if (server_) return absl::FailedPreconditionError("already started");
  if (accounting_.ledger) {
    accounting_.ledger->SetOnChange([this] { Reshape(); });
    ledger_hooked_ = true;
    Reshape();  // the ledger may have changed since construction
  }
  if (socket_path_.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path too long (", socket_path_.size(),
                                                   " bytes, limit 107): ", socket_path_));
  }
  // gRPC removes the path it bound when the server shuts down, which happens after Stop() returns:
  // the server binds a name of its own and renames it into place, so that a later shutdown never
  // removes the socket of the server that serves the path by then. The name is never longer than
  // a socket name (".<pid>.<n>" in hex against "nvidia-<name>.sock").
  static std::atomic<unsigned> bound_count{0};
  char temp_name[40];
  std::snprintf(temp_name, sizeof(temp_name), ".%x.%x", static_cast<unsigned>(::getpid()),
                bound_count.fetch_add(1));
  const std::string temp_path =
      (std::filesystem::path(socket_path_).parent_path() / temp_name).string();
  if (temp_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path too long (", temp_path.size(),
                                                   " bytes, limit 107): ", temp_path));
  }
  if (auto status = ClearSocketPath(); !status.ok()) return status;
  ::unlink(temp_path.c_str());  // left by an earlier process with our pid
  KeepCallbackQueueForever();
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + temp_path, grpc::InsecureServerCredentials());
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_) {
    return absl::UnavailableError(absl::StrCat(spec_.name, ": cannot listen on ", temp_path));
  }
  // Only root (kubelet) may call Allocate, whatever the umask: restricted before it is visible.
  if (::chmod(temp_path.c_str(), 0600) != 0) {
    const std::string error = std::strerror(errno);
    Stop();
    return absl::UnavailableError(
        absl::StrCat(spec_.name, ": cannot restrict ", temp_path, " to 0600: ", error));
  }
  // Never over a socket that appeared meanwhile (another instance): that one is left alone.
  int renamed =
      ::renameat2(AT_FDCWD, temp_path.c_str(), AT_FDCWD, socket_path_.c_str(), RENAME_NOREPLACE);
  if (renamed != 0 && errno == EINVAL) {
    renamed = ::rename(temp_path.c_str(), socket_path_.c_str());  // no RENAME_NOREPLACE here
  }
  if (renamed != 0) {
    const int error = errno;
    ::unlink(temp_path.c_str());
    Stop();
    if (error == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          spec_.name, ": another process is serving ", socket_path_,
          " (a second plugin instance, e.g. during a rolling update?); waiting for it to stop"));
    }
    return absl::UnavailableError(absl::StrCat(spec_.name, ": cannot move ", temp_path, " to ",
                                               socket_path_, ": ", std::strerror(error)));
  }
  struct stat socket_stat {};
  if (::stat(socket_path_.c_str(), &socket_stat) == 0) socket_inode_ = socket_stat.st_ino;

  // Prove the socket serves before anyone registers it with kubelet.
  auto channel = rpc::UnixChannel(socket_path_);
  auto stub = v1beta1::DevicePlugin::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kSelfDialTimeout);
  v1beta1::DevicePluginOptions options;
  grpc::Status status = stub->GetDevicePluginOptions(&context, v1beta1::Empty(), &options);
  if (!status.ok()) {
    Stop();
    return absl::UnavailableError(absl::StrCat(spec_.name, ": socket ", socket_path_,
                                               " does not answer: ", status.error_message()));
  }
  spdlog::info("{}: serving {} device(s) on {}", spec_.name, devices_.size(), socket_path_);
  return absl::OkStatus();
}

void DevicePluginServer::Stop() {
  // Not under mu_: a running callback takes it. Only our own callback is cleared: a server started
  // since for the same resource has set its own.
  if (ledger_hooked_.exchange(false)) accounting_.ledger->SetOnChange(nullptr);
  if (!server_ || stop_begun_.exchange(true)) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto* watcher : watchers_) watcher->End();
  }
  // The socket goes first, so that nobody dials a server that is going away; only if it is still
  // ours (kubelet may have replaced the directory's contents meanwhile).
  if (SocketFileIsOurs()) ::unlink(socket_path_.c_str());
  // Every stream has been asked to finish; gRPC's shutdown waits for its callback threads, which
  // sleep up to 100 ms when idle, so it runs beside the caller. The destructor waits for it.
  shutdown_thread_ = std::thread([server = server_.get()] {
    logging::NameThisThread("nvdp-shutdown");
    server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
    server->Wait();
  });
  spdlog::info("{}: stopped serving on {}", spec_.name, socket_path_);
}

bool DevicePluginServer::SocketIsOurs() const {
  return server_ && !stop_begun_.load() && SocketFileIsOurs();
}

bool DevicePluginServer::SocketFileIsOurs() const {
  struct stat socket_stat {};
  return socket_inode_ != 0 && ::stat(socket_path_.c_str(), &socket_stat) == 0 &&
         S_ISSOCK(socket_stat.st_mode) && socket_stat.st_ino == socket_inode_;
}

void DevicePluginServer::SetGpuHealthy(const std::string& gpu_uuid, bool healthy) {
  absl::MutexLock lock(&mu_);
  bool changed =
      healthy ? unhealthy_gpus_.erase(gpu_uuid) > 0 : unhealthy_gpus_.insert(gpu_uuid).second;
  if (changed) {
    ReshapeLocked();  // the largest hole may move
    NotifyWatchers();
  }
}

void DevicePluginServer::SetResourceAvailable(bool available) {
  absl::MutexLock lock(&mu_);
  if (resource_available_ == available) return;
  resource_available_ = available;
  NotifyWatchers();
}

v1beta1::ListAndWatchResponse DevicePluginServer::DeviceList() const {
  absl::MutexLock lock(&mu_);
  return *device_list_;
}

size_t DevicePluginServer::StreamCount() const {
  absl::MutexLock lock(&mu_);
  return watchers_.size();
}

std::vector<char> DevicePluginServer::SettledHealthy() const {
  absl::MutexLock lock(&mu_);
  return healthy_settled_;
}

DevicePluginServer::DeviceListPtr DevicePluginServer::BuildDeviceListLocked() {
  std::vector<char> healthy_now(devices_.size(), 0);
  auto response = std::make_shared<v1beta1::ListAndWatchResponse>();
  response->mutable_devices()->Reserve(static_cast<int>(devices_.size()));
  for (size_t i = 0; i < devices_.size(); ++i) {
    const auto& device = devices_[i];
    auto* out = response->add_devices();
    out->set_id(device.id);
    bool healthy =
        resource_available_ && shown_[i] != 0 && !unhealthy_gpus_.contains(device.gpu_uuid);
    out->set_health(healthy ? kHealthy : kUnhealthy);
    healthy_now[i] = healthy ? 1 : 0;
    if (device.numa_node) out->mutable_topology()->add_nodes()->set_id(*device.numa_node);
  }
  healthy_settled_ = healthy_now;
  if (healthy_now_.size() == healthy_now.size()) {
    for (size_t i = 0; i < healthy_now.size(); ++i) healthy_settled_[i] &= healthy_now_[i];
  }
  healthy_now_ = std::move(healthy_now);
  return response;
}

grpc::Status DevicePluginServer::AddWatcher(ListAndWatchReactor* reactor) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is stopping");
  if (watchers_.size() >= kMaxStreams) {
    spdlog::warn("{}: refused a ListAndWatch stream: {} already open", spec_.name,
                 watchers_.size());
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat(spec_.name, ": at most ", kMaxStreams,
                     " ListAndWatch streams per resource (kubelet needs one); try again later"));
  }
  watchers_.insert(reactor);
  spdlog::info("{}: ListAndWatch opened ({} open)", spec_.name, watchers_.size());
  reactor->Push(device_list_);
  return grpc::Status::OK;
}

void DevicePluginServer::RemoveWatcher(ListAndWatchReactor* reactor) {
  absl::MutexLock lock(&mu_);
  if (watchers_.erase(reactor) == 0) return;  // OnCancel already did
  if (!stopping_) {
    spdlog::info("{}: ListAndWatch closed ({} open)", spec_.name, watchers_.size());
  }
  // A stream that never read can leave megabytes of freed buffers in the heap: hand them back.
  if (watchers_.empty()) ::malloc_trim(0);
}

void DevicePluginServer::NotifyWatchers() {
  device_list_ = BuildDeviceListLocked();
  for (auto* watcher : watchers_) watcher->Push(device_list_);
}

}  // namespace nvdp::plugin
