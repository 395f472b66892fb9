#include "plugin/device_plugin_server.h"

#include <fcntl.h>
#include <google/protobuf/arena.h>
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

// Moves the strings out of a request field (the request is the call's own and not read again):
// no copy of the thousands of IDs kubelet sends for large resources.
std::vector<std::string> TakeStrings(google::protobuf::RepeatedPtrField<std::string>* field) {
  return {std::make_move_iterator(field->begin()), std::make_move_iterator(field->end())};
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

// What the server's completion queue returns: every operation started on it names one of these,
// and its owner decides what the outcome means.
class QueueEvent {
 public:
  virtual void Complete(bool ok) = 0;

 protected:
  ~QueueEvent() = default;
};

}  // namespace

std::string SocketNameFor(const sharing::ResourceSpec& spec) {
  return config::PluginSocketName(spec.ShortName());
}

// One unary call, from gRPC's announcement of it to its answer having left: requested on the
// server's queue, answered on the server's thread by `Handler`, deleted when the answer is sent
// (or when the server shuts down before a call arrived).
template <typename Request, typename Response>
class DevicePluginServer::UnaryCall final : public QueueEvent {
 public:
  using RequestMethod = void (v1beta1::DevicePlugin::AsyncService::*)(
      grpc::ServerContext*, Request*, grpc::ServerAsyncResponseWriter<Response>*,
      grpc::CompletionQueue*, grpc::ServerCompletionQueue*, void*);
  // Gets the call's own request, which it may consume.
  using Handler = std::function<grpc::Status(Request&, Response*)>;

  // Asks for the next call of `method`, to be answered by `handler`.
  static void Await(DevicePluginServer* owner, RequestMethod method, Handler handler) {
    auto* call = new UnaryCall(owner, method, std::move(handler));
    (owner->service_.get()->*method)(&call->context_, call->request_, &call->responder_,
                                     owner->queue_.get(), owner->queue_.get(), call);
  }

  void Complete(bool ok) override {
    if (!ok || answered_) {  // the server shut down before a call came, or the answer is sent
      delete this;
      return;
    }
    answered_ = true;
    Await(owner_, method_, handler_);  // the next call of this method may arrive meanwhile
    const grpc::Status status = handler_(*request_, &response_);
    responder_.Finish(response_, status, this);
  }

 private:
  UnaryCall(DevicePluginServer* owner, RequestMethod method, Handler handler)
      : owner_(owner), method_(method), handler_(std::move(handler)), responder_(&context_) {}

  DevicePluginServer* const owner_;
  const RequestMethod method_;
  const Handler handler_;
  grpc::ServerContext context_;
  // The request lives on an arena of the call's own: kubelet's thousands of IDs are parsed into a
  // few blocks rather than one allocation each, and freed at once. The answer does not: protobuf
  // 3.21 crashes destroying the map fields of arena messages (Allocate's envs) with the arena.
  google::protobuf::Arena arena_;
  Request* const request_ = google::protobuf::Arena::CreateMessage<Request>(&arena_);
  Response response_;
  grpc::ServerAsyncResponseWriter<Response> responder_;
  bool answered_ = false;
};

// One ListAndWatch stream. Keeps at most one write in flight and always sends the newest device
// list (shared with the other streams, never copied). Four kinds of events reach it: the call's
// arrival, each write's and the finish's completion, and the call's end (gRPC's done
// notification, which also tells a cancelled stream apart). It deletes itself once the call has
// ended and no operation of it is outstanding.
//
// Lock order: the owner's mu_ may be held while taking this stream's mu_, never the reverse; the
// stream never calls into the owner while holding its own lock.
class DevicePluginServer::WatchCall final {
 public:
  // Asks for the next ListAndWatch call.
  static void Await(DevicePluginServer* owner) {
    auto* call = new WatchCall(owner);
    call->context_.AsyncNotifyWhenDone(&call->done_event_);
    owner->service_->RequestListAndWatch(&call->context_, &call->request_, &call->writer_,
                                         owner->queue_.get(), owner->queue_.get(),
                                         &call->arrived_event_);
  }

  // A newer device list to send.
  void Push(DeviceListPtr list) {
    absl::MutexLock lock(&mu_);
    if (finish_requested_ || broken_) return;
    next_ = std::move(list);
    MaybeWriteLocked();
  }

  // Ends the stream with OK (server stopping).
  void End() {
    absl::MutexLock lock(&mu_);
    RequestFinishLocked(grpc::Status::OK);
  }

 private:
  enum class Kind { kArrived, kWritten, kFinished, kDone };

  // Routes one queue event to the stream, with what it was for.
  class Event final : public QueueEvent {
   public:
    Event(WatchCall* call, Kind kind) : call_(call), kind_(kind) {}
    void Complete(bool ok) override { call_->OnEvent(kind_, ok); }

   private:
    WatchCall* const call_;
    const Kind kind_;
  };

  explicit WatchCall(DevicePluginServer* owner) : owner_(owner), writer_(&context_) {}

  void OnEvent(Kind kind, bool ok) {
    switch (kind) {
      case Kind::kArrived:
        if (!ok) {  // the server shut down before a call came: no done notification follows
          delete this;
          return;
        }
        Await(owner_);
        {
          absl::MutexLock lock(&mu_);
          arrived_ = true;
        }
        // Pushes the current list; a refused stream (too many, or stopping) ends at once.
        if (grpc::Status status = owner_->AddWatcher(this); !status.ok()) {
          absl::MutexLock lock(&mu_);
          RequestFinishLocked(status);
        }
        return;
      case Kind::kDone:
        // Cancelled or finished: a cancelled stream no longer counts against kMaxStreams, so a
        // client that opens and cancels streams quickly never crowds out the next one (kubelet's).
        owner_->RemoveWatcher(this);
        {
          absl::MutexLock lock(&mu_);
          done_ = true;
          if (!ReleasableLocked()) return;
        }
        delete this;
        return;
      case Kind::kWritten: {
        absl::MutexLock lock(&mu_);
        writing_ = false;
        if (!ok) broken_ = true;  // the peer is gone; the done notification follows
        if (finish_requested_ && !broken_) {
          FinishOnceLocked();
        } else {
          MaybeWriteLocked();
        }
        if (!ReleasableLocked()) return;
        break;
      }
      case Kind::kFinished: {
        absl::MutexLock lock(&mu_);
        finishing_ = false;
        if (!ReleasableLocked()) return;
        break;
      }
    }
    delete this;
  }

  bool ReleasableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_ && !writing_ && !finishing_;
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!arrived_ || writing_ || next_ == nullptr || finish_requested_ || broken_ || done_) return;
    current_ = std::move(next_);
    next_ = nullptr;
    writing_ = true;
    writer_.Write(*current_, &written_event_);
  }

  void RequestFinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_requested_ || !arrived_) return;
    finish_requested_ = true;
    finish_status_ = status;
    if (!writing_) FinishOnceLocked();
  }

  void FinishOnceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || broken_ || done_) return;
    finished_ = true;
    finishing_ = true;
    writer_.Finish(finish_status_, &finished_event_);
  }

  DevicePluginServer* const owner_;
  grpc::ServerContext context_;
  v1beta1::Empty request_;
  grpc::ServerAsyncWriter<v1beta1::ListAndWatchResponse> writer_;
  Event arrived_event_{this, Kind::kArrived};
  Event written_event_{this, Kind::kWritten};
  Event finished_event_{this, Kind::kFinished};
  Event done_event_{this, Kind::kDone};

  absl::Mutex mu_;
  bool arrived_ ABSL_GUARDED_BY(mu_) = false;
  DeviceListPtr current_ ABSL_GUARDED_BY(mu_);  // being written
  DeviceListPtr next_ ABSL_GUARDED_BY(mu_);     // newest list not yet written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // a write failed
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;   // Finish was called
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;  // ... and has not completed
  bool done_ ABSL_GUARDED_BY(mu_) = false;       // the call has ended
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

void DevicePluginServer::RequestCalls() {
  using Async = v1beta1::DevicePlugin::AsyncService;
  UnaryCall<v1beta1::Empty, v1beta1::DevicePluginOptions>::Await(
      this, &Async::RequestGetDevicePluginOptions,
      [](v1beta1::Empty&, v1beta1::DevicePluginOptions* response) {
        response->set_pre_start_required(false);
        response->set_get_preferred_allocation_available(true);
        return grpc::Status::OK;
      });
  UnaryCall<v1beta1::PreferredAllocationRequest, v1beta1::PreferredAllocationResponse>::Await(
      this, &Async::RequestGetPreferredAllocation,
      [this](auto& request, auto* response) { return GetPreferredAllocation(request, response); });
  UnaryCall<v1beta1::AllocateRequest, v1beta1::AllocateResponse>::Await(
      this, &Async::RequestAllocate,
      [this](auto& request, auto* response) { return Allocate(request, response); });
  UnaryCall<v1beta1::PreStartContainerRequest, v1beta1::PreStartContainerResponse>::Await(
      this, &Async::RequestPreStartContainer, [](auto&, auto*) { return grpc::Status::OK; });
  WatchCall::Await(this);
}

grpc::Status DevicePluginServer::GetPreferredAllocation(
    v1beta1::PreferredAllocationRequest& request, v1beta1::PreferredAllocationResponse* response) {
  const auto& ledger = accounting_.ledger;
  for (auto& container : *request.mutable_container_requests()) {
    const auto available = TakeStrings(container.mutable_available_deviceids());
    const auto must_include = TakeStrings(container.mutable_must_include_deviceids());
    sharing::PreferenceHints hints;
    if (ledger) {
      // What kubelet offers is free right now: the freshest view of releases there is.
      ledger->RecordAvailable(available, must_include, SettledHealthy());
      hints.gpu_at_client_cap = ledger->GpusAtClientCap();
    }
    auto picked = sharing::PreferredAllocation(spec_, available, must_include,
                                               container.allocation_size(), hints);
    if (!picked.ok()) {
      spdlog::warn("{}: GetPreferredAllocation refused: {}", spec_.name,
                   std::string(picked.status().message()));
      return ToGrpc(picked.status());
    }
    auto* out = response->add_container_responses();
    for (auto& id : *picked) out->add_deviceids(std::move(id));
  }
  return grpc::Status::OK;
}

grpc::Status DevicePluginServer::Allocate(v1beta1::AllocateRequest& request,
                                          v1beta1::AllocateResponse* response) {
  if (request.container_requests().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(spec_.name, ": Allocate request names no containers"));
  }
  const auto& ledger = accounting_.ledger;
  std::vector<std::vector<std::string>> granted;
  for (auto& container : *request.mutable_container_requests()) {
    auto ids = TakeStrings(container.mutable_devices_ids());
    sharing::GrantOptions options;
    options.reuses_held_ids = ledger != nullptr && ledger->AllHeld(ids);
    auto grant = sharing::GrantContainer(spec_, ids, options);
    absl::Status status = grant.status();
    if (status.ok() && !options.reuses_held_ids) status = CheckClientCap(*grant, ids.size());
    if (!status.ok()) {
      spdlog::warn("{}: Allocate refused: {}", spec_.name, std::string(status.message()));
      response->Clear();
      return ToGrpc(status);
    }
    auto container_response = BuildContainerResponse(spec_, *grant, options_);
    if (!container_response.ok()) {
      spdlog::warn("{}: Allocate refused: {}", spec_.name,
                   std::string(container_response.status().message()));
      response->Clear();
      return ToGrpc(container_response.status());
    }
    *response->add_container_responses() = *std::move(container_response);
    spdlog::info("{}: allocated {} device ID(s) on {} GPU(s){}", spec_.name, ids.size(),
                 grant->gpus.size(),
                 options.reuses_held_ids ? " (reused from the pod's init containers)" : "");
    granted.push_back(std::move(ids));
  }
  if (ledger) {
    for (const auto& ids : granted) ledger->RecordAllocate(ids);
    if (accounting_.refresh_soon) accounting_.refresh_soon();
  }
  return grpc::Status::OK;
}

DevicePluginServer::DevicePluginServer(sharing::ResourceSpec spec, ResponseOptions options,
                                       std::string socket_path, Accounting accounting)
    : spec_(std::move(spec)),
      options_(std::move(options)),
      socket_path_(std::move(socket_path)),
      devices_(sharing::AdvertisedDevices(spec_)),
      accounting_(std::move(accounting)),
      shaping_(accounting_.ledger != nullptr && spec_.mode == sharing::Mode::kMps &&
               spec_.per_container_limits && spec_.capacity_shaping),
      service_(std::make_unique<v1beta1::DevicePlugin::AsyncService>()) {
  for (const auto& gpu : spec_.gpus) {
    if (gpu.mig) parent_uuid_.emplace(gpu.uuid, gpu.mig->parent_uuid);
  }
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
      usable[g] = UnhealthyLocked(spec_.gpus[g].uuid) ? 0 : 1;
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
  if (rpc_thread_.joinable()) rpc_thread_.join();
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
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + temp_path, grpc::InsecureServerCredentials());
  builder.RegisterService(service_.get());
  queue_ = builder.AddCompletionQueue();
  server_ = builder.BuildAndStart();
  if (!server_) {
    queue_->Shutdown();  // nothing was requested on it; drained before it is destroyed
    void* tag = nullptr;
    bool ok = false;
    while (queue_->Next(&tag, &ok)) {
    }
    return absl::UnavailableError(absl::StrCat(spec_.name, ": cannot listen on ", temp_path));
  }
  RequestCalls();
  rpc_thread_ = std::thread([queue = queue_.get()] {
    logging::NameThisThread("nvdp-rpc");
    void* tag = nullptr;
    bool ok = false;
    while (queue->Next(&tag, &ok)) static_cast<QueueEvent*>(tag)->Complete(ok);
  });
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
  // Every stream has been asked to finish; gRPC's shutdown waits for the calls still open (up to
  // the grace, for a client that does not read), so it runs beside the caller. Then the queue
  // shuts down, and the server's thread ends once it has drained it. The destructor waits for
  // both.
  shutdown_thread_ = std::thread([server = server_.get(), queue = queue_.get()] {
    logging::NameThisThread("nvdp-shutdown");
    server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
    server->Wait();
    queue->Shutdown();
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

bool DevicePluginServer::UnhealthyLocked(const std::string& device_uuid) const {
  if (unhealthy_gpus_.contains(device_uuid) || unavailable_devices_.contains(device_uuid)) {
    return true;
  }
  auto parent = parent_uuid_.find(device_uuid);
  return parent != parent_uuid_.end() && unhealthy_gpus_.contains(parent->second);
}

void DevicePluginServer::SetDevicesUnavailable(absl::flat_hash_set<std::string> device_uuids) {
  absl::MutexLock lock(&mu_);
  if (unavailable_devices_ == device_uuids) return;
  unavailable_devices_ = std::move(device_uuids);
  ReshapeLocked();
  NotifyWatchers();
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
    bool healthy = resource_available_ && shown_[i] != 0 && !UnhealthyLocked(device.gpu_uuid);
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

grpc::Status DevicePluginServer::AddWatcher(WatchCall* reactor) {
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

void DevicePluginServer::RemoveWatcher(WatchCall* reactor) {
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
