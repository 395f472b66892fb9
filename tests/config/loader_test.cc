// LoadConfig end to end: precedence (flag > environment > file > default) for
// every setting upstream exposes both ways, AddFlags on a real CLI::App,
// FlagsFromEnv with a fake getenv, errors that name the flag or variable a bad
// value came from, file errors, and reload purity.
#include "config/loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "test_util.h"

namespace nvdp::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::TempDir;
using ::testing::UnorderedElementsAre;

std::function<std::optional<std::string>(const char*)> FakeEnv(
    std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// Parses argv with AddFlags on a fresh CLI::App.
FlagOverrides ParseArgs(std::vector<std::string> args) {
  CLI::App app("test");
  FlagOverrides out;
  AddFlags(app, out);
  std::vector<const char*> argv = {"nvidia-device-plugin"};
  for (const auto& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return out;
}

Config MustLoad(const FlagOverrides& cli, const FlagOverrides& env) {
  auto loaded = LoadConfig(cli, env);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.ok() ? loaded->config : Config{};
}

// A file that sets every flag-backed key to a non-default value.
constexpr char kFullFile[] = R"(version: v1
flags:
  migStrategy: single
  failOnInitError: false
  mpsRoot: /file/mps
  nvidiaDriverRoot: /file/driver
  nvidiaDevRoot: /file/dev
  plugin:
    passDeviceSpecs: true
    deviceListStrategy: [volume-mounts, cdi-cri]
    deviceIDStrategy: index
    cdiAnnotationPrefix: file.example.com/
    containerDriverRoot: /file/driver-root
    sharedDevicesAllocationPolicy: packed
    nvidiaCDIHookPath: /file/ctk
    cdiFeatureFlags: [a, b]
  gdrcopyEnabled: true
  gdsEnabled: true
  mofedEnabled: true
  deviceDiscoveryStrategy: nvml
imex:
  channelIDs: [1, 2]
  required: true
)";

TEST(ConfigPrecedence, DefaultsWithNothingGiven) {
  const Config c = MustLoad({}, {});
  const Config d;
  EXPECT_EQ(c.flags.mig_strategy, MigStrategy::kNone);
  EXPECT_TRUE(c.flags.fail_on_init_error);
  EXPECT_EQ(c.flags.mps_root, "/run/nvidia/mps");
  EXPECT_EQ(c.flags.nvidia_driver_root, "/");
  EXPECT_EQ(c.flags.DevRoot(), "/");
  EXPECT_FALSE(c.flags.plugin.pass_device_specs);
  EXPECT_THAT(c.flags.plugin.device_list_strategy, ElementsAre(DeviceListStrategy::kEnvvar));
  EXPECT_EQ(c.flags.plugin.device_id_strategy, DeviceIdStrategy::kUuid);
  EXPECT_EQ(c.flags.plugin.cdi_annotation_prefix, "cdi.k8s.io/");
  EXPECT_EQ(c.flags.plugin.container_driver_root, "/driver-root");
  EXPECT_EQ(c.flags.plugin.shared_devices_allocation_policy, AllocationPolicy::kDistributed);
  EXPECT_EQ(c.flags.kubelet_socket, d.flags.kubelet_socket);
  EXPECT_FALSE(c.flags.config_file.has_value());
  EXPECT_FALSE(c.flags.nvml_library.has_value());
  EXPECT_TRUE(c.sharing.mps.resources.empty());
  EXPECT_TRUE(c.sharing.time_slicing.resources.empty());
  EXPECT_FALSE(c.sharing.mps.per_container_limits);
  EXPECT_FALSE(c.flags.gdrcopy_enabled);
  EXPECT_FALSE(c.flags.gds_enabled);
  EXPECT_FALSE(c.flags.mofed_enabled);
  EXPECT_EQ(c.flags.device_discovery_strategy, DeviceDiscoveryStrategy::kAuto);
  EXPECT_EQ(c.flags.plugin.nvidia_cdi_hook_path, "/usr/bin/nvidia-ctk");
  EXPECT_THAT(c.flags.plugin.cdi_feature_flags, IsEmpty());
  EXPECT_THAT(c.flags.plugin.cdi_disable_hooks, IsEmpty());
  EXPECT_THAT(c.imex.channel_ids, IsEmpty());
  EXPECT_FALSE(c.imex.required);
  EXPECT_EQ(c.flags.kubelet_socket, "/var/lib/kubelet/device-plugins/kubelet.sock");
}

TEST(ConfigPrecedence, FileOverridesDefaults) {
  TempDir dir;
  const Config c = MustLoad({.config_file = dir.Write("c.yaml", kFullFile)}, {});
  EXPECT_EQ(c.flags.mig_strategy, MigStrategy::kSingle);
  EXPECT_FALSE(c.flags.fail_on_init_error);
  EXPECT_EQ(c.flags.mps_root, "/file/mps");
  EXPECT_EQ(c.flags.nvidia_driver_root, "/file/driver");
  EXPECT_EQ(c.flags.DevRoot(), "/file/dev");
  EXPECT_TRUE(c.flags.plugin.pass_device_specs);
  EXPECT_THAT(c.flags.plugin.device_list_strategy,
              ElementsAre(DeviceListStrategy::kVolumeMounts, DeviceListStrategy::kCdiCri));
  EXPECT_EQ(c.flags.plugin.device_id_strategy, DeviceIdStrategy::kIndex);
  EXPECT_EQ(c.flags.plugin.cdi_annotation_prefix, "file.example.com/");
  EXPECT_EQ(c.flags.plugin.container_driver_root, "/file/driver-root");
  EXPECT_EQ(c.flags.plugin.shared_devices_allocation_policy, AllocationPolicy::kPacked);
  EXPECT_EQ(c.flags.plugin.nvidia_cdi_hook_path, "/file/ctk");
  EXPECT_THAT(c.flags.plugin.cdi_feature_flags, ElementsAre("a", "b"));
  EXPECT_TRUE(c.flags.gdrcopy_enabled);
  EXPECT_TRUE(c.flags.gds_enabled);
  EXPECT_TRUE(c.flags.mofed_enabled);
  EXPECT_EQ(c.flags.device_discovery_strategy, DeviceDiscoveryStrategy::kNvml);
  EXPECT_THAT(c.imex.channel_ids, ElementsAre("1", "2"));
  EXPECT_TRUE(c.imex.required);
  EXPECT_EQ(c.flags.config_file, dir.path() / "c.yaml");
}

// One row per setting: the raw value the env gives, the one the flag gives, and
// how to read the resolved setting back as text.
struct Row {
  std::optional<std::string> FlagOverrides::*member;
  std::string file_value;  // what kFullFile resolves to
  std::string env_value;
  std::string flag_value;
  std::function<std::string(const Config&)> read;
};

std::string Join(const std::vector<DeviceListStrategy>& v) {
  std::vector<std::string> names;
  for (auto s : v) names.emplace_back(ToString(s));
  return absl::StrJoin(names, ",");
}

std::vector<Row> Rows() {
  return {
      {&FlagOverrides::mig_strategy, "single", "mixed", "none",
       [](const Config& c) { return std::string(ToString(c.flags.mig_strategy)); }},
      {&FlagOverrides::fail_on_init_error, "false", "true", "false",
       [](const Config& c) { return std::string(c.flags.fail_on_init_error ? "true" : "false"); }},
      {&FlagOverrides::mps_root, "/file/mps", "/env/mps", "/flag/mps",
       [](const Config& c) { return c.flags.mps_root.value_or("<unset>"); }},
      {&FlagOverrides::nvidia_driver_root, "/file/driver", "/env/driver", "/flag/driver",
       [](const Config& c) { return c.flags.nvidia_driver_root; }},
      {&FlagOverrides::nvidia_dev_root, "/file/dev", "/env/dev", "/flag/dev",
       [](const Config& c) { return c.flags.DevRoot(); }},
      {&FlagOverrides::pass_device_specs, "true", "false", "true",
       [](const Config& c) {
         return std::string(c.flags.plugin.pass_device_specs ? "true" : "false");
       }},
      {&FlagOverrides::device_list_strategy, "volume-mounts,cdi-cri", "cdi-annotations",
       "envvar,volume-mounts",
       [](const Config& c) { return Join(c.flags.plugin.device_list_strategy); }},
      {&FlagOverrides::device_id_strategy, "index", "uuid", "index",
       [](const Config& c) { return std::string(ToString(c.flags.plugin.device_id_strategy)); }},
      {&FlagOverrides::cdi_annotation_prefix, "file.example.com/", "env.example.com/",
       "flag.example.com/", [](const Config& c) { return c.flags.plugin.cdi_annotation_prefix; }},
      {&FlagOverrides::container_driver_root, "/file/driver-root", "/env/driver-root",
       "/flag/driver-root", [](const Config& c) { return c.flags.plugin.container_driver_root; }},
      {&FlagOverrides::shared_devices_allocation_policy, "packed", "distributed", "packed",
       [](const Config& c) {
         return std::string(ToString(c.flags.plugin.shared_devices_allocation_policy));
       }},
      {&FlagOverrides::gdrcopy_enabled, "true", "false", "true",
       [](const Config& c) { return std::string(c.flags.gdrcopy_enabled ? "true" : "false"); }},
      {&FlagOverrides::gds_enabled, "true", "false", "true",
       [](const Config& c) { return std::string(c.flags.gds_enabled ? "true" : "false"); }},
      {&FlagOverrides::mofed_enabled, "true", "false", "true",
       [](const Config& c) { return std::string(c.flags.mofed_enabled ? "true" : "false"); }},
      {&FlagOverrides::device_discovery_strategy, "nvml", "auto", "nvml",
       [](const Config& c) { return std::string(ToString(c.flags.device_discovery_strategy)); }},
      {&FlagOverrides::nvidia_cdi_hook_path, "/file/ctk", "/env/ctk", "/flag/ctk",
       [](const Config& c) { return c.flags.plugin.nvidia_cdi_hook_path; }},
      {&FlagOverrides::cdi_feature_flags, "a,b", "c", "d,e",
       [](const Config& c) { return absl::StrJoin(c.flags.plugin.cdi_feature_flags, ","); }},
      {&FlagOverrides::imex_channel_ids, "1,2", "3", "4,5",
       [](const Config& c) { return absl::StrJoin(c.imex.channel_ids, ","); }},
      {&FlagOverrides::imex_required, "true", "false", "true",
       [](const Config& c) { return std::string(c.imex.required ? "true" : "false"); }},
  };
}

TEST(ConfigPrecedence, FlagBeatsEnvBeatsFileForEverySetting) {
  TempDir dir;
  const std::string file = dir.Write("c.yaml", kFullFile);
  for (const Row& row : Rows()) {
    SCOPED_TRACE(row.env_value);
    FlagOverrides cli{.config_file = file};
    FlagOverrides env;
    // File only.
    EXPECT_EQ(row.read(MustLoad(cli, env)), row.file_value);
    // Env over file.
    env.*row.member = row.env_value;
    EXPECT_EQ(row.read(MustLoad(cli, env)), row.env_value);
    // Flag over env.
    cli.*row.member = row.flag_value;
    EXPECT_EQ(row.read(MustLoad(cli, env)), row.flag_value);
    // Flag over file with no env.
    env.*row.member = std::nullopt;
    EXPECT_EQ(row.read(MustLoad(cli, env)), row.flag_value);
  }
}

TEST(ConfigPrecedence, FlagOnlySettingsBeatEnvAndDefault) {
  EXPECT_EQ(MustLoad({}, {.kubelet_socket = "/env/k.sock"}).flags.kubelet_socket, "/env/k.sock");
  EXPECT_EQ(MustLoad({.kubelet_socket = "/flag/k.sock"}, {.kubelet_socket = "/env/k.sock"})
                .flags.kubelet_socket,
            "/flag/k.sock");
  EXPECT_EQ(MustLoad({}, {.nvml_library = "/env/libnvidia-ml.so.1"}).flags.nvml_library,
            "/env/libnvidia-ml.so.1");
  EXPECT_EQ(MustLoad({.nvml_library = "/flag/lib.so"}, {.nvml_library = "/env/lib.so"})
                .flags.nvml_library,
            "/flag/lib.so");
}

TEST(ConfigPrecedence, ConfigFileFromFlagBeatsEnv) {
  TempDir dir;
  const std::string single = dir.Write("single.yaml", "flags: {migStrategy: single}\n");
  const std::string mixed = dir.Write("mixed.yaml", "flags: {migStrategy: mixed}\n");
  EXPECT_EQ(MustLoad({}, {.config_file = mixed}).flags.mig_strategy, MigStrategy::kMixed);
  EXPECT_EQ(MustLoad({.config_file = single}, {.config_file = mixed}).flags.mig_strategy,
            MigStrategy::kSingle);
}

TEST(ConfigPrecedence, MpsRootDefaultsAndOnlyAnExplicitEmptyValueUnsetsIt) {
  TempDir dir;
  const std::string file = dir.Write("mps.yaml", R"(version: v1
sharing:
  mps:
    resources:
    - name: gpu
      replicas: 10
)");
  EXPECT_EQ(MustLoad({.config_file = file}, {}).flags.mps_root, "/run/nvidia/mps");
  // An empty variable counts as unset: the default stays.
  EXPECT_EQ(
      MustLoad({.config_file = file}, FlagsFromEnv(FakeEnv({{"MPS_ROOT", ""}}))).flags.mps_root,
      "/run/nvidia/mps");
  // An empty flag unsets it, and MPS then needs one; the message names the flag.
  EXPECT_THAT(LoadConfigReport(ParseArgs({"--mps-root=", "--config-file", file}), {}).errors,
              ElementsAre("--mps-root: \"\" \u2014 required when sharing.mps has resources: set a "
                          "directory, or remove the empty value to use the default "
                          "/run/nvidia/mps"));
  const std::string empty = dir.Write("empty.yaml", R"(version: v1
flags: {mpsRoot: ""}
sharing: {mps: {resources: [{name: gpu, replicas: 10}]}}
)");
  EXPECT_THAT(LoadConfigReport({.config_file = empty}, {}).errors,
              ElementsAre(HasSubstr("flags.mpsRoot: \"\" \u2014 required when sharing.mps")));
  EXPECT_EQ(MustLoad({.config_file = empty}, {.mps_root = "/env/mps"}).flags.mps_root, "/env/mps");
}

TEST(ConfigFlags, AddFlagsReadsUpstreamNames) {
  const FlagOverrides f = ParseArgs({
      "--mig-strategy=mixed",
      "--fail-on-init-error=false",
      "--mps-root",
      "/run/nvidia/mps",
      "--nvidia-driver-root=/run/nvidia/driver",
      "--dev-root=/dev-root",
      "--pass-device-specs",
      "--device-list-strategy",
      "envvar,cdi-cri",
      "--device-list-strategy=volume-mounts",
      "--device-id-strategy=index",
      "--cdi-annotation-prefix=x.example.com/",
      "--container-driver-root=/cdr",
      "--shared-devices-allocation-policy=packed",
      "--kubelet-socket=/k/kubelet.sock",
      "--config-file=/etc/c.yaml",
      "--nvml-library=/lib/libnvidia-ml.so.1",
  });
  EXPECT_EQ(f.mig_strategy, "mixed");
  EXPECT_EQ(f.fail_on_init_error, "false");
  EXPECT_EQ(f.mps_root, "/run/nvidia/mps");
  EXPECT_EQ(f.nvidia_driver_root, "/run/nvidia/driver");
  EXPECT_EQ(f.nvidia_dev_root, "/dev-root");
  EXPECT_EQ(f.pass_device_specs, "true");
  EXPECT_EQ(f.device_list_strategy, "envvar,cdi-cri,volume-mounts");
  EXPECT_EQ(f.device_id_strategy, "index");
  EXPECT_EQ(f.cdi_annotation_prefix, "x.example.com/");
  EXPECT_EQ(f.container_driver_root, "/cdr");
  EXPECT_EQ(f.shared_devices_allocation_policy, "packed");
  EXPECT_EQ(f.kubelet_socket, "/k/kubelet.sock");
  EXPECT_EQ(f.config_file, "/etc/c.yaml");
  EXPECT_EQ(f.nvml_library, "/lib/libnvidia-ml.so.1");
}

TEST(ConfigFlags, UnsetFlagsStayUnset) {
  const FlagOverrides f = ParseArgs({});
  EXPECT_FALSE(f.mig_strategy.has_value());
  EXPECT_FALSE(f.pass_device_specs.has_value());
  EXPECT_FALSE(f.device_list_strategy.has_value());
  EXPECT_FALSE(f.config_file.has_value());
}

TEST(ConfigFlags, BooleanFlagsTakeBareOrExplicitValues) {
  EXPECT_EQ(ParseArgs({"--pass-device-specs"}).pass_device_specs, "true");
  EXPECT_EQ(ParseArgs({"--pass-device-specs=false"}).pass_device_specs, "false");
  EXPECT_EQ(ParseArgs({"--pass-device-specs=true"}).pass_device_specs, "true");
  EXPECT_EQ(ParseArgs({"--fail-on-init-error=false", "--fail-on-init-error"}).fail_on_init_error,
            "true");
  // Resolved through LoadConfig.
  EXPECT_FALSE(MustLoad(ParseArgs({"--fail-on-init-error=false"}), {}).flags.fail_on_init_error);
  EXPECT_TRUE(MustLoad(ParseArgs({"--pass-device-specs"}), {}).flags.plugin.pass_device_specs);
  EXPECT_FALSE(MustLoad(ParseArgs({"--pass-device-specs=0"}), {}).flags.plugin.pass_device_specs);
}

TEST(ConfigFlags, RepeatedStringFlagLastWins) {
  EXPECT_EQ(ParseArgs({"--mig-strategy=single", "--mig-strategy=mixed"}).mig_strategy, "mixed");
}

TEST(ConfigFlags, EnvReadsUpstreamNamesAndSkipsEmptyValues) {
  const FlagOverrides f = FlagsFromEnv(FakeEnv({
      {"MIG_STRATEGY", "single"},
      {"FAIL_ON_INIT_ERROR", "false"},
      {"MPS_ROOT", "/run/nvidia/mps"},
      {"NVIDIA_DRIVER_ROOT", "/driver"},
      {"NVIDIA_DEV_ROOT", ""},
      {"PASS_DEVICE_SPECS", "true"},
      {"DEVICE_LIST_STRATEGY", "envvar,cdi-annotations"},
      {"DEVICE_ID_STRATEGY", "index"},
      {"CDI_ANNOTATION_PREFIX", "a.example.com/"},
      {"CONTAINER_DRIVER_ROOT", "/cdr"},
      {"SHARED_DEVICES_ALLOCATION_POLICY", "packed"},
      {"KUBELET_SOCKET", "/k.sock"},
      {"CONFIG_FILE", "/c.yaml"},
      {"NVML_LIBRARY", "/lib.so"},
  }));
  EXPECT_EQ(f.mig_strategy, "single");
  EXPECT_EQ(f.fail_on_init_error, "false");
  EXPECT_EQ(f.mps_root, "/run/nvidia/mps");
  EXPECT_EQ(f.nvidia_driver_root, "/driver");
  EXPECT_FALSE(f.nvidia_dev_root.has_value());
  EXPECT_EQ(f.pass_device_specs, "true");
  EXPECT_EQ(f.device_list_strategy, "envvar,cdi-annotations");
  EXPECT_EQ(f.device_id_strategy, "index");
  EXPECT_EQ(f.cdi_annotation_prefix, "a.example.com/");
  EXPECT_EQ(f.container_driver_root, "/cdr");
  EXPECT_EQ(f.shared_devices_allocation_policy, "packed");
  EXPECT_EQ(f.kubelet_socket, "/k.sock");
  EXPECT_EQ(f.config_file, "/c.yaml");
  EXPECT_EQ(f.nvml_library, "/lib.so");
}

TEST(ConfigFlags, GoStyleBooleansInEnv) {
  for (const char* yes : {"1", "t", "T", "TRUE", "true", "True"}) {
    EXPECT_TRUE(MustLoad({}, {.pass_device_specs = yes}).flags.plugin.pass_device_specs) << yes;
  }
  for (const char* no : {"0", "f", "F", "FALSE", "false", "False"}) {
    EXPECT_FALSE(MustLoad({}, {.fail_on_init_error = no}).flags.fail_on_init_error) << no;
  }
}

TEST(ConfigErrors, BadValuesNameTheirFlagOrVariable) {
  const Report r = LoadConfigReport(
      {.mig_strategy = "foo", .pass_device_specs = "maybe", .device_list_strategy = "envvar,bogus"},
      {.fail_on_init_error = "sometimes",
       .device_id_strategy = "serial",
       .shared_devices_allocation_policy = "random"});
  EXPECT_THAT(r.errors, UnorderedElementsAre(
                            "--mig-strategy: \"foo\" \u2014 must be one of none, single, mixed",
                            "--pass-device-specs: \"maybe\" \u2014 must be true or false",
                            "--device-list-strategy: \"bogus\" \u2014 must be one of envvar, "
                            "volume-mounts, cdi-annotations, cdi-cri",
                            "FAIL_ON_INIT_ERROR: \"sometimes\" \u2014 must be true or false",
                            "DEVICE_ID_STRATEGY: \"serial\" \u2014 must be one of uuid, index",
                            "SHARED_DEVICES_ALLOCATION_POLICY: \"random\" \u2014 must be one of "
                            "distributed, packed"));
}

TEST(ConfigErrors, OnlyTheWinningValueIsChecked) {
  // A bad environment value hidden by a good flag is not used, so not reported.
  EXPECT_TRUE(LoadConfigReport({.mig_strategy = "single"}, {.mig_strategy = "foo"}).ok());
}

TEST(ConfigErrors, ValidationNamesTheOrigin) {
  const Report r = LoadConfigReport({.mps_root = "relative/mps", .kubelet_socket = "k.sock"},
                                    {.nvidia_driver_root = "driver"});
  EXPECT_THAT(r.errors,
              UnorderedElementsAre("--mps-root: \"relative/mps\" \u2014 must be an absolute path",
                                   "NVIDIA_DRIVER_ROOT: \"driver\" \u2014 must be an absolute path",
                                   "--kubelet-socket: \"k.sock\" \u2014 must be an absolute path"));
}

TEST(ConfigErrors, FlagErrorsAndFileErrorsTogether) {
  TempDir dir;
  const std::string file = dir.Write("c.yaml", "version: v3\nflags: {migStrategy: odd}\n");
  const Report r = LoadConfigReport({.mig_strategy = "bad", .config_file = file}, {});
  EXPECT_THAT(r.errors,
              UnorderedElementsAre("version: \"v3\" \u2014 must be v1",
                                   "flags.migStrategy: \"odd\" \u2014 must be one of none, single, "
                                   "mixed",
                                   "--mig-strategy: \"bad\" \u2014 must be one of none, single, "
                                   "mixed"));
}

TEST(ConfigErrors, UnreadableConfigFile) {
  TempDir dir;
  const std::string missing = (dir.path() / "nope.yaml").string();
  EXPECT_THAT(LoadConfigReport({.config_file = missing}, {}).errors,
              ElementsAre("--config-file: \"" + missing +
                          "\" \u2014 cannot be read: No such file or directory"));
  EXPECT_THAT(LoadConfigReport({}, {.config_file = dir.path().string()}).errors,
              ElementsAre("CONFIG_FILE: \"" + dir.path().string() +
                          "\" \u2014 cannot be read: Is a directory"));
}

TEST(ConfigErrors, OversizedConfigFile) {
  TempDir dir;
  const std::string file = dir.Write("big.yaml", std::string(kMaxConfigFileBytes + 1, '#'));
  EXPECT_THAT(LoadConfigReport({.config_file = file}, {}).errors,
              ElementsAre(HasSubstr("cannot be read: larger than 1048576 bytes")));
}

// A FIFO as the config file would block the reader in open() until a writer appears, and a
// stop signal could not end the daemon: it is refused at once.
TEST(ConfigErrors, FifoConfigFileIsRefusedWithoutBlocking) {
  TempDir dir;
  const std::string fifo = (dir.path() / "config.yaml").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THAT(LoadConfigReport({.config_file = fifo}, {}).errors,
              ElementsAre(HasSubstr("cannot be read: not a regular file")));
}

// Every derived unix socket path must fit the 108-byte sun_path, or the daemon never serves.
TEST(ConfigErrors, PluginSocketPathOverTheUnixLimitIsRefused) {
  const std::string dir = "/var/lib/" + std::string(85, 'k');
  auto report = LoadConfigReport({.kubelet_socket = dir + "/kubelet.sock"}, {});
  EXPECT_THAT(report.errors,
              ElementsAre("--kubelet-socket: \"" + (dir + "/kubelet.sock").substr(0, 80) +
                          "...\" \u2014 puts the socket of nvidia.com/gpu at " + dir +
                          "/nvidia-gpu.sock (110 bytes), over the 107-byte unix socket path "
                          "limit; use a shorter directory or resource name"));
  // The kubelet socket itself fits (107 bytes); only the derived path does not.
}

TEST(ConfigErrors, MpsControlSocketPathOverTheUnixLimitIsRefused) {
  TempDir dir;
  const std::string root = "/run/" + std::string(75, 'm');  // 80 bytes, shown whole
  const std::string file = dir.Write("c.yaml", R"(version: v1
flags:
  mpsRoot: )" + root + R"(
sharing:
  mps:
    resources:
    - name: gpu
      replicas: 4
)");
  auto report = LoadConfigReport({.config_file = file}, {});
  EXPECT_THAT(
      report.errors,
      ElementsAre("flags.mpsRoot: \"" + root + "\" \u2014 gives the MPS control socket " + root +
                  "/nvidia.com/gpu/pipe/control (108 bytes), over the 107-byte unix "
                  "socket path limit; use a shorter mpsRoot or resource name"));
}

TEST(ConfigErrors, StatusMessageListsEveryErrorOnItsOwnLine) {
  TempDir dir;
  const std::string file = dir.Write("c.yaml", R"(version: v2
sharing:
  timeSlicing:
    resources:
    - name: gpu
      replicas: 1
)");
  auto loaded = LoadConfig({.config_file = file}, {});
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loaded.status().message(),
            "version: \"v2\" \u2014 must be v1\n"
            "sharing.timeSlicing.resources[0].replicas: 1 \u2014 must be at least 2");
}

TEST(ConfigReload, LoadIsPureAndSeesFileChanges) {
  TempDir dir;
  const std::string file = dir.Write("c.yaml", "flags: {migStrategy: single}\n");
  const FlagOverrides cli{.config_file = file};
  EXPECT_EQ(MustLoad(cli, {}).flags.mig_strategy, MigStrategy::kSingle);
  EXPECT_EQ(MustLoad(cli, {}).flags.mig_strategy, MigStrategy::kSingle);
  dir.Write("c.yaml", "flags: {migStrategy: mixed}\n");
  EXPECT_EQ(MustLoad(cli, {}).flags.mig_strategy, MigStrategy::kMixed);
  // A broken edit fails without side effects; the caller keeps its running
  // config.
  dir.Write("c.yaml", "flags: {migStrategy: [\n");
  EXPECT_FALSE(LoadConfig(cli, {}).ok());
}

TEST(ConfigWarnings, UnknownKeysAreReportedWithTheirPath) {
  TempDir dir;
  const std::string file = dir.Write("c.yaml", R"(version: v1
colour: blue
flags:
  plugin:
    passDeviceSpec: true
sharing:
  mps:
    perContainerLimit: true
    resources:
    - name: gpu
      replicas: 10
      replica: 3
)");
  const Report r = LoadConfigReport({.mps_root = "/run/nvidia/mps", .config_file = file}, {});
  EXPECT_THAT(r.errors, IsEmpty());
  EXPECT_THAT(r.warnings,
              UnorderedElementsAre("colour: unknown key (ignored)",
                                   "flags.plugin.passDeviceSpec: unknown key (ignored)",
                                   "sharing.mps.perContainerLimit: unknown key (ignored)",
                                   "sharing.mps.resources[0].replica: unknown key "
                                   "(ignored)"));
}

TEST(ConfigParse, JsonAndYamlGiveTheSameConfig) {
  auto yaml = ParseConfig(R"(version: v1
flags:
  mpsRoot: /run/nvidia/mps
sharing:
  mps:
    perContainerLimits: true
    memoryLimit: none
    capacityShaping: false
    resources:
    - name: nvidia.com/gpu
      rename: gpu-mps
      devices: [0, "1", "GPU-8e5c4c9e-6ad9-4d0d-9d3e-0c7f1a2b3c4d"]
      replicas: 100
)",
                          "a.yaml");
  auto json = ParseConfig(
      R"({"version":"v1","flags":{"mpsRoot":"/run/nvidia/mps"},"sharing":{"mps":{"perContainerLimits":true,"memoryLimit":"none",)"
      R"("capacityShaping":false,)"
      R"("resources":[{"name":"nvidia.com/gpu","rename":"gpu-mps","devices":[0,"1",)"
      R"("GPU-8e5c4c9e-6ad9-4d0d-9d3e-0c7f1a2b3c4d"],"replicas":100}]}}})",
      "a.json");
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  ASSERT_TRUE(json.ok()) << json.status();
  for (const Config* c : {&yaml->config, &json->config}) {
    ASSERT_EQ(c->sharing.mps.resources.size(), 1u);
    const ReplicatedResource& r = c->sharing.mps.resources[0];
    EXPECT_EQ(r.name, "gpu");
    EXPECT_EQ(r.rename, "gpu-mps");
    EXPECT_EQ(r.replicas, 100);
    EXPECT_EQ(r.devices.kind, DeviceSelector::Kind::kList);
    EXPECT_THAT(r.devices.ids, ElementsAre("0", "1", "GPU-8e5c4c9e-6ad9-4d0d-9d3e-0c7f1a2b3c4d"));
    EXPECT_EQ(c->sharing.mps.memory_limit, MemoryLimit::kNone);
    EXPECT_TRUE(c->sharing.mps.per_container_limits);
    EXPECT_FALSE(c->sharing.mps.capacity_shaping);
    EXPECT_FALSE(c->sharing.mps.fail_requests_greater_than_one.has_value());
    EXPECT_THAT(Validate(*c), IsEmpty());
  }
}

TEST(ConfigParse, CapacityShapingIsOnByDefaultAndMustBeABool) {
  auto on = ParseConfig(
      "sharing: {mps: {perContainerLimits: true, resources: [{name: gpu, replicas: 100}]}}", "x");
  ASSERT_TRUE(on.ok());
  EXPECT_TRUE(on->config.sharing.mps.capacity_shaping);
  auto bad = ParseConfig(
      "sharing: {mps: {capacityShaping: sometimes, resources: [{name: gpu, replicas: 100}]}}", "x");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("sharing.mps.capacityShaping"));
}

TEST(ConfigParse, DevicesForms) {
  auto all = ParseConfig("sharing: {timeSlicing: {resources: [{name: gpu, replicas: 2}]}}", "x");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->config.sharing.time_slicing.resources[0].devices.kind, DeviceSelector::Kind::kAll);
  auto count = ParseConfig(
      "sharing: {timeSlicing: {resources: [{name: gpu, replicas: 2, devices: "
      "3}]}}",
      "x");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count->config.sharing.time_slicing.resources[0].devices.kind,
            DeviceSelector::Kind::kCount);
  EXPECT_EQ(count->config.sharing.time_slicing.resources[0].devices.count, 3);
  auto explicit_all = ParseConfig(
      "sharing: {timeSlicing: {resources: [{name: gpu, replicas: 2, devices: "
      "all}]}}",
      "x");
  ASSERT_TRUE(explicit_all.ok());
  EXPECT_EQ(explicit_all->config.sharing.time_slicing.resources[0].devices.kind,
            DeviceSelector::Kind::kAll);
}

TEST(ConfigParse, DeviceListStrategyAsStringCommaListOrList) {
  for (const char* doc : {"flags: {plugin: {deviceListStrategy: cdi-cri}}",
                          "flags: {plugin: {deviceListStrategy: [cdi-cri]}}",
                          "flags: {plugin: {deviceListStrategy: 'cdi-cri, cdi-cri'}}"}) {
    auto c = ParseConfig(doc, "x");
    ASSERT_TRUE(c.ok()) << doc << ": " << c.status();
    EXPECT_THAT(c->config.flags.plugin.device_list_strategy,
                ElementsAre(DeviceListStrategy::kCdiCri))
        << doc;
  }
}

TEST(ConfigParse, EmptyDocumentsAreDefaults) {
  for (const char* doc : {"", "# only a comment\n", "---\n", "~\n"}) {
    auto c = ParseConfig(doc, "x");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_THAT(c->warnings, IsEmpty());
    EXPECT_THAT(Validate(c->config), IsEmpty());
  }
}

TEST(ConfigParse, NeverThrowsOnHostileInput) {
  const char* docs[] = {
      "&a [*a]",
      "a: &a {b: *a}\nsharing: *a\n",
      "sharing: {mps: {resources: &r [*r, *r]}}",
      "\xff\xfe\x00garbage",
      "version: !!binary aGVsbG8=",
      "flags: {plugin: {deviceListStrategy: {a: b}}}",
      "? [complex, key]\n: value\n",
      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "[[",
  };
  for (const char* doc : docs) {
    const Report r = ParseConfigReport(doc, "hostile");
    (void)Check(r.config);
  }
}

// ---------------------------------------------------------------------------------------------
// Upstream parity: every flag under each name, every variable, aliases, KUBELET_SOCKET="".
// ---------------------------------------------------------------------------------------------

struct Name {
  std::string name;  // "--driver-root" or "NVIDIA_DRIVER_ROOT"
  std::optional<std::string> FlagOverrides::*member;
  std::string value;
};

// Upstream v0.20.0's flags (every name, aliases included) for settings with a value.
std::vector<Name> UpstreamFlags() {
  return {
      {"--mig-strategy", &FlagOverrides::mig_strategy, "single"},
      {"--fail-on-init-error", &FlagOverrides::fail_on_init_error, "false"},
      {"--driver-root", &FlagOverrides::nvidia_driver_root, "/d"},
      {"--nvidia-driver-root", &FlagOverrides::nvidia_driver_root, "/d"},
      {"--dev-root", &FlagOverrides::nvidia_dev_root, "/dev-root"},
      {"--nvidia-dev-root", &FlagOverrides::nvidia_dev_root, "/dev-root"},
      {"--pass-device-specs", &FlagOverrides::pass_device_specs, "true"},
      {"--device-list-strategy", &FlagOverrides::device_list_strategy, "cdi-cri"},
      {"--device-id-strategy", &FlagOverrides::device_id_strategy, "index"},
      {"--gdrcopy-enabled", &FlagOverrides::gdrcopy_enabled, "true"},
      {"--gds-enabled", &FlagOverrides::gds_enabled, "true"},
      {"--mofed-enabled", &FlagOverrides::mofed_enabled, "true"},
      {"--cdi-annotation-prefix", &FlagOverrides::cdi_annotation_prefix, "x.example.com/"},
      {"--nvidia-cdi-hook-path", &FlagOverrides::nvidia_cdi_hook_path, "/ctk"},
      {"--nvidia-ctk-path", &FlagOverrides::nvidia_cdi_hook_path, "/ctk"},
      {"--driver-root-ctr-path", &FlagOverrides::container_driver_root, "/cdr"},
      {"--container-driver-root", &FlagOverrides::container_driver_root, "/cdr"},
      {"--mps-root", &FlagOverrides::mps_root, "/mps"},
      {"--shared-devices-allocation-policy", &FlagOverrides::shared_devices_allocation_policy,
       "packed"},
      {"--device-discovery-strategy", &FlagOverrides::device_discovery_strategy, "nvml"},
      {"--imex-channel-ids", &FlagOverrides::imex_channel_ids, "0,1"},
      {"--imex-required", &FlagOverrides::imex_required, "true"},
      {"--kubelet-socket", &FlagOverrides::kubelet_socket, "/k.sock"},
      {"--config-file", &FlagOverrides::config_file, "/c.yaml"},
      {"--cdi-feature-flags", &FlagOverrides::cdi_feature_flags, "a,b"},
      {"--cdi-disable-hooks", &FlagOverrides::cdi_disable_hooks, "a,b"},
  };
}

// Upstream v0.20.0's variables, every name.
std::vector<Name> UpstreamEnvs() {
  return {
      {"MIG_STRATEGY", &FlagOverrides::mig_strategy, "single"},
      {"FAIL_ON_INIT_ERROR", &FlagOverrides::fail_on_init_error, "false"},
      {"NVIDIA_DRIVER_ROOT", &FlagOverrides::nvidia_driver_root, "/d"},
      {"NVIDIA_DEV_ROOT", &FlagOverrides::nvidia_dev_root, "/dev-root"},
      {"PASS_DEVICE_SPECS", &FlagOverrides::pass_device_specs, "true"},
      {"DEVICE_LIST_STRATEGY", &FlagOverrides::device_list_strategy, "cdi-cri"},
      {"DEVICE_ID_STRATEGY", &FlagOverrides::device_id_strategy, "index"},
      {"GDRCOPY_ENABLED", &FlagOverrides::gdrcopy_enabled, "true"},
      {"GDS_ENABLED", &FlagOverrides::gds_enabled, "true"},
      {"MOFED_ENABLED", &FlagOverrides::mofed_enabled, "true"},
      {"CDI_ANNOTATION_PREFIX", &FlagOverrides::cdi_annotation_prefix, "x.example.com/"},
      {"NVIDIA_CDI_HOOK_PATH", &FlagOverrides::nvidia_cdi_hook_path, "/ctk"},
      {"NVIDIA_CTK_PATH", &FlagOverrides::nvidia_cdi_hook_path, "/ctk"},
      {"DRIVER_ROOT_CTR_PATH", &FlagOverrides::container_driver_root, "/cdr"},
      {"CONTAINER_DRIVER_ROOT", &FlagOverrides::container_driver_root, "/cdr"},
      {"MPS_ROOT", &FlagOverrides::mps_root, "/mps"},
      {"SHARED_DEVICES_ALLOCATION_POLICY", &FlagOverrides::shared_devices_allocation_policy,
       "packed"},
      {"DEVICE_DISCOVERY_STRATEGY", &FlagOverrides::device_discovery_strategy, "nvml"},
      {"IMEX_CHANNEL_IDS", &FlagOverrides::imex_channel_ids, "0,1"},
      {"IMEX_REQUIRED", &FlagOverrides::imex_required, "true"},
      {"KUBELET_SOCKET", &FlagOverrides::kubelet_socket, "/k.sock"},
      {"CONFIG_FILE", &FlagOverrides::config_file, "/c.yaml"},
      {"CDI_FEATURE_FLAGS", &FlagOverrides::cdi_feature_flags, "a,b"},
      {"CDI_DISABLE_HOOKS", &FlagOverrides::cdi_disable_hooks, "a,b"},
  };
}

// The primary flag (without "--") of the setting `member` belongs to, from UpstreamFlags.
std::string PrimaryOf(std::optional<std::string> FlagOverrides::*member) {
  for (const Name& n : UpstreamFlags()) {
    if (n.member == member) return n.name.substr(2);
  }
  return "";
}

TEST(ConfigUpstreamNames, EveryFlagAndAliasIsAcceptedAndRecordsItsName) {
  for (const Name& n : UpstreamFlags()) {
    SCOPED_TRACE(n.name);
    const FlagOverrides f = ParseArgs({n.name + "=" + n.value});
    EXPECT_EQ(f.*n.member, n.value);
    EXPECT_EQ(f.given_as.at(PrimaryOf(n.member)), n.name);
    // As a separate argument too (booleans take `--x=<bool>` only).
    if (n.value != "true" && n.value != "false") {
      EXPECT_EQ(ParseArgs({n.name, n.value}).*n.member, n.value);
    }
  }
}

TEST(ConfigUpstreamNames, EveryVariableIsReadAndRecordsItsName) {
  for (const Name& n : UpstreamEnvs()) {
    SCOPED_TRACE(n.name);
    const FlagOverrides f = FlagsFromEnv(FakeEnv({{n.name, n.value}}));
    EXPECT_EQ(f.*n.member, n.value);
    EXPECT_EQ(f.given_as.at(PrimaryOf(n.member)), n.name);
  }
}

TEST(ConfigUpstreamNames, AliasesResolveToTheSameSetting) {
  const Config c = MustLoad(ParseArgs({"--nvidia-driver-root=/a", "--nvidia-dev-root=/b",
                                       "--container-driver-root=/c", "--nvidia-ctk-path=/d"}),
                            {});
  EXPECT_EQ(c.flags.nvidia_driver_root, "/a");
  EXPECT_EQ(c.flags.DevRoot(), "/b");
  EXPECT_EQ(c.flags.plugin.container_driver_root, "/c");
  EXPECT_EQ(c.flags.plugin.nvidia_cdi_hook_path, "/d");
  const Config e = MustLoad(
      {}, FlagsFromEnv(FakeEnv({{"CONTAINER_DRIVER_ROOT", "/c"}, {"NVIDIA_CTK_PATH", "/d"}})));
  EXPECT_EQ(e.flags.plugin.container_driver_root, "/c");
  EXPECT_EQ(e.flags.plugin.nvidia_cdi_hook_path, "/d");
}

TEST(ConfigUpstreamNames, RepeatedFlagsLastOneWinsAcrossAliases) {
  EXPECT_EQ(ParseArgs({"--driver-root=/a", "--nvidia-driver-root=/b"}).nvidia_driver_root, "/b");
  EXPECT_EQ(ParseArgs({"--nvidia-driver-root=/b", "--driver-root=/a"}).nvidia_driver_root, "/a");
  const FlagOverrides f = ParseArgs({"--nvidia-ctk-path=/x", "--nvidia-cdi-hook-path=/y"});
  EXPECT_EQ(f.nvidia_cdi_hook_path, "/y");
  EXPECT_EQ(f.given_as.at("nvidia-cdi-hook-path"), "--nvidia-cdi-hook-path");
}

TEST(ConfigUpstreamNames, FirstListedVariableWins) {
  FlagOverrides f = FlagsFromEnv(
      FakeEnv({{"DRIVER_ROOT_CTR_PATH", "/primary"}, {"CONTAINER_DRIVER_ROOT", "/alias"}}));
  EXPECT_EQ(f.container_driver_root, "/primary");
  EXPECT_EQ(f.given_as.at("driver-root-ctr-path"), "DRIVER_ROOT_CTR_PATH");
  f = FlagsFromEnv(FakeEnv({{"NVIDIA_CDI_HOOK_PATH", "/primary"}, {"NVIDIA_CTK_PATH", "/alias"}}));
  EXPECT_EQ(f.nvidia_cdi_hook_path, "/primary");
  // An empty variable counts as unset, so the next name is used.
  f = FlagsFromEnv(FakeEnv({{"DRIVER_ROOT_CTR_PATH", ""}, {"CONTAINER_DRIVER_ROOT", "/alias"}}));
  EXPECT_EQ(f.container_driver_root, "/alias");
  EXPECT_EQ(f.given_as.at("driver-root-ctr-path"), "CONTAINER_DRIVER_ROOT");
}

TEST(ConfigUpstreamNames, ListFlagsAccumulate) {
  const FlagOverrides f = ParseArgs({"--imex-channel-ids=0", "--imex-channel-ids", "1,2",
                                     "--cdi-feature-flags=a", "--cdi-disable-hooks=x,y"});
  EXPECT_EQ(f.imex_channel_ids, "0,1,2");
  const Config c = MustLoad(f, {});
  EXPECT_THAT(c.imex.channel_ids, ElementsAre("0", "1", "2"));
  EXPECT_THAT(c.flags.plugin.cdi_feature_flags, ElementsAre("a"));
  EXPECT_THAT(c.flags.plugin.cdi_disable_hooks, ElementsAre("x", "y"));
}

TEST(ConfigUpstreamNames, CdiDisableHooksFlagBeatsEnvBeatsDefault) {
  EXPECT_THAT(MustLoad({}, {}).flags.plugin.cdi_disable_hooks, IsEmpty());
  EXPECT_THAT(MustLoad({}, {.cdi_disable_hooks = "e"}).flags.plugin.cdi_disable_hooks,
              ElementsAre("e"));
  EXPECT_THAT(MustLoad({.cdi_disable_hooks = "f"}, {.cdi_disable_hooks = "e"})
                  .flags.plugin.cdi_disable_hooks,
              ElementsAre("f"));
}

TEST(ConfigUpstreamNames, ErrorsNameTheAliasOrVariableUsed) {
  const Report r = LoadConfigReport(
      ParseArgs({"--nvidia-driver-root=relative", "--gds-enabled=maybe",
                 "--device-discovery-strategy=jetson"}),
      FlagsFromEnv(FakeEnv({{"CONTAINER_DRIVER_ROOT", "cdr"}, {"MOFED_ENABLED", "perhaps"}})));
  EXPECT_THAT(r.errors,
              UnorderedElementsAre(
                  "--nvidia-driver-root: \"relative\" \u2014 must be an absolute path",
                  "--gds-enabled: \"maybe\" \u2014 must be true or false",
                  "--device-discovery-strategy: \"jetson\" \u2014 must be one of auto, nvml, tegra",
                  "CONTAINER_DRIVER_ROOT: \"cdr\" \u2014 must be an absolute path",
                  "MOFED_ENABLED: \"perhaps\" \u2014 must be true or false"));
}

TEST(ConfigUpstreamNames, TegraIsRefusedNamingItsOrigin) {
  EXPECT_THAT(
      LoadConfigReport({}, FlagsFromEnv(FakeEnv({{"DEVICE_DISCOVERY_STRATEGY", "tegra"}}))).errors,
      ElementsAre("DEVICE_DISCOVERY_STRATEGY: \"tegra\" \u2014 tegra (Jetson) discovery is "
                  "not supported; use auto or nvml"));
  EXPECT_TRUE(LoadConfigReport(ParseArgs({"--device-discovery-strategy=auto"}), {}).ok());
}

TEST(ConfigUpstreamNames, UnusedUpstreamSettingsAreWarnedAboutNamingTheirOrigin) {
  const Report r = LoadConfigReport(
      ParseArgs({"--imex-channel-ids=0", "--imex-required", "--nvidia-ctk-path=/opt/ctk"}),
      FlagsFromEnv(FakeEnv({{"CDI_FEATURE_FLAGS", "f1"}, {"CDI_DISABLE_HOOKS", "h1,h2"}})));
  EXPECT_THAT(r.errors, IsEmpty());
  EXPECT_THAT(
      r.warnings,
      UnorderedElementsAre(
          "--imex-channel-ids: [0] \u2014 this plugin injects no IMEX channels; containers get "
          "none",
          "--imex-required: true \u2014 this plugin injects no IMEX channels; containers get none",
          "--nvidia-ctk-path: \"/opt/ctk\" \u2014 this plugin writes no CDI spec; ignored",
          "CDI_FEATURE_FLAGS: [\"f1\"] \u2014 this plugin writes no CDI spec; ignored",
          "CDI_DISABLE_HOOKS: [\"h1\", \"h2\"] \u2014 this plugin writes no CDI spec; ignored"));
  // The default hook path is not warned about, and gdrcopy/gds/mofed are implemented: no warning.
  EXPECT_THAT(LoadConfigReport(ParseArgs({"--nvidia-cdi-hook-path=/usr/bin/nvidia-ctk",
                                          "--gdrcopy-enabled", "--gds-enabled", "--mofed-enabled"}),
                               {})
                  .warnings,
              IsEmpty());
}

TEST(ConfigUpstreamNames, HelpShowsAliasesAndVariables) {
  CLI::App app("test");
  FlagOverrides out;
  AddFlags(app, out);
  const std::string help = app.help();
  EXPECT_THAT(help, HasSubstr("[alias --nvidia-driver-root] [env NVIDIA_DRIVER_ROOT]"));
  EXPECT_THAT(help, HasSubstr("[alias --container-driver-root] [env DRIVER_ROOT_CTR_PATH, "
                              "CONTAINER_DRIVER_ROOT]"));
  EXPECT_THAT(help, HasSubstr("[alias --nvidia-ctk-path] [env NVIDIA_CDI_HOOK_PATH, "
                              "NVIDIA_CTK_PATH]"));
  EXPECT_THAT(help, HasSubstr("[env IMEX_CHANNEL_IDS]"));
}

TEST(ConfigKubeletSocket, EmptyMeansServeWithoutRegistering) {
  // KUBELET_SOCKET="" is set, unlike other empty variables.
  const FlagOverrides env = FlagsFromEnv(FakeEnv({{"KUBELET_SOCKET", ""}, {"MIG_STRATEGY", ""}}));
  EXPECT_EQ(env.kubelet_socket, "");
  EXPECT_FALSE(env.mig_strategy.has_value());
  EXPECT_EQ(MustLoad({}, env).flags.kubelet_socket, "");
  // --kubelet-socket= and --kubelet-socket "" too.
  EXPECT_EQ(MustLoad(ParseArgs({"--kubelet-socket="}), {}).flags.kubelet_socket, "");
  EXPECT_EQ(MustLoad(ParseArgs({"--kubelet-socket", ""}), {}).flags.kubelet_socket, "");
  // `--x=` does not swallow the next argument.
  const FlagOverrides f = ParseArgs({"--kubelet-socket=", "--gds-enabled"});
  EXPECT_EQ(f.kubelet_socket, "");
  EXPECT_EQ(f.gds_enabled, "true");
  // A flag beats an empty variable, and an empty flag beats a variable.
  EXPECT_EQ(MustLoad({.kubelet_socket = "/k.sock"}, env).flags.kubelet_socket, "/k.sock");
  EXPECT_EQ(MustLoad(ParseArgs({"--kubelet-socket="}), {.kubelet_socket = "/k.sock"})
                .flags.kubelet_socket,
            "");
}

// ---------------------------------------------------------------------------------------------
// perContainerLimits omitted: upstream's uniform MPS.
// ---------------------------------------------------------------------------------------------

TEST(ConfigUpstreamMps, OmittedPerContainerLimitsLoadsAsUniform) {
  TempDir dir;
  // The upstream documentation's MPS example.
  const std::string file = dir.Write("mps.yaml", R"(version: v1
sharing:
  mps:
    resources:
    - name: nvidia.com/gpu
      replicas: 10
)");
  const Config c = MustLoad({.config_file = file}, {});
  EXPECT_FALSE(c.sharing.mps.per_container_limits);
  EXPECT_FALSE(c.sharing.mps.fail_requests_greater_than_one.has_value());
  EXPECT_TRUE(FailRequestsGreaterThanOne(c.sharing.mps));
  EXPECT_EQ(c.flags.mps_root, "/run/nvidia/mps");
  // Upstream's 48-client cap applies.
  const std::string big = dir.Write("big.yaml", R"(version: v1
sharing:
  mps:
    resources:
    - name: gpu
      replicas: 49
)");
  EXPECT_THAT(LoadConfigReport({.config_file = big}, {}).errors,
              ElementsAre(HasSubstr("must be at most 48 with perContainerLimits: false")));
  // Flexible MPS is opt-in.
  const std::string flexible = dir.Write("flexible.yaml", R"(version: v1
sharing:
  mps:
    perContainerLimits: true
    resources:
    - name: gpu
      replicas: 100
)");
  const Config f = MustLoad({.config_file = flexible}, {});
  EXPECT_TRUE(f.sharing.mps.per_container_limits);
  EXPECT_FALSE(FailRequestsGreaterThanOne(f.sharing.mps));
}

TEST(ConfigNormalise, LoadReturnsTheNormalisedConfig) {
  TempDir dir;
  const std::string file = dir.Write("c.yaml", R"(version: v1
sharing:
  timeSlicing:
    resources:
    - name: gpu
      replicas: 2
    - name: other
      replicas: 3
  mps:
    resources:
    - name: gpu
      replicas: 10
      devices: [0, 1]
    - name: third
      rename: third-mps
      replicas: 10
      devices: [2]
)");
  auto loaded = LoadConfig({.config_file = file}, {});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& c = loaded->config;
  ASSERT_EQ(c.sharing.time_slicing.resources.size(), 1u);
  EXPECT_EQ(c.sharing.time_slicing.resources[0].name, "other");
  ASSERT_EQ(c.sharing.mps.resources.size(), 2u);
  EXPECT_EQ(c.sharing.mps.resources[0].devices.kind, DeviceSelector::Kind::kAll);
  // With rename, devices is honoured.
  EXPECT_EQ(c.sharing.mps.resources[1].devices.kind, DeviceSelector::Kind::kList);
  EXPECT_THAT(c.sharing.mps.resources[1].devices.ids, ElementsAre("2"));
  EXPECT_THAT(loaded->warnings,
              UnorderedElementsAre(HasSubstr("sharing.mps.resources[0].devices: [0, 1] \u2014 "
                                             "ignored without rename"),
                                   HasSubstr("sharing.timeSlicing.resources[0].name: \"gpu\" "
                                             "\u2014 also shared by sharing.mps.resources[0]")));
  // The normalised config checks cleanly, with no warning left.
  const Problems again = Check(c);
  EXPECT_THAT(again.errors, IsEmpty());
  EXPECT_THAT(again.warnings, IsEmpty());
}

}  // namespace
}  // namespace nvdp::config
