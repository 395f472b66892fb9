// DlNvml: the real Nvml, backed by libnvidia-ml.so.1 loaded with dlopen (see
// dl_nvml.h).
//
// Thread-safety: NVML itself is thread-safe, so the query methods call straight
// through. The event set is guarded by `events_mu_`, which WaitForEvent does not
// hold while it blocks in nvmlEventSetWait_v2: it counts itself as a waiter on the
// set instead. A WatchEvents meanwhile replaces the set without waiting and leaves
// the old one to its last waiter to free, so no set is freed under a waiter and a
// health monitor replaced on reload does not hold up the daemon for a wait period.
// The destructor waits for the waiters.
#include "nvml/dl_nvml.h"

#include <dlfcn.h>

#include <cstring>
#include <map>
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

// MIG enumeration (MigDevices). Optional as a group: a driver without them has no MIG.
#define NVDP_NVML_MIG_SYMBOLS(X)           \
  X(nvmlDeviceGetMaxMigDeviceCount)        \
  X(nvmlDeviceGetMigDeviceHandleByIndex)   \
  X(nvmlDeviceIsMigDeviceHandle)           \
  X(nvmlDeviceGetGpuInstanceId)            \
  X(nvmlDeviceGetComputeInstanceId)        \
  X(nvmlDeviceGetAttributes_v2)            \
  X(nvmlDeviceGetGpuInstanceById)          \
  X(nvmlGpuInstanceGetInfo)                \
  X(nvmlGpuInstanceGetComputeInstanceById) \
  X(nvmlComputeInstanceGetInfo_v2)         \
  X(nvmlDeviceGetGpuInstanceProfileInfo)   \
  X(nvmlGpuInstanceGetComputeInstanceProfileInfo)

// Used when present (older drivers lack them).
#define NVDP_NVML_OPTIONAL_SYMBOLS(X) \
  X(nvmlDeviceGetMemoryInfo_v2) X(nvmlDeviceGetMigMode) NVDP_NVML_MIG_SYMBOLS(X)

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

// Compute slices implied by a GPU-instance profile index, as go-nvlib reads them; nullopt for an
// index it does not know (3_SLICE_GFX and anything newer).
std::optional<unsigned> GiSlices(unsigned gi_index) {
  switch (gi_index) {
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE:
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1:
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2:
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_GFX:
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_NO_ME:
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME:
      return 1;
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_GFX:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_NO_ME:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME:
      return 2;
    case NVML_GPU_INSTANCE_PROFILE_3_SLICE:
      return 3;
    case NVML_GPU_INSTANCE_PROFILE_4_SLICE:
    case NVML_GPU_INSTANCE_PROFILE_4_SLICE_GFX:
      return 4;
    case NVML_GPU_INSTANCE_PROFILE_6_SLICE:
      return 6;
    case NVML_GPU_INSTANCE_PROFILE_7_SLICE:
      return 7;
    case NVML_GPU_INSTANCE_PROFILE_8_SLICE:
      return 8;
    default:
      return std::nullopt;
  }
}

// Compute slices implied by a compute-instance profile index.
std::optional<unsigned> CiSlices(unsigned ci_index) {
  switch (ci_index) {
    case NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE:
    case NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE_REV1:
      return 1;
    case NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE:
      return 2;
    case NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE:
      return 3;
    case NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE:
      return 4;
    case NVML_COMPUTE_INSTANCE_PROFILE_6_SLICE:
      return 6;
    case NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE:
    case NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE_NVL:
      return 7;
    case NVML_COMPUTE_INSTANCE_PROFILE_8_SLICE:
      return 8;
    default:
      return std::nullopt;
  }
}

absl::string_view GiSuffix(unsigned gi_index) {
  switch (gi_index) {
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1:
      return "+me";
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME:
      return "+me.all";
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_GFX:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_GFX:
    case NVML_GPU_INSTANCE_PROFILE_4_SLICE_GFX:
      return "+gfx";
    case NVML_GPU_INSTANCE_PROFILE_1_SLICE_NO_ME:
    case NVML_GPU_INSTANCE_PROFILE_2_SLICE_NO_ME:
      return "-me";
    default:
      return "";
  }
}

}  // namespace

absl::StatusOr<std::string> MigProfileName(unsigned gi_profile_index, unsigned ci_profile_index,
                                           uint64_t memory_mib, uint64_t parent_total_bytes) {
  const std::optional<unsigned> g = GiSlices(gi_profile_index);
  const std::optional<unsigned> c = CiSlices(ci_profile_index);
  if (!g || !c) {
    return absl::InvalidArgumentError(absl::StrCat("unknown MIG profile: GPU instance profile ",
                                                   gi_profile_index, ", compute instance profile ",
                                                   ci_profile_index));
  }
  if (parent_total_bytes == 0) {
    return absl::InvalidArgumentError("cannot name a MIG profile: the GPU's memory size is 0");
  }
  // The memory fraction rounded up to eighths, times the GPU's memory in whole GiB rounded up;
  // the product rounded half away from zero. Integer arithmetic for the ceilings, so that exact
  // fractions do not round up by accident.
  // No overflow below 2^40 MiB (an exbibyte).
  const uint64_t memory_bytes = memory_mib << 20;
  const uint64_t eighths = (memory_bytes * 8 + parent_total_bytes - 1) / parent_total_bytes;
  const uint64_t gib = (parent_total_bytes + (uint64_t{1} << 30) - 1) >> 30;
  const uint64_t gb = (eighths * gib + 4) / 8;
  if (*c == *g) return absl::StrCat(*g, "g.", gb, "gb", GiSuffix(gi_profile_index));
  return absl::StrCat(*c, "c.", *g, "g.", gb, "gb", GiSuffix(gi_profile_index));
}

class DlNvml final : public Nvml {
 public:
  // nvmlEventData_t's GI/CI for an event not attributable to a MIG instance.
  static constexpr unsigned kNoInstance = 0xFFFFFFFFu;

  // Takes ownership of `handle` (from dlopen); `api` was resolved from it.
  DlNvml(void* handle, const Api& api) : handle_(handle), api_(api) {}

  ~DlNvml() override {
    {
      absl::MutexLock lock(&events_mu_);
      FreeEventSetLocked();
      events_mu_.Await(absl::Condition(
          +[](std::map<nvmlEventSet_t, int>* waiters) { return waiters->empty(); }, &waiters_));
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
    // NVML resolves MIG UUIDs too; their handles answer few of the full-GPU queries.
    unsigned is_mig = 0;
    if (api_.nvmlDeviceIsMigDeviceHandle != nullptr &&
        api_.nvmlDeviceIsMigDeviceHandle(*device, &is_mig) == NVML_SUCCESS && is_mig != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(uuid, " is a MIG device, not a full GPU (see MigDevices)"));
    }
    return Describe(*device, uuid);
  }

  absl::StatusOr<std::vector<MigDeviceInfo>> MigDevices(unsigned index) override {
    std::vector<MigDeviceInfo> devices;
    if (api_.nvmlDeviceGetMigMode == nullptr) return devices;  // a driver without MIG
    nvmlDevice_t parent = nullptr;
    const std::string label = absl::StrCat(index);
    if (auto s = Check(api_.nvmlDeviceGetHandleByIndex_v2(index, &parent),
                       "nvmlDeviceGetHandleByIndex_v2", label);
        !s.ok()) {
      return s;
    }
    unsigned current = 0;
    unsigned pending = 0;
    nvmlReturn_t ret = api_.nvmlDeviceGetMigMode(parent, &current, &pending);
    if (ret == NVML_ERROR_NOT_SUPPORTED) return devices;
    if (auto s = Check(ret, "nvmlDeviceGetMigMode", label); !s.ok()) return s;
    if (current != NVML_DEVICE_MIG_ENABLE) return devices;

    std::vector<std::string> missing;
#define NVDP_NVML_MISSING(name) \
  if (api_.name == nullptr) missing.push_back(#name);
    NVDP_NVML_MIG_SYMBOLS(NVDP_NVML_MISSING)
#undef NVDP_NVML_MISSING
    if (!missing.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("MIG is enabled on GPU ", index,
                                                        " but the driver's NVML lacks ",
                                                        absl::StrJoin(missing, ", ")));
    }
    // go-nvlib names profiles against the parent's total memory from the v1 call.
    nvmlMemory_t memory{};
    if (auto s =
            Check(api_.nvmlDeviceGetMemoryInfo(parent, &memory), "nvmlDeviceGetMemoryInfo", label);
        !s.ok()) {
      return s;
    }
    unsigned count = 0;
    if (auto s = Check(api_.nvmlDeviceGetMaxMigDeviceCount(parent, &count),
                       "nvmlDeviceGetMaxMigDeviceCount", label);
        !s.ok()) {
      return s;
    }
    for (unsigned slot = 0; slot < count; ++slot) {
      nvmlDevice_t mig = nullptr;
      ret = api_.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot, &mig);
      if (ret == NVML_ERROR_NOT_FOUND || ret == NVML_ERROR_INVALID_ARGUMENT) continue;  // empty
      if (auto s =
              Check(ret, "nvmlDeviceGetMigDeviceHandleByIndex", absl::StrCat(label, ", ", slot));
          !s.ok()) {
        return s;
      }
      auto info = DescribeMig(parent, mig, memory.total, absl::StrCat(index, ":", slot));
      if (!info.ok()) return info.status();
      info->mig_index = slot;
      devices.push_back(*std::move(info));
    }
    return devices;
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
    nvmlEventSet_t set = nullptr;
    {
      absl::MutexLock lock(&events_mu_);
      if (event_set_ == nullptr) {
        return absl::FailedPreconditionError("WaitForEvent: no event set (call WatchEvents first)");
      }
      set = event_set_;
      ++waiters_[set];
    }
    const auto ms = timeout.count() < 0 ? 0 : timeout.count();
    const unsigned timeout_ms = ms > 0xFFFFFFFFLL ? 0xFFFFFFFFu : static_cast<unsigned>(ms);
    nvmlEventData_t data{};
    nvmlReturn_t ret = api_.nvmlEventSetWait_v2(set, &data, timeout_ms);
    {
      absl::MutexLock lock(&events_mu_);
      if (--waiters_[set] == 0) {
        waiters_.erase(set);
        // Replaced while we waited: ours to free.
        if (set != event_set_) FreeSet(set);
      }
    }
    if (ret == NVML_ERROR_TIMEOUT) return std::optional<Event>();
    if (auto s = Check(ret, "nvmlEventSetWait_v2"); !s.ok()) return s;

    Event event;
    event.type = data.eventType;
    event.xid = data.eventType == nvmlEventTypeXidCriticalError ? data.eventData : 0;
    auto uuid = UuidOf(data.device);
    if (!uuid.ok()) return uuid.status();
    event.gpu_uuid = *std::move(uuid);
    if (data.gpuInstanceId != kNoInstance) event.gi_id = data.gpuInstanceId;
    if (data.computeInstanceId != kNoInstance) event.ci_id = data.computeInstanceId;
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

  // Reads one MIG device the way go-nvlib does: its IDs and attributes, then its GI and CI and
  // their profiles (matched by profile id while looping over the profile indices, which give the
  // name). `label` ("<gpu>:<slot>") names it in errors until its UUID is known.
  absl::StatusOr<MigDeviceInfo> DescribeMig(nvmlDevice_t parent, nvmlDevice_t mig,
                                            uint64_t parent_total, const std::string& label) const {
    MigDeviceInfo info;
    unsigned is_mig = 0;
    if (auto s = Check(api_.nvmlDeviceIsMigDeviceHandle(mig, &is_mig),
                       "nvmlDeviceIsMigDeviceHandle", label);
        !s.ok()) {
      return s;
    }
    if (is_mig == 0) {
      return absl::InternalError(absl::StrCat("MIG slot ", label, " is not a MIG device handle"));
    }
    auto uuid = UuidOf(mig);
    if (!uuid.ok()) {
      return absl::Status(uuid.status().code(), absl::StrCat(label, ": ", uuid.status().message()));
    }
    info.uuid = *std::move(uuid);
    const std::string& id = info.uuid;
    if (auto s = Check(api_.nvmlDeviceGetGpuInstanceId(mig, &info.gi_id),
                       "nvmlDeviceGetGpuInstanceId", id);
        !s.ok()) {
      return s;
    }
    if (auto s = Check(api_.nvmlDeviceGetComputeInstanceId(mig, &info.ci_id),
                       "nvmlDeviceGetComputeInstanceId", id);
        !s.ok()) {
      return s;
    }
    nvmlDeviceAttributes_t attrs{};
    if (auto s =
            Check(api_.nvmlDeviceGetAttributes_v2(mig, &attrs), "nvmlDeviceGetAttributes_v2", id);
        !s.ok()) {
      return s;
    }
    info.memory_bytes = attrs.memorySizeMB << 20;
    info.multiprocessor_count = attrs.multiprocessorCount;
    info.gi_slice_count = attrs.gpuInstanceSliceCount;
    info.ci_slice_count = attrs.computeInstanceSliceCount;
    info.shared_copy_engines = attrs.sharedCopyEngineCount;
    info.shared_decoders = attrs.sharedDecoderCount;
    info.shared_encoders = attrs.sharedEncoderCount;
    info.shared_jpegs = attrs.sharedJpegCount;
    info.shared_ofas = attrs.sharedOfaCount;

    const std::string gi_label = absl::StrCat(id, ", GI ", info.gi_id);
    nvmlGpuInstance_t gi = nullptr;
    if (auto s = Check(api_.nvmlDeviceGetGpuInstanceById(parent, info.gi_id, &gi),
                       "nvmlDeviceGetGpuInstanceById", gi_label);
        !s.ok()) {
      return s;
    }
    nvmlGpuInstanceInfo_t gi_info{};
    if (auto s =
            Check(api_.nvmlGpuInstanceGetInfo(gi, &gi_info), "nvmlGpuInstanceGetInfo", gi_label);
        !s.ok()) {
      return s;
    }
    nvmlComputeInstance_t ci = nullptr;
    const std::string ci_label = absl::StrCat(gi_label, ", CI ", info.ci_id);
    if (auto s = Check(api_.nvmlGpuInstanceGetComputeInstanceById(gi, info.ci_id, &ci),
                       "nvmlGpuInstanceGetComputeInstanceById", ci_label);
        !s.ok()) {
      return s;
    }
    nvmlComputeInstanceInfo_t ci_info{};
    if (auto s = Check(api_.nvmlComputeInstanceGetInfo_v2(ci, &ci_info),
                       "nvmlComputeInstanceGetInfo_v2", ci_label);
        !s.ok()) {
      return s;
    }

    for (unsigned g = 0; g < NVML_GPU_INSTANCE_PROFILE_COUNT; ++g) {
      nvmlGpuInstanceProfileInfo_t gi_profile{};
      nvmlReturn_t ret = api_.nvmlDeviceGetGpuInstanceProfileInfo(parent, g, &gi_profile);
      if (ret == NVML_ERROR_NOT_SUPPORTED || ret == NVML_ERROR_INVALID_ARGUMENT) continue;
      if (auto s = Check(ret, "nvmlDeviceGetGpuInstanceProfileInfo", absl::StrCat(id, ", ", g));
          !s.ok()) {
        return s;
      }
      if (gi_profile.id != gi_info.profileId) continue;
      for (unsigned c = 0; c < NVML_COMPUTE_INSTANCE_PROFILE_COUNT; ++c) {
        for (unsigned e = 0; e < NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_COUNT; ++e) {
          nvmlComputeInstanceProfileInfo_t ci_profile{};
          ret = api_.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, c, e, &ci_profile);
          if (ret == NVML_ERROR_NOT_SUPPORTED || ret == NVML_ERROR_INVALID_ARGUMENT) continue;
          if (auto s = Check(ret, "nvmlGpuInstanceGetComputeInstanceProfileInfo",
                             absl::StrCat(gi_label, ", ", c, ", ", e));
              !s.ok()) {
            return s;
          }
          if (ci_profile.id != ci_info.profileId) continue;
          auto name = MigProfileName(g, c, attrs.memorySizeMB, parent_total);
          if (!name.ok()) {
            return absl::Status(name.status().code(),
                                absl::StrCat(id, ": ", name.status().message()));
          }
          info.profile = *std::move(name);
          return info;
        }
      }
      return absl::NotFoundError(
          absl::StrCat(id, ": no compute instance profile has id ", ci_info.profileId));
    }
    return absl::NotFoundError(
        absl::StrCat(id, ": no GPU instance profile has id ", gi_info.profileId));
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

  // Drops the current set: freed now, or by its last waiter (WaitForEvent).
  void FreeEventSetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(events_mu_) {
    if (event_set_ == nullptr) return;
    if (!waiters_.contains(event_set_)) FreeSet(event_set_);
    event_set_ = nullptr;
  }

  void FreeSet(nvmlEventSet_t set) {
    nvmlReturn_t ret = api_.nvmlEventSetFree(set);
    // UNINITIALIZED: NVML was shut down first and the set went with it.
    if (ret != NVML_SUCCESS && ret != NVML_ERROR_UNINITIALIZED) {
      spdlog::warn("{}", std::string(Check(ret, "nvmlEventSetFree").message()));
    }
  }

  void* const handle_;
  const Api api_;

  absl::Mutex events_mu_;
  nvmlEventSet_t event_set_ ABSL_GUARDED_BY(events_mu_) = nullptr;
  // Threads in nvmlEventSetWait_v2, per set (the current one, or one replaced meanwhile).
  std::map<nvmlEventSet_t, int> waiters_ ABSL_GUARDED_BY(events_mu_);
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
