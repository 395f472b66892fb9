// The plugin's thread count does not grow with the machine's cores: gRPC sizes its pools by the
// core count (src/app/core_count.cc caps what it sees), which a shim (tests/fakes/cores) fakes
// here, so a 2-core machine can run the plugin as a 64-core GPU node would.
#include <dirent.h>
#include <stdlib.h>

#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "integration/daemon_harness.h"

namespace nvdp::testing {
namespace {

// Thread names of `pid` (/proc/<pid>/task/*/comm) and how many threads carry each.
std::map<std::string, int> ThreadNames(int pid) {
  std::map<std::string, int> names;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = ::opendir(tasks.c_str());
  if (dir == nullptr) return names;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream comm(tasks + "/" + entry->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    names[name]++;
  }
  ::closedir(dir);
  return names;
}

int Total(const std::map<std::string, int>& names) {
  int total = 0;
  for (const auto& [name, count] : names) total += count;
  return total;
}

bool Maps(int pid, const std::string& library) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(library) != std::string::npos) return true;
  }
  return false;
}

// Sets an environment variable for the scope (the daemons the harness starts inherit it).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::string Prepended(const std::string& value, const char* name, const char* separator) {
  const char* old = std::getenv(name);
  return old != nullptr && *old != '\0' ? value + separator + old : value;
}

// Runs the plugin registered with the test kubelet on a machine of `cores` cores (0: the real
// one) and returns its threads by name once it is idle.
std::map<std::string, int> ThreadsOnAMachineOf(int cores) {
  DaemonHarness h;
  h.StartKubelet();
  {
    // The shim goes first in LD_PRELOAD (a sanitizer's helpers, if any, stay after it); ASan
    // insists on coming first, which does not matter for a shim that does not allocate.
    std::optional<ScopedEnv> preload, asan;
    if (cores > 0) {
      preload.emplace("LD_PRELOAD", Prepended(BinDir() + "/../lib/fake-cores/libfake-cores.so",
                                              "LD_PRELOAD", ":"));
      asan.emplace("ASAN_OPTIONS", Prepended("verify_asan_link_order=0", "ASAN_OPTIONS", ":"));
    }
    h.StartDaemon("a100-sxm4-40gb-x8.json", {}, {"FAKE_CORES=" + std::to_string(cores)});
  }
  EXPECT_TRUE(h.kubelet().WaitForRegistrations("nvidia.com/gpu", 1, kWait));
  EXPECT_TRUE(h.kubelet().WaitForDevices(
      "nvidia.com/gpu", [](const auto& d) { return d.size() == 8; }, kWait));
  if (cores > 0) {
    EXPECT_TRUE(Maps(h.daemon_pid(), "libfake-cores.so")) << "the shim did not load";
  }
  return ThreadNames(h.daemon_pid());
}

std::string Show(const std::map<std::string, int>& names) {
  std::string out;
  for (const auto& [name, count] : names) out += name + "=" + std::to_string(count) + " ";
  return out;
}

TEST(ThreadsTest, GrpcPoolsDoNotGrowWithTheMachinesCores) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer runs a thread of its own and cannot start under the shim";
#endif
  const auto here = ThreadsOnAMachineOf(0);
  const auto big = ThreadsOnAMachineOf(64);
  // Unpinned, gRPC 1.51 runs 33 EventEngine threads at 64 cores (and 16 completion-queue threads
  // for a callback-API service, which the plugin does not use: its servers drive their own queues).
  EXPECT_LE(big.count("event_engine") ? big.at("event_engine") : 0, 4) << Show(big);
  EXPECT_EQ(big.count("nexting_thread"), 0u) << Show(big);
  EXPECT_LE(Total(big), Total(here) + 2) << "64 cores: " << Show(big) << "; here: " << Show(here);
}

TEST(ThreadsTest, EveryThreadIsNamed) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer runs a thread of its own and cannot start under the shim";
#endif
  // gRPC names its own; the main thread keeps the process's name; every other is "nvdp-<role>".
  const std::set<std::string> grpc = {"default-executo", "event_engine", "grpc_global_tim",
                                      "resolver-execut", "timer_manager"};
  for (const auto& [name, count] : ThreadsOnAMachineOf(0)) {
    if (grpc.contains(name) || name.starts_with("nvdp-")) continue;
    EXPECT_EQ(name, "nvidia-device-p") << "an unnamed thread";
    EXPECT_EQ(count, 1) << name;
  }
}

}  // namespace
}  // namespace nvdp::testing
