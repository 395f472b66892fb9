// The plugin's view of kubelet's PodResources API: which device IDs kubelet has given to the app
// containers of the pods it runs (kubelet's List leaves init containers out).
//
// Lister is an interface, so tests and the share ledger can fake it. MakeGrpcLister returns the
// real client: it owns its gRPC channel (dialled lazily, dialled afresh after a failure so that a
// restarted kubelet is reached at once) and is thread-safe; List calls may overlap.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nvdp::podresources {

inline constexpr char kDefaultSocket[] = "/var/lib/kubelet/pod-resources/kubelet.sock";
// Responses larger than this are refused (kubelet's own answers on a large node stay far below).
inline constexpr int kMaxResponseBytes = 16 << 20;

// One app container's devices of one resource, as kubelet's List reports them.
struct ContainerDevices {
  std::string pod_namespace, pod_name, container_name, resource_name;
  std::vector<std::string> device_ids;

  bool operator==(const ContainerDevices&) const = default;
};

class Lister {
 public:
  virtual ~Lister() = default;
  // One List call, flattened to one entry per (container, resource) with at least one device.
  // Kubelet reports a container's devices of one resource as one entry per NUMA node; those are
  // merged (IDs in the order received, duplicates dropped). Entries come in the order kubelet
  // lists them.
  virtual absl::StatusOr<std::vector<ContainerDevices>> List() = 0;
};

// The real client: gRPC over the unix socket at `socket_path`, each call bounded by `timeout`.
// Errors name the socket and say what went wrong, e.g. "pod-resources socket /x/y: not found"
// (Unavailable), "... List: unavailable: ...", "... List: no answer within 2s"
// (DeadlineExceeded), "... List: response over the 16 MiB limit" (ResourceExhausted); text that
// comes from the peer is cut to a bounded length.
std::unique_ptr<Lister> MakeGrpcLister(std::string socket_path,
                                       absl::Duration timeout = absl::Seconds(2));

}  // namespace nvdp::podresources
