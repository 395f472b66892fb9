#include "fakes/kubelet/test_kubelet.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "podresources/v1/api.grpc.pb.h"
#include "rpc/unix_channel.h"

namespace nvdp::testing {
namespace {

constexpr auto kDialTimeout = std::chrono::seconds(10);  // kubelet's own limit
constexpr auto kRpcTimeout = std::chrono::seconds(10);

absl::Status ToAbsl(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace

class TestKubelet::RegistrationService final : public v1beta1::Registration::Service {
 public:
  explicit RegistrationService(TestKubelet* owner) : owner_(owner) {}
  grpc::Status Register(grpc::ServerContext*, const v1beta1::RegisterRequest* request,
                        v1beta1::Empty*) override {
    return owner_->HandleRegister(*request);
  }

 private:
  TestKubelet* const owner_;
};

class TestKubelet::PodResourcesService final : public v1::PodResourcesLister::Service {
 public:
  explicit PodResourcesService(TestKubelet* owner) : owner_(owner) {}
  grpc::Status List(grpc::ServerContext*, const v1::ListPodResourcesRequest*,
                    v1::ListPodResourcesResponse* response) override {
    owner_->HandleList(response);
    return grpc::Status::OK;
  }
  grpc::Status GetAllocatableResources(grpc::ServerContext*, const v1::AllocatableResourcesRequest*,
                                       v1::AllocatableResourcesResponse* response) override {
    owner_->HandleGetAllocatable(response);
    return grpc::Status::OK;
  }

 private:
  TestKubelet* const owner_;
};

absl::StatusOr<std::unique_ptr<TestKubelet>> TestKubelet::Start(const std::string& dir) {
  std::unique_ptr<TestKubelet> kubelet(new TestKubelet(dir));
  if (auto status = kubelet->Serve(); !status.ok()) return status;
  return kubelet;
}

TestKubelet::TestKubelet(std::string dir)
    : dir_(std::move(dir)), service_(std::make_unique<RegistrationService>(this)) {}

TestKubelet::~TestKubelet() { StopServing(); }

std::string TestKubelet::socket_path() const { return dir_ + "/kubelet.sock"; }

absl::Status TestKubelet::Serve() {
  std::filesystem::remove(socket_path());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path(), grpc::InsecureServerCredentials());
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_) return absl::UnavailableError("test kubelet cannot listen on " + socket_path());
  {
    absl::MutexLock lock(&mu_);
    serving_since_ = std::chrono::steady_clock::now();
  }
  absl::MutexLock lock(&pod_resources_mu_);
  return ServePodResources();
}

std::chrono::steady_clock::time_point TestKubelet::ServingSince() const {
  absl::MutexLock lock(&mu_);
  return serving_since_;
}

std::optional<std::chrono::steady_clock::time_point> TestKubelet::LastRegistrationTime(
    const std::string& resource) const {
  absl::MutexLock lock(&mu_);
  auto it = last_registration_time_.find(resource);
  if (it == last_registration_time_.end()) return std::nullopt;
  return it->second;
}

namespace {

// Leaves a unix socket file at `path` that nobody listens on: what a SIGKILLed server leaves.
void LeaveStaleSocket(const std::string& path) {
  std::filesystem::remove(path);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  (void)::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  ::close(fd);
}

}  // namespace

void TestKubelet::StopServing() {
  ReleaseRegistrations();  // a held call would keep the server from shutting down
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_.reset();
  }
  {
    absl::MutexLock lock(&pod_resources_mu_);
    if (pod_resources_server_) {
      pod_resources_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
      pod_resources_server_.reset();
    }
  }
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [name, endpoint] : endpoints_) {
      if (endpoint.stream_context) endpoint.stream_context->TryCancel();
    }
    endpoints_.clear();
    threads.swap(watch_threads_);
  }
  for (auto& thread : threads) thread.join();
}

absl::Status TestKubelet::Restart(RestartOptions options) {
  StopServing();
  if (options.killed) {
    LeaveStaleSocket(socket_path());
    if (const std::string path = pod_resources_socket(); !path.empty()) LeaveStaleSocket(path);
  }
  if (options.gap > milliseconds(0)) std::this_thread::sleep_for(options.gap);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    std::filesystem::remove_all(entry.path(), ec);
  }
  {
    absl::MutexLock lock(&mu_);
    devices_.clear();
  }
  return Serve();
}

void TestKubelet::HoldRegistrations() {
  absl::MutexLock lock(&mu_);
  hold_registrations_ = true;
}

void TestKubelet::ReleaseRegistrations() {
  absl::MutexLock lock(&mu_);
  hold_registrations_ = false;
}

int TestKubelet::RegisterCallsInFlight() const {
  absl::MutexLock lock(&mu_);
  return register_calls_in_flight_;
}

bool TestKubelet::WaitForRegisterCallsInFlight(int count, milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  auto reached = [&]()
                     ABSL_SHARED_LOCKS_REQUIRED(mu_) { return register_calls_in_flight_ >= count; };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::FromChrono(timeout));
}

grpc::Status TestKubelet::HandleRegister(const v1beta1::RegisterRequest& request) {
  const auto arrived = std::chrono::steady_clock::now();
  {
    absl::MutexLock lock(&mu_);
    if (hold_registrations_) {
      ++register_calls_in_flight_;
      auto released = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !hold_registrations_; };
      mu_.Await(absl::Condition(&released));
      --register_calls_in_flight_;
      return grpc::Status(grpc::StatusCode::UNKNOWN, "registration released by the test");
    }
  }
  const std::string& resource = request.resource_name();
  if (request.version() != "v1beta1") {
    return grpc::Status(grpc::StatusCode::UNKNOWN, "unsupported version " + request.version());
  }
  auto slash = resource.find('/');
  if (slash == std::string::npos || slash == 0 || absl::StartsWith(resource, "kubernetes.io/")) {
    return grpc::Status(grpc::StatusCode::UNKNOWN, "invalid extended resource name " + resource);
  }
  const std::string endpoint_path = dir_ + "/" + request.endpoint();
  auto channel = rpc::UnixChannel(endpoint_path);
  auto stub = std::shared_ptr<v1beta1::DevicePlugin::Stub>(v1beta1::DevicePlugin::NewStub(channel));
  v1beta1::DevicePluginOptions options;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kDialTimeout);
    context.set_wait_for_ready(true);
    auto status = stub->GetDevicePluginOptions(&context, v1beta1::Empty(), &options);
    if (!status.ok()) {
      return grpc::Status(grpc::StatusCode::UNKNOWN,
                          "cannot dial plugin at " + endpoint_path + ": " + status.error_message());
    }
  }
  auto stream_context = std::make_shared<grpc::ClientContext>();
  std::shared_ptr<grpc::ClientContext> replaced;
  absl::MutexLock lock(&mu_);
  if (auto it = endpoints_.find(resource); it != endpoints_.end())
    replaced = it->second.stream_context;
  endpoints_[resource] =
      Endpoint{endpoint_path, stub, stream_context, options.get_preferred_allocation_available()};
  registrations_[resource]++;
  last_request_[resource] = request;
  last_registration_time_[resource] = arrived;
  if (replaced) replaced->TryCancel();  // a new registration replaces the old one
  watch_threads_.emplace_back(
      [this, resource, stub, stream_context] { WatchLoop(resource, stub, stream_context); });
  return grpc::Status::OK;
}

void TestKubelet::WatchLoop(std::string resource, std::shared_ptr<v1beta1::DevicePlugin::Stub> stub,
                            std::shared_ptr<grpc::ClientContext> context) {
  auto reader = stub->ListAndWatch(context.get(), v1beta1::Empty());
  v1beta1::ListAndWatchResponse response;
  while (reader->Read(&response)) {
    std::vector<DeviceState> devices;
    for (const auto& device : response.devices()) {
      DeviceState state{device.id(), device.health() == "Healthy", std::nullopt};
      if (device.has_topology() && device.topology().nodes_size() > 0) {
        state.numa_node = device.topology().nodes(0).id();
      }
      devices.push_back(std::move(state));
    }
    absl::MutexLock lock(&mu_);
    auto it = endpoints_.find(resource);
    if (it == endpoints_.end() || it->second.stream_context != context) break;  // replaced
    devices_[resource] = std::move(devices);
    updates_[resource]++;
  }
  reader->Finish();
  // Like kubelet: a lost stream makes every device of the resource unhealthy.
  absl::MutexLock lock(&mu_);
  auto it = endpoints_.find(resource);
  if (it != endpoints_.end() && it->second.stream_context == context) {
    for (auto& device : devices_[resource]) device.healthy = false;
  }
}

bool TestKubelet::WaitForRegistrations(const std::string& resource, int count,
                                       milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    auto it = registrations_.find(resource);
    return it != registrations_.end() && it->second >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::FromChrono(timeout));
}

int TestKubelet::Registrations(const std::string& resource) const {
  absl::MutexLock lock(&mu_);
  auto it = registrations_.find(resource);
  return it == registrations_.end() ? 0 : it->second;
}

std::optional<v1beta1::RegisterRequest> TestKubelet::LastRegistration(
    const std::string& resource) const {
  absl::MutexLock lock(&mu_);
  auto it = last_request_.find(resource);
  if (it == last_request_.end()) return std::nullopt;
  return it->second;
}

bool TestKubelet::WaitForDevices(
    const std::string& resource,
    const std::function<bool(const std::vector<DeviceState>&)>& predicate, milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    auto it = devices_.find(resource);
    return it != devices_.end() && predicate(it->second);
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::FromChrono(timeout));
}

std::vector<DeviceState> TestKubelet::Devices(const std::string& resource) const {
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(resource);
  return it == devices_.end() ? std::vector<DeviceState>{} : it->second;
}

int TestKubelet::DeviceListUpdates(const std::string& resource) const {
  absl::MutexLock lock(&mu_);
  auto it = updates_.find(resource);
  return it == updates_.end() ? 0 : it->second;
}

absl::StatusOr<std::shared_ptr<v1beta1::DevicePlugin::Stub>> TestKubelet::StubFor(
    const std::string& resource) {
  absl::MutexLock lock(&mu_);
  auto it = endpoints_.find(resource);
  if (it == endpoints_.end()) return absl::NotFoundError("no plugin registered for " + resource);
  return it->second.stub;
}

absl::StatusOr<std::vector<std::string>> TestKubelet::GetPreferredAllocation(
    const std::string& resource, const std::vector<std::string>& available,
    const std::vector<std::string>& must_include, int size) {
  auto stub = StubFor(resource);
  if (!stub.ok()) return stub.status();
  v1beta1::PreferredAllocationRequest request;
  auto* container = request.add_container_requests();
  for (const auto& id : available) container->add_available_deviceids(id);
  for (const auto& id : must_include) container->add_must_include_deviceids(id);
  container->set_allocation_size(size);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
  v1beta1::PreferredAllocationResponse response;
  auto status = (*stub)->GetPreferredAllocation(&context, request, &response);
  if (!status.ok()) return ToAbsl(status);
  if (response.container_responses_size() == 0) return std::vector<std::string>{};
  const auto& ids = response.container_responses(0).deviceids();
  return std::vector<std::string>(ids.begin(), ids.end());
}

absl::StatusOr<v1beta1::AllocateResponse> TestKubelet::Allocate(
    const std::string& resource, const std::vector<std::vector<std::string>>& containers) {
  auto stub = StubFor(resource);
  if (!stub.ok()) return stub.status();
  v1beta1::AllocateRequest request;
  for (const auto& ids : containers) {
    auto* container = request.add_container_requests();
    for (const auto& id : ids) container->add_devices_ids(id);
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
  v1beta1::AllocateResponse response;
  auto status = (*stub)->Allocate(&context, request, &response);
  if (!status.ok()) return ToAbsl(status);
  return response;
}

namespace {

// A plugin's error as kubelet prints it: "rpc error: code = <Go's name> desc = <message>".
std::string GoRpcError(const absl::Status& status) {
  static constexpr const char* kNames[] = {
      "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
      "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
      "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
      "DataLoss", "Unauthenticated"};
  const auto code = static_cast<size_t>(status.code());
  const std::string name =
      code < std::size(kNames) ? kNames[code] : absl::StrCat("Code(", code, ")");
  return absl::StrCat("rpc error: code = ", name, " desc = ", status.message());
}

// Kubelet's admission failure for an error of its device manager (UnexpectedAdmissionError).
absl::Status Unexpected(absl::StatusCode code, absl::string_view why) {
  return absl::Status(code, absl::StrCat("Allocate failed due to ", why, ", which is unexpected"));
}

}  // namespace

std::map<std::string, int64_t> EffectiveRequests(const PodSpec& pod) {
  std::map<std::string, int64_t> app;
  for (const auto& container : pod.containers) {
    for (const auto& [resource, count] : container.requests) app[resource] += count;
  }
  for (const auto& container : pod.init_containers) {
    for (const auto& [resource, count] : container.requests) {
      app[resource] = std::max<int64_t>(app[resource], count);
    }
  }
  std::erase_if(app, [](const auto& entry) { return entry.second <= 0; });
  return app;
}

void TestKubelet::SetSeed(uint32_t seed) {
  absl::MutexLock lock(&admit_mu_);
  rng_.seed(seed);
}

absl::StatusOr<PodAdmission> TestKubelet::AdmitPod(const PodSpec& pod) {
  return AdmitPodAs(pod, /*from_admit=*/false);
}

absl::StatusOr<PodAdmission> TestKubelet::AdmitPodAs(const PodSpec& pod, bool from_admit) {
  absl::MutexLock admit_lock(&admit_mu_);
  uint64_t uid = 0;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [unused, live] : pods_) {
      if (live.spec.name == pod.name)
        return absl::AlreadyExistsError("pod " + pod.name + " exists");
    }
    uid = next_uid_++;
    pods_[uid] = Pod{pod, from_admit};  // the pod manager knows the pod before admission
  }
  // Devices of init containers that later containers take first (devicesToReuse).
  std::map<std::string, std::set<std::string>> reusable;
  PodAdmission result;
  auto admit = [&](const ContainerSpec& container, bool init) -> absl::Status {
    ContainerAdmission admitted{container.name, {}};
    for (const auto& [resource, count] : container.requests) {
      if (count <= 0) continue;
      auto admission = AllocateContainer(uid, container.name, resource, count, reusable[resource]);
      if (!admission.ok()) return admission.status();
      admitted.resources[resource] = *std::move(admission);
    }
    for (const auto& [resource, admission] : admitted.resources) {
      for (const auto& id : admission.device_ids) {
        if (init) {
          reusable[resource].insert(id);
        } else {
          reusable[resource].erase(id);
        }
      }
    }
    (init ? result.init_containers : result.containers).push_back(std::move(admitted));
    return absl::OkStatus();
  };
  absl::Status status;
  for (const auto& container : pod.init_containers) {
    if (status = admit(container, true); !status.ok()) break;
  }
  for (const auto& container : pod.containers) {
    if (!status.ok()) break;
    status = admit(container, false);
  }
  if (!status.ok()) {
    // The pod fails; kubelet frees its devices (they never reach a running container).
    absl::MutexLock lock(&mu_);
    pods_.erase(uid);
    ForgetPodLocked(uid);
    return status;
  }
  return result;
}

absl::StatusOr<Admission> TestKubelet::AllocateContainer(uint64_t uid, const std::string& container,
                                                         const std::string& resource, int count,
                                                         const std::set<std::string>& reusable) {
  Admission admission;
  std::vector<std::string>& allocated = admission.device_ids;
  std::vector<std::string> available;
  bool preferred_available = false;
  int needed = count;
  {
    absl::MutexLock lock(&mu_);
    FreeDeletedPodsLocked();
    auto devices = devices_.find(resource);
    if (devices == devices_.end()) {
      if (!in_use_.contains(resource)) {
        // Not a device-plugin resource: kubelet's resource check turns the pod away.
        return absl::ResourceExhaustedError(
            absl::StrCat("Node didn't have enough resource: ", resource, ", requested: ", count,
                         ", used: ", RequestedLocked(resource), ", capacity: 0"));
      }
      return Unexpected(absl::StatusCode::kFailedPrecondition,
                        "can't allocate unregistered device " + resource);
    }
    std::vector<std::string> healthy;
    for (const auto& device : devices->second) {
      if (device.healthy) healthy.push_back(device.id);
    }
    if (healthy.empty()) {
      return Unexpected(
          absl::StatusCode::kFailedPrecondition,
          "no healthy devices present; cannot allocate unhealthy devices " + resource);
    }
    std::vector<std::string> reuse(reusable.begin(), reusable.end());
    std::shuffle(reuse.begin(), reuse.end(), rng_);
    for (const auto& id : reuse) {
      if (needed == 0) break;
      allocated.push_back(id);
      --needed;
    }
    admission.reused = allocated;
    if (needed > 0) {
      const auto& in_use = in_use_[resource];
      for (const auto& id : healthy) {
        if (!in_use.contains(id)) available.push_back(id);
      }
      if (available.size() < static_cast<size_t>(needed)) {
        return Unexpected(absl::StatusCode::kResourceExhausted,
                          absl::StrCat("requested number of devices unavailable for ", resource,
                                       ". Requested: ", needed, ", Available: ", available.size()));
      }
      if (auto it = endpoints_.find(resource); it != endpoints_.end()) {
        preferred_available = it->second.preferred_allocation_available;
      }
    }
  }
  if (!StubFor(resource).ok()) {
    return Unexpected(absl::StatusCode::kFailedPrecondition, "unknown Device Plugin " + resource);
  }
  if (needed > 0) {
    std::set<std::string> candidates(available.begin(), available.end());
    std::set<std::string> taken(allocated.begin(), allocated.end());
    auto take_from = [&](std::vector<std::string> ids) {
      std::shuffle(ids.begin(), ids.end(), rng_);  // kubelet walks Go sets: random order
      for (const auto& id : ids) {
        if (needed == 0) return;
        if (!candidates.contains(id) || !taken.insert(id).second) continue;
        allocated.push_back(id);
        --needed;
      }
    };
    if (preferred_available) {
      std::vector<std::string> offered = available;
      offered.insert(offered.end(), allocated.begin(), allocated.end());
      std::vector<std::string> must_include = allocated;
      std::shuffle(offered.begin(), offered.end(), rng_);
      std::shuffle(must_include.begin(), must_include.end(), rng_);
      auto preferred = GetPreferredAllocation(resource, offered, must_include, count);
      if (!preferred.ok()) {
        return Unexpected(preferred.status().code(), GoRpcError(preferred.status()));
      }
      admission.asked_preference = true;
      take_from(*preferred);
    }
    take_from(available);
    if (needed > 0) {
      return Unexpected(absl::StatusCode::kInternal,
                        absl::StrCat("unexpectedly allocated less resources than required. "
                                     "Requested: ",
                                     count, ", Got: ", count - needed));
    }
  }
  std::shuffle(allocated.begin(), allocated.end(), rng_);
  auto response = Allocate(resource, {allocated});
  if (!response.ok()) return Unexpected(response.status().code(), GoRpcError(response.status()));
  if (response->container_responses_size() == 0) {
    return Unexpected(absl::StatusCode::kInternal, "no containers return in allocation response");
  }
  admission.response = response->container_responses(0);

  absl::MutexLock lock(&mu_);
  Allocation record{allocated, {}};
  std::map<std::string, int64_t> numa_of;
  for (const auto& device : devices_[resource]) numa_of[device.id] = device.numa_node.value_or(-1);
  for (const auto& id : allocated) {
    auto it = numa_of.find(id);
    record.by_numa[it == numa_of.end() ? -1 : it->second].push_back(id);
  }
  pod_devices_[uid][container][resource] = std::move(record);
  in_use_[resource].insert(allocated.begin(), allocated.end());
  return admission;
}

bool TestKubelet::DeletePod(const std::string& name) {
  absl::MutexLock lock(&mu_);
  for (auto it = pods_.begin(); it != pods_.end(); ++it) {
    if (it->second.spec.name == name) {
      pods_.erase(it);  // devices stay allocated until FreeDeletedPodsLocked
      return true;
    }
  }
  return false;
}

void TestKubelet::FreeDeletedPodsLocked() {
  const size_t before = pod_devices_.size();
  std::erase_if(pod_devices_, [&](const auto& entry) { return !pods_.contains(entry.first); });
  if (pod_devices_.size() != before) RecomputeAllocatedLocked();
}

void TestKubelet::RecomputeAllocatedLocked() {
  for (auto& [resource, ids] : in_use_) ids.clear();
  for (const auto& [uid, containers] : pod_devices_) {
    for (const auto& [container, resources] : containers) {
      for (const auto& [resource, allocation] : resources) {
        in_use_[resource].insert(allocation.ids.begin(), allocation.ids.end());
      }
    }
  }
}

void TestKubelet::ForgetPodLocked(uint64_t uid) {
  if (pod_devices_.erase(uid) > 0) RecomputeAllocatedLocked();
}

absl::StatusOr<Admission> TestKubelet::Admit(const std::string& resource, int count) {
  PodSpec pod;
  {
    absl::MutexLock lock(&mu_);
    pod.name = absl::StrCat("admit-", ++admit_pods_made_);
  }
  pod.containers.push_back({"main", {{resource, count}}});
  auto admitted = AdmitPodAs(pod, /*from_admit=*/true);
  if (!admitted.ok()) return admitted.status();
  auto& resources = admitted->containers.at(0).resources;
  auto it = resources.find(resource);
  if (it == resources.end()) return Admission{};  // count <= 0
  return std::move(it->second);
}

void TestKubelet::Release(const std::string& resource, const std::vector<std::string>& device_ids) {
  absl::MutexLock lock(&mu_);
  const std::set<std::string> released(device_ids.begin(), device_ids.end());
  auto drop = [&](std::vector<std::string>& ids) {
    std::erase_if(ids, [&](const std::string& id) { return released.contains(id); });
  };
  for (auto& [uid, containers] : pod_devices_) {
    for (auto& [container, resources] : containers) {
      auto it = resources.find(resource);
      if (it == resources.end()) continue;
      drop(it->second.ids);
      for (auto& [numa, ids] : it->second.by_numa) drop(ids);
      std::erase_if(it->second.by_numa, [](const auto& entry) { return entry.second.empty(); });
      if (it->second.ids.empty()) resources.erase(it);
    }
  }
  for (const auto& id : released) in_use_[resource].erase(id);
  // A pod of Admit's that holds nothing any more is gone.
  std::erase_if(pods_, [&](const auto& entry) {
    if (!entry.second.from_admit) return false;
    auto devices = pod_devices_.find(entry.first);
    if (devices != pod_devices_.end()) {
      for (const auto& [container, resources] : devices->second) {
        if (!resources.empty()) return false;
      }
      pod_devices_.erase(devices);
    }
    return true;
  });
}

int64_t TestKubelet::Allocatable(const std::string& resource) const {
  absl::MutexLock lock(&mu_);
  return AllocatableLocked(resource);
}

int64_t TestKubelet::AllocatableLocked(const std::string& resource) const {
  auto it = devices_.find(resource);
  if (it == devices_.end()) return 0;
  return std::count_if(it->second.begin(), it->second.end(),
                       [](const DeviceState& device) { return device.healthy; });
}

int64_t TestKubelet::RequestedLocked(const std::string& resource) const {
  int64_t requested = 0;
  for (const auto& [uid, pod] : pods_) {
    auto effective = EffectiveRequests(pod.spec);
    if (auto it = effective.find(resource); it != effective.end()) requested += it->second;
  }
  return requested;
}

int64_t TestKubelet::Requested(const std::string& resource) const {
  absl::MutexLock lock(&mu_);
  return RequestedLocked(resource);
}

bool TestKubelet::SchedulerFits(const PodSpec& pod) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [resource, request] : EffectiveRequests(pod)) {
    if (AllocatableLocked(resource) - RequestedLocked(resource) < request) return false;
  }
  return true;
}

std::set<std::string> TestKubelet::Allocated(const std::string& resource) const {
  absl::MutexLock lock(&mu_);
  auto it = in_use_.find(resource);
  return it == in_use_.end() ? std::set<std::string>{} : it->second;
}

std::vector<std::string> TestKubelet::LivePods() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [uid, pod] : pods_) names.push_back(pod.spec.name);
  return names;
}

std::vector<podresources::ContainerDevices> TestKubelet::ListedDevicesLocked() const {
  std::vector<podresources::ContainerDevices> listed;
  for (const auto& [uid, pod] : pods_) {
    auto devices = pod_devices_.find(uid);
    if (devices == pod_devices_.end()) continue;
    for (const auto& container : pod.spec.containers) {
      auto resources = devices->second.find(container.name);
      if (resources == devices->second.end()) continue;
      for (const auto& [resource, allocation] : resources->second) {
        podresources::ContainerDevices entry{
            "default", pod.spec.name, container.name, resource, {}};
        for (const auto& [numa, ids] : allocation.by_numa) {
          entry.device_ids.insert(entry.device_ids.end(), ids.begin(), ids.end());
        }
        if (!entry.device_ids.empty()) listed.push_back(std::move(entry));
      }
    }
  }
  return listed;
}

std::vector<podresources::ContainerDevices> TestKubelet::ListedDevices() const {
  absl::MutexLock lock(&mu_);
  return ListedDevicesLocked();
}

void TestKubelet::HandleList(v1::ListPodResourcesResponse* response) {
  absl::MutexLock lock(&mu_);
  FreeDeletedPodsLocked();  // kubelet's List updates the allocations first
  ++list_calls_;
  for (const auto& [uid, pod] : pods_) {
    auto* listed = response->add_pod_resources();
    listed->set_name(pod.spec.name);
    listed->set_namespace_("default");
    auto devices = pod_devices_.find(uid);
    for (const auto& container : pod.spec.containers) {  // app containers only
      auto* listed_container = listed->add_containers();
      listed_container->set_name(container.name);
      if (devices == pod_devices_.end()) continue;
      auto resources = devices->second.find(container.name);
      if (resources == devices->second.end()) continue;
      for (const auto& [resource, allocation] : resources->second) {
        for (const auto& [numa, ids] : allocation.by_numa) {  // one entry per NUMA node
          auto* entry = listed_container->add_devices();
          entry->set_resource_name(resource);
          for (const auto& id : ids) entry->add_device_ids(id);
          entry->mutable_topology()->add_nodes()->set_id(numa);
        }
      }
    }
  }
}

void TestKubelet::HandleGetAllocatable(v1::AllocatableResourcesResponse* response) {
  absl::MutexLock lock(&mu_);
  for (const auto& [resource, devices] : devices_) {
    for (const auto& device : devices) {
      if (!device.healthy) continue;
      auto* entry = response->add_devices();
      entry->set_resource_name(resource);
      entry->add_device_ids(device.id);
      if (device.numa_node) entry->mutable_topology()->add_nodes()->set_id(*device.numa_node);
    }
  }
}

int TestKubelet::ListCalls() const {
  absl::MutexLock lock(&mu_);
  return list_calls_;
}

bool TestKubelet::WaitForListCalls(int count, milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return list_calls_ >= count; };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::FromChrono(timeout));
}

absl::Status TestKubelet::StartPodResources(const std::string& socket_path) {
  absl::MutexLock lock(&pod_resources_mu_);
  if (pod_resources_server_) {
    return absl::FailedPreconditionError("PodResources already served on " + pod_resources_socket_);
  }
  pod_resources_socket_ = socket_path;
  return ServePodResources();
}

std::string TestKubelet::pod_resources_socket() const {
  absl::MutexLock lock(&pod_resources_mu_);
  return pod_resources_socket_;
}

absl::Status TestKubelet::ServePodResources() {
  if (pod_resources_socket_.empty()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::remove(pod_resources_socket_, ec);
  if (!pod_resources_service_) pod_resources_service_ = std::make_unique<PodResourcesService>(this);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + pod_resources_socket_, grpc::InsecureServerCredentials());
  builder.RegisterService(pod_resources_service_.get());
  pod_resources_server_ = builder.BuildAndStart();
  if (!pod_resources_server_) {
    return absl::UnavailableError("test kubelet cannot listen on " + pod_resources_socket_);
  }
  return absl::OkStatus();
}

void TestKubelet::CancelStream(const std::string& resource) {
  absl::MutexLock lock(&mu_);
  auto it = endpoints_.find(resource);
  if (it != endpoints_.end() && it->second.stream_context) it->second.stream_context->TryCancel();
}

}  // namespace nvdp::testing
