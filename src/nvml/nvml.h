// The NVIDIA Management Library, in project terms.
//
// `Nvml` is the only door to the driver: discovery (GPUs, their properties) and health events.
// The real implementation (`DlNvml`, dl_nvml.h) dlopens libnvidia-ml.so.1 and is the only code that
// knows NVML's C ABI; tests use the same class against the fake library under tests/fakes/nvml, or
// a hand-written fake of this interface.
//
// Thread-safety: implementations must be safe to call from several threads at once (NVML is).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nvdp::nvml {

// Properties of one full GPU as NVML reports them.
struct GpuInfo {
  std::string uuid;           // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
  unsigned index = 0;         // NVML index (nvmlDeviceGetHandleByIndex_v2)
  unsigned minor = 0;         // /dev/nvidia<minor>
  std::string name;           // "NVIDIA A100-SXM4-40GB"
  uint64_t memory_bytes = 0;  // total device memory; 0 when NVML could not report it
  std::string memory_error;   // why memory_bytes is 0 (a warning, not a discovery failure)
  int cc_major = 0;           // CUDA compute capability
  int cc_minor = 0;
  std::string pci_bus_id;      // NVML form: "00000000:07:00.0" (8-digit domain, upper-case hex)
  uint32_t pci_device_id = 0;  // (deviceId << 16) | vendorId
  // nvmlDeviceGetMigMode: NOT_SUPPORTED (or a driver without the symbol) means not MIG-capable;
  // current mode 1 means MIG is enabled.
  bool mig_capable = false;
  bool mig_enabled = false;
};

// One MIG device (a compute instance inside a GPU instance) of a MIG-enabled GPU, as NVML
// reports it through the MIG device handle and its parent.
struct MigDeviceInfo {
  std::string uuid;          // "MIG-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
  unsigned mig_index = 0;    // slot on the parent (nvmlDeviceGetMigDeviceHandleByIndex)
  unsigned gi_id = 0;        // nvmlDeviceGetGpuInstanceId
  unsigned ci_id = 0;        // nvmlDeviceGetComputeInstanceId
  // go-nvlib's profile name built from the GI/CI profiles and the memory fraction, e.g. "1g.5gb",
  // "1g.5gb+me", "1c.3g.20gb" (see docs/mig.md).
  std::string profile;
  uint64_t memory_bytes = 0;  // nvmlDeviceAttributes_t.memorySizeMB in bytes
  unsigned multiprocessor_count = 0;
  unsigned gi_slice_count = 0;
  unsigned ci_slice_count = 0;
  // The rest of nvmlDeviceAttributes_t, for the single strategy's "identical attributes" rule.
  unsigned shared_copy_engines = 0;
  unsigned shared_decoders = 0;
  unsigned shared_encoders = 0;
  unsigned shared_jpegs = 0;
  unsigned shared_ofas = 0;
};

// One health-relevant event (only Xid critical errors carry a code).
struct Event {
  std::string gpu_uuid;  // the full GPU's UUID, also for events attributed to a MIG device
  uint64_t type = 0;     // NVML event type bit (0x8 = Xid critical error)
  uint64_t xid = 0;      // Xid number for Xid events, else 0
  // The MIG GPU/compute instance the event is attributable to; nullopt when NVML says 0xFFFFFFFF
  // (the whole GPU).
  std::optional<unsigned> gi_id{};
  std::optional<unsigned> ci_id{};
};

// Event type bits (NVML's values).
inline constexpr uint64_t kEventSingleBitEcc = 0x1;
inline constexpr uint64_t kEventDoubleBitEcc = 0x2;
inline constexpr uint64_t kEventXidCritical = 0x8;

class Nvml {
 public:
  virtual ~Nvml() = default;

  // Reference-counted like NVML itself: each successful Init needs one Shutdown.
  virtual absl::Status Init() = 0;
  virtual absl::Status Shutdown() = 0;

  virtual absl::StatusOr<std::string> DriverVersion() = 0;
  virtual absl::StatusOr<unsigned> GpuCount() = 0;
  // REQUIRES: index < GpuCount().
  virtual absl::StatusOr<GpuInfo> GpuByIndex(unsigned index) = 0;
  // NotFound for a UUID the driver does not know.
  virtual absl::StatusOr<GpuInfo> GpuByUuid(const std::string& uuid) = 0;
  // The MIG devices of GPU `index` in slot order; empty when MIG is off or unsupported.
  // REQUIRES: index < GpuCount().
  virtual absl::StatusOr<std::vector<MigDeviceInfo>> MigDevices(unsigned index) = 0;

  // Health events. Register the given event types (masked by what each GPU supports) for the listed
  // GPUs, then wait. WaitForEvent returns nullopt on timeout; an error means the event set is
  // broken.
  virtual absl::Status WatchEvents(const std::vector<std::string>& gpu_uuids,
                                   uint64_t event_types) = 0;
  virtual absl::StatusOr<std::optional<Event>> WaitForEvent(std::chrono::milliseconds timeout) = 0;
};

}  // namespace nvdp::nvml
