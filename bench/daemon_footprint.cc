// daemon_footprint: what the real nvidia-device-plugin costs on a simulated 8x A100-40GB node.
//
// For each scenario it starts the binary (fake NVML; for MPS also mps-control-daemon with the fake
// control binary) against the test kubelet and measures: time from spawn to registration, the
// plugin's resident memory (VmRSS, VmHWM) and thread count once idle, and the latency of
// Allocate and GetPreferredAllocation round trips through gRPC, as kubelet makes them.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "fakes/kubelet/test_kubelet.h"
#include "mps/process.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Scenario {
  std::string name;
  std::string resource;
  std::string config;  // empty: none
  bool mps = false;
  size_t devices = 0;
  int request = 1;
};

std::string Status(int pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      auto value = line.substr(key.size() + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return "?";
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Start-up time, memory and RPC latency of nvidia-device-plugin"};
  int runs = 5;
  int calls = 1000;
  cli.add_option("--runs", runs, "start-ups per scenario")->capture_default_str();
  cli.add_option("--calls", calls, "RPCs per latency figure")->capture_default_str();
  CLI11_PARSE(cli, argc, argv);

  const std::string bin = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  const std::string node = NVDP_BENCH_NODE;
  std::vector<Scenario> scenarios = {
      {"whole GPUs (8)", "nvidia.com/gpu", "", false, 8, 1},
      {"MPS 8 GPUs x 100 shares", "nvidia.com/gpu", "mps", true, 800, 30},
      {"MPS 8 GPUs x 1000 shares", "nvidia.com/gpu", "mps1000", true, 8000, 300},
  };

  std::printf(
      "| scenario | start to registered (median of %d) | RSS idle | peak RSS | threads |"
      " Allocate p50 / p99 | GetPreferredAllocation p50 / p99 |\n",
      runs);
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& scenario : scenarios) {
    std::vector<double> startup_ms;
    std::string rss, hwm, threads;
    std::vector<double> allocate_us, prefer_us;
    for (int run = 0; run < runs; ++run) {
      char pattern[] = "/tmp/nvdp-fp-XXXXXX";
      const std::string tmp = ::mkdtemp(pattern);
      std::filesystem::create_directories(tmp + "/dp");
      std::vector<std::string> args = {
          "--nvml-library=" + bin + "/../lib/fake-nvml/libnvidia-ml.so.1",
          "--mps-control-binary=" + bin + "/fake-mps-control", "--log-level=error"};
      if (scenario.mps) {
        const int replicas = scenario.config == "mps1000" ? 1000 : 100;
        std::ofstream(tmp + "/config.yaml")
            << "version: v1\nflags:\n  mpsRoot: " << tmp << "/mps\nsharing:\n  mps:\n"
            << "    perContainerLimits: true\n"
            << "    resources:\n    - name: gpu\n      replicas: " << replicas << "\n";
        args.push_back("--config-file=" + tmp + "/config.yaml");
      }
      std::vector<std::string> env = nvdp::mps::InheritedEnvironment();
      env.push_back("FAKE_NVML_NODE=" + node);

      std::unique_ptr<nvdp::mps::ChildProcess> mpsd;
      if (scenario.mps) {
        nvdp::mps::CommandSpec spec;
        spec.program = bin + "/mps-control-daemon";
        spec.args = args;
        spec.args.push_back("--set-compute-mode=false");
        spec.env = env;
        mpsd = std::move(*nvdp::mps::RealProcessRunner().Spawn(spec));
        // Measure the plugin, not the daemon: start it once the daemon is ready.
        while (!std::filesystem::exists(tmp + "/mps/.ready")) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      }
      auto kubelet = std::move(*nvdp::testing::TestKubelet::Start(tmp + "/dp"));
      nvdp::mps::CommandSpec spec;
      spec.program = bin + "/nvidia-device-plugin";
      spec.args = args;
      spec.args.push_back("--kubelet-socket=" + tmp + "/dp/kubelet.sock");
      spec.env = env;
      const auto start = Clock::now();
      auto plugin = std::move(*nvdp::mps::RealProcessRunner().Spawn(spec));
      if (!kubelet->WaitForRegistrations(scenario.resource, 1, std::chrono::seconds(30)) ||
          !kubelet->WaitForDevices(
              scenario.resource, [&](const auto& d) { return d.size() == scenario.devices; },
              std::chrono::seconds(30))) {
        std::fprintf(stderr, "%s: no registration\n", scenario.name.c_str());
        return 1;
      }
      startup_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());

      if (run == runs - 1) {
        std::vector<std::string> available;
        for (const auto& d : kubelet->Devices(scenario.resource)) available.push_back(d.id);
        auto picked =
            kubelet->GetPreferredAllocation(scenario.resource, available, {}, scenario.request);
        for (int i = 0; i < calls; ++i) {
          auto t0 = Clock::now();
          auto p =
              kubelet->GetPreferredAllocation(scenario.resource, available, {}, scenario.request);
          auto t1 = Clock::now();
          auto a = kubelet->Allocate(scenario.resource, {*picked});
          auto t2 = Clock::now();
          if (!p.ok() || !a.ok()) return 1;
          prefer_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
          allocate_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
        }
        std::this_thread::sleep_for(std::chrono::seconds(1));  // settle: idle footprint
        rss = Status(plugin->pid(), "VmRSS");
        hwm = Status(plugin->pid(), "VmHWM");
        threads = Status(plugin->pid(), "Threads");
      }
      plugin->Terminate(absl::Seconds(10));
      if (mpsd) mpsd->Terminate(absl::Seconds(10));
      kubelet.reset();
      std::filesystem::remove_all(tmp);
    }
    std::printf("| %s | %.1f ms | %s | %s | %s | %.0f / %.0f µs | %.0f / %.0f µs |\n",
                scenario.name.c_str(), Percentile(startup_ms, 0.5), rss.c_str(), hwm.c_str(),
                threads.c_str(), Percentile(allocate_us, 0.5), Percentile(allocate_us, 0.99),
                Percentile(prefer_us, 0.5), Percentile(prefer_us, 0.99));
  }
  return 0;
}
