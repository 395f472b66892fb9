// fake_nvml.cc: a fake libnvidia-ml.so.1 for tests (see README.md in this
// folder).
//
// Exports the NVML C symbols the plugin uses, with the ABI declared in
// src/nvml/nvml_abi.h, and answers from a JSON node description
// ($FAKE_NVML_NODE, read by the first nvmlInit_v2). Xid / ECC events are
// injected at run time by appending lines to $FAKE_NVML_EVENTS; failures by
// $FAKE_NVML_FAIL; $FAKE_NVML_LOG (optional) receives one line per
// init/shutdown/event-set call so tests can await them.
//
// Thread-safety: every entry point may be called from any thread (like real
// NVML); all state sits behind one mutex, which nvmlEventSetWait_v2 releases
// while it blocks. It blocks like the real call, without polling: on an
// inotify watch of the events file (and of its directory, for the file's
// creation), until a line is appended or the timeout expires. No exception leaves an exported
// function.
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "nlohmann/json.hpp"
#include "nvml/nvml_abi.h"

#define FAKE_NVML_EXPORT extern "C" __attribute__((visibility("default")))

struct FakeMigTable;

// The handle types' definitions (incomplete in nvml_abi.h). A full GPU and a MIG device are both
// an nvmlDevice_st; a MIG device has `parent` set and answers for its own UUID, name and memory.
struct nvmlDevice_st {
  std::string uuid;
  std::string name;
  unsigned index = 0;
  unsigned minor = 0;
  unsigned long long memory_total = 0;
  unsigned long long memory_used = 0;
  int cc_major = 0;
  int cc_minor = 0;
  unsigned pci_domain = 0;
  unsigned pci_bus = 0;
  unsigned pci_device = 0;
  unsigned pci_device_id = 0;
  unsigned pci_subsystem_id = 0;
  unsigned long long supported_events = 0;
  // "mig_mode" in the node description: absent means not MIG-capable (NOT_SUPPORTED).
  std::optional<unsigned> mig_mode;
  unsigned mig_pending_mode = 0;
  const FakeMigTable* mig_table = nullptr;  // the GPU's MIG profiles (MIG-capable GPUs)
  std::vector<nvmlDevice_st*> mig_slots;    // MIG slot -> MIG device; nullptr: empty slot

  // MIG devices only: `index` is the MIG slot on the parent.
  nvmlDevice_st* parent = nullptr;
  nvmlGpuInstance_st* gpu_instance = nullptr;
  nvmlComputeInstance_st* compute_instance = nullptr;
};

// A MIG GPU instance: a GI profile at a memory-slice placement on a GPU.
struct nvmlGpuInstance_st {
  nvmlDevice_st* device = nullptr;  // the parent GPU
  unsigned id = 0;
  unsigned profile_index = 0;  // NVML_GPU_INSTANCE_PROFILE_*
  unsigned start = 0;          // placement start (memory slices)
  std::vector<nvmlComputeInstance_st*> compute_instances;
};

// A MIG compute instance inside a GPU instance; exactly one MIG device per compute instance.
struct nvmlComputeInstance_st {
  nvmlGpuInstance_st* gpu_instance = nullptr;
  unsigned id = 0;
  unsigned profile_index = 0;  // NVML_COMPUTE_INSTANCE_PROFILE_*
  unsigned start = 0;          // placement start (compute slices inside the GI)
  nvmlDevice_st* mig_device = nullptr;
};

// One GPU-instance profile of a MIG-capable GPU model.
struct FakeGiProfile {
  unsigned index = 0;  // NVML_GPU_INSTANCE_PROFILE_*
  unsigned id = 0;     // what nvmlDeviceGetGpuInstanceProfileInfo reports as `id`
  const char* name = "";
  unsigned slices = 0;  // compute slices
  unsigned instances = 0;
  unsigned multiprocessors = 0;
  unsigned copy_engines = 0;
  unsigned decoders = 0;
  unsigned jpegs = 0;
  unsigned ofas = 0;
  unsigned long long memory_mib = 0;
  unsigned placement_size = 0;  // memory slices an instance takes
  std::vector<unsigned> placement_starts{};
};

// The MIG profiles of one GPU model.
struct FakeMigTable {
  const char* name = "";
  unsigned max_mig_devices = 0;
  std::vector<FakeGiProfile> profiles{};
};

namespace {

// An inotify watch for appends to an events file: on the file itself (writes), and on its
// directory for the file being created or renamed into place (the file may not exist yet; the
// file watch then follows the new file). Other files in the directory wake nobody. Wait() blocks
// in poll(); a waiter keeps the watch alive (shared_ptr) even if nvmlEventSetFree runs meanwhile.
class EventsWatch {
 public:
  // nullptr when inotify is unavailable (e.g. out of instances) or the directory is missing.
  static std::shared_ptr<EventsWatch> Create(const std::string& path) {
    const size_t slash = path.rfind('/');
    const std::string dir =
        slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return nullptr;
    const int dir_wd = inotify_add_watch(fd, dir.c_str(), IN_CREATE | IN_MOVED_TO);
    if (dir_wd < 0) {
      ::close(fd);
      return nullptr;
    }
    std::shared_ptr<EventsWatch> watch(new EventsWatch(fd, dir_wd, path, name));
    watch->WatchFile();
    return watch;
  }

  ~EventsWatch() { ::close(fd_); }
  EventsWatch(const EventsWatch&) = delete;
  EventsWatch& operator=(const EventsWatch&) = delete;

  // Blocks until the events file may have changed (true) or `deadline` passes (false).
  bool Wait(std::chrono::steady_clock::time_point deadline) const {
    for (;;) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero()) return false;
      // Rounded up, so that the wait never ends just short of the deadline and spins.
      const long long ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
      pollfd pfd{fd_, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(ms, INT_MAX)));
      if (ready < 0 && errno != EINTR) return true;  // cannot wait: let the caller look
      if (ready > 0 && Drain()) return true;
    }
  }

 private:
  EventsWatch(int fd, int dir_wd, std::string path, std::string name)
      : fd_(fd), dir_wd_(dir_wd), path_(std::move(path)), name_(std::move(name)) {}

  // Watches the file now at the path (absent: the directory watch reports its creation).
  void WatchFile() const { inotify_add_watch(fd_, path_.c_str(), IN_MODIFY); }

  // Reads every queued notification; true if one concerns the events file (or some were lost).
  bool Drain() const {
    bool relevant = false;
    alignas(inotify_event) char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd_, buf, sizeof(buf));
      if (n <= 0) return relevant || (n < 0 && errno != EAGAIN && errno != EINTR);
      for (ssize_t at = 0; at < n;) {
        inotify_event event;
        std::memcpy(&event, buf + at, sizeof(event));
        const char* name = buf + at + sizeof(inotify_event);
        if ((event.mask & IN_Q_OVERFLOW) != 0) {
          relevant = true;
        } else if (event.wd == dir_wd_) {
          // A new file under the name: follow it.
          if (event.len > 0 && name_ == std::string(name, strnlen(name, event.len))) {
            WatchFile();
            relevant = true;
          }
        } else if ((event.mask & IN_MODIFY) != 0) {
          relevant = true;
        }
        at += static_cast<ssize_t>(sizeof(inotify_event) + event.len);
      }
    }
  }

  const int fd_;
  const int dir_wd_;
  const std::string path_;
  const std::string name_;
};

}  // namespace

struct nvmlEventSet_st {
  std::map<nvmlDevice_st*, unsigned long long> registered;  // device -> registered type bits
  std::deque<nvmlEventData_t> pending;
  std::deque<nvmlReturn_t> pending_errors;
  std::string events_path;  // $FAKE_NVML_EVENTS at creation; empty: no events
  long long offset = 0;     // bytes of events_path already consumed
  // Set up before `offset` is taken, so no append is missed; nullptr: no events file, or no
  // inotify (then waits look at the file every kPollStep).
  std::shared_ptr<EventsWatch> watch;
};

namespace {

constexpr unsigned long long kDefaultSupportedEvents =
    nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError | nvmlEventTypePState |
    nvmlEventTypeXidCriticalError;
constexpr auto kPollStep = std::chrono::milliseconds(20);

struct State {
  std::mutex mu;
  int refcount = 0;
  std::string driver_version;
  int cuda_driver_version = 0;
  std::vector<nvmlDevice_st*> devices;      // current node, by index
  std::vector<nvmlDevice_st*> mig_devices;  // current node's MIG devices
  std::vector<nvmlGpuInstance_st*> gpu_instances;
  std::vector<nvmlComputeInstance_st*> compute_instances;
  // Every device (GPU or MIG) ever described, by UUID, and every GI / CI by (parent UUID, GI[, CI])
  // id: handles stay valid (and stable) across re-inits.
  std::map<std::string, std::unique_ptr<nvmlDevice_st>> all_devices;
  std::map<std::string, std::unique_ptr<nvmlGpuInstance_st>> all_gpu_instances;
  std::map<std::string, std::unique_ptr<nvmlComputeInstance_st>> all_compute_instances;
  std::map<nvmlEventSet_st*, std::unique_ptr<nvmlEventSet_st>> sets;
  // $FAKE_NVML_FAIL, parsed at init: "<symbol>" or "<symbol>@<index>" -> code.
  std::map<std::string, nvmlReturn_t> failures;
  // The node file as last loaded (inode, size, mtime): nvmlDeviceGetCount_v2 loads it again when
  // it changed, as real NVML shows MIG layout changes without a re-init.
  std::optional<std::tuple<ino_t, off_t, long long>> node_stamp;

  ~State();
};

// Set when the state is destroyed (at exit, or when the library is unloaded).
// A thread may still be blocked in nvmlEventSetWait_v2 then (the plugin does
// not wait for it at exit): if its wait ends before the process does, it
// returns without touching the state. Trivially destructible, so it outlives
// the state.
std::atomic<bool> state_gone{false};

State::~State() { state_gone = true; }

State& S() {
  static State state;
  return state;
}

void Log(const std::string& line) {
  const char* path = std::getenv("FAKE_NVML_LOG");
  if (path == nullptr || *path == '\0') return;
  if (FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%s\n", line.c_str());
    std::fclose(f);
  }
}

std::optional<unsigned long long> ParseNumber(const std::string& text) {
  if (text.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(text.c_str(), &end, 0);
  if (errno != 0 || end == nullptr || *end != '\0') return std::nullopt;
  return v;
}

// A JSON number, or a string holding a decimal / 0x-hex number.
unsigned long long NumberField(const nlohmann::json& obj, const char* key,
                               unsigned long long fallback) {
  if (!obj.contains(key)) return fallback;
  const nlohmann::json& v = obj.at(key);
  if (v.is_number_unsigned() || v.is_number_integer()) return v.get<unsigned long long>();
  if (v.is_string()) {
    if (auto n = ParseNumber(v.get<std::string>())) return *n;
  }
  throw std::runtime_error(std::string("field \"") + key +
                           "\" must be a number or a numeric string");
}

// GPU-instance profiles of the A100 (40 GB and 80 GB) and the H100 80 GB, in the shape NVML reports
// them; `id`s are the driver's profile ids (not the indices). `mem` gives memorySizeMB for the 1g,
// 1g+me, 1g (REV2), 2g, 3g, 4g and 7g profiles, in that order.
std::vector<FakeGiProfile> AmpereHopperProfiles(const std::array<unsigned long long, 7>& mem,
                                                unsigned one_slice_decoders) {
  return {
      {NVML_GPU_INSTANCE_PROFILE_1_SLICE,
       19,
       "1g",
       1,
       7,
       14,
       1,
       one_slice_decoders,
       0,
       0,
       mem[0],
       1,
       {0, 1, 2, 3, 4, 5, 6}},
      {NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1,
       20,
       "1g+me",
       1,
       1,
       14,
       1,
       1,
       1,
       1,
       mem[1],
       1,
       {0, 1, 2, 3, 4, 5, 6}},
      {NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2,
       15,
       "1g-rev2",
       1,
       4,
       14,
       1,
       1,
       0,
       0,
       mem[2],
       2,
       {0, 2, 4, 6}},
      {NVML_GPU_INSTANCE_PROFILE_2_SLICE, 14, "2g", 2, 3, 28, 2, 1, 0, 0, mem[3], 2, {0, 2, 4}},
      {NVML_GPU_INSTANCE_PROFILE_3_SLICE, 9, "3g", 3, 2, 42, 3, 2, 0, 0, mem[4], 4, {0, 4}},
      {NVML_GPU_INSTANCE_PROFILE_4_SLICE, 5, "4g", 4, 1, 56, 4, 2, 0, 0, mem[5], 4, {0}},
      {NVML_GPU_INSTANCE_PROFILE_7_SLICE, 0, "7g", 7, 1, 98, 7, 5, 1, 1, mem[6], 8, {0}},
  };
}

const FakeMigTable& MigTableNamed(const std::string& name) {
  static const FakeMigTable kA100_40{
      "a100-40gb", 7, AmpereHopperProfiles({4864, 4864, 9856, 9856, 19968, 19968, 40192}, 0)};
  static const FakeMigTable kA100_80{
      "a100-80gb", 7, AmpereHopperProfiles({9856, 9856, 19968, 19968, 40192, 40192, 80384}, 1)};
  for (const FakeMigTable* t : {&kA100_40, &kA100_80}) {
    if (name == t->name) return *t;
  }
  if (name == "h100-80gb") return kA100_80;  // same slices and memory as the A100 80 GB
  throw std::runtime_error("unknown mig_profiles \"" + name +
                           "\" (a100-40gb, a100-80gb or h100-80gb)");
}

// The compute-instance profiles a GI with `gi_slices` compute slices offers: {index, slices,
// instance count}. Their id is their index.
struct CiOffer {
  unsigned index = 0;
  unsigned slices = 0;
  unsigned count = 0;
};
std::vector<CiOffer> CiOffers(unsigned gi_slices) {
  std::vector<CiOffer> offers = {{NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE, 1, gi_slices},
                                 {NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE_REV1, 1, gi_slices}};
  if (gi_slices >= 2) offers.push_back({NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE, 2, gi_slices / 2});
  if (gi_slices == 3 || gi_slices == 7) {
    offers.push_back({NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE, 3, gi_slices / 3});
  }
  if (gi_slices >= 4) offers.push_back({NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE, 4, 1});
  if (gi_slices == 7) offers.push_back({NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE, 7, 1});
  return offers;
}

std::optional<CiOffer> CiOfferFor(unsigned gi_slices, unsigned ci_index) {
  for (const CiOffer& o : CiOffers(gi_slices)) {
    if (o.index == ci_index) return o;
  }
  return std::nullopt;
}

const FakeGiProfile* GiProfileByIndex(const FakeMigTable& table, unsigned index) {
  for (const FakeGiProfile& p : table.profiles) {
    if (p.index == index) return &p;
  }
  return nullptr;
}

// The usual name of a GI profile on a GPU with `total_mib` of memory: "<slices>g.<GB>gb" plus "+me"
// for the media-extension profile, GB being the memory fraction rounded up to eighths of the GPU's
// whole GiB ("3g.20gb", "1g.5gb+me", "1g.10gb" for the REV2 profile of a 40 GB GPU).
std::string GiProfileName(const FakeGiProfile& p, unsigned long long total_mib) {
  const unsigned long long eighths = (p.memory_mib * 8 + total_mib - 1) / total_mib;
  const unsigned long long gib = (total_mib + 1023) / 1024;
  const long long gb = std::llround(static_cast<double>(eighths * gib) / 8.0);
  const std::string suffix = p.index == NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1 ? "+me" : "";
  return std::to_string(p.slices) + "g." + std::to_string(gb) + "gb" + suffix;
}

const FakeGiProfile& GiProfileByName(const FakeMigTable& table, unsigned long long total_mib,
                                     const std::string& name) {
  for (const FakeGiProfile& p : table.profiles) {
    if (name == GiProfileName(p, total_mib)) return p;
  }
  throw std::runtime_error(std::string("no GPU-instance profile \"") + name + "\" in " +
                           table.name + " (memory_mib " + std::to_string(total_mib) + ")");
}

// CI profile names in a node description: "1c", "2c", "3c", "4c", "7c".
unsigned CiProfileIndexByName(const std::string& name) {
  static const std::map<std::string, unsigned> kNames = {
      {"1c", NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE},
      {"2c", NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE},
      {"3c", NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE},
      {"4c", NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE},
      {"7c", NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE}};
  auto it = kNames.find(name);
  if (it == kNames.end()) throw std::runtime_error("unknown ci_profile \"" + name + "\"");
  return it->second;
}

// One entry of a GPU's "mig_devices" in the node description, validated.
struct MigSpec {
  std::string uuid;
  unsigned gi_id = 0;
  unsigned gi_profile_index = 0;
  unsigned gi_start = 0;
  unsigned ci_id = 0;
  unsigned ci_profile_index = 0;
  unsigned ci_start = 0;
};

// Parses and checks a GPU's "mig_devices": profiles known, placements valid and not overlapping,
// compute instances fitting their GI, at most the table's MIG device count.
std::vector<MigSpec> ParseMigDevices(const nlohmann::json& g, const FakeMigTable& table,
                                     unsigned long long total_mib, const std::string& where) {
  std::vector<MigSpec> specs;
  if (!g.contains("mig_devices")) return specs;
  const nlohmann::json& list = g.at("mig_devices");
  if (list.size() > table.max_mig_devices) {
    throw std::runtime_error(where + ": more than " + std::to_string(table.max_mig_devices) +
                             " mig_devices");
  }
  struct GiUse {
    unsigned profile_index = 0;
    unsigned start = 0;
    unsigned used_compute_slices = 0;  // bit mask
  };
  std::map<unsigned, GiUse> gis;
  unsigned used_memory_slices = 0;  // bit mask over the GPU's memory slices
  for (size_t i = 0; i < list.size(); ++i) {
    const nlohmann::json& m = list.at(i);
    const std::string at = where + " mig_devices[" + std::to_string(i) + "]";
    MigSpec spec;
    spec.uuid = m.at("uuid").get<std::string>();
    const FakeGiProfile& gi = GiProfileByName(table, total_mib, m.at("profile").get<std::string>());
    spec.gi_profile_index = gi.index;
    spec.gi_id = static_cast<unsigned>(NumberField(m, "gi", ~0ull));
    if (spec.gi_id == ~0u) throw std::runtime_error(at + ": \"gi\" (the GI id) is required");
    spec.gi_start = static_cast<unsigned>(NumberField(m, "placement", ~0ull));
    if (std::find(gi.placement_starts.begin(), gi.placement_starts.end(), spec.gi_start) ==
        gi.placement_starts.end()) {
      throw std::runtime_error(at + ": placement is not a valid start for " + gi.name);
    }
    spec.ci_id = static_cast<unsigned>(NumberField(m, "ci", 0));
    spec.ci_profile_index = m.contains("ci_profile")
                                ? CiProfileIndexByName(m.at("ci_profile").get<std::string>())
                                : CiOffers(gi.slices).back().index;  // the whole GI
    const std::optional<CiOffer> ci = CiOfferFor(gi.slices, spec.ci_profile_index);
    if (!ci) throw std::runtime_error(at + ": ci_profile does not fit the GI");
    auto [it, inserted] = gis.try_emplace(spec.gi_id, GiUse{gi.index, spec.gi_start, 0});
    if (inserted) {
      const unsigned mask = ((1u << gi.placement_size) - 1u) << spec.gi_start;
      if ((used_memory_slices & mask) != 0) {
        throw std::runtime_error(at + ": placement overlaps another GPU instance");
      }
      used_memory_slices |= mask;
    } else if (it->second.profile_index != gi.index || it->second.start != spec.gi_start) {
      throw std::runtime_error(at + ": GI " + std::to_string(spec.gi_id) +
                               " is described twice, differently");
    }
    // CIs fill their GI's compute slices in order unless "ci_placement" says where.
    unsigned start = 0;
    while (start < gi.slices && ((it->second.used_compute_slices >> start) & 1u) != 0) ++start;
    spec.ci_start = static_cast<unsigned>(NumberField(m, "ci_placement", start));
    const unsigned ci_mask = ((1u << ci->slices) - 1u) << spec.ci_start;
    if (spec.ci_start + ci->slices > gi.slices || (it->second.used_compute_slices & ci_mask) != 0) {
      throw std::runtime_error(at + ": compute instance does not fit its GI");
    }
    it->second.used_compute_slices |= ci_mask;
    for (const MigSpec& other : specs) {
      if (other.gi_id == spec.gi_id && other.ci_id == spec.ci_id) {
        throw std::runtime_error(at + ": GI/CI " + std::to_string(spec.gi_id) + "/" +
                                 std::to_string(spec.ci_id) + " is described twice");
      }
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

// Parses $FAKE_NVML_FAIL: comma-separated "<name>[@<index>][=<code>]". "init"
// means nvmlInit_v2 (default code DRIVER_NOT_LOADED); every other name defaults
// to UNKNOWN.
std::map<std::string, nvmlReturn_t> ParseFailures(const char* spec) {
  std::map<std::string, nvmlReturn_t> out;
  if (spec == nullptr) return out;
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    std::string name = item;
    std::optional<unsigned long long> code;
    if (auto eq = item.find('='); eq != std::string::npos) {
      name = item.substr(0, eq);
      code = ParseNumber(item.substr(eq + 1));
      if (!code) {
        std::fprintf(stderr, "fake-nvml: FAKE_NVML_FAIL: bad code in \"%s\" (ignored)\n",
                     item.c_str());
        continue;
      }
    }
    if (name == "init") name = "nvmlInit_v2";
    nvmlReturn_t ret = name == "nvmlInit_v2" ? NVML_ERROR_DRIVER_NOT_LOADED : NVML_ERROR_UNKNOWN;
    if (code) ret = static_cast<nvmlReturn_t>(*code);
    out[name] = ret;
  }
  return out;
}

// Creates (or, across re-inits, refreshes) the GI, CI and MIG device objects of `gpu`.
void AddMigDevices(State& s, nvmlDevice_st& gpu, const std::vector<MigSpec>& specs) {
  gpu.mig_slots.assign(gpu.mig_table != nullptr ? gpu.mig_table->max_mig_devices : 0, nullptr);
  for (size_t slot = 0; slot < specs.size(); ++slot) {
    const MigSpec& spec = specs[slot];
    const std::string gi_key = gpu.uuid + "/" + std::to_string(spec.gi_id);
    std::unique_ptr<nvmlGpuInstance_st>& gi = s.all_gpu_instances[gi_key];
    if (!gi) gi = std::make_unique<nvmlGpuInstance_st>();
    if (std::find(s.gpu_instances.begin(), s.gpu_instances.end(), gi.get()) ==
        s.gpu_instances.end()) {
      *gi = nvmlGpuInstance_st{&gpu, spec.gi_id, spec.gi_profile_index, spec.gi_start, {}};
      s.gpu_instances.push_back(gi.get());
    }
    std::unique_ptr<nvmlComputeInstance_st>& ci =
        s.all_compute_instances[gi_key + "/" + std::to_string(spec.ci_id)];
    if (!ci) ci = std::make_unique<nvmlComputeInstance_st>();
    std::unique_ptr<nvmlDevice_st>& mig = s.all_devices[spec.uuid];
    if (!mig) mig = std::make_unique<nvmlDevice_st>();
    *ci = nvmlComputeInstance_st{gi.get(), spec.ci_id, spec.ci_profile_index, spec.ci_start,
                                 mig.get()};
    gi->compute_instances.push_back(ci.get());
    s.compute_instances.push_back(ci.get());

    const FakeGiProfile& profile = *GiProfileByIndex(*gpu.mig_table, spec.gi_profile_index);
    const CiOffer offer = *CiOfferFor(profile.slices, spec.ci_profile_index);
    *mig = nvmlDevice_st{};
    mig->uuid = spec.uuid;
    mig->name = gpu.name + " MIG " +
                (offer.slices == profile.slices ? "" : std::to_string(offer.slices) + "c.") +
                GiProfileName(profile, gpu.memory_total >> 20);
    mig->index = static_cast<unsigned>(slot);
    mig->minor = gpu.minor;
    mig->memory_total = profile.memory_mib << 20;
    mig->cc_major = gpu.cc_major;
    mig->cc_minor = gpu.cc_minor;
    mig->parent = &gpu;
    mig->gpu_instance = gi.get();
    mig->compute_instance = ci.get();
    gpu.mig_slots[slot] = mig.get();
    s.mig_devices.push_back(mig.get());
  }
}

// The identity of the node file now; nullopt when it cannot be stat'ed.
std::optional<std::tuple<ino_t, off_t, long long>> NodeStamp(const char* path) {
  struct stat st;
  if (path == nullptr || ::stat(path, &st) != 0) return std::nullopt;
  return std::make_tuple(
      st.st_ino, st.st_size,
      static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec);
}

// Loads the node description into the state. Returns SUCCESS or the code
// nvmlInit_v2 reports.
nvmlReturn_t LoadNode(State& s) {
  const char* path = std::getenv("FAKE_NVML_NODE");
  if (path == nullptr || *path == '\0') {
    std::fprintf(stderr,
                 "fake-nvml: nvmlInit_v2: FAKE_NVML_NODE is not set (it must "
                 "name a node "
                 "description JSON file); reporting DRIVER_NOT_LOADED\n");
    return NVML_ERROR_DRIVER_NOT_LOADED;
  }
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr,
                 "fake-nvml: nvmlInit_v2: cannot read FAKE_NVML_NODE=%s (%s); reporting "
                 "DRIVER_NOT_LOADED\n",
                 path, std::strerror(errno));
    return NVML_ERROR_DRIVER_NOT_LOADED;
  }
  try {
    nlohmann::json node = nlohmann::json::parse(in);
    std::vector<nvmlDevice_st*> devices;
    std::map<std::string, nvmlDevice_st> parsed;
    std::map<std::string, std::vector<MigSpec>> mig_specs;  // by parent UUID
    std::set<std::string> mig_uuids;
    const nlohmann::json& gpus = node.at("gpus");
    for (size_t i = 0; i < gpus.size(); ++i) {
      const nlohmann::json& g = gpus.at(i);
      nvmlDevice_st d;
      d.index = static_cast<unsigned>(i);
      d.uuid = g.at("uuid").get<std::string>();
      d.name = g.at("name").get<std::string>();
      d.minor = static_cast<unsigned>(NumberField(g, "minor", i));
      d.memory_total = NumberField(g, "memory_mib", 0) << 20;
      d.memory_used = NumberField(g, "memory_used_mib", 0) << 20;
      d.cc_major = static_cast<int>(NumberField(g, "cc_major", 0));
      d.cc_minor = static_cast<int>(NumberField(g, "cc_minor", 0));
      const std::string bus = g.at("pci_bus_id").get<std::string>();
      unsigned domain = 0, bus_no = 0, dev_no = 0, fn = 0;
      if (std::sscanf(bus.c_str(), "%x:%x:%x.%x", &domain, &bus_no, &dev_no, &fn) != 4) {
        throw std::runtime_error("gpu " + std::to_string(i) + ": bad pci_bus_id \"" + bus + "\"");
      }
      d.pci_domain = domain;
      d.pci_bus = bus_no;
      d.pci_device = dev_no;
      d.pci_device_id = static_cast<unsigned>(NumberField(g, "pci_device_id", 0));
      d.pci_subsystem_id = static_cast<unsigned>(NumberField(g, "pci_subsystem_id", 0));
      d.supported_events = NumberField(g, "supported_events", kDefaultSupportedEvents);
      const std::string where = "gpu " + std::to_string(i);
      if (g.contains("mig_mode")) {
        d.mig_mode = static_cast<unsigned>(NumberField(g, "mig_mode", 0));
        d.mig_pending_mode = static_cast<unsigned>(NumberField(g, "mig_pending_mode", *d.mig_mode));
        const unsigned long long total_mib = d.memory_total >> 20;
        d.mig_table = &MigTableNamed(g.value(
            "mig_profiles", std::string(total_mib <= (48ull << 10) ? "a100-40gb" : "a100-80gb")));
        mig_specs[d.uuid] = ParseMigDevices(g, *d.mig_table, total_mib, where);
        if (!mig_specs[d.uuid].empty() && *d.mig_mode != NVML_DEVICE_MIG_ENABLE) {
          throw std::runtime_error(where + ": mig_devices need mig_mode 1");
        }
      } else if (g.contains("mig_devices")) {
        throw std::runtime_error(where + ": mig_devices need mig_mode 1");
      }
      if (parsed.count(d.uuid) != 0) throw std::runtime_error("duplicate uuid " + d.uuid);
      parsed.emplace(d.uuid, std::move(d));
    }
    for (const auto& [parent, specs] : mig_specs) {
      for (const MigSpec& spec : specs) {
        if (parsed.count(spec.uuid) != 0 || !mig_uuids.insert(spec.uuid).second) {
          throw std::runtime_error("duplicate uuid " + spec.uuid);
        }
      }
    }
    s.driver_version = node.value("driver_version", std::string("550.54.15"));
    s.cuda_driver_version = static_cast<int>(NumberField(node, "cuda_driver_version", 12040));
    s.devices.assign(parsed.size(), nullptr);
    for (auto& [uuid, d] : parsed) {
      std::unique_ptr<nvmlDevice_st>& slot = s.all_devices[uuid];
      if (!slot) slot = std::make_unique<nvmlDevice_st>();
      *slot = std::move(d);
      s.devices[slot->index] = slot.get();
    }
    s.mig_devices.clear();
    s.gpu_instances.clear();
    s.compute_instances.clear();
    for (nvmlDevice_st* gpu : s.devices) AddMigDevices(s, *gpu, mig_specs[gpu->uuid]);
    s.node_stamp = NodeStamp(path);
    return NVML_SUCCESS;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fake-nvml: nvmlInit_v2: invalid node description %s: %s\n", path,
                 e.what());
    return NVML_ERROR_UNKNOWN;
  }
}

// The injected failure for `symbol` (on the device with `index`, if given),
// else SUCCESS.
nvmlReturn_t Injected(const State& s, const char* symbol, std::optional<unsigned> index = {}) {
  if (index) {
    auto it = s.failures.find(std::string(symbol) + "@" + std::to_string(*index));
    if (it != s.failures.end()) return it->second;
  }
  auto it = s.failures.find(symbol);
  return it == s.failures.end() ? NVML_SUCCESS : it->second;
}

// Common preamble: initialised, then any injected failure.
nvmlReturn_t Enter(const State& s, const char* symbol, std::optional<unsigned> index = {}) {
  if (s.refcount == 0) return NVML_ERROR_UNINITIALIZED;
  return Injected(s, symbol, index);
}

template <typename T>
bool Contains(const std::vector<T*>& current, const T* handle) {
  return handle != nullptr && std::find(current.begin(), current.end(), handle) != current.end();
}

// Which handles a device call takes. Calls NVML documents for MIG device handles only refuse a
// full GPU with INVALID_ARGUMENT; calls about the whole GPU (MIG mode, MIG slots, GPU instances,
// events, PCI, ...) refuse a MIG device handle with NOT_SUPPORTED.
enum class Takes { kGpu, kMig, kEither };

// The NVML index FAKE_NVML_FAIL's "@<index>" refers to: the GPU's, or a MIG device's parent's.
unsigned GpuIndexOf(const nvmlDevice_st& device) {
  return device.parent != nullptr ? device.parent->index : device.index;
}

nvmlReturn_t EnterDevice(const State& s, const char* symbol, nvmlDevice_t device,
                         Takes takes = Takes::kGpu) {
  if (s.refcount == 0) return NVML_ERROR_UNINITIALIZED;
  const bool mig = Contains(s.mig_devices, device);
  if (!mig && !Contains(s.devices, device)) return NVML_ERROR_INVALID_ARGUMENT;
  if (mig && takes == Takes::kGpu) return NVML_ERROR_NOT_SUPPORTED;
  if (!mig && takes == Takes::kMig) return NVML_ERROR_INVALID_ARGUMENT;
  return Injected(s, symbol, GpuIndexOf(*device));
}

nvmlReturn_t CopyString(const std::string& value, char* buf, unsigned int length) {
  if (buf == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
  if (value.size() + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  std::memcpy(buf, value.c_str(), value.size() + 1);
  return NVML_SUCCESS;
}

// A full GPU or a MIG device of the current node.
nvmlDevice_t FindByUuid(const State& s, const std::string& uuid) {
  for (const auto* list : {&s.devices, &s.mig_devices}) {
    for (nvmlDevice_st* d : *list) {
      if (d->uuid == uuid) return d;
    }
  }
  return nullptr;
}

// Consumes the complete lines appended to the set's events file since the last
// read.
void ReadEvents(State& s, nvmlEventSet_st& set) {
  if (set.events_path.empty()) return;
  std::ifstream in(set.events_path, std::ios::binary);
  if (!in) return;
  in.seekg(0, std::ios::end);
  const long long size = static_cast<long long>(in.tellg());
  if (size < set.offset) set.offset = 0;  // truncated: start over
  if (size == set.offset) return;
  in.seekg(set.offset);
  std::string chunk(static_cast<size_t>(size - set.offset), '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<size_t>(in.gcount()));
  const size_t end = chunk.rfind('\n');
  if (end == std::string::npos) return;  // no complete line yet
  set.offset += static_cast<long long>(end + 1);

  std::stringstream lines(chunk.substr(0, end + 1));
  std::string line;
  while (std::getline(lines, line)) {
    std::stringstream words(line);
    std::string kind, uuid;
    words >> kind;
    if (kind.empty() || kind[0] == '#') continue;
    if (kind == "error") {
      std::string code;
      words >> code;
      auto n = ParseNumber(code);
      set.pending_errors.push_back(n ? static_cast<nvmlReturn_t>(*n) : NVML_ERROR_UNKNOWN);
      continue;
    }
    words >> uuid;
    nvmlEventData_t e{};
    e.gpuInstanceId = 0xFFFFFFFFu;
    e.computeInstanceId = 0xFFFFFFFFu;
    if (kind == "xid") {
      std::string xid;
      words >> xid;
      auto n = ParseNumber(xid);
      if (!n) {
        std::fprintf(stderr, "fake-nvml: events: bad xid line \"%s\" (ignored)\n", line.c_str());
        continue;
      }
      e.eventType = nvmlEventTypeXidCriticalError;
      e.eventData = *n;
      unsigned gi = 0, ci = 0;
      if (words >> gi >> ci) {
        e.gpuInstanceId = gi;
        e.computeInstanceId = ci;
      }
    } else if (kind == "ecc-dbe") {
      e.eventType = nvmlEventTypeDoubleBitEccError;
    } else if (kind == "ecc-sbe") {
      e.eventType = nvmlEventTypeSingleBitEccError;
    } else {
      std::fprintf(stderr, "fake-nvml: events: unknown line \"%s\" (ignored)\n", line.c_str());
      continue;
    }
    e.device = FindByUuid(s, uuid);
    if (e.device == nullptr) continue;
    if (e.device->parent != nullptr) {  // a MIG device: its parent's event, with its GI/CI
      if (e.gpuInstanceId == 0xFFFFFFFFu) {
        e.gpuInstanceId = e.device->gpu_instance->id;
        e.computeInstanceId = e.device->compute_instance->id;
      }
      e.device = e.device->parent;
    }
    auto reg = set.registered.find(e.device);
    if (reg == set.registered.end() || (reg->second & e.eventType) == 0) continue;
    set.pending.push_back(e);
  }
}

long long FileSize(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<long long>(st.st_size);
}

const char* ErrorText(nvmlReturn_t ret) {
  switch (ret) {
    case NVML_SUCCESS:
      return "Success";
    case NVML_ERROR_UNINITIALIZED:
      return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
      return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
      return "Not Supported";
    case NVML_ERROR_NO_PERMISSION:
      return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED:
      return "Already Initialized";
    case NVML_ERROR_NOT_FOUND:
      return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER:
      return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED:
      return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT:
      return "Timeout";
    case NVML_ERROR_IRQ_ISSUE:
      return "Interrupt Request Issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND:
      return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND:
      return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM:
      return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST:
      return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED:
      return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM:
      return "The operating system has blocked the request";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH:
      return "RM has detected an NVML/RM version mismatch";
    case NVML_ERROR_IN_USE:
      return "In use by another client";
    case NVML_ERROR_MEMORY:
      return "Insufficient Memory";
    case NVML_ERROR_NO_DATA:
      return "No data";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
      return "Argument version mismatch";
    case NVML_ERROR_NOT_READY:
      return "Not Ready";
    case NVML_ERROR_GPU_NOT_FOUND:
      return "GPU not found";
    case NVML_ERROR_INVALID_STATE:
      return "Invalid state";
    default:
      return "Unknown Error";
  }
}

// Runs `body` and turns any escaping exception into NVML_ERROR_UNKNOWN.
template <typename Body>
nvmlReturn_t Guard(const char* symbol, Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fake-nvml: %s: %s\n", symbol, e.what());
  } catch (...) {
    std::fprintf(stderr, "fake-nvml: %s: unknown exception\n", symbol);
  }
  return NVML_ERROR_UNKNOWN;
}

}  // namespace

// ---- Exported NVML symbols.
// --------------------------------------------------------------------

FAKE_NVML_EXPORT nvmlReturn_t nvmlInit_v2(void) {
  return Guard(__func__, [] {
    State& s = S();
    std::lock_guard lock(s.mu);
    auto failures = ParseFailures(std::getenv("FAKE_NVML_FAIL"));
    if (auto it = failures.find("nvmlInit_v2"); it != failures.end()) {
      std::fprintf(stderr, "fake-nvml: nvmlInit_v2: failing as FAKE_NVML_FAIL asks (%d)\n",
                   static_cast<int>(it->second));
      return it->second;
    }
    if (s.refcount == 0) {
      if (nvmlReturn_t ret = LoadNode(s); ret != NVML_SUCCESS) return ret;
      s.failures = std::move(failures);
    }
    ++s.refcount;
    Log("nvmlInit_v2");
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int /*flags*/) { return nvmlInit_v2(); }

FAKE_NVML_EXPORT nvmlReturn_t nvmlShutdown(void) {
  return Guard(__func__, [] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (s.refcount == 0) return NVML_ERROR_UNINITIALIZED;
    if (--s.refcount == 0) {
      s.devices.clear();
      s.mig_devices.clear();
      s.gpu_instances.clear();
      s.compute_instances.clear();
      s.failures.clear();
      s.node_stamp.reset();
    }
    Log("nvmlShutdown");
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT const char* nvmlErrorString(nvmlReturn_t result) { return ErrorText(result); }

FAKE_NVML_EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char* version, unsigned int length) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = Enter(s, "nvmlSystemGetDriverVersion"); r != NVML_SUCCESS) return r;
    return CopyString(s.driver_version, version, length);
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char* version, unsigned int length) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = Enter(s, "nvmlSystemGetNVMLVersion"); r != NVML_SUCCESS) return r;
    return CopyString(std::to_string(s.cuda_driver_version / 1000) + "." + s.driver_version,
                      version, length);
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int* version) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = Enter(s, "nvmlSystemGetCudaDriverVersion"); r != NVML_SUCCESS) return r;
    if (version == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *version = s.cuda_driver_version;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int* version) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = Enter(s, "nvmlSystemGetCudaDriverVersion_v2"); r != NVML_SUCCESS) return r;
    if (version == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *version = s.cuda_driver_version;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = Enter(s, "nvmlDeviceGetCount_v2"); r != NVML_SUCCESS) return r;
    if (count == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    // A rewritten node file (e.g. a new MIG layout) is read again. LoadNode validates it all
    // before changing the state: an invalid one leaves the node as it was (reason on stderr).
    if (NodeStamp(std::getenv("FAKE_NVML_NODE")) != s.node_stamp && LoadNode(s) == NVML_SUCCESS) {
      Log("nvmlDeviceGetCount_v2: node reloaded");
    }
    *count = static_cast<unsigned>(s.devices.size());
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index,
                                                            nvmlDevice_t* device) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = Enter(s, "nvmlDeviceGetHandleByIndex_v2", index); r != NVML_SUCCESS) return r;
    if (device == nullptr || index >= s.devices.size()) return NVML_ERROR_INVALID_ARGUMENT;
    *device = s.devices[index];
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (s.refcount == 0) return NVML_ERROR_UNINITIALIZED;
    if (uuid == nullptr || device == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlDevice_t found = FindByUuid(s, uuid);
    if (found == nullptr) return NVML_ERROR_NOT_FOUND;
    if (auto r = Injected(s, "nvmlDeviceGetHandleByUUID", GpuIndexOf(*found)); r != NVML_SUCCESS) {
      return r;
    }
    *device = found;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid,
                                                unsigned int length) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetUUID", device, Takes::kEither); r != NVML_SUCCESS)
      return r;
    return CopyString(device->uuid, uuid, length);
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name,
                                                unsigned int length) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetName", device, Takes::kEither); r != NVML_SUCCESS)
      return r;
    return CopyString(device->name, name, length);
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int* index) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetIndex", device, Takes::kEither); r != NVML_SUCCESS)
      return r;
    if (index == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *index = device->index;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int* minor) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetMinorNumber", device); r != NVML_SUCCESS) return r;
    if (minor == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *minor = device->minor;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetMemoryInfo", device, Takes::kEither);
        r != NVML_SUCCESS)
      return r;
    if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    memory->total = device->memory_total;
    memory->used = device->memory_used;
    memory->free = device->memory_total - device->memory_used;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device,
                                                         nvmlMemory_v2_t* memory) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetMemoryInfo_v2", device, Takes::kEither);
        r != NVML_SUCCESS)
      return r;
    if (memory == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memory->total = device->memory_total;
    memory->reserved = 0;
    memory->used = device->memory_used;
    memory->free = device->memory_total - device->memory_used;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetPciInfo_v3", device); r != NVML_SUCCESS) return r;
    if (pci == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *pci = nvmlPciInfo_t{};
    std::snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04X:%02X:%02X.0",
                  device->pci_domain & 0xFFFFu, device->pci_bus, device->pci_device);
    std::snprintf(pci->busId, sizeof(pci->busId), "%08X:%02X:%02X.0", device->pci_domain,
                  device->pci_bus, device->pci_device);
    pci->domain = device->pci_domain;
    pci->bus = device->pci_bus;
    pci->device = device->pci_device;
    pci->pciDeviceId = device->pci_device_id;
    pci->pciSubSystemId = device->pci_subsystem_id;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int* major,
                                                                 int* minor) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetCudaComputeCapability", device); r != NVML_SUCCESS) {
      return r;
    }
    if (major == nullptr || minor == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *major = device->cc_major;
    *minor = device->cc_minor;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int* current_mode,
                                                   unsigned int* pending_mode) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetMigMode", device); r != NVML_SUCCESS) return r;
    if (current_mode == nullptr || pending_mode == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (!device->mig_mode.has_value()) return NVML_ERROR_NOT_SUPPORTED;
    *current_mode = *device->mig_mode;
    *pending_mode = device->mig_pending_mode;
    return NVML_SUCCESS;
  });
}

namespace {

// MIG device slots: as many as the GPU model has while MIG is on, none while it is off.
unsigned MaxMigDevices(const nvmlDevice_st& gpu) {
  return gpu.mig_mode == NVML_DEVICE_MIG_ENABLE && gpu.mig_table != nullptr
             ? gpu.mig_table->max_mig_devices
             : 0;
}

// Preamble of the GPU-instance calls: initialised, a current GI, then any injected failure.
nvmlReturn_t EnterGpuInstance(const State& s, const char* symbol, nvmlGpuInstance_t gi) {
  if (s.refcount == 0) return NVML_ERROR_UNINITIALIZED;
  if (!Contains(s.gpu_instances, gi)) return NVML_ERROR_INVALID_ARGUMENT;
  return Injected(s, symbol, gi->device->index);
}

}  // namespace

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device,
                                                             unsigned int* count) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetMaxMigDeviceCount", device); r != NVML_SUCCESS) {
      return r;
    }
    if (count == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *count = MaxMigDevices(*device);
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device,
                                                                  unsigned int index,
                                                                  nvmlDevice_t* migDevice) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetMigDeviceHandleByIndex", device); r != NVML_SUCCESS) {
      return r;
    }
    if (migDevice == nullptr || index >= MaxMigDevices(*device)) {
      return NVML_ERROR_INVALID_ARGUMENT;
    }
    if (device->mig_slots[index] == nullptr) return NVML_ERROR_NOT_FOUND;
    *migDevice = device->mig_slots[index];
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice,
                                                                           nvmlDevice_t* device) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r =
            EnterDevice(s, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice, Takes::kMig);
        r != NVML_SUCCESS) {
      return r;
    }
    if (device == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *device = migDevice->parent;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device,
                                                          unsigned int* isMigDevice) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceIsMigDeviceHandle", device, Takes::kEither);
        r != NVML_SUCCESS) {
      return r;
    }
    if (isMigDevice == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *isMigDevice = device->parent != nullptr ? 1 : 0;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int* id) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetGpuInstanceId", device, Takes::kMig);
        r != NVML_SUCCESS) {
      return r;
    }
    if (id == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *id = device->gpu_instance->id;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device,
                                                             unsigned int* id) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetComputeInstanceId", device, Takes::kMig);
        r != NVML_SUCCESS) {
      return r;
    }
    if (id == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *id = device->compute_instance->id;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetAttributes_v2(nvmlDevice_t device,
                                                         nvmlDeviceAttributes_t* attributes) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetAttributes_v2", device, Takes::kMig);
        r != NVML_SUCCESS) {
      return r;
    }
    if (attributes == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    const nvmlGpuInstance_st& gi = *device->gpu_instance;
    const FakeGiProfile& profile = *GiProfileByIndex(*device->parent->mig_table, gi.profile_index);
    const CiOffer ci = *CiOfferFor(profile.slices, device->compute_instance->profile_index);
    *attributes = nvmlDeviceAttributes_t{};
    attributes->multiprocessorCount = profile.multiprocessors / profile.slices * ci.slices;
    attributes->sharedCopyEngineCount = profile.copy_engines;
    attributes->sharedDecoderCount = profile.decoders;
    attributes->sharedEncoderCount = 0;
    attributes->sharedJpegCount = profile.jpegs;
    attributes->sharedOfaCount = profile.ofas;
    attributes->gpuInstanceSliceCount = profile.slices;
    attributes->computeInstanceSliceCount = ci.slices;
    attributes->memorySizeMB = profile.memory_mib;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfo(
    nvmlDevice_t device, unsigned int profile, nvmlGpuInstanceProfileInfo_t* info) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetGpuInstanceProfileInfo", device); r != NVML_SUCCESS) {
      return r;
    }
    if (info == nullptr || profile >= NVML_GPU_INSTANCE_PROFILE_COUNT) {
      return NVML_ERROR_INVALID_ARGUMENT;
    }
    if (device->mig_table == nullptr) return NVML_ERROR_NOT_SUPPORTED;
    const FakeGiProfile* p = GiProfileByIndex(*device->mig_table, profile);
    if (p == nullptr) return NVML_ERROR_NOT_SUPPORTED;
    *info = nvmlGpuInstanceProfileInfo_t{};
    info->id = p->id;
    info->isP2pSupported = 0;
    info->sliceCount = p->slices;
    info->instanceCount = p->instances;
    info->multiprocessorCount = p->multiprocessors;
    info->copyEngineCount = p->copy_engines;
    info->decoderCount = p->decoders;
    info->encoderCount = 0;
    info->jpegCount = p->jpegs;
    info->ofaCount = p->ofas;
    info->memorySizeMB = p->memory_mib;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceById(nvmlDevice_t device, unsigned int id,
                                                           nvmlGpuInstance_t* gpuInstance) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetGpuInstanceById", device); r != NVML_SUCCESS) {
      return r;
    }
    if (gpuInstance == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->mig_table == nullptr) return NVML_ERROR_NOT_SUPPORTED;
    if (device->mig_mode != NVML_DEVICE_MIG_ENABLE) return NVML_ERROR_INVALID_STATE;
    for (nvmlGpuInstance_st* gi : s.gpu_instances) {
      if (gi->device == device && gi->id == id) {
        *gpuInstance = gi;
        return NVML_SUCCESS;
      }
    }
    return NVML_ERROR_NOT_FOUND;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlGpuInstanceGetInfo(nvmlGpuInstance_t gpuInstance,
                                                     nvmlGpuInstanceInfo_t* info) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterGpuInstance(s, "nvmlGpuInstanceGetInfo", gpuInstance); r != NVML_SUCCESS) {
      return r;
    }
    if (info == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    const FakeGiProfile& p =
        *GiProfileByIndex(*gpuInstance->device->mig_table, gpuInstance->profile_index);
    *info = nvmlGpuInstanceInfo_t{};
    info->device = gpuInstance->device;
    info->id = gpuInstance->id;
    info->profileId = p.id;
    info->placement = {gpuInstance->start, p.placement_size};
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlGpuInstanceGetComputeInstanceById(
    nvmlGpuInstance_t gpuInstance, unsigned int id, nvmlComputeInstance_t* computeInstance) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterGpuInstance(s, "nvmlGpuInstanceGetComputeInstanceById", gpuInstance);
        r != NVML_SUCCESS) {
      return r;
    }
    if (computeInstance == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    for (nvmlComputeInstance_st* ci : gpuInstance->compute_instances) {
      if (ci->id == id) {
        *computeInstance = ci;
        return NVML_SUCCESS;
      }
    }
    return NVML_ERROR_NOT_FOUND;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlGpuInstanceGetComputeInstanceProfileInfo(
    nvmlGpuInstance_t gpuInstance, unsigned int profile, unsigned int engProfile,
    nvmlComputeInstanceProfileInfo_t* info) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterGpuInstance(s, "nvmlGpuInstanceGetComputeInstanceProfileInfo", gpuInstance);
        r != NVML_SUCCESS) {
      return r;
    }
    if (info == nullptr || profile >= NVML_COMPUTE_INSTANCE_PROFILE_COUNT ||
        engProfile >= NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_COUNT) {
      return NVML_ERROR_INVALID_ARGUMENT;
    }
    const FakeGiProfile& gi =
        *GiProfileByIndex(*gpuInstance->device->mig_table, gpuInstance->profile_index);
    const std::optional<CiOffer> ci = CiOfferFor(gi.slices, profile);
    if (!ci) return NVML_ERROR_NOT_SUPPORTED;
    *info = nvmlComputeInstanceProfileInfo_t{};
    info->id = ci->index;
    info->sliceCount = ci->slices;
    info->instanceCount = ci->count;
    info->multiprocessorCount = gi.multiprocessors / gi.slices * ci->slices;
    info->sharedCopyEngineCount = gi.copy_engines;
    info->sharedDecoderCount = gi.decoders;
    info->sharedEncoderCount = 0;
    info->sharedJpegCount = gi.jpegs;
    info->sharedOfaCount = gi.ofas;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlComputeInstanceGetInfo_v2(nvmlComputeInstance_t computeInstance,
                                                            nvmlComputeInstanceInfo_t* info) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (s.refcount == 0) return NVML_ERROR_UNINITIALIZED;
    if (!Contains(s.compute_instances, computeInstance)) return NVML_ERROR_INVALID_ARGUMENT;
    const nvmlGpuInstance_st& gi = *computeInstance->gpu_instance;
    if (auto r = Injected(s, "nvmlComputeInstanceGetInfo_v2", gi.device->index);
        r != NVML_SUCCESS) {
      return r;
    }
    if (info == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    const FakeGiProfile& p = *GiProfileByIndex(*gi.device->mig_table, gi.profile_index);
    *info = nvmlComputeInstanceInfo_t{};
    info->device = gi.device;
    info->gpuInstance = computeInstance->gpu_instance;
    info->id = computeInstance->id;
    info->profileId = computeInstance->profile_index;
    info->placement = {computeInstance->start,
                       CiOfferFor(p.slices, computeInstance->profile_index)->slices};
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t* set) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = Enter(s, "nvmlEventSetCreate"); r != NVML_SUCCESS) return r;
    if (set == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    auto created = std::make_unique<nvmlEventSet_st>();
    if (const char* path = std::getenv("FAKE_NVML_EVENTS")) created->events_path = path;
    if (!created->events_path.empty()) {
      created->watch = EventsWatch::Create(created->events_path);
      if (created->watch == nullptr) {
        std::fprintf(stderr,
                     "fake-nvml: nvmlEventSetCreate: cannot watch %s with inotify (%s); "
                     "event waits will look at it every %lld ms\n",
                     created->events_path.c_str(), std::strerror(errno),
                     static_cast<long long>(kPollStep.count()));
      }
    }
    // Like real NVML, events from before the set existed are not delivered.
    created->offset = FileSize(created->events_path);
    *set = created.get();
    s.sets.emplace(created.get(), std::move(created));
    Log("nvmlEventSetCreate");
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device,
                                                               unsigned long long* eventTypes) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceGetSupportedEventTypes", device); r != NVML_SUCCESS) {
      return r;
    }
    if (eventTypes == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
    *eventTypes = device->supported_events;
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device,
                                                       unsigned long long eventTypes,
                                                       nvmlEventSet_t set) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (auto r = EnterDevice(s, "nvmlDeviceRegisterEvents", device); r != NVML_SUCCESS) return r;
    if (set == nullptr || s.sets.count(set) == 0) return NVML_ERROR_INVALID_ARGUMENT;
    // Any requested type the device lacks: nothing is registered (the set stays
    // usable).
    if ((eventTypes & ~device->supported_events) != 0) return NVML_ERROR_NOT_SUPPORTED;
    set->registered[device] |= eventTypes;
    char line[160];
    std::snprintf(line, sizeof(line), "nvmlDeviceRegisterEvents %s 0x%llx", device->uuid.c_str(),
                  eventTypes);
    Log(line);
    return NVML_SUCCESS;
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t* data,
                                                  unsigned int timeoutms) {
  return Guard(__func__, [&] {
    State& s = S();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutms);
    bool logged = false;
    for (;;) {
      if (state_gone) return NVML_ERROR_UNINITIALIZED;  // woke during exit
      std::shared_ptr<EventsWatch> watch;
      bool has_events_file = false;
      {
        std::lock_guard lock(s.mu);
        if (auto r = Enter(s, "nvmlEventSetWait_v2"); r != NVML_SUCCESS) return r;
        if (set == nullptr || data == nullptr || s.sets.count(set) == 0) {
          return NVML_ERROR_INVALID_ARGUMENT;
        }
        ReadEvents(s, *set);
        if (!set->pending_errors.empty()) {
          nvmlReturn_t r = set->pending_errors.front();
          set->pending_errors.pop_front();
          return r;
        }
        if (!set->pending.empty()) {
          *data = set->pending.front();
          set->pending.pop_front();
          return NVML_SUCCESS;
        }
        watch = set->watch;
        has_events_file = !set->events_path.empty();
        if (!logged) Log("nvmlEventSetWait_v2 blocks");
        logged = true;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return NVML_ERROR_TIMEOUT;
      if (watch != nullptr) {
        if (!watch->Wait(deadline)) return NVML_ERROR_TIMEOUT;
      } else if (!has_events_file) {
        std::this_thread::sleep_until(deadline);  // nothing can arrive
      } else {
        std::this_thread::sleep_for(
            std::min<std::chrono::steady_clock::duration>(kPollStep, deadline - now));
      }
    }
  });
}

FAKE_NVML_EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
  return Guard(__func__, [&] {
    State& s = S();
    std::lock_guard lock(s.mu);
    if (s.refcount == 0) return NVML_ERROR_UNINITIALIZED;
    if (set == nullptr || s.sets.erase(set) == 0) return NVML_ERROR_INVALID_ARGUMENT;
    Log("nvmlEventSetFree");
    return NVML_SUCCESS;
  });
}

// The definitions above must match the ABI the plugin calls through.
#define FAKE_NVML_CHECK_TYPE(name) \
  static_assert(std::is_same_v<decltype(&name), name##_fn>, #name " does not match nvml_abi.h");
FAKE_NVML_CHECK_TYPE(nvmlInit_v2)
FAKE_NVML_CHECK_TYPE(nvmlInitWithFlags)
FAKE_NVML_CHECK_TYPE(nvmlShutdown)
FAKE_NVML_CHECK_TYPE(nvmlErrorString)
FAKE_NVML_CHECK_TYPE(nvmlSystemGetDriverVersion)
FAKE_NVML_CHECK_TYPE(nvmlSystemGetNVMLVersion)
FAKE_NVML_CHECK_TYPE(nvmlSystemGetCudaDriverVersion)
FAKE_NVML_CHECK_TYPE(nvmlSystemGetCudaDriverVersion_v2)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetCount_v2)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetHandleByIndex_v2)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetHandleByUUID)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetUUID)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetName)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetIndex)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetMinorNumber)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetMemoryInfo)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetMemoryInfo_v2)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetPciInfo_v3)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetCudaComputeCapability)
FAKE_NVML_CHECK_TYPE(nvmlEventSetCreate)
FAKE_NVML_CHECK_TYPE(nvmlDeviceRegisterEvents)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetSupportedEventTypes)
FAKE_NVML_CHECK_TYPE(nvmlEventSetWait_v2)
FAKE_NVML_CHECK_TYPE(nvmlEventSetFree)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetMigMode)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetMaxMigDeviceCount)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetMigDeviceHandleByIndex)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetDeviceHandleFromMigDeviceHandle)
FAKE_NVML_CHECK_TYPE(nvmlDeviceIsMigDeviceHandle)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetGpuInstanceId)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetComputeInstanceId)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetAttributes_v2)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetGpuInstanceProfileInfo)
FAKE_NVML_CHECK_TYPE(nvmlDeviceGetGpuInstanceById)
FAKE_NVML_CHECK_TYPE(nvmlGpuInstanceGetInfo)
FAKE_NVML_CHECK_TYPE(nvmlGpuInstanceGetComputeInstanceById)
FAKE_NVML_CHECK_TYPE(nvmlGpuInstanceGetComputeInstanceProfileInfo)
FAKE_NVML_CHECK_TYPE(nvmlComputeInstanceGetInfo_v2)
#undef FAKE_NVML_CHECK_TYPE
