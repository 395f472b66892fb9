// Registration with kubelet: one Register RPC over kubelet.sock for one resource.
//
// Stateless apart from the optional Cancellation, which lets another thread end a call in flight
// (a stop signal, or kubelet restarting meanwhile: kubelet answers Register only after dialling
// the plugin back, for up to 10 s). Safe to call from any thread. The caller decides when to retry
// (see app::PluginManager).
#pragma once

#include <chrono>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class ClientContext;
}

namespace nvdp::kubelet {

inline constexpr char kApiVersion[] = "v1beta1";
inline constexpr char kDefaultKubeletSocket[] = "/var/lib/kubelet/device-plugins/kubelet.sock";

struct Registration {
  std::string endpoint;       // our socket's file name, relative to the device-plugin dir
  std::string resource_name;  // e.g. "nvidia.com/gpu"
};

// Cancels one Register call from another thread. Cancel() before the call starts makes the call
// return Cancelled at once. Thread-safe; one Cancellation per call.
class Cancellation {
 public:
  void Cancel();

 private:
  friend absl::Status Register(const std::string&, const Registration&, std::chrono::milliseconds,
                               Cancellation*);
  // Returns false when already cancelled.
  bool Attach(grpc::ClientContext* context);
  void Detach();

  absl::Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// Sends Register(version v1beta1, endpoint, resource name, options with
// get_preferred_allocation_available) to the kubelet at `kubelet_socket`. Fails fast with
// Unavailable when kubelet.sock is missing or refuses connections, with DeadlineExceeded after
// `timeout`, Cancelled when `cancellation` fires, or with kubelet's own error.
absl::Status Register(const std::string& kubelet_socket, const Registration& registration,
                      std::chrono::milliseconds timeout, Cancellation* cancellation = nullptr);

}  // namespace nvdp::kubelet
