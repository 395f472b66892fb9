// TestKubelet: a stand-in for kubelet's device manager, for tests and the demo.
//
// Serves the real Registration service on `<dir>/kubelet.sock`. For every Register it behaves as
// kubelet does: checks version and resource name, dials the plugin's endpoint back, calls
// GetDevicePluginOptions, then keeps a ListAndWatch stream open and remembers the latest device
// list.
//
// Pods are admitted with kubelet 1.26's device-manager algorithm (AdmitPod): containers in order,
// init containers first; devices of the pod's init containers reused first (in random order, from
// a seeded generator); GetPreferredAllocation only when reuse does not cover the request; one
// container per Allocate, using container_responses[0]; any error fails the whole pod and frees
// its devices. Init containers' devices stay allocated for the pod's life. A deleted pod leaves
// the pod list at once, but its devices are freed only at the next allocation or PodResources
// List, as kubelet does. The scheduler's view of the node (Allocatable, SchedulerFits) counts the
// effective requests of live pods against the healthy devices of the latest ListAndWatch list.
// Optionally serves kubelet's PodResources API (List, GetAllocatableResources) on a socket of its
// own (StartPodResources).
//
// Owns its gRPC servers and one thread per ListAndWatch stream. Thread-safety: all public methods
// may be called from any thread; admissions are serialized, as kubelet's are.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "deviceplugin/v1beta1/api.grpc.pb.h"
#include "podresources/lister.h"

namespace grpc {
class Server;
class ClientContext;
}  // namespace grpc
namespace v1 {  // podresources/v1/api.pb.h
class ListPodResourcesResponse;
class AllocatableResourcesResponse;
}  // namespace v1

namespace nvdp::testing {

using std::chrono::milliseconds;

struct DeviceState {
  std::string id;
  bool healthy = false;
  std::optional<int64_t> numa_node;
};

// What one container received from one resource.
struct Admission {
  // In the order sent to Allocate (kubelet's order is random).
  std::vector<std::string> device_ids;
  v1beta1::ContainerAllocateResponse response;
  // The part of device_ids taken over from the pod's init containers.
  std::vector<std::string> reused;
  // Whether GetPreferredAllocation was called (not when reuse covered the request).
  bool asked_preference = false;
};

struct ContainerSpec {
  std::string name;
  std::map<std::string, int> requests;  // resource -> count (requests = limits)
};

struct PodSpec {
  std::string name;  // unique among live pods; namespace "default"
  std::vector<ContainerSpec> init_containers, containers;
};

struct ContainerAdmission {
  std::string name;
  std::map<std::string, Admission> resources;  // only resources with a request > 0
};

struct PodAdmission {
  std::vector<ContainerAdmission> init_containers, containers;
};

// Per resource, the pod's effective request: max(sum over app containers, max over init
// containers). Resources whose effective request is 0 are left out.
std::map<std::string, int64_t> EffectiveRequests(const PodSpec& pod);

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

  // Admits `pod` as kubelet does (see the top of this file). On refusal returns kubelet's
  // message ("Allocate failed due to <why>, which is unexpected"; the code is that of the cause,
  // e.g. the plugin's gRPC code) and the pod is gone, its devices freed. AlreadyExists if a live
  // pod has the name.
  absl::StatusOr<PodAdmission> AdmitPod(const PodSpec& pod);
  // Deletes a live pod: it leaves List at once; its devices are freed lazily (next allocation or
  // List). Returns whether the pod was live.
  bool DeletePod(const std::string& name);
  // Seeds the generator behind kubelet's random orders (reuse, fill, the order of IDs sent).
  void SetSeed(uint32_t seed);

  // Admits a pod "admit-<n>" with one container asking for `count` devices of `resource`, and
  // returns what it got.
  absl::StatusOr<Admission> Admit(const std::string& resource, int count);
  // Frees `device_ids` at once, from whichever pods hold them. A pod made by Admit that holds no
  // device any more is deleted with them.
  void Release(const std::string& resource, const std::vector<std::string>& device_ids);

  // The scheduler's view. Allocatable: the healthy devices of the latest ListAndWatch list.
  int64_t Allocatable(const std::string& resource) const;
  // Sum of the effective requests of the live pods.
  int64_t Requested(const std::string& resource) const;
  // Whether the scheduler would bind `pod` here: for every resource, Allocatable - Requested >=
  // the pod's effective request.
  bool SchedulerFits(const PodSpec& pod) const;

  // Kubelet's allocated devices of `resource` (init containers' and not yet freed deleted pods'
  // included). Frees nothing.
  std::set<std::string> Allocated(const std::string& resource) const;
  // What List would report now (app containers of live pods, merged per container and resource,
  // as podresources::Lister returns it), without List's side effect of freeing.
  std::vector<podresources::ContainerDevices> ListedDevices() const;
  std::vector<std::string> LivePods() const;

  // Serves kubelet's PodResources API on `socket_path` (replacing a file there) until destruction;
  // Restart restarts it too.
  absl::Status StartPodResources(const std::string& socket_path);
  std::string pod_resources_socket() const;
  // PodResources List calls served so far.
  int ListCalls() const;
  bool WaitForListCalls(int count, milliseconds timeout);

  // Simulates a kubelet restart as kubelet does it: the old kubelet stops serving and its streams
  // end; `gap` later the new one deletes every file in the directory (plugin sockets included) and
  // serves kubelet.sock (and the PodResources socket, if served) again. Pods and their devices
  // survive (kubelet's checkpoint). `killed`: the old kubelet died by SIGKILL, leaving kubelet.sock
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
  class PodResourcesService;
  struct Endpoint {
    std::string socket_path;
    std::shared_ptr<v1beta1::DevicePlugin::Stub> stub;
    std::shared_ptr<grpc::ClientContext> stream_context;
    bool preferred_allocation_available = false;
  };
  // One container's devices of one resource, as kubelet keeps them: also by NUMA node (-1: none).
  struct Allocation {
    std::vector<std::string> ids;
    std::map<int64_t, std::vector<std::string>> by_numa;
  };
  struct Pod {
    PodSpec spec;
    bool from_admit = false;
  };
  using PodDevices = std::map<std::string, std::map<std::string, Allocation>>;  // container, res.

  explicit TestKubelet(std::string dir);
  absl::Status Serve();
  void StopServing();
  grpc::Status HandleRegister(const v1beta1::RegisterRequest& request);
  void WatchLoop(std::string resource, std::shared_ptr<v1beta1::DevicePlugin::Stub> stub,
                 std::shared_ptr<grpc::ClientContext> context);
  absl::StatusOr<std::shared_ptr<v1beta1::DevicePlugin::Stub>> StubFor(const std::string& resource);
  absl::Status ServePodResources() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pod_resources_mu_);
  absl::StatusOr<PodAdmission> AdmitPodAs(const PodSpec& pod, bool from_admit);
  absl::StatusOr<Admission> AllocateContainer(uint64_t uid, const std::string& container,
                                              const std::string& resource, int count,
                                              const std::set<std::string>& reusable)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(admit_mu_);
  // Kubelet's updateAllocatedDevices: forgets the devices of pods no longer live.
  void FreeDeletedPodsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecomputeAllocatedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetPodLocked(uint64_t uid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t AllocatableLocked(const std::string& resource) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  int64_t RequestedLocked(const std::string& resource) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::vector<podresources::ContainerDevices> ListedDevicesLocked() const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void HandleList(v1::ListPodResourcesResponse* response);
  void HandleGetAllocatable(v1::AllocatableResourcesResponse* response);

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
  std::vector<std::thread> watch_threads_ ABSL_GUARDED_BY(mu_);

  // Pod state, kubelet's names in comments. Live pods (the pod manager's) by UID, in admission
  // order; a UID is never reused.
  std::map<uint64_t, Pod> pods_ ABSL_GUARDED_BY(mu_);
  uint64_t next_uid_ ABSL_GUARDED_BY(mu_) = 1;
  int admit_pods_made_ ABSL_GUARDED_BY(mu_) = 0;
  // podDevices: every pod that still holds devices, deleted ones until freed.
  std::map<uint64_t, PodDevices> pod_devices_ ABSL_GUARDED_BY(mu_);
  // allocatedDevices: resource -> IDs.
  std::map<std::string, std::set<std::string>> in_use_ ABSL_GUARDED_BY(mu_);
  int list_calls_ ABSL_GUARDED_BY(mu_) = 0;

  // Serializes admissions; guards the generator. Taken before mu_.
  absl::Mutex admit_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::mt19937 rng_ ABSL_GUARDED_BY(admit_mu_){1};

  mutable absl::Mutex pod_resources_mu_;
  std::string pod_resources_socket_ ABSL_GUARDED_BY(pod_resources_mu_);
  std::unique_ptr<PodResourcesService> pod_resources_service_ ABSL_GUARDED_BY(pod_resources_mu_);
  std::unique_ptr<grpc::Server> pod_resources_server_ ABSL_GUARDED_BY(pod_resources_mu_);
};

}  // namespace nvdp::testing
