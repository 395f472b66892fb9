// mps_health_latency: how fast an MPS control daemon's death and return reach kubelet.
//
// Runs mps-control-daemon (driving the fake nvidia-cuda-mps-control), nvidia-device-plugin with its
// default probe period (10 s) and the test kubelet on a simulated 8-GPU node with one MPS resource.
// Each run SIGKILLs the resource's control daemon and measures
//   kill -> Unhealthy: from the kill to the first device list with every share Unhealthy,
//   .started -> Healthy: from mps-control-daemon re-creating <mpsRoot>/<resource>/.started (the
//                        restarted daemon answers and is configured) to the first list with every
//                        share Healthy again,
//   kill -> Healthy: the whole outage, restart backoff (1 s) included,
// at the test kubelet, then prints the median, minimum and maximum of each. mps-control-daemon is
// restarted between runs so that every kill meets the first restart backoff.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "fakes/kubelet/test_kubelet.h"
#include "mps/marker_watcher.h"
#include "mps/process.h"

namespace {

using Clock = std::chrono::steady_clock;
using nvdp::testing::DeviceState;

constexpr char kResource[] = "nvidia.com/gpu";
constexpr size_t kShares = 8 * 10;
constexpr auto kTimeout = std::chrono::seconds(60);

bool All(const std::vector<DeviceState>& devices, bool healthy) {
  return devices.size() == kShares &&
         std::all_of(devices.begin(), devices.end(), [&](auto& d) { return d.healthy == healthy; });
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Summary {
  double median, min, max;
};
Summary Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return {median, v.front(), v.back()};
}

// When .started was last created (the watcher's thread sets it).
class StartedLog {
 public:
  void Created() {
    absl::MutexLock lock(&mu_);
    last_ = Clock::now();
  }
  std::optional<Clock::time_point> last() {
    absl::MutexLock lock(&mu_);
    return last_;
  }

 private:
  absl::Mutex mu_;
  std::optional<Clock::time_point> last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Latency of MPS daemon health changes reaching kubelet"};
  int runs = 7;
  cli.add_option("--runs", runs, "kills to measure")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(cli, argc, argv);

  const std::string bin = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  char pattern[] = "/tmp/nvdp-mh-XXXXXX";
  const std::string tmp = ::mkdtemp(pattern);
  const std::string mps_root = tmp + "/mps";
  std::filesystem::create_directories(tmp + "/dp");
  std::ofstream(tmp + "/config.yaml")
      << "version: v1\nflags:\n  mpsRoot: " << mps_root << "\nsharing:\n  mps:\n"
      << "    perContainerLimits: true\n"
      << "    resources:\n    - name: gpu\n      replicas: 10\n";
  const std::vector<std::string> args = {
      "--nvml-library=" + bin + "/../lib/fake-nvml/libnvidia-ml.so.1",
      "--mps-control-binary=" + bin + "/fake-mps-control", "--config-file=" + tmp + "/config.yaml",
      "--log-level=error"};
  std::vector<std::string> env = nvdp::mps::InheritedEnvironment();
  env.push_back(std::string("FAKE_NVML_NODE=") + NVDP_BENCH_NODE);

  auto spawn = [&](const std::string& program, std::vector<std::string> extra) {
    nvdp::mps::CommandSpec spec;
    spec.program = bin + "/" + program;
    spec.args = args;
    spec.args.insert(spec.args.end(), extra.begin(), extra.end());
    spec.env = env;
    auto child = nvdp::mps::RealProcessRunner().Spawn(spec);
    if (!child.ok()) {
      std::fprintf(stderr, "cannot start %s: %s\n", program.c_str(),
                   std::string(child.status().message()).c_str());
      std::exit(1);
    }
    return *std::move(child);
  };
  auto fail = [&](const char* what) {
    std::fprintf(stderr, "mps_health_latency: %s\n", what);
    std::filesystem::remove_all(tmp);
    std::exit(1);
  };

  auto kubelet = nvdp::testing::TestKubelet::Start(tmp + "/dp");
  if (!kubelet.ok()) fail("cannot start the test kubelet");
  auto mpsd = spawn("mps-control-daemon", {"--set-compute-mode=false"});
  auto plugin = spawn("nvidia-device-plugin", {"--kubelet-socket=" + tmp + "/dp/kubelet.sock"});
  if (!(*kubelet)->WaitForDevices(
          kResource, [](auto& d) { return All(d, true); }, kTimeout)) {
    fail("the MPS resource never became healthy");
  }

  StartedLog started;
  auto watcher = nvdp::mps::MarkerWatcher::Create();
  if (!watcher.ok()) fail("no inotify");
  if (!(*watcher)
           ->Add(mps_root + "/" + kResource, ".started",
                 [&](bool exists) {
                   if (exists) started.Created();
                 })
           .ok()) {
    fail("cannot watch .started");
  }

  std::vector<double> to_unhealthy, to_healthy, outage;
  for (int run = 0; run < runs; ++run) {
    if (run > 0) {  // a fresh mps-control-daemon: the restart backoff starts over at 1 s
      mpsd->Terminate(absl::Seconds(10));
      if (!(*kubelet)->WaitForDevices(
              kResource, [](auto& d) { return All(d, false); }, kTimeout)) {
        fail("stopping mps-control-daemon was not seen");
      }
      mpsd = spawn("mps-control-daemon", {"--set-compute-mode=false"});
      if (!(*kubelet)->WaitForDevices(
              kResource, [](auto& d) { return All(d, true); }, kTimeout)) {
        fail("the restarted mps-control-daemon was not seen");
      }
    }
    int pid = 0;
    std::ifstream(mps_root + "/" + kResource + "/log/fake-daemon.pid") >> pid;
    if (pid <= 0 || ::kill(pid, 0) != 0) fail("no running control daemon");

    std::optional<Clock::time_point> unhealthy_at, healthy_at;
    const Clock::time_point killed_at = Clock::now();
    ::kill(pid, SIGKILL);
    // The predicate runs under the test kubelet's lock as each list arrives: its clock readings are
    // the arrival times.
    const bool seen = (*kubelet)->WaitForDevices(
        kResource,
        [&](const std::vector<DeviceState>& devices) {
          if (!unhealthy_at && All(devices, false)) unhealthy_at = Clock::now();
          if (unhealthy_at && !healthy_at && All(devices, true)) healthy_at = Clock::now();
          return healthy_at.has_value();
        },
        kTimeout);
    const std::optional<Clock::time_point> started_at = started.last();
    if (!seen || !started_at || *started_at < killed_at) fail("the outage was not seen");
    to_unhealthy.push_back(Ms(*unhealthy_at - killed_at));
    to_healthy.push_back(Ms(*healthy_at - *started_at));
    outage.push_back(Ms(*healthy_at - killed_at));
  }
  watcher->reset();
  plugin->Terminate(absl::Seconds(10));
  mpsd->Terminate(absl::Seconds(10));
  kubelet->reset();
  std::filesystem::remove_all(tmp);

  std::printf(
      "| MPS control daemon killed (%d runs, plugin probe period 10 s) | median | min | max |\n",
      runs);
  std::printf("|---|---:|---:|---:|\n");
  for (const auto& [name, values] :
       {std::pair<const char*, const std::vector<double>&>{"kill -> all shares Unhealthy",
                                                           to_unhealthy},
        {".started re-created -> all shares Healthy", to_healthy},
        {"kill -> all shares Healthy (1 s restart backoff included)", outage}}) {
    const Summary s = Summarize(values);
    std::printf("| %s | %.1f ms | %.1f ms | %.1f ms |\n", name, s.median, s.min, s.max);
  }
  return 0;
}
