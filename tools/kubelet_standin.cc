// nvdp-kubelet-standin: a kubelet stand-in for scripts/rootfs-check.sh.
//
// Serves kubelet's Registration service on <dir>/kubelet.sock (tests/fakes/kubelet), waits until
// `--resource` registers and advertises at least `--devices` healthy devices, then admits one
// container asking for one device the way kubelet does (GetPreferredAllocation, Allocate) and
// prints what it received. Exit status 0 on success, 1 on a timeout or a refused admission.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fakes/kubelet/test_kubelet.h"

namespace {

using nvdp::testing::DeviceState;
using nvdp::testing::TestKubelet;

int Fail(const std::string& message) {
  std::fprintf(stderr, "kubelet-standin: %s\n", message.c_str());
  return 1;
}

int HealthyCount(const std::vector<DeviceState>& devices) {
  int healthy = 0;
  for (const auto& device : devices) healthy += device.healthy ? 1 : 0;
  return healthy;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Kubelet stand-in: waits for a device plugin to register and admits one container"};
  std::string dir;
  std::string resource = "nvidia.com/gpu";
  int devices = 1;
  double timeout_s = 30;
  cli.add_option("--dir", dir, "device-plugin directory to serve kubelet.sock in")->required();
  cli.add_option("--resource", resource, "resource name to wait for")->capture_default_str();
  cli.add_option("--devices", devices, "healthy devices the resource must advertise")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cli.add_option("--timeout", timeout_s, "seconds to wait")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(cli, argc, argv);

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto kubelet = TestKubelet::Start(dir);
  if (!kubelet.ok()) return Fail(absl::StrCat("cannot serve: ", kubelet.status().ToString()));
  std::printf("kubelet-standin: serving %s\n", (*kubelet)->socket_path().c_str());
  std::fflush(stdout);

  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  if (!(*kubelet)->WaitForRegistrations(resource, 1, timeout)) {
    return Fail(absl::StrCat("no registration of ", resource, " within ", timeout_s, " s"));
  }
  const auto registration = (*kubelet)->LastRegistration(resource);
  std::printf("kubelet-standin: registered %s endpoint=%s version=%s\n", resource.c_str(),
              registration->endpoint().c_str(), registration->version().c_str());
  if (!(*kubelet)->WaitForDevices(
          resource, [&](const auto& list) { return HealthyCount(list) >= devices; }, timeout)) {
    return Fail(absl::StrCat(resource, " advertises ", HealthyCount((*kubelet)->Devices(resource)),
                             " healthy devices, want ", devices));
  }
  std::printf("kubelet-standin: %s advertises %d healthy devices\n", resource.c_str(),
              HealthyCount((*kubelet)->Devices(resource)));

  auto admission = (*kubelet)->Admit(resource, 1);
  if (!admission.ok())
    return Fail(absl::StrCat("Allocate refused: ", admission.status().ToString()));
  std::printf("kubelet-standin: allocated %s\n", absl::StrJoin(admission->device_ids, ",").c_str());
  for (const auto& [key, value] : admission->response.envs()) {
    std::printf("kubelet-standin:   env %s=%s\n", key.c_str(), value.c_str());
  }
  return 0;
}
