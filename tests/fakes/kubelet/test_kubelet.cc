#include "fakes/kubelet/test_kubelet.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
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
  absl::MutexLock lock(&mu_);
  serving_since_ = std::chrono::steady_clock::now();
  return absl::OkStatus();
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
  if (options.killed) LeaveStaleSocket(socket_path());
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
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kDialTimeout);
    context.set_wait_for_ready(true);
    v1beta1::DevicePluginOptions options;
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
  endpoints_[resource] = Endpoint{endpoint_path, stub, stream_context};
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

absl::StatusOr<Admission> TestKubelet::Admit(const std::string& resource, int count) {
  std::vector<std::string> available;
  {
    absl::MutexLock lock(&mu_);
    const auto& in_use = in_use_[resource];
    for (const auto& device : devices_[resource]) {
      if (device.healthy && !in_use.contains(device.id)) available.push_back(device.id);
    }
  }
  if (available.size() < static_cast<size_t>(count)) {
    return absl::ResourceExhaustedError(absl::StrCat("insufficient ", resource, ": requested ",
                                                     count, ", available ", available.size()));
  }
  auto preferred = GetPreferredAllocation(resource, available, {}, count);
  if (!preferred.ok()) return preferred.status();

  // Like kubelet: keep the preferred IDs that are candidates, then fill any shortfall.
  std::vector<std::string> chosen;
  for (const auto& id : *preferred) {
    if (chosen.size() < static_cast<size_t>(count) &&
        std::find(available.begin(), available.end(), id) != available.end() &&
        std::find(chosen.begin(), chosen.end(), id) == chosen.end()) {
      chosen.push_back(id);
    }
  }
  for (const auto& id : available) {
    if (chosen.size() >= static_cast<size_t>(count)) break;
    if (std::find(chosen.begin(), chosen.end(), id) == chosen.end()) chosen.push_back(id);
  }

  auto response = Allocate(resource, {chosen});
  if (!response.ok()) return response.status();
  if (response->container_responses_size() == 0) {
    return absl::InternalError("plugin returned an empty Allocate response");
  }
  absl::MutexLock lock(&mu_);
  in_use_[resource].insert(chosen.begin(), chosen.end());
  return Admission{chosen, response->container_responses(0)};
}

void TestKubelet::Release(const std::string& resource, const std::vector<std::string>& device_ids) {
  absl::MutexLock lock(&mu_);
  for (const auto& id : device_ids) in_use_[resource].erase(id);
}

void TestKubelet::CancelStream(const std::string& resource) {
  absl::MutexLock lock(&mu_);
  auto it = endpoints_.find(resource);
  if (it != endpoints_.end() && it->second.stream_context) it->second.stream_context->TryCancel();
}

}  // namespace nvdp::testing
