// DlNvml: the real Nvml, backed by libnvidia-ml.so.1 loaded with dlopen (see
// dl_nvml.h).
//
// Thread-safety: NVML itself is thread-safe, so the query methods call straight
// through. The event set is guarded by `events_mu_`, which WaitForEvent holds
// while it blocks in nvmlEventSetWait_v2, so a concurrent WatchEvents (or the
// destructor) never frees a set another thread is waiting on.
#include "nvml/dl_nvml.h"

#include <dlfcn.h>

#include <cstring>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "nvml/nvml_abi.h"
#include "spdlog/spdlog.h"

namespace nvdp::nvml {

// Every symbol LoadNvml requires, by versioned name.
#define NVDP_NVML_REQUIRED_SYMBOLS(X)   \
  X(nvmlInit_v2)                        \
  X(nvmlShutdown)                       \
  X(nvmlErrorString)                    \
  X(nvmlSystemGetDriverVersion)         \
  X(nvmlDeviceGetCount_v2)              \
  X(nvmlDeviceGetHandleByIndex_v2)      \
  X(nvmlDeviceGetHandleByUUID)          \
  X(nvmlDeviceGetUUID)                  \
  X(nvmlDeviceGetName)                  \
  X(nvmlDeviceGetIndex)                 \
  X(nvmlDeviceGetMinorNumber)           \
  X(nvmlDeviceGetMemoryInfo)            \
  X(nvmlDeviceGetPciInfo_v3)            \
  X(nvmlDeviceGetCudaComputeCapability) \
  X(nvmlEventSetCreate)                 \
  X(nvmlDeviceRegisterEvents)           \
  X(nvmlDeviceGetSupportedEventTypes)   \
  X(nvmlEventSetWait_v2)                \
  X(nvmlEventSetFree)

// Used when present (older drivers lack them).
#define NVDP_NVML_OPTIONAL_SYMBOLS(X) X(nvmlDeviceGetMemoryInfo_v2) X(nvmlDeviceGetMigMode)

namespace {

// The resolved entry points. Member names are the C symbol names.
struct Api {
#define NVDP_NVML_DECLARE(name) name##_fn name = nullptr;
  NVDP_NVML_REQUIRED_SYMBOLS(NVDP_NVML_DECLARE)
  NVDP_NVML_OPTIONAL_SYMBOLS(NVDP_NVML_DECLARE)
#undef NVDP_NVML_DECLARE
};

// dlsym returns an object pointer; copy its bits into the function pointer (the
// POSIX way, without a conditionally-supported cast).
template <typename Fn>
Fn SymbolAs(void* symbol) {
  static_assert(sizeof(Fn) == sizeof(void*));
  Fn fn;
  std::memcpy(&fn, &symbol, sizeof(fn));
  return fn;
}

absl::StatusCode CodeFor(nvmlReturn_t ret) {
  switch (ret) {
    case NVML_SUCCESS:
      return absl::StatusCode::kOk;
    case NVML_ERROR_NOT_FOUND:
      return absl::StatusCode::kNotFound;
    case NVML_ERROR_INVALID_ARGUMENT:
      return absl::StatusCode::kInvalidArgument;
    case NVML_ERROR_NO_PERMISSION:
      return absl::StatusCode::kPermissionDenied;
    case NVML_ERROR_UNINITIALIZED:
    case NVML_ERROR_DRIVER_NOT_LOADED:
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH:
    case NVML_ERROR_LIBRARY_NOT_FOUND:
    case NVML_ERROR_FUNCTION_NOT_FOUND:
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
      return absl::StatusCode::kFailedPrecondition;
    case NVML_ERROR_NOT_SUPPORTED:
      return absl::StatusCode::kUnimplemented;
    case NVML_ERROR_TIMEOUT:
      return absl::StatusCode::kDeadlineExceeded;
    case NVML_ERROR_GPU_IS_LOST:
    case NVML_ERROR_GPU_NOT_FOUND:
    case NVML_ERROR_RESET_REQUIRED:
    case NVML_ERROR_INSUFFICIENT_POWER:
    case NVML_ERROR_IRQ_ISSUE:
    case NVML_ERROR_IN_USE:
    case NVML_ERROR_NOT_READY:
      return absl::StatusCode::kUnavailable;
    case NVML_ERROR_MEMORY:
    case NVML_ERROR_INSUFFICIENT_RESOURCES:
      return absl::StatusCode::kResourceExhausted;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

class DlNvml final : public Nvml {
 public:
  // Takes ownership of `handle` (from dlopen); `api` was resolved from it.
  DlNvml(void* handle, const Api& api) : handle_(handle), api_(api) {}

  ~DlNvml() override {
    {
      absl::MutexLock lock(&events_mu_);
      FreeEventSetLocked();
    }
    dlclose(handle_);
  }

  DlNvml(const DlNvml&) = delete;
  DlNvml& operator=(const DlNvml&) = delete;

  absl::Status Init() override { return Check(api_.nvmlInit_v2(), "nvmlInit_v2"); }

  absl::Status Shutdown() override { return Check(api_.nvmlShutdown(), "nvmlShutdown"); }

  absl::StatusOr<std::string> DriverVersion() override {
    char buf[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE] = {};
    if (auto s =
            Check(api_.nvmlSystemGetDriverVersion(buf, sizeof(buf)), "nvmlSystemGetDriverVersion");
        !s.ok()) {
      return s;
    }
    return std::string(buf);
  }

  absl::StatusOr<unsigned> GpuCount() override {
    unsigned count = 0;
    if (auto s = Check(api_.nvmlDeviceGetCount_v2(&count), "nvmlDeviceGetCount_v2"); !s.ok()) {
      return s;
    }
    return count;
  }

  absl::StatusOr<GpuInfo> GpuByIndex(unsigned index) override {
    nvmlDevice_t device = nullptr;
    if (auto s = Check(api_.nvmlDeviceGetHandleByIndex_v2(index, &device),
                       "nvmlDeviceGetHandleByIndex_v2", absl::StrCat(index));
        !s.ok()) {
      return s;
    }
    return Describe(device, absl::StrCat("index ", index));
  }

  absl::StatusOr<GpuInfo> GpuByUuid(const std::string& uuid) override {
    auto device = HandleByUuid(uuid);
    if (!device.ok()) return device.status();
    return Describe(*device, uuid);
  }

  absl::StatusOr<std::vector<MigDeviceInfo>> MigDevices(unsigned /*index*/) override {
    return absl::UnimplementedError("MIG enumeration is not implemented yet");
  }

  absl::Status WatchEvents(const std::vector<std::string>& gpu_uuids,
                           uint64_t event_types) override {
    absl::MutexLock lock(&events_mu_);
    FreeEventSetLocked();
    nvmlEventSet_t set = nullptr;
    if (auto s = Check(api_.nvmlEventSetCreate(&set), "nvmlEventSetCreate"); !s.ok()) {
      return s;
    }
    event_set_ = set;
    for (const std::string& uuid : gpu_uuids) {
      absl::Status s = RegisterLocked(uuid, event_types);
      if (!s.ok()) {
        FreeEventSetLocked();
        return s;
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<Event>> WaitForEvent(std::chrono::milliseconds timeout) override {
    absl::MutexLock lock(&events_mu_);
    if (event_set_ == nullptr) {
      return absl::FailedPreconditionError("WaitForEvent: no event set (call WatchEvents first)");
    }
    const auto ms = timeout.count() < 0 ? 0 : timeout.count();
    const unsigned timeout_ms = ms > 0xFFFFFFFFLL ? 0xFFFFFFFFu : static_cast<unsigned>(ms);
    nvmlEventData_t data{};
    nvmlReturn_t ret = api_.nvmlEventSetWait_v2(event_set_, &data, timeout_ms);
    if (ret == NVML_ERROR_TIMEOUT) return std::optional<Event>();
    if (auto s = Check(ret, "nvmlEventSetWait_v2"); !s.ok()) return s;

    Event event;
    event.type = data.eventType;
    event.xid = data.eventType == nvmlEventTypeXidCriticalError ? data.eventData : 0;
    auto uuid = UuidOf(data.device);
    if (!uuid.ok()) return uuid.status();
    event.gpu_uuid = *std::move(uuid);
    return std::optional<Event>(std::move(event));
  }

 private:
  // Turns an NVML return code into a status naming the call, e.g.
  // "nvmlDeviceGetHandleByUUID(GPU-...): Not Found (6)".
  absl::Status Check(nvmlReturn_t ret, absl::string_view call, absl::string_view arg = "") const {
    if (ret == NVML_SUCCESS) return absl::OkStatus();
    const char* text = api_.nvmlErrorString(ret);
    return absl::Status(
        CodeFor(ret), absl::StrCat(call, "(", arg, "): ", text != nullptr ? text : "unknown error",
                                   " (", static_cast<int>(ret), ")"));
  }

  absl::StatusOr<nvmlDevice_t> HandleByUuid(const std::string& uuid) const {
    nvmlDevice_t device = nullptr;
    if (auto s = Check(api_.nvmlDeviceGetHandleByUUID(uuid.c_str(), &device),
                       "nvmlDeviceGetHandleByUUID", uuid);
        !s.ok()) {
      return s;
    }
    return device;
  }

  absl::StatusOr<std::string> UuidOf(nvmlDevice_t device) const {
    char buf[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
    if (auto s = Check(api_.nvmlDeviceGetUUID(device, buf, sizeof(buf)), "nvmlDeviceGetUUID");
        !s.ok()) {
      return s;
    }
    return std::string(buf);
  }

  absl::StatusOr<uint64_t> TotalMemory(nvmlDevice_t device, const std::string& label) const {
    if (api_.nvmlDeviceGetMemoryInfo_v2 != nullptr) {
      nvmlMemory_v2_t mem{};
      mem.version = nvmlMemory_v2;
      nvmlReturn_t ret = api_.nvmlDeviceGetMemoryInfo_v2(device, &mem);
      if (ret == NVML_SUCCESS) return mem.total;
      // Drivers that export the symbol but reject it fall back to v1.
      if (ret != NVML_ERROR_NOT_SUPPORTED && ret != NVML_ERROR_FUNCTION_NOT_FOUND &&
          ret != NVML_ERROR_ARGUMENT_VERSION_MISMATCH) {
        return Check(ret, "nvmlDeviceGetMemoryInfo_v2", label);
      }
    }
    nvmlMemory_t mem{};
    if (auto s =
            Check(api_.nvmlDeviceGetMemoryInfo(device, &mem), "nvmlDeviceGetMemoryInfo", label);
        !s.ok()) {
      return s;
    }
    return mem.total;
  }

  // Reads every property of one full GPU. `label` names the GPU in errors until
  // its UUID is known.
  absl::StatusOr<GpuInfo> Describe(nvmlDevice_t device, const std::string& label) const {
    GpuInfo info;
    auto uuid = UuidOf(device);
    if (!uuid.ok()) {
      return absl::Status(uuid.status().code(), absl::StrCat(label, ": ", uuid.status().message()));
    }
    info.uuid = *std::move(uuid);
    const std::string& id = info.uuid;

    char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = {};
    if (auto s = Check(api_.nvmlDeviceGetName(device, name, sizeof(name)), "nvmlDeviceGetName", id);
        !s.ok()) {
      return s;
    }
    info.name = name;
    if (auto s = Check(api_.nvmlDeviceGetIndex(device, &info.index), "nvmlDeviceGetIndex", id);
        !s.ok()) {
      return s;
    }
    if (auto s = Check(api_.nvmlDeviceGetMinorNumber(device, &info.minor),
                       "nvmlDeviceGetMinorNumber", id);
        !s.ok()) {
      return s;
    }
    // Upstream treats a memory query failure as a warning: the GPU is still advertised.
    if (auto memory = TotalMemory(device, id); memory.ok()) {
      info.memory_bytes = *memory;
    } else {
      info.memory_error = std::string(memory.status().message());
    }
    if (auto s =
            Check(api_.nvmlDeviceGetCudaComputeCapability(device, &info.cc_major, &info.cc_minor),
                  "nvmlDeviceGetCudaComputeCapability", id);
        !s.ok()) {
      return s;
    }
    nvmlPciInfo_t pci{};
    if (auto s = Check(api_.nvmlDeviceGetPciInfo_v3(device, &pci), "nvmlDeviceGetPciInfo_v3", id);
        !s.ok()) {
      return s;
    }
    info.pci_bus_id = std::string(pci.busId, strnlen(pci.busId, sizeof(pci.busId)));
    info.pci_device_id = pci.pciDeviceId;
    if (api_.nvmlDeviceGetMigMode != nullptr) {
      unsigned current = 0;
      unsigned pending = 0;
      nvmlReturn_t ret = api_.nvmlDeviceGetMigMode(device, &current, &pending);
      if (ret == NVML_SUCCESS) {
        info.mig_capable = true;
        info.mig_enabled = current == 1;
      } else if (ret != NVML_ERROR_NOT_SUPPORTED) {
        return Check(ret, "nvmlDeviceGetMigMode", id);
      }
    }
    return info;
  }

  absl::Status RegisterLocked(const std::string& uuid, uint64_t event_types)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(events_mu_) {
    auto device = HandleByUuid(uuid);
    if (!device.ok()) return device.status();
    unsigned long long supported = 0;
    if (auto s = Check(api_.nvmlDeviceGetSupportedEventTypes(*device, &supported),
                       "nvmlDeviceGetSupportedEventTypes", uuid);
        !s.ok()) {
      return s;
    }
    const unsigned long long types = event_types & supported;
    if (types == 0) {
      spdlog::warn(
          "{}: none of the event types {:#x} is supported (supported: {:#x}); "
          "not watched",
          uuid, event_types, supported);
      return absl::OkStatus();
    }
    nvmlReturn_t ret = api_.nvmlDeviceRegisterEvents(*device, types, event_set_);
    if (ret == NVML_ERROR_NOT_SUPPORTED) {
      spdlog::warn("{}: event registration not supported; not watched", uuid);
      return absl::OkStatus();
    }
    return Check(ret, "nvmlDeviceRegisterEvents", uuid);
  }

  void FreeEventSetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(events_mu_) {
    if (event_set_ == nullptr) return;
    nvmlReturn_t ret = api_.nvmlEventSetFree(event_set_);
    // UNINITIALIZED: NVML was shut down first and the set went with it.
    if (ret != NVML_SUCCESS && ret != NVML_ERROR_UNINITIALIZED) {
      spdlog::warn("{}", std::string(Check(ret, "nvmlEventSetFree").message()));
    }
    event_set_ = nullptr;
  }

  void* const handle_;
  const Api api_;

  absl::Mutex events_mu_;
  nvmlEventSet_t event_set_ ABSL_GUARDED_BY(events_mu_) = nullptr;
};

std::vector<std::string> NvmlLibraryCandidates(const std::string& driver_root) {
  static constexpr const char* kDirs[] = {
      "/usr/lib64",
      "/usr/lib/x86_64-linux-gnu",
      "/usr/lib/aarch64-linux-gnu",
      "/usr/lib",
  };
  static constexpr const char* kSoname = "libnvidia-ml.so.1";
  std::string root = driver_root;
  while (!root.empty() && root.back() == '/') root.pop_back();

  std::vector<std::string> candidates;
  for (const char* dir : kDirs) candidates.push_back(absl::StrCat(root, dir, "/", kSoname));
  // Then the bare soname, which lets the dynamic loader search (ld.so.cache, LD_LIBRARY_PATH):
  // where the NVIDIA container toolkit put the driver's libraries, or a host install.
  candidates.push_back(kSoname);
  return candidates;
}

absl::StatusOr<std::unique_ptr<Nvml>> LoadNvml(const std::vector<std::string>& candidates) {
  std::vector<std::string> failures;
  bool opened_any = false;
  for (const std::string& path : candidates) {
    dlerror();
    void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* err = dlerror();
      failures.push_back(absl::StrCat(path, ": ", err != nullptr ? err : "dlopen failed"));
      continue;
    }
    opened_any = true;
    Api api;
    std::vector<std::string> missing;
#define NVDP_NVML_RESOLVE(name)                           \
  if (void* sym = dlsym(handle, #name); sym != nullptr) { \
    api.name = SymbolAs<name##_fn>(sym);                  \
  } else {                                                \
    missing.push_back(#name);                             \
  }
    NVDP_NVML_REQUIRED_SYMBOLS(NVDP_NVML_RESOLVE)
#undef NVDP_NVML_RESOLVE
#define NVDP_NVML_RESOLVE_OPTIONAL(name) \
  if (void* sym = dlsym(handle, #name); sym != nullptr) api.name = SymbolAs<name##_fn>(sym);
    NVDP_NVML_OPTIONAL_SYMBOLS(NVDP_NVML_RESOLVE_OPTIONAL)
#undef NVDP_NVML_RESOLVE_OPTIONAL
    if (!missing.empty()) {
      failures.push_back(
          absl::StrCat(path, ": missing NVML symbol(s) ", absl::StrJoin(missing, ", ")));
      dlclose(handle);
      continue;
    }
    return std::unique_ptr<Nvml>(new DlNvml(handle, api));
  }
  std::string message =
      absl::StrCat("cannot load NVML (libnvidia-ml.so.1); tried: ",
                   failures.empty() ? "no candidates" : absl::StrJoin(failures, "; "));
  return opened_any ? absl::FailedPreconditionError(message) : absl::NotFoundError(message);
}

}  // namespace nvdp::nvml
