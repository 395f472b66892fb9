// The real config-manager binary against the fake API server (tests/fakes/apiserver, Python's
// http.server on 127.0.0.1) and a real process to signal: a copy of /bin/sleep under a name
// unique to this test process (SIGHUP ends it, which its exit status shows).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "configmgr/curl_http_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mps/process.h"
#include "mps/temp_dir.h"
#include "nlohmann/json.hpp"
#include "nvml/fake_nvml_env.h"

namespace nvdp::configmgr {
namespace {

using mps::testing::ReadFile;
using mps::testing::WriteFile;
using ::testing::HasSubstr;

constexpr auto kWait = std::chrono::seconds(20);  // upper bound for awaited events, never slept
constexpr char kConfigA[] = "version: v1\nflags:\n  migStrategy: none\n# config a\n";
constexpr char kConfigB[] = "version: v1\nflags:\n  migStrategy: none\n# config b\n";

bool WaitUntil(const std::function<bool()>& predicate) {
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

bool KilledBy(mps::ChildProcess& child, int sig) {
  auto status = child.Wait(absl::Seconds(20));
  return status.has_value() && status->signal == sig;
}

class ConfigManagerTest : public ::testing::Test {
 protected:
  ConfigManagerTest() : target_name_("cmt" + std::to_string(::getpid())) {
    std::filesystem::create_directory(srcdir());
    WriteFile(srcdir() + "/a", kConfigA);
    WriteFile(srcdir() + "/b", kConfigB);
    std::filesystem::copy_file("/bin/sleep", tmp_.path() + "/" + target_name_);
    std::filesystem::permissions(tmp_.path() + "/" + target_name_,
                                 std::filesystem::perms::owner_all);
    auto http = CurlHttpClient::Create({});
    EXPECT_TRUE(http.ok()) << http.status();
    if (http.ok()) http_ = *std::move(http);
  }
  ~ConfigManagerTest() override {
    if (manager_ != nullptr && !manager_->Poll()) manager_->Terminate(absl::Seconds(5));
    if (server_ != nullptr) server_->Terminate(absl::Seconds(5));
    if (HasFailure()) std::fprintf(stderr, "--- config-manager log ---\n%s", Log().c_str());
  }

  std::string srcdir() const { return tmp_.path() + "/available-configs"; }
  std::string dst() const { return tmp_.path() + "/config/config.yaml"; }
  std::string api() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string Log() const { return ReadFile(tmp_.path() + "/config-manager.log"); }
  std::string Dst() const { return ReadFile(dst()); }

  void StartServer(const std::string& label) {
    mps::CommandSpec spec;
    spec.program = "python3";
    spec.args = {testutil::SourceDir() + "/tests/fakes/apiserver/fake_apiserver.py",
                 "--port-file=" + tmp_.path() + "/port", "--node=node1", "--label=" + label};
    spec.env = mps::InheritedEnvironment();
    auto child = mps::RealProcessRunner().Spawn(spec);
    ASSERT_TRUE(child.ok()) << child.status();
    server_ = *std::move(child);
    ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(tmp_.path() + "/port"); }))
        << "the fake API server did not start";
    port_ = std::stoi(ReadFile(tmp_.path() + "/port"));
  }

  // GET /control/<what> on the fake API server; its JSON answer.
  nlohmann::json Control(const std::string& what) {
    absl::Notification never;
    auto response = http_->Get(api() + "/control/" + what, absl::Seconds(10), never);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return {};
    EXPECT_EQ(response->status, 200) << response->body;
    return nlohmann::json::parse(response->body);
  }
  int Lists() { return Control("stats").value("lists", -1); }
  int Watches() { return Control("stats").value("watches", -1); }

  // Starts config-manager with `args` and `env` ("K=V"), stderr to the log.
  void StartManager(const std::vector<std::string>& args, const std::vector<std::string>& env) {
    mps::CommandSpec spec;
    spec.program = "/bin/sh";
    spec.args = {"-c", "exec \"$0\" \"$@\" 2>>\"" + tmp_.path() + "/config-manager.log\"",
                 testutil::BinDir() + "/config-manager", "--api-server=" + api()};
    spec.args.insert(spec.args.end(), args.begin(), args.end());
    // This environment without the variables config-manager reads (a CI job running in a pod
    // may have NODE_NAME), then `env`.
    for (const std::string& var : mps::InheritedEnvironment()) {
      const std::string key = var.substr(0, var.find('='));
      static const std::set<std::string> kOurs = {
          "NODE_NAME",         "NODE_LABEL",     "CONFIG_FILE_SRCDIR",
          "CONFIG_FILE_DST",   "DEFAULT_CONFIG", "FALLBACK_STRATEGIES",
          "SEND_SIGNAL",       "SIGNAL",         "PROCESS_TO_SIGNAL",
          "ONESHOT",           "LOG_LEVEL",      "NVDP_API_SERVER",
          "NVDP_TOKEN_FILE",   "NVDP_CA_FILE",   "NVDP_PROC_ROOT",
          "NVDP_WATCH_TIMEOUT"};
      if (kOurs.count(key) == 0) spec.env.push_back(var);
    }
    spec.env.insert(spec.env.end(), env.begin(), env.end());
    auto child = mps::RealProcessRunner().Spawn(spec);
    ASSERT_TRUE(child.ok()) << child.status();
    manager_ = *std::move(child);
  }

  // The environment of the pod spec's containers, for this test's directories.
  std::vector<std::string> PodEnv(bool oneshot, bool send_signal) const {
    return {"NODE_NAME=node1",
            "NODE_LABEL=nvidia.com/device-plugin.config",
            "CONFIG_FILE_SRCDIR=" + srcdir(),
            "CONFIG_FILE_DST=" + dst(),
            "DEFAULT_CONFIG=a",
            "FALLBACK_STRATEGIES=named,single",
            std::string("SEND_SIGNAL=") + (send_signal ? "true" : "false"),
            "SIGNAL=1",
            "PROCESS_TO_SIGNAL=" + target_name_,
            std::string("ONESHOT=") + (oneshot ? "true" : "false")};
  }

  // A process named like the plugin this test signals.
  std::unique_ptr<mps::ChildProcess> StartTarget() {
    mps::CommandSpec spec;
    spec.program = tmp_.path() + "/" + target_name_;
    spec.args = {"600"};
    spec.env = mps::InheritedEnvironment();
    auto child = mps::RealProcessRunner().Spawn(spec);
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? *std::move(child) : nullptr;
  }

  mps::testing::TempDir tmp_;
  const std::string target_name_;
  std::unique_ptr<CurlHttpClient> http_;
  std::unique_ptr<mps::ChildProcess> server_;
  std::unique_ptr<mps::ChildProcess> manager_;
  int port_ = 0;
};

TEST_F(ConfigManagerTest, OneshotWritesTheDefaultConfigAndExits) {
  StartServer("");  // the node has no label: DEFAULT_CONFIG applies
  auto target = StartTarget();
  ASSERT_NE(target, nullptr);
  StartManager({}, PodEnv(/*oneshot=*/true, /*send_signal=*/false));
  auto status = manager_->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->Success()) << status->ToString();
  EXPECT_EQ(Dst(), kConfigA);
  EXPECT_THAT(Log(), HasSubstr("(default config)"));
  EXPECT_FALSE(target->Poll().has_value()) << "SEND_SIGNAL=false, yet the process was signalled";
}

TEST_F(ConfigManagerTest, OneshotFailsOnALabelNamingNoConfig) {
  StartServer("nope");
  StartManager({}, PodEnv(/*oneshot=*/true, /*send_signal=*/false));
  auto status = manager_->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->exit_code, 1) << status->ToString();
  EXPECT_FALSE(std::filesystem::exists(dst()));
  EXPECT_THAT(Log(), HasSubstr("\"nope\""));
  EXPECT_THAT(Log(), HasSubstr("available: a, b"));
}

TEST_F(ConfigManagerTest, SidecarFollowsTheLabelAndSignalsThePlugin) {
  StartServer("a");
  auto target = StartTarget();
  ASSERT_NE(target, nullptr);
  StartManager({"--log-level=debug"}, PodEnv(/*oneshot=*/false, /*send_signal=*/true));

  // Start: the label's config is written, the plugin signalled.
  ASSERT_TRUE(WaitUntil([&] { return Dst() == kConfigA; }));
  EXPECT_TRUE(KilledBy(*target, SIGHUP));

  // a -> b.
  target = StartTarget();
  ASSERT_NE(target, nullptr);
  Control("label?value=b");
  ASSERT_TRUE(WaitUntil([&] { return Dst() == kConfigB; }));
  EXPECT_TRUE(KilledBy(*target, SIGHUP));
  EXPECT_THAT(Log(), HasSubstr("sent signal 1 to 1 process(es) named " + target_name_));

  // An unknown name: logged, the config kept, nothing signalled.
  target = StartTarget();
  ASSERT_NE(target, nullptr);
  Control("label?value=nope");
  ASSERT_TRUE(WaitUntil([&] { return Log().find("\"nope\"") != std::string::npos; }));
  EXPECT_THAT(Log(), HasSubstr("available: a, b"));
  EXPECT_EQ(Dst(), kConfigB);
  EXPECT_FALSE(target->Poll().has_value());

  // The server cuts the watch: config-manager lists and watches again, then sees b -> a.
  const int lists = Lists();
  const int watches = Watches();
  Control("drop");
  ASSERT_TRUE(WaitUntil([&] { return Lists() > lists && Watches() > watches; }));
  Control("label?value=a");
  ASSERT_TRUE(WaitUntil([&] { return Dst() == kConfigA; }));
  EXPECT_TRUE(KilledBy(*target, SIGHUP));

  // 410 Gone: listed and watched again.
  target = StartTarget();
  ASSERT_NE(target, nullptr);
  const int lists_before_expiry = Lists();
  Control("expire");
  ASSERT_TRUE(WaitUntil([&] { return Lists() >= lists_before_expiry + 2; }));
  EXPECT_THAT(Log(), HasSubstr("expired; listing again"));
  Control("label?value=b");
  ASSERT_TRUE(WaitUntil([&] { return Dst() == kConfigB; }));
  EXPECT_TRUE(KilledBy(*target, SIGHUP));

  // SIGTERM: a prompt, clean exit.
  ::kill(manager_->pid(), SIGTERM);
  auto status = manager_->Wait(absl::Seconds(5));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->Success()) << status->ToString();
}

TEST_F(ConfigManagerTest, VersionAndHelpNameTheEnvironment) {
  mps::CommandSpec spec;
  spec.program = testutil::BinDir() + "/config-manager";
  spec.args = {"--help"};
  spec.env = mps::InheritedEnvironment();
  auto help = mps::RealProcessRunner().Run(spec);
  ASSERT_TRUE(help.ok()) << help.status();
  for (const char* env :
       {"NODE_NAME", "NODE_LABEL", "CONFIG_FILE_SRCDIR", "CONFIG_FILE_DST", "DEFAULT_CONFIG",
        "FALLBACK_STRATEGIES", "SEND_SIGNAL", "SIGNAL", "PROCESS_TO_SIGNAL", "ONESHOT"}) {
    EXPECT_THAT(help->out, HasSubstr(std::string("[env ") + env + "]"));
  }
  spec.args = {"--version"};
  auto version = mps::RealProcessRunner().Run(spec);
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_THAT(version->out, HasSubstr("config-manager "));
}

}  // namespace
}  // namespace nvdp::configmgr
