// stop_latency: how long stopping takes, on the paths where kubelet or an operator waits for it.
//
//   - server stop: DevicePluginServer::Stop() with one ListAndWatch stream open (read up to date),
//     and right after the client cancelled its stream, each after an idle pause (gRPC's slow
//     shutdown showed after about a second of idle).
//   - SIGTERM -> exit: the real nvidia-device-plugin (fake NVML, 8 GPUs, health checks off so
//     only the serving side is measured) registered with the test kubelet, which holds a stream
//     open; from SIGTERM until the process is reaped. Also checks that no socket is left.
//   - re-registration: the test kubelet restarts with no gap (kubelet.sock re-created at once,
//     the plugin's socket wiped); from kubelet accepting again until the plugin registered again.
//
// Prints one markdown table: median, p99 (the largest of fewer than 100 runs) and max per figure.
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "fakes/kubelet/test_kubelet.h"
#include "mps/process.h"
#include "plugin/device_plugin_server.h"
#include "spdlog/spdlog.h"

namespace {

using Clock = std::chrono::steady_clock;

// gRPC's callback threads sleep 100 ms after each second without events: the pauses are spread
// over 0 to 140 ms past `idle` so that runs land both in and out of those sleeps.
std::chrono::milliseconds IdleFor(std::chrono::milliseconds idle, int run) {
  return idle + std::chrono::milliseconds(20 * (run % 8));
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

void Row(const std::string& name, const std::vector<double>& ms) {
  if (ms.empty()) {
    std::printf("| %s | - | - | - | 0 |\n", name.c_str());
    return;
  }
  std::printf("| %s | %.1f ms | %.1f ms | %.1f ms | %zu |\n", name.c_str(), Percentile(ms, 0.5),
              Percentile(ms, 0.99), *std::max_element(ms.begin(), ms.end()), ms.size());
}

std::string TempDir(const char* tag) {
  std::string pattern = std::string("/tmp/nvdp-") + tag + "-XXXXXX";
  return ::mkdtemp(pattern.data());
}

nvdp::sharing::ResourceSpec GpuSpec() {
  nvdp::sharing::ResourceSpec spec;
  spec.name = "nvidia.com/gpu";
  for (unsigned i = 0; i < 8; ++i) {
    nvdp::device::Gpu gpu;
    gpu.uuid = "GPU-" + std::to_string(i);
    gpu.index = i;
    spec.gpus.push_back(gpu);
  }
  return spec;
}

// Stop() of a server whose client holds a stream open (cancel=false) or has just cancelled it.
bool ServerStop(bool cancel, int runs, std::chrono::milliseconds idle, std::vector<double>& out) {
  const std::string dir = TempDir("stop");
  const std::string socket = dir + "/nvidia-gpu.sock";
  for (int run = 0; run < runs; ++run) {
    nvdp::plugin::DevicePluginServer server(GpuSpec(), {}, socket);
    if (!server.Start().ok()) return false;
    auto stub = v1beta1::DevicePlugin::NewStub(
        grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
    auto context = std::make_unique<grpc::ClientContext>();
    auto reader = stub->ListAndWatch(context.get(), v1beta1::Empty());
    v1beta1::ListAndWatchResponse response;
    if (!reader->Read(&response)) return false;
    if (cancel) {
      // The client goes away entirely, as kubelet does when it restarts.
      context->TryCancel();
      while (reader->Read(&response)) {
      }
      (void)reader->Finish();
      reader.reset();
      context.reset();
      stub.reset();
    }
    std::this_thread::sleep_for(IdleFor(idle, run));
    const auto start = Clock::now();
    server.Stop();
    out.push_back(Ms(Clock::now() - start));
    if (!cancel) {
      while (reader->Read(&response)) {
      }
      (void)reader->Finish();
    }
  }
  std::filesystem::remove_all(dir);
  return true;
}

struct Daemon {
  std::string dir;
  std::unique_ptr<nvdp::testing::TestKubelet> kubelet;
  std::unique_ptr<nvdp::mps::ChildProcess> plugin;
};

bool StartDaemon(Daemon& daemon) {
  const std::string bin = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  daemon.dir = TempDir("sl");
  std::filesystem::create_directories(daemon.dir + "/dp");
  auto kubelet = nvdp::testing::TestKubelet::Start(daemon.dir + "/dp");
  if (!kubelet.ok()) return false;
  daemon.kubelet = std::move(*kubelet);
  nvdp::mps::CommandSpec spec;
  spec.program = bin + "/nvidia-device-plugin";
  spec.args = {"--nvml-library=" + bin + "/../lib/fake-nvml/libnvidia-ml.so.1",
               "--kubelet-socket=" + daemon.dir + "/dp/kubelet.sock", "--log-level=error",
               "--pod-resources-socket="};
  spec.env = nvdp::mps::InheritedEnvironment();
  spec.env.push_back(std::string("FAKE_NVML_NODE=") + NVDP_BENCH_NODE);
  spec.env.push_back("DP_DISABLE_HEALTHCHECKS=all");
  auto plugin = nvdp::mps::RealProcessRunner().Spawn(spec);
  if (!plugin.ok()) return false;
  daemon.plugin = std::move(*plugin);
  return daemon.kubelet->WaitForRegistrations("nvidia.com/gpu", 1, std::chrono::seconds(30)) &&
         daemon.kubelet->WaitForDevices(
             "nvidia.com/gpu", [](const auto& d) { return d.size() == 8; },
             std::chrono::seconds(30));
}

bool SigtermToExit(int runs, std::chrono::milliseconds idle, std::vector<double>& out) {
  for (int run = 0; run < runs; ++run) {
    Daemon daemon;
    if (!StartDaemon(daemon)) return false;
    std::this_thread::sleep_for(IdleFor(idle, run));
    const auto start = Clock::now();
    auto status = daemon.plugin->Terminate(absl::Seconds(10));
    out.push_back(Ms(Clock::now() - start));
    if (!status || !status->Success()) {
      std::fprintf(stderr, "plugin did not exit cleanly\n");
      return false;
    }
    if (std::filesystem::exists(daemon.dir + "/dp/nvidia-gpu.sock")) {
      std::fprintf(stderr, "plugin left its socket behind\n");
      return false;
    }
    daemon.kubelet.reset();
    std::filesystem::remove_all(daemon.dir);
  }
  return true;
}

bool Reregistration(int runs, std::chrono::milliseconds idle, std::vector<double>& out) {
  Daemon daemon;
  if (!StartDaemon(daemon)) return false;
  for (int run = 0; run < runs; ++run) {
    std::this_thread::sleep_for(IdleFor(idle, run));
    const int before = daemon.kubelet->Registrations("nvidia.com/gpu");
    if (!daemon.kubelet->Restart().ok()) return false;
    if (!daemon.kubelet->WaitForRegistrations("nvidia.com/gpu", before + 1,
                                              std::chrono::seconds(30))) {
      std::fprintf(stderr, "no registration after restart %d\n", run);
      return false;
    }
    out.push_back(Ms(*daemon.kubelet->LastRegistrationTime("nvidia.com/gpu") -
                     daemon.kubelet->ServingSince()));
  }
  daemon.plugin->Terminate(absl::Seconds(10));
  daemon.kubelet.reset();
  std::filesystem::remove_all(daemon.dir);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Stop, SIGTERM-to-exit and re-registration times of the device plugin"};
  int runs = 15;
  int idle_ms = 1000;
  cli.add_option("--runs", runs, "runs per figure (at least 7)")->capture_default_str();
  cli.add_option("--idle-ms", idle_ms, "idle pause before each stop or restart")
      ->capture_default_str();
  std::string only = "stop,cancel,sigterm,restart";
  cli.add_option("--only", only, "figures to measure, comma-separated")->capture_default_str();
  CLI11_PARSE(cli, argc, argv);
  runs = std::max(runs, 7);
  spdlog::set_level(spdlog::level::err);
  const std::chrono::milliseconds idle(idle_ms);

  std::vector<double> stop_open, stop_cancelled, sigterm, reregister;
  auto wanted = [&](const char* figure) { return only.find(figure) != std::string::npos; };
  if ((wanted("stop") && !ServerStop(false, runs, idle, stop_open)) ||
      (wanted("cancel") && !ServerStop(true, runs, idle, stop_cancelled)) ||
      (wanted("sigterm") && !SigtermToExit(runs, idle, sigterm)) ||
      (wanted("restart") && !Reregistration(runs, idle, reregister))) {
    std::fprintf(stderr, "stop_latency: a measurement failed\n");
    return 1;
  }
  std::printf("| stop path (idle %d-%d ms before each) | median | p99 | max | runs |\n", idle_ms,
              idle_ms + 140);
  std::printf("|---|---:|---:|---:|---:|\n");
  Row("DevicePluginServer::Stop(), stream open", stop_open);
  Row("DevicePluginServer::Stop(), stream just cancelled", stop_cancelled);
  Row("SIGTERM -> exit, stream open (health checks off)", sigterm);
  Row("kubelet.sock re-created, no gap -> registered", reregister);
  return 0;
}
