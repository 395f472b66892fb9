// DevicePluginServer: the kubelet v1beta1 DevicePlugin service for one resource, on its own unix
// socket (`<device-plugin-dir>/nvidia-<name>.sock`).
//
// Owns the gRPC server and the health state of the resource's devices. ListAndWatch streams the
// full device list and re-sends it whenever health changes; GetPreferredAllocation and Allocate
// delegate to the pure sharing functions and never trust kubelet's choice; bad requests get
// INVALID_ARGUMENT with a bounded message naming the resource and the bad IDs.
//
// Hostile or buggy local clients are bounded: at most kMaxStreams ListAndWatch streams at once
// (kubelet needs one; more get RESOURCE_EXHAUSTED), each holding at most the message being written
// and a reference to the newest list, which is built once per change and shared by every stream.
// A stream ending by itself is only logged: the plugin cannot tell kubelet from another client, so
// kubelet's restarts are recognised by its socket (see app::PluginManager), never by a stream.
// The socket is created 0600 (kubelet runs as root).
//
// Per-container MPS resources may come with a ledger (ledger/ledger.h) of who holds what. The
// server then records every grant and every `available` kubelet offers in it, lets GetPreferred-
// Allocation pass over GPUs at the MPS client cap, grants an app container the IDs it reuses from
// its init containers (sharing::GrantOptions), refuses a client beyond the cap, and, with
// capacity shaping on and the ledger fed by PodResources, reports Healthy only the free shares
// that every valid request can use (sharing::ShapeCapacity), re-sending the list when that changes.
// Shaping never hides an allocated share; real faults still mark everything.
//
// Serving: gRPC's async API on a completion queue of the server's own, driven by one thread
// ("nvdp-rpc") that blocks in Next(): no gRPC callback threads, no polling, and a call or a stop
// never waits for a sleeping pool thread. Handlers are short and never block on the network
// (Allocate may re-read PodResources once before a refusal, bounded).
//
// Lifecycle: Start() (serves, and checks that it can be dialled) -> Stop(). One Start per object;
// to serve again after a kubelet restart, build a new server. Thread-safety: every public method
// may be called from any thread; RPC handlers run on the server's own thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "deviceplugin/v1beta1/api.grpc.pb.h"
#include "ledger/ledger.h"
#include "plugin/allocate_response.h"
#include "sharing/sharing.h"

namespace grpc {
class Server;
class ServerCompletionQueue;
class Status;
}  // namespace grpc

namespace nvdp::plugin {

inline constexpr char kHealthy[] = "Healthy";
inline constexpr char kUnhealthy[] = "Unhealthy";

// Socket file name for a resource: "nvidia.com/gpu" -> "nvidia-gpu.sock".
std::string SocketNameFor(const sharing::ResourceSpec& spec);

// Concurrent ListAndWatch streams one server accepts. Kubelet needs one; the rest is headroom for
// streams a client cancelled but gRPC has not reported yet (a fast open-and-cancel loop runs a few
// ahead), so churn never crowds kubelet out. A stream that never reads holds one serialized list
// (about 0.6 MB at 8,192 IDs), so the cap bounds that memory to about 40 MB.
inline constexpr size_t kMaxStreams = 64;

// What the server may consult beyond kubelet's requests. All optional.
struct Accounting {
  std::shared_ptr<ledger::Ledger> ledger;
  // Re-reads PodResources at once (blocking, bounded); before a refusal for the client cap, which
  // a container that left since the last refresh may have caused.
  std::function<void()> refresh_now;
  // Asks for a PodResources refresh soon; after every Allocate.
  std::function<void()> refresh_soon;
};

class DevicePluginServer {
 public:
  DevicePluginServer(sharing::ResourceSpec spec, ResponseOptions options, std::string socket_path,
                     Accounting accounting = {});
  ~DevicePluginServer();

  DevicePluginServer(const DevicePluginServer&) = delete;
  DevicePluginServer& operator=(const DevicePluginServer&) = delete;

  // Listens on socket_path() and dials it once to prove it serves. Whatever is at the path first:
  // nothing, or a stale socket nobody answers on (removed), or something that is not a socket
  // (removed, with a warning: the directory is kubelet's); a socket that accepts a connection
  // belongs to a live process, e.g. a second plugin instance during a rolling update, and is left
  // alone: AlreadyExists, and the caller retries later.
  absl::Status Start();
  // Stops serving: ends open streams, removes the socket file (if still ours) and starts gRPC's
  // shutdown, which finishes beside the caller; returns without waiting for it (the destructor
  // does). A server started at the same path meanwhile is safe: each binds a name of its own and
  // renames it into place. Idempotent.
  void Stop();

  // Health: a GPU or MIG device (by UUID) can be marked unhealthy, and a GPU marked unhealthy
  // takes every MIG device on it along; the whole resource can be marked unavailable (e.g. its MPS
  // daemon is down). A device is healthy only if all of these allow it. Changes are streamed.
  void SetGpuHealthy(const std::string& gpu_uuid, bool healthy);
  void SetResourceAvailable(bool available);
  // The devices (GPU or MIG UUIDs) whose own MPS control daemon is down (MIG devices under flexible
  // MPS, one daemon each): their IDs are unhealthy, the rest of the resource is not. Replaces the
  // previous set.
  void SetDevicesUnavailable(absl::flat_hash_set<std::string> device_uuids);

  // Recomputes capacity shaping from the ledger and re-sends the list if it changed. Called by the
  // ledger on every change; a no-op without a ledger.
  void Reshape();

  // True while the socket file at socket_path() is the one this server bound (kubelet restarts
  // delete it; a new file of the same name is someone else's).
  bool SocketIsOurs() const;

  const sharing::ResourceSpec& spec() const { return spec_; }
  const std::string& socket_path() const { return socket_path_; }

  // The device list as ListAndWatch sends it now.
  v1beta1::ListAndWatchResponse DeviceList() const;

  // Open ListAndWatch streams (for tests and diagnostics).
  size_t StreamCount() const;

  using DeviceListPtr = std::shared_ptr<const v1beta1::ListAndWatchResponse>;

 private:
  class WatchCall;
  template <typename Request, typename Response>
  class UnaryCall;

  // Asks gRPC for the next call of every method (one outstanding request each).
  void RequestCalls();
  // The RPC handlers (on the server's thread); they consume the request's ID lists.
  grpc::Status GetPreferredAllocation(v1beta1::PreferredAllocationRequest& request,
                                      v1beta1::PreferredAllocationResponse* response);
  grpc::Status Allocate(v1beta1::AllocateRequest& request, v1beta1::AllocateResponse* response);
  // Adds the stream and pushes the current list; an error (the stream is not added) when
  // kMaxStreams are open or the server is stopping.
  grpc::Status AddWatcher(WatchCall* watcher);
  void RemoveWatcher(WatchCall* watcher);  // idempotent
  DeviceListPtr BuildDeviceListLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<char> SettledHealthy() const;
  // The device (a GPU or MIG device) or, for a MIG device, its GPU is marked unhealthy.
  bool UnhealthyLocked(const std::string& device_uuid) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyWatchers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Updates shown_ from the ledger; true when it changed.
  bool ReshapeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Allocate's checks beyond the allocation rules: an error for a new MPS client on a GPU at the
  // cap.
  absl::Status CheckClientCap(const sharing::Grant& grant, size_t share_count);
  absl::Status ClearSocketPath() const;
  bool SocketFileIsOurs() const;  // SocketIsOurs() without the check that the server runs

  const sharing::ResourceSpec spec_;
  const ResponseOptions options_;
  const std::string socket_path_;
  const std::vector<sharing::AdvertisedDevice> devices_;
  // MIG device UUID -> its GPU's UUID (set in the constructor, then read-only).
  absl::flat_hash_map<std::string, std::string> parent_uuid_;
  const Accounting accounting_;
  // Shaping applies: per-container MPS with capacity_shaping and a ledger.
  const bool shaping_;

  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> unhealthy_gpus_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> unavailable_devices_ ABSL_GUARDED_BY(mu_);
  bool resource_available_ ABSL_GUARDED_BY(mu_) = true;
  // Per device (devices_ order): 0 when capacity shaping hides it.
  std::vector<char> shown_ ABSL_GUARDED_BY(mu_);
  // Per device: Healthy in the newest list, and Healthy in both the newest and the one before
  // (kubelet has surely seen it Healthy: it takes one list at a time, in order).
  std::vector<char> healthy_now_ ABSL_GUARDED_BY(mu_);
  std::vector<char> healthy_settled_ ABSL_GUARDED_BY(mu_);
  DeviceListPtr device_list_ ABSL_GUARDED_BY(mu_);  // rebuilt on every health change
  std::set<WatchCall*> watchers_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  ino_t socket_inode_ = 0;                  // set by Start
  std::atomic<bool> ledger_hooked_{false};  // our Reshape is the ledger's callback
  std::atomic<bool> stop_begun_{false};
  std::unique_ptr<v1beta1::DevicePlugin::AsyncService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::ServerCompletionQueue> queue_;
  std::thread rpc_thread_;       // drains queue_; ends once it is shut down and empty
  std::thread shutdown_thread_;  // started by Stop, joined by the destructor
};

}  // namespace nvdp::plugin
