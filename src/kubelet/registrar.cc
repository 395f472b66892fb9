#include "kubelet/registrar.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "deviceplugin/v1beta1/api.grpc.pb.h"
#include "rpc/unix_channel.h"

namespace nvdp::kubelet {

void Cancellation::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

bool Cancellation::Attach(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return false;
  context_ = context;
  return true;
}

void Cancellation::Detach() {
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
}

absl::Status Register(const std::string& kubelet_socket, const Registration& registration,
                      std::chrono::milliseconds timeout, Cancellation* cancellation) {
  auto channel = rpc::UnixChannel(kubelet_socket);
  auto stub = v1beta1::Registration::NewStub(channel);

  v1beta1::RegisterRequest request;
  request.set_version(kApiVersion);
  request.set_endpoint(registration.endpoint);
  request.set_resource_name(registration.resource_name);
  request.mutable_options()->set_get_preferred_allocation_available(true);

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  if (cancellation != nullptr && !cancellation->Attach(&context)) {
    return absl::CancelledError(
        absl::StrCat("registering ", registration.resource_name, ": cancelled before it started"));
  }
  v1beta1::Empty response;
  grpc::Status status = stub->Register(&context, request, &response);
  if (cancellation != nullptr) cancellation->Detach();
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("registering ", registration.resource_name, " with kubelet at ",
                                   kubelet_socket, ": ", status.error_message()));
}

}  // namespace nvdp::kubelet
