// DevicePluginServer: the kubelet v1beta1 DevicePlugin service for one resource, on its own unix
// socket (`<device-plugin-dir>/nvidia-<name>.sock`).
//
// Owns the gRPC server and the health state of the resource's devices. ListAndWatch streams the
// full device list and re-sends it whenever health changes; GetPreferredAllocation and Allocate
// delegate to the pure sharing functions and never trust kubelet's choice; bad requests get
// INVALID_ARGUMENT with a message naming the resource and the bad IDs.
//
// Lifecycle: Start() (serves, and checks that it can be dialled) -> Stop(). One Start per object;
// to serve again after a kubelet restart, build a new server. Thread-safety: every public method
// may be called from any thread; gRPC callbacks run on gRPC's threads.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "deviceplugin/v1beta1/api.grpc.pb.h"
#include "plugin/allocate_response.h"
#include "sharing/sharing.h"

namespace grpc {
class Server;
}

namespace nvdp::plugin {

inline constexpr char kHealthy[] = "Healthy";
inline constexpr char kUnhealthy[] = "Unhealthy";

// Socket file name for a resource: "nvidia.com/gpu" -> "nvidia-gpu.sock".
std::string SocketNameFor(const sharing::ResourceSpec& spec);

class DevicePluginServer {
 public:
  // Called (from a gRPC thread) when kubelet cancels an open ListAndWatch stream, which is how a
  // dying kubelet shows itself. Not called for streams we end ourselves in Stop().
  using StreamLostCallback = std::function<void()>;

  DevicePluginServer(sharing::ResourceSpec spec, ResponseOptions options, std::string socket_path,
                     StreamLostCallback on_stream_lost = nullptr);
  ~DevicePluginServer();

  DevicePluginServer(const DevicePluginServer&) = delete;
  DevicePluginServer& operator=(const DevicePluginServer&) = delete;

  // Removes a stale socket file, listens, and dials the socket once to prove it serves.
  absl::Status Start();
  // Ends open streams, shuts the server down and removes the socket file. Idempotent.
  void Stop();

  // Health: a GPU (by UUID) can be marked unhealthy; the whole resource can be marked unavailable
  // (e.g. its MPS daemon is down). A device is healthy only if both allow it. Changes are streamed.
  void SetGpuHealthy(const std::string& gpu_uuid, bool healthy);
  void SetResourceAvailable(bool available);

  // True while the socket file at socket_path() is the one this server bound (kubelet restarts
  // delete it; a new file of the same name is someone else's).
  bool SocketIsOurs() const;

  const sharing::ResourceSpec& spec() const { return spec_; }
  const std::string& socket_path() const { return socket_path_; }

  // The device list as ListAndWatch sends it now.
  v1beta1::ListAndWatchResponse DeviceList() const;

 private:
  class Service;
  class ListAndWatchReactor;

  void AddWatcher(ListAndWatchReactor* reactor);
  void RemoveWatcher(ListAndWatchReactor* reactor);
  v1beta1::ListAndWatchResponse DeviceListLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyWatchers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnStreamCancelled();

  const sharing::ResourceSpec spec_;
  const ResponseOptions options_;
  const std::string socket_path_;
  const StreamLostCallback on_stream_lost_;
  const std::vector<sharing::AdvertisedDevice> devices_;

  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> unhealthy_gpus_ ABSL_GUARDED_BY(mu_);
  bool resource_available_ ABSL_GUARDED_BY(mu_) = true;
  std::set<ListAndWatchReactor*> watchers_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  ino_t socket_inode_ = 0;  // set by Start
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace nvdp::plugin
