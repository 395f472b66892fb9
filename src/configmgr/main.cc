// config-manager: gives a node the device-plugin config named by its label, as upstream's
// config-manager does. It reads the node's `nvidia.com/device-plugin.config` label from the
// Kubernetes API (watching only its own node), copies the named file from the mounted ConfigMap
// directory to the file the plugin reads, and sends the plugin SIGHUP, which reloads it. With
// --oneshot it writes the config once and exits (the init container); otherwise it follows the
// label until SIGTERM / SIGINT (the sidecar). See docs/config-manager.md.
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "config/version.h"
#include "configmgr/apply.h"
#include "configmgr/curl_http_client.h"
#include "configmgr/node_watch.h"
#include "configmgr/selection.h"
#include "configmgr/signaler.h"
#include "logging/logging.h"
#include "mps/clock.h"
#include "spdlog/spdlog.h"

namespace {

using nvdp::configmgr::ConfigApplier;

constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

struct Flags {
  std::string node_name;
  std::string node_label = "nvidia.com/device-plugin.config";
  std::string srcdir;
  std::string dst;
  std::string default_config;
  std::string fallbacks = "named,single";
  bool send_signal = true;
  int signal = SIGHUP;
  std::string process_to_signal = "nvidia-device-plugin";
  bool oneshot = false;
  std::string log_level = "info";
  // Ours, for running outside a cluster and for tests.
  std::string api_server;
  std::string token_file = std::string(kServiceAccountDir) + "/token";
  std::string ca_file = std::string(kServiceAccountDir) + "/ca.crt";
  std::string proc_root = "/proc";
  int watch_timeout_s = 300;
  CLI::Option* token_opt = nullptr;
  CLI::Option* ca_opt = nullptr;
};

// Prints each option's environment variable as "[env NAME]".
class EnvFormatter : public CLI::Formatter {
 public:
  std::string make_option_opts(const CLI::Option* opt) const override {
    std::string out = CLI::Formatter::make_option_opts(opt);
    if (opt->get_envname().empty()) return out;
    const std::string from = " (" + get_label("Env") + ":" + opt->get_envname() + ")";
    const size_t at = out.find(from);
    if (at != std::string::npos) out.replace(at, from.size(), " [env " + opt->get_envname() + "]");
    return out;
  }
};

void AddFlags(CLI::App& cli, Flags& f) {
  cli.formatter(std::make_shared<EnvFormatter>());
  cli.add_option("--node-name", f.node_name, "the name of this node (required)")
      ->envname("NODE_NAME")
      ->required();
  cli.add_option("--node-label", f.node_label, "the node label naming the config to use")
      ->envname("NODE_LABEL")
      ->capture_default_str();
  cli.add_option("--config-file-srcdir", f.srcdir,
                 "directory holding the available configs, one file per config name (a mounted "
                 "ConfigMap)")
      ->envname("CONFIG_FILE_SRCDIR")
      ->required();
  cli.add_option("--config-file-dst", f.dst, "the config file the plugin reads; written here")
      ->envname("CONFIG_FILE_DST")
      ->required();
  cli.add_option("--default-config", f.default_config,
                 "the config to use when the node label is unset (fallback strategy 'named')")
      ->envname("DEFAULT_CONFIG");
  cli.add_option("--fallback-strategies", f.fallbacks,
                 "comma list of what to do when the label is unset: named (the default config), "
                 "single (the only config), empty (an empty config)")
      ->envname("FALLBACK_STRATEGIES")
      ->capture_default_str();
  cli.add_flag("--send-signal{true},!--no-send-signal", f.send_signal,
               "signal the plugin after writing a new config")
      ->envname("SEND_SIGNAL")
      ->capture_default_str();
  cli.add_option("--signal", f.signal, "the signal to send (1 = SIGHUP)")
      ->envname("SIGNAL")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cli.add_option("--process-to-signal", f.process_to_signal,
                 "the name of the process(es) to signal, found in /proc (shareProcessNamespace)")
      ->envname("PROCESS_TO_SIGNAL")
      ->capture_default_str();
  cli.add_flag("--oneshot", f.oneshot, "write the config once and exit (init container)")
      ->envname("ONESHOT");
  cli.add_option("--log-level", f.log_level, "trace, debug, info, warn, error")
      ->envname("LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  cli.add_option("--api-server", f.api_server,
                 "(nvdp) API server URL, http or https; default "
                 "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT")
      ->envname("NVDP_API_SERVER");
  f.token_opt =
      cli.add_option("--token-file", f.token_file,
                     "(nvdp) bearer token file; when the default is missing and --api-server is "
                     "given, no token is sent")
          ->envname("NVDP_TOKEN_FILE")
          ->capture_default_str();
  f.ca_opt =
      cli.add_option("--ca-file", f.ca_file,
                     "(nvdp) CA bundle for an https API server; when the default is missing, the "
                     "system CAs")
          ->envname("NVDP_CA_FILE")
          ->capture_default_str();
  cli.add_option("--proc-root", f.proc_root, "(nvdp) where to look for the processes to signal")
      ->envname("NVDP_PROC_ROOT")
      ->capture_default_str();
  cli.add_option("--watch-timeout", f.watch_timeout_s,
                 "(nvdp) seconds after which the API server ends a watch and it is renewed")
      ->envname("NVDP_WATCH_TIMEOUT")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cli.set_version_flag("--version", std::string("config-manager ") + nvdp::config::kPluginVersion);
}

std::optional<std::string> ApiServer(const Flags& f) {
  if (!f.api_server.empty()) return f.api_server;
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') return std::nullopt;
  const std::string h = host;
  return absl::StrCat("https://", h.find(':') != std::string::npos ? "[" + h + "]" : h, ":", port);
}

std::string LabelText(const std::optional<std::string>& label) {
  return label.has_value() ? "\"" + *label + "\"" : "unset";
}

// Applies the config for `label` and logs what happened. Returns false for a failure worth
// retrying (I/O), true otherwise (including a label naming a config that does not exist, which is
// logged once per value).
bool ApplyAndLog(ConfigApplier& applier, const Flags& f, const std::optional<std::string>& label,
                 bool* ok = nullptr) {
  auto result = applier.Apply(label);
  if (ok != nullptr) *ok = result.ok();
  if (!result.ok()) {
    spdlog::error("label {}={}: {}; keeping the current config", f.node_label, LabelText(label),
                  std::string(result.status().message()));
    return result.status().code() == absl::StatusCode::kNotFound;
  }
  const std::string name =
      result->selection.name.has_value() ? "\"" + *result->selection.name + "\"" : "(empty)";
  if (!result->written) {
    spdlog::debug("label {}={}: config {} ({}) is already in place at {}", f.node_label,
                  LabelText(label), name, result->selection.reason, f.dst);
    return true;
  }
  spdlog::info("label {}={}: wrote config {} ({}) to {}", f.node_label, LabelText(label), name,
               result->selection.reason, f.dst);
  if (!f.send_signal) return true;
  if (!result->signal_status.ok()) {
    spdlog::error("signalling {}: {}", f.process_to_signal,
                  std::string(result->signal_status.message()));
  } else if (result->signalled == 0) {
    spdlog::warn("no process named {} found; nothing signalled", f.process_to_signal);
  } else {
    spdlog::info("sent signal {} to {} process(es) named {}", f.signal, result->signalled,
                 f.process_to_signal);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  CLI::App cli{"Gives this node the device-plugin config named by its node label"};
  Flags f;
  AddFlags(cli, f);
  CLI11_PARSE(cli, argc, argv);
  nvdp::logging::Setup(f.log_level);

  auto fallbacks = nvdp::configmgr::ParseFallbacks(f.fallbacks);
  if (!fallbacks.ok()) {
    spdlog::error("--fallback-strategies: {}", std::string(fallbacks.status().message()));
    return 1;
  }
  const std::optional<std::string> api_server = ApiServer(f);
  if (!api_server.has_value()) {
    spdlog::error(
        "no API server: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are unset and "
        "--api-server was not given");
    return 1;
  }
  nvdp::configmgr::CurlOptions curl_options;
  auto readable = [](const std::string& path) { return static_cast<bool>(std::ifstream(path)); };
  if (readable(f.token_file)) {
    curl_options.token_file = f.token_file;
  } else if (f.token_opt->count() > 0 || f.api_server.empty()) {
    spdlog::error("cannot read the token file {}", f.token_file);
    return 1;
  } else {
    spdlog::info("no token file at {}: sending no token to {}", f.token_file, *api_server);
  }
  if (api_server->starts_with("https:")) {
    if (readable(f.ca_file)) {
      curl_options.ca_file = f.ca_file;
    } else if (f.ca_opt->count() > 0) {
      spdlog::error("cannot read the CA file {}", f.ca_file);
      return 1;
    } else {
      spdlog::warn("no CA file at {}: using the system CAs", f.ca_file);
    }
  }
  auto http = nvdp::configmgr::CurlHttpClient::Create(curl_options);
  if (!http.ok()) {
    spdlog::error("{}", std::string(http.status().message()));
    return 1;
  }

  absl::Notification stop;
  std::thread([&signals, &stop] {
    nvdp::logging::NameThisThread("nvdp-signals");
    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGHUP) {
        spdlog::info("SIGHUP ignored");
        continue;
      }
      spdlog::info("signal {}: stopping", sig);
      if (!stop.HasBeenNotified()) stop.Notify();
    }
  }).detach();

  nvdp::configmgr::ApplyOptions apply_options;
  apply_options.srcdir = f.srcdir;
  apply_options.dst = f.dst;
  apply_options.selection.default_config = f.default_config;
  apply_options.selection.fallbacks = *fallbacks;
  apply_options.send_signal = f.send_signal;
  apply_options.signal = f.signal;
  apply_options.process_to_signal = f.process_to_signal;
  nvdp::configmgr::ProcSignaler signaler(f.proc_root);
  ConfigApplier applier(apply_options, &signaler);

  nvdp::configmgr::WatchOptions watch_options;
  watch_options.api_server = *api_server;
  watch_options.node_name = f.node_name;
  watch_options.label_key = f.node_label;
  watch_options.watch_timeout_seconds = f.watch_timeout_s;
  nvdp::configmgr::NodeWatcher watcher(**http, nvdp::mps::RealClock(), watch_options);

  spdlog::info("config-manager {}: node {}, label {}, configs in {}, writing {}, {}{}",
               nvdp::config::kPluginVersion, f.node_name, f.node_label, f.srcdir, f.dst,
               f.send_signal ? absl::StrCat("then signal ", f.signal, " to ", f.process_to_signal)
                             : std::string("no signal"),
               f.oneshot ? " (oneshot)" : "");
  if (f.oneshot) {
    auto node = watcher.ListWithRetry(5, stop);
    if (!node.ok()) {
      spdlog::error("{}", std::string(node.status().message()));
      return stop.HasBeenNotified() ? 0 : 1;
    }
    bool ok = false;
    ApplyAndLog(applier, f, node->label, &ok);
    return ok ? 0 : 1;
  }
  watcher.Run(
      [&](const std::optional<std::string>& label) { return ApplyAndLog(applier, f, label); },
      stop);
  spdlog::info("stopped");
  return 0;
}
