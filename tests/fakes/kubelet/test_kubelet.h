// TestKubelet: a stand-in for kubelet's device manager, for tests and the demo.
//
// Serves the real Registration service on `<dir>/kubelet.sock`. For every Register it behaves as
// kubelet does: checks version and resource name, dials the plugin's endpoint back, calls
// GetDevicePluginOptions, then keeps a ListAndWatch stream open and remembers the latest device
// list. Admission helpers call GetPreferredAllocation and Allocate the way kubelet does: one
// container per Allocate, using container_responses[0], tracking which devices are in use.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "deviceplugin/v1beta1/api.grpc.pb.h"

namespace grpc {
class Server;
class ClientContext;
}  // namespace grpc

namespace nvdp::testing {

using std::chrono::milliseconds;

struct DeviceState {
  std::string id;
  bool healthy = false;
  std::optional<int64_t> numa_node;
};

// What one container received from one resource.
struct Admission {
  std::vector<std::string> device_ids;
  v1beta1::ContainerAllocateResponse response;
};

class TestKubelet {
 public:
  // Starts serving on <dir>/kubelet.sock (dir must exist).
  static absl::StatusOr<std::unique_ptr<TestKubelet>> Start(const std::string& dir);
  ~TestKubelet();

  std::string socket_path() const;
  std::string dir() const { return dir_; }

  // Waits until `resource` has registered at least `count` times in total.
  bool WaitForRegistrations(const std::string& resource, int count, milliseconds timeout);
  int Registrations(const std::string& resource) const;
  std::optional<v1beta1::RegisterRequest> LastRegistration(const std::string& resource) const;

  // Waits until the latest device list of `resource` satisfies `predicate`.
  bool WaitForDevices(const std::string& resource,
                      const std::function<bool(const std::vector<DeviceState>&)>& predicate,
                      milliseconds timeout);
  std::vector<DeviceState> Devices(const std::string& resource) const;
  // Number of ListAndWatch updates received for `resource` so far (all registrations).
  int DeviceListUpdates(const std::string& resource) const;

  // Raw RPCs against the registered endpoint of `resource`.
  absl::StatusOr<std::vector<std::string>> GetPreferredAllocation(
      const std::string& resource, const std::vector<std::string>& available,
      const std::vector<std::string>& must_include, int size);
  absl::StatusOr<v1beta1::AllocateResponse> Allocate(
      const std::string& resource, const std::vector<std::vector<std::string>>& containers);

  // Kubelet-like admission of one container asking for `count` devices of `resource`:
  // available = healthy devices not in use; ask the plugin's preference; fill any shortfall;
  // Allocate; mark the devices in use. Returns kubelet's error on refusal.
  absl::StatusOr<Admission> Admit(const std::string& resource, int count);
  // Frees the devices of an admitted container.
  void Release(const std::string& resource, const std::vector<std::string>& device_ids);

  // Simulates a kubelet restart as kubelet does it: the old kubelet stops serving and its streams
  // end; `gap` later the new one deletes every file in the directory (plugin sockets included) and
  // serves kubelet.sock again. `killed`: the old kubelet died by SIGKILL, leaving kubelet.sock
  // behind as a stale socket nobody accepts on until the new one replaces it.
  struct RestartOptions {
    milliseconds gap{0};
    bool killed = false;
  };
  absl::Status Restart(RestartOptions options);
  absl::Status Restart() { return Restart(RestartOptions{}); }

  // While held, Register calls are accepted and then left hanging, as kubelet's are while it dials
  // back a plugin socket that is gone; Release lets them fail. RegisterCallsInFlight counts them.
  void HoldRegistrations();
  void ReleaseRegistrations();
  int RegisterCallsInFlight() const;
  bool WaitForRegisterCallsInFlight(int count, milliseconds timeout);

  // When kubelet.sock last started accepting, and when `resource` last registered (for measuring
  // re-registration after a restart; nullopt before the first).
  std::chrono::steady_clock::time_point ServingSince() const;
  std::optional<std::chrono::steady_clock::time_point> LastRegistrationTime(
      const std::string& resource) const;
  // Cancels the ListAndWatch stream of `resource` from kubelet's side.
  void CancelStream(const std::string& resource);

 private:
  class RegistrationService;
  struct Endpoint {
    std::string socket_path;
    std::shared_ptr<v1beta1::DevicePlugin::Stub> stub;
    std::shared_ptr<grpc::ClientContext> stream_context;
  };

  explicit TestKubelet(std::string dir);
  absl::Status Serve();
  void StopServing();
  grpc::Status HandleRegister(const v1beta1::RegisterRequest& request);
  void WatchLoop(std::string resource, std::shared_ptr<v1beta1::DevicePlugin::Stub> stub,
                 std::shared_ptr<grpc::ClientContext> context);
  absl::StatusOr<std::shared_ptr<v1beta1::DevicePlugin::Stub>> StubFor(const std::string& resource);

  const std::string dir_;
  std::unique_ptr<RegistrationService> service_;
  std::unique_ptr<grpc::Server> server_;

  mutable absl::Mutex mu_;
  std::map<std::string, int> registrations_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1beta1::RegisterRequest> last_request_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::chrono::steady_clock::time_point> last_registration_time_
      ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point serving_since_ ABSL_GUARDED_BY(mu_);
  bool hold_registrations_ ABSL_GUARDED_BY(mu_) = false;
  int register_calls_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<DeviceState>> devices_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> updates_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::set<std::string>> in_use_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> watch_threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nvdp::testing
