// lean_bench: how lean and quiet the real daemons are on a simulated 8x A100-40GB node.
//
// Runs nvidia-device-plugin (fake NVML) and mps-control-daemon (fake nvidia-cuda-mps-control)
// against the test kubelet and measures, per process:
//   - resident memory once idle (VmRSS, RssAnon, RssFile), threads and their names;
//   - idle wake-ups: the sum over /proc/<pid>/task/*/schedstat of the 3rd field (timeslices run)
//     across an idle window, per second; idle CPU: the sum of the 1st field (ns on CPU), and
//     utime+stime of /proc/<pid>/stat (clock ticks), per minute;
//   - for the plugin: process start -> Register arrived at kubelet, and `--help` start -> exit;
// each in `--runs` runs that alternate an unpinned start with one under CPU affinity {0} (as
// `taskset -c 0`), and after registration with kubelet's ListAndWatch stream open. Then, on
// one plugin per MPS shape (8 GPUs x 100 and x 1000 shares, mps-control-daemon running):
//   - GetPreferredAllocation p99 over the p99 of an empty call (GetDevicePluginOptions) on the
//     same channel, interleaved call by call, per round; the median of the rounds' ratios;
//   - the first ListAndWatch response: from the call to the first message (800 / 8,000 devices);
//   - (8 x 100) RSS across 100,000 RPCs (GetPreferredAllocation and Allocate pairs).
// Prints the details as markdown, then one machine-readable line per figure:
//   FIGURE<TAB>figure<TAB>target<TAB>measured<TAB>pass|miss|info
// which bench/run.sh folds into its final table.
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "deviceplugin/v1beta1/api.grpc.pb.h"
#include "fakes/kubelet/test_kubelet.h"
#include "mps/process.h"
#include "rpc/unix_channel.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
constexpr char kResource[] = "nvidia.com/gpu";
constexpr auto kTimeout = std::chrono::seconds(60);

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}
double Median(const std::vector<double>& v) {
  if (v.empty()) return 0;
  std::vector<double> s = v;
  std::sort(s.begin(), s.end());
  const size_t n = s.size();
  return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
double Max(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}
double Min(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}

// The first three fields of /proc/loadavg: how busy the machine was around a measurement.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "lean_bench: %s\n", what.c_str());
  std::exit(1);
}

// A field of /proc/<pid>/status in kB ("VmRSS" -> 8192), -1 when absent.
long StatusKb(int pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  }
  return -1;
}

struct Usage {
  uint64_t timeslices = 0;  // schedstat field 3, summed over live tasks
  uint64_t run_ns = 0;      // schedstat field 1, summed over live tasks
  uint64_t ticks = 0;       // utime + stime of the whole process (dead threads included)
  struct Task {
    std::string name;  // "comm in wchan"
    uint64_t timeslices = 0, run_ns = 0;
  };
  std::map<std::string, Task> by_task;  // by tid
};

Usage ReadUsage(int pid) {
  Usage u;
  const std::string proc = "/proc/" + std::to_string(pid);
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(proc + "/task", ec)) {
    std::ifstream in(task.path() / "schedstat");
    uint64_t run = 0, wait = 0, slices = 0;
    if (in >> run >> wait >> slices) {
      u.run_ns += run;
      u.timeslices += slices;
      std::ifstream comm(task.path() / "comm"), wchan(task.path() / "wchan");
      std::string name, where;
      std::getline(comm, name);
      std::getline(wchan, where);  // the kernel function it sleeps in ("0": running)
      u.by_task[task.path().filename()] = {name + " in " + (where.empty() ? "?" : where), slices,
                                           run};
    }
  }
  std::ifstream in(proc + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  const auto close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    // Fields from 3 (state) on; utime and stime are fields 14 and 15.
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14 || i == 15) u.ticks += std::stoull(field);
    }
  }
  return u;
}

// Thread names grouped: "grpcpp_sync_ser x2, nvidia-device-p".
std::string ThreadNames(int pid) {
  std::map<std::string, int> names;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "comm");
    std::string name;
    std::getline(in, name);
    names[name]++;
  }
  std::string out;
  for (const auto& [name, count] : names) {
    if (!out.empty()) out += ", ";
    out += "`" + name + "`";
    if (count > 1) out += " ×" + std::to_string(count);
  }
  return out;
}

struct Footprint {
  std::vector<double> rss_mib, anon_mib, file_mib, threads, wakeups_per_s, cpu_ms_per_min,
      stat_cpu_ms_per_min;
  std::map<std::string, int> names;               // grouped names -> how many runs saw them
  std::map<std::string, double> wakeups_by_name;  // thread name -> timeslices/s, summed over runs
  std::map<std::string, double> cpu_by_name;      // thread name -> CPU ms/min, summed over runs
  // Wake-ups of every thread but one of the process's own name sleeping in nanosleep: the health
  // thread inside the fake NVML's nvmlEventSetWait, which polls its events file every 20 ms.
  std::vector<double> wakeups_less_fake_poll, cpu_less_fake_poll;
};

struct Window {
  int pid;
  Usage before;
};

void Record(Footprint& f, int pid, const Usage& before, const Usage& after, double seconds) {
  f.rss_mib.push_back(StatusKb(pid, "VmRSS") / 1024.0);
  f.anon_mib.push_back(StatusKb(pid, "RssAnon") / 1024.0);
  f.file_mib.push_back(StatusKb(pid, "RssFile") / 1024.0);
  f.threads.push_back(StatusKb(pid, "Threads"));
  f.wakeups_per_s.push_back((after.timeslices - before.timeslices) / seconds);
  f.cpu_ms_per_min.push_back((after.run_ns - before.run_ns) / 1e6 * 60 / seconds);
  f.stat_cpu_ms_per_min.push_back((after.ticks - before.ticks) * 1000.0 /
                                  static_cast<double>(::sysconf(_SC_CLK_TCK)) * 60 / seconds);
  f.names[ThreadNames(pid)]++;
  double less_poll = 0, cpu_less_poll = 0;
  for (const auto& [tid, now] : after.by_task) {
    auto it = before.by_task.find(tid);
    const Usage::Task from = it == before.by_task.end() ? Usage::Task{} : it->second;
    const double wakeups = (now.timeslices - from.timeslices) / seconds;
    const double cpu = (now.run_ns - from.run_ns) / 1e6 * 60 / seconds;
    f.wakeups_by_name[now.name] += wakeups;
    f.cpu_by_name[now.name] += cpu;
    if (now.name.find("in hrtimer_nanosleep") == std::string::npos ||
        now.name.rfind("nvidia-device-p", 0) != 0) {
      less_poll += wakeups;
      cpu_less_poll += cpu;
    }
  }
  f.wakeups_less_fake_poll.push_back(less_poll);
  f.cpu_less_fake_poll.push_back(cpu_less_poll);
}

// The largest contributors to VmRSS by mapping (/proc/<pid>/smaps): "libgrpc.so.29 2.1 MiB, ...".
std::string RssByMapping(int pid, size_t top) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::map<std::string, long> kb;
  std::string line, current;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < 17 &&
        line.find(':') > 20) {  // a mapping header: "start-end perms offset dev inode [path]"
      std::istringstream h(line);
      std::string range, perms, offset, dev, inode, path;
      h >> range >> perms >> offset >> dev >> inode;
      std::getline(h, path);
      path.erase(0, path.find_first_not_of(' '));
      current = path.empty() ? "[anon]" : std::filesystem::path(path).filename().string();
    } else if (line.rfind("Rss:", 0) == 0) {
      kb[current] += std::stol(line.substr(4));
    }
  }
  std::vector<std::pair<long, std::string>> sorted;
  for (const auto& [name, k] : kb) sorted.push_back({k, name});
  std::sort(sorted.rbegin(), sorted.rend());
  std::string out;
  for (size_t i = 0; i < std::min(top, sorted.size()); ++i) {
    if (!out.empty()) out += ", ";
    char buf[128];
    std::snprintf(buf, sizeof(buf), "%s %.2f MiB", sorted[i].second.c_str(),
                  sorted[i].first / 1024.0);
    out += buf;
  }
  return out;
}

// While alive, the calling thread runs on CPU 0 only when `pinned` (children started meanwhile
// inherit it, as under `taskset -c 0`); the previous affinity comes back after.
class PinnedToCpu0 {
 public:
  explicit PinnedToCpu0(bool pinned) : pinned_(pinned) {
    if (!pinned_) return;
    CPU_ZERO(&saved_);
    ::sched_getaffinity(0, sizeof(saved_), &saved_);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    ::sched_setaffinity(0, sizeof(one), &one);
  }
  ~PinnedToCpu0() {
    if (pinned_) ::sched_setaffinity(0, sizeof(saved_), &saved_);
  }
  PinnedToCpu0(const PinnedToCpu0&) = delete;
  PinnedToCpu0& operator=(const PinnedToCpu0&) = delete;

 private:
  const bool pinned_;
  cpu_set_t saved_;
};

std::unique_ptr<nvdp::mps::ChildProcess> Spawn(const nvdp::mps::CommandSpec& spec, bool pinned) {
  auto child = [&] {
    PinnedToCpu0 affinity(pinned);
    return nvdp::mps::RealProcessRunner().Spawn(spec);
  }();
  if (!child.ok())
    Fail("cannot start " + spec.program + ": " + std::string(child.status().message()));
  return *std::move(child);
}

// `program --help`, stdout to /dev/null: spawn -> reaped, in ms.
double HelpMs(const std::string& program, bool pinned) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  char* argv[] = {const_cast<char*>(program.c_str()), const_cast<char*>("--help"), nullptr};
  pid_t pid = 0;
  int rc = 0;
  int status = 0;
  Clock::time_point start, end;
  {
    PinnedToCpu0 affinity(pinned);
    start = Clock::now();
    rc = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, environ);
    if (rc == 0) ::waitpid(pid, &status, 0);
    end = Clock::now();
  }
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) Fail(program + " --help failed");
  return Ms(end - start);
}

struct Setup {
  std::string bin, tmp;
  std::vector<std::string> env;
};

std::string MpsConfig(const std::string& tmp, int replicas) {
  const std::string path = tmp + "/config-" + std::to_string(replicas) + ".yaml";
  std::ofstream(path) << "version: v1\nflags:\n  mpsRoot: " << tmp << "/mps\nsharing:\n  mps:\n"
                      << "    perContainerLimits: true\n"
                      << "    resources:\n    - name: gpu\n      replicas: " << replicas << "\n";
  return path;
}

nvdp::mps::CommandSpec Command(const Setup& s, const std::string& program,
                               std::vector<std::string> extra) {
  nvdp::mps::CommandSpec spec;
  spec.program = s.bin + "/" + program;
  spec.args = {"--nvml-library=" + s.bin + "/../lib/fake-nvml/libnvidia-ml.so.1",
               "--mps-control-binary=" + s.bin + "/fake-mps-control", "--log-level=error"};
  spec.args.insert(spec.args.end(), extra.begin(), extra.end());
  spec.env = s.env;
  return spec;
}

std::unique_ptr<nvdp::mps::ChildProcess> StartMpsd(const Setup& s, const std::string& config,
                                                   bool pinned) {
  std::filesystem::remove_all(s.tmp + "/mps");
  auto mpsd = Spawn(
      Command(s, "mps-control-daemon", {"--config-file=" + config, "--set-compute-mode=false"}),
      pinned);
  const auto deadline = Clock::now() + kTimeout;
  while (!std::filesystem::exists(s.tmp + "/mps/.ready")) {
    if (Clock::now() > deadline || mpsd->Poll()) Fail("mps-control-daemon never got ready");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return mpsd;
}

struct Rpc {
  std::shared_ptr<v1beta1::DevicePlugin::Stub> stub;
  v1beta1::PreferredAllocationRequest prefer;
  v1beta1::AllocateRequest allocate;

  Clock::duration Empty() {
    grpc::ClientContext context;
    v1beta1::Empty request;
    v1beta1::DevicePluginOptions response;
    const auto t0 = Clock::now();
    if (!stub->GetDevicePluginOptions(&context, request, &response).ok()) Fail("empty call failed");
    return Clock::now() - t0;
  }
  Clock::duration Prefer() {
    grpc::ClientContext context;
    v1beta1::PreferredAllocationResponse response;
    const auto t0 = Clock::now();
    if (!stub->GetPreferredAllocation(&context, prefer, &response).ok()) Fail("GPA failed");
    return Clock::now() - t0;
  }
  void Allocate() {
    grpc::ClientContext context;
    v1beta1::AllocateResponse response;
    if (!stub->Allocate(&context, allocate, &response).ok()) Fail("Allocate failed");
  }
  // From the call to the first message; returns the device count in `devices`.
  Clock::duration FirstList(int* devices) {
    grpc::ClientContext context;
    v1beta1::Empty request;
    v1beta1::ListAndWatchResponse response;
    const auto t0 = Clock::now();
    auto reader = stub->ListAndWatch(&context, request);
    if (!reader->Read(&response)) Fail("ListAndWatch ended");
    const auto elapsed = Clock::now() - t0;
    *devices = response.devices_size();
    context.TryCancel();
    reader->Finish();
    return elapsed;
  }
};

void Emit(const std::string& figure, const std::string& target, const std::string& measured,
          const char* verdict) {
  std::printf("FIGURE\t%s\t%s\t%s\t%s\n", figure.c_str(), target.c_str(), measured.c_str(),
              verdict);
}
const char* Verdict(bool pass) { return pass ? "pass" : "miss"; }
std::string Fmt(const char* format, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), format, a, b, c);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Memory, threads, wake-ups, idle CPU, start-up and RPC ratios of the daemons"};
  int runs = 7;
  double idle_s = 10;
  int calls = 1000;
  int rpcs = 100000;
  cli.add_option("--runs", runs, "runs per affinity, and rounds per RPC figure")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cli.add_option("--idle-seconds", idle_s, "idle window per run")->capture_default_str();
  cli.add_option("--calls", calls, "calls of each kind per RPC round")->capture_default_str();
  cli.add_option("--rpcs", rpcs, "RPCs for the RSS-growth figure")->capture_default_str();
  CLI11_PARSE(cli, argc, argv);

  Setup s;
  s.bin = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  char pattern[] = "/tmp/nvdp-lean-XXXXXX";
  s.tmp = ::mkdtemp(pattern);
  s.env = nvdp::mps::InheritedEnvironment();
  s.env.push_back(std::string("FAKE_NVML_NODE=") + NVDP_BENCH_NODE);
  const std::string plugin_bin = s.bin + "/nvidia-device-plugin";
  const std::string config100 = MpsConfig(s.tmp, 100);
  const std::string config1000 = MpsConfig(s.tmp, 1000);

  const std::string load_before = LoadAverage();
  // ---- Idle footprint, start-up and --help: whole GPUs (8), runs x {all CPUs, CPU 0}.
  Footprint plugin_fp[2], mpsd_fp[2];
  std::vector<double> startup_ms[2], help_ms[2];
  std::string plugin_maps, mpsd_maps;
  for (int run = 0; run < runs; ++run) {
    for (int pinned = 0; pinned < 2; ++pinned) {
      help_ms[pinned].push_back(HelpMs(plugin_bin, pinned));
      // mps-control-daemon with one MPS resource (8 GPUs x 100) idles next to the plugin.
      auto mpsd = StartMpsd(s, config100, pinned);
      std::filesystem::create_directories(s.tmp + "/dp");
      auto kubelet = nvdp::testing::TestKubelet::Start(s.tmp + "/dp");
      if (!kubelet.ok()) Fail("cannot start the test kubelet");
      const auto start = Clock::now();
      auto plugin = Spawn(
          Command(s, "nvidia-device-plugin", {"--kubelet-socket=" + s.tmp + "/dp/kubelet.sock"}),
          pinned);
      if (!(*kubelet)->WaitForRegistrations(kResource, 1, kTimeout) ||
          !(*kubelet)->WaitForDevices(
              kResource, [](const auto& d) { return d.size() == 8; }, kTimeout)) {
        Fail("the plugin never registered");
      }
      startup_ms[pinned].push_back(Ms(*(*kubelet)->LastRegistrationTime(kResource) - start));
      std::this_thread::sleep_for(std::chrono::seconds(1));  // settle
      const Usage p0 = ReadUsage(plugin->pid()), m0 = ReadUsage(mpsd->pid());
      const auto w0 = Clock::now();
      std::this_thread::sleep_for(std::chrono::duration<double>(idle_s));
      const Usage p1 = ReadUsage(plugin->pid()), m1 = ReadUsage(mpsd->pid());
      const double seconds = std::chrono::duration<double>(Clock::now() - w0).count();
      Record(plugin_fp[pinned], plugin->pid(), p0, p1, seconds);
      Record(mpsd_fp[pinned], mpsd->pid(), m0, m1, seconds);
      if (run == runs - 1 && !pinned) {
        plugin_maps = RssByMapping(plugin->pid(), 10);
        mpsd_maps = RssByMapping(mpsd->pid(), 6);
      }
      plugin->Terminate(absl::Seconds(10));
      mpsd->Terminate(absl::Seconds(10));
      kubelet->reset();
      std::filesystem::remove_all(s.tmp + "/dp");
    }
  }

  const char* kAffinity[] = {"all CPUs", "CPU 0 (taskset -c 0)"};
  std::printf("Load average before / after the idle runs: %s / %s\n\n", load_before.c_str(),
              LoadAverage().c_str());
  std::printf(
      "Idle footprint, %d runs per affinity, %.0f s idle windows after registration with "
      "ListAndWatch open (medians; wake-ups = timeslices run; CPU = schedstat run time; "
      "stat CPU = utime+stime, clock-tick resolution):\n\n",
      runs, idle_s);
  std::printf(
      "| process | affinity | VmRSS | RssAnon | RssFile | threads (min-max) | wake-ups/s "
      "(max) | CPU ms/min (max) | stat CPU ms/min |\n|---|---|---:|---:|---:|---:|---:|---:|"
      "---:|\n");
  for (int proc = 0; proc < 2; ++proc) {
    for (int pinned = 0; pinned < 2; ++pinned) {
      const Footprint& f = proc == 0 ? plugin_fp[pinned] : mpsd_fp[pinned];
      std::printf(
          "| %s | %s | %.2f MiB | %.2f MiB | %.2f MiB | %.0f-%.0f | %.2f (%.2f) | %.3f "
          "(%.3f) | %.1f |\n",
          proc == 0 ? "nvidia-device-plugin (8 whole GPUs)"
                    : "mps-control-daemon (one MPS resource)",
          kAffinity[pinned], Median(f.rss_mib), Median(f.anon_mib), Median(f.file_mib),
          Min(f.threads), Max(f.threads), Median(f.wakeups_per_s), Max(f.wakeups_per_s),
          Median(f.cpu_ms_per_min), Max(f.cpu_ms_per_min), Median(f.stat_cpu_ms_per_min));
    }
  }
  std::printf("\nThread names (/proc/<pid>/task/*/comm; runs that saw each set):\n\n");
  for (int proc = 0; proc < 2; ++proc) {
    for (int pinned = 0; pinned < 2; ++pinned) {
      const Footprint& f = proc == 0 ? plugin_fp[pinned] : mpsd_fp[pinned];
      for (const auto& [names, count] : f.names) {
        std::printf("- %s, %s: %s (%d runs)\n",
                    proc == 0 ? "nvidia-device-plugin" : "mps-control-daemon", kAffinity[pinned],
                    names.c_str(), count);
      }
    }
  }
  std::printf(
      "\nIdle wake-ups by thread name and the kernel function it sleeps in (/proc/<tid>/wchan; "
      "timeslices/s and CPU ms/min, means over runs):\n\n");
  for (int proc = 0; proc < 2; ++proc) {
    for (int pinned = 0; pinned < 2; ++pinned) {
      const Footprint& f = proc == 0 ? plugin_fp[pinned] : mpsd_fp[pinned];
      std::string line;
      for (const auto& [name, sum] : f.wakeups_by_name) {
        if (!line.empty()) line += ", ";
        line += "`" + name + "` " +
                Fmt("%.2f/s %.2f ms/min", sum / runs, f.cpu_by_name.at(name) / runs);
      }
      std::printf("- %s, %s: %s\n", proc == 0 ? "nvidia-device-plugin" : "mps-control-daemon",
                  kAffinity[pinned], line.c_str());
    }
  }
  std::printf(
      "\nVmRSS by mapping (/proc/<pid>/smaps, idle, last unpinned run):\n\n"
      "- nvidia-device-plugin: %s\n- mps-control-daemon: %s\n",
      plugin_maps.c_str(), mpsd_maps.c_str());
  std::printf("\nStart-up, %d runs per affinity (median / min / max):\n\n", runs);
  std::printf("| figure | affinity | median | min | max |\n|---|---|---:|---:|---:|\n");
  for (int pinned = 0; pinned < 2; ++pinned) {
    std::printf("| process start -> Register at kubelet | %s | %.2f ms | %.2f ms | %.2f ms |\n",
                kAffinity[pinned], Median(startup_ms[pinned]), Min(startup_ms[pinned]),
                Max(startup_ms[pinned]));
    std::printf("| --help, start -> exit | %s | %.2f ms | %.2f ms | %.2f ms |\n", kAffinity[pinned],
                Median(help_ms[pinned]), Min(help_ms[pinned]), Max(help_ms[pinned]));
  }
  std::fflush(stdout);

  // ---- RPCs on one plugin per MPS shape.
  struct Shape {
    int replicas;
    int request;
    std::string config;
  };
  std::vector<double> ratio[2], empty_p99[2], prefer_p99[2], empty_p50[2], prefer_p50[2],
      first_list_us[2], list_empty_us[2], pooled_empty[2], pooled_prefer[2];
  int listed[2] = {0, 0};
  double rss_start = 0, rss_half = 0, rss_end = 0, rss_settled = 0, plugin_rss_mps[2] = {0, 0};
  const Shape shapes[] = {{100, 30, config100}, {1000, 300, config1000}};
  for (int shape = 0; shape < 2; ++shape) {
    const Shape& sh = shapes[shape];
    auto mpsd = StartMpsd(s, sh.config, false);
    std::filesystem::create_directories(s.tmp + "/dp");
    auto kubelet = nvdp::testing::TestKubelet::Start(s.tmp + "/dp");
    if (!kubelet.ok()) Fail("cannot start the test kubelet");
    auto plugin = Spawn(
        Command(s, "nvidia-device-plugin",
                {"--config-file=" + sh.config, "--kubelet-socket=" + s.tmp + "/dp/kubelet.sock"}),
        false);
    const size_t devices = 8 * static_cast<size_t>(sh.replicas);
    if (!(*kubelet)->WaitForDevices(
            kResource, [&](const auto& d) { return d.size() == devices; }, kTimeout)) {
      Fail("the MPS resource never registered");
    }
    const auto registration = (*kubelet)->LastRegistration(kResource);
    Rpc rpc;
    rpc.stub = v1beta1::DevicePlugin::NewStub(
        nvdp::rpc::UnixChannel(s.tmp + "/dp/" + registration->endpoint()));
    auto* container = rpc.prefer.add_container_requests();
    for (const auto& d : (*kubelet)->Devices(kResource)) container->add_available_deviceids(d.id);
    container->set_allocation_size(sh.request);
    {
      grpc::ClientContext context;
      v1beta1::PreferredAllocationResponse response;
      if (!rpc.stub->GetPreferredAllocation(&context, rpc.prefer, &response).ok() ||
          response.container_responses_size() == 0) {
        Fail("no preferred allocation");
      }
      auto* request = rpc.allocate.add_container_requests();
      for (const auto& id : response.container_responses(0).deviceids()) {
        request->add_devices_ids(id);
      }
    }
    for (int i = 0; i < 200; ++i) rpc.Empty(), rpc.Prefer();  // warm-up
    for (int round = 0; round < runs; ++round) {
      std::vector<double> e, p;
      for (int i = 0; i < calls; ++i) {
        e.push_back(Us(rpc.Empty()));
        p.push_back(Us(rpc.Prefer()));
      }
      empty_p99[shape].push_back(Percentile(e, 0.99));
      prefer_p99[shape].push_back(Percentile(p, 0.99));
      empty_p50[shape].push_back(Percentile(e, 0.5));
      prefer_p50[shape].push_back(Percentile(p, 0.5));
      ratio[shape].push_back(Percentile(p, 0.99) / Percentile(e, 0.99));
      pooled_empty[shape].insert(pooled_empty[shape].end(), e.begin(), e.end());
      pooled_prefer[shape].insert(pooled_prefer[shape].end(), p.begin(), p.end());
      // First ListAndWatch, next to an empty call.
      list_empty_us[shape].push_back(Us(rpc.Empty()));
      first_list_us[shape].push_back(Us(rpc.FirstList(&listed[shape])));
    }
    if (shape == 0) {
      for (int i = 0; i < 1000; ++i) rpc.Prefer(), rpc.Allocate();  // warm-up
      rss_start = StatusKb(plugin->pid(), "VmRSS") / 1024.0;
      for (int i = 0; i < rpcs / 2; ++i) {
        rpc.Prefer();
        rpc.Allocate();
        if (i + 1 == rpcs / 4) rss_half = StatusKb(plugin->pid(), "VmRSS") / 1024.0;
      }
      rss_end = StatusKb(plugin->pid(), "VmRSS") / 1024.0;
      std::this_thread::sleep_for(std::chrono::seconds(1));
      rss_settled = StatusKb(plugin->pid(), "VmRSS") / 1024.0;
    }
    plugin_rss_mps[shape] = StatusKb(plugin->pid(), "VmRSS") / 1024.0;
    rpc.stub.reset();
    plugin->Terminate(absl::Seconds(10));
    mpsd->Terminate(absl::Seconds(10));
    kubelet->reset();
    std::filesystem::remove_all(s.tmp + "/dp");
  }
  std::filesystem::remove_all(s.tmp);

  const char* kShape[] = {"8 GPUs x 100 shares", "8 GPUs x 1000 shares"};
  std::printf(
      "\nRPCs on one channel, %d rounds of %d interleaved calls each (medians of the "
      "rounds):\n\n",
      runs, calls);
  std::printf(
      "| shape | GetDevicePluginOptions p50 / p99 | GetPreferredAllocation p50 / p99 | "
      "p99 ratio, median of rounds (min-max) | p99 ratio, all calls pooled | "
      "first ListAndWatch (devices) | empty call next to it | plugin VmRSS |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int shape = 0; shape < 2; ++shape) {
    std::printf(
        "| %s | %.0f / %.0f µs | %.0f / %.0f µs | %.2f× (%.2f-%.2f) | %.2f× | %.0f µs "
        "(%d) | %.0f µs | %.2f MiB |\n",
        kShape[shape], Median(empty_p50[shape]), Median(empty_p99[shape]),
        Median(prefer_p50[shape]), Median(prefer_p99[shape]), Median(ratio[shape]),
        Min(ratio[shape]), Max(ratio[shape]),
        Percentile(pooled_prefer[shape], 0.99) / Percentile(pooled_empty[shape], 0.99),
        Median(first_list_us[shape]), listed[shape], Median(list_empty_us[shape]),
        plugin_rss_mps[shape]);
  }
  std::printf(
      "\nVmRSS across %d RPCs (GetPreferredAllocation + Allocate pairs, 8 GPUs x 100): "
      "%.2f MiB -> %.2f MiB at half -> %.2f MiB -> %.2f MiB 1 s later\n\n",
      rpcs, rss_start, rss_half, rss_end, rss_settled);

  // ---- Machine-readable figures.
  const Footprint& pa = plugin_fp[0];
  const double rss = Median(pa.rss_mib);
  Emit("idle VmRSS, 8 GPUs registered (RssAnon / RssFile)", "≤ 9 MiB",
       Fmt("%.2f MiB (%.2f / %.2f)", rss, Median(pa.anon_mib), Median(pa.file_mib)),
       Verdict(rss <= 9));
  const double growth = rss_settled - rss_start, late = rss_end - rss_half;
  Emit("VmRSS growth over " + std::to_string(rpcs) + " RPCs (second half)",
       "flat (second half ≤ 0.125 MiB)", Fmt("%+.2f MiB (%+.2f MiB)", growth, late),
       Verdict(late <= 0.125));
  const double threads_max = std::max(Max(plugin_fp[0].threads), Max(plugin_fp[1].threads));
  const bool threads_same = Min(plugin_fp[0].threads) == Max(plugin_fp[1].threads) &&
                            Max(plugin_fp[0].threads) == Min(plugin_fp[1].threads);
  Emit("threads (all CPUs / taskset -c 0)", "≤ 6, same under both",
       Fmt("%.0f / %.0f", Median(plugin_fp[0].threads), Median(plugin_fp[1].threads)),
       Verdict(threads_max <= 6 && threads_same));
  Emit("process start → registered (all CPUs / CPU 0)", "≤ 5 ms",
       Fmt("%.2f / %.2f ms", Median(startup_ms[0]), Median(startup_ms[1])),
       Verdict(std::max(Median(startup_ms[0]), Median(startup_ms[1])) <= 5));
  Emit("--help (all CPUs / CPU 0)", "≤ 4 ms",
       Fmt("%.2f / %.2f ms", Median(help_ms[0]), Median(help_ms[1])),
       Verdict(std::max(Median(help_ms[0]), Median(help_ms[1])) <= 4));
  const double wake =
      std::max(Median(plugin_fp[0].wakeups_per_s), Median(plugin_fp[1].wakeups_per_s));
  Emit(
      "idle wake-ups (all CPUs / CPU 0)", "≤ 1 /s",
      Fmt("%.2f / %.2f /s", Median(plugin_fp[0].wakeups_per_s), Median(plugin_fp[1].wakeups_per_s)),
      Verdict(wake <= 1));
  Emit("idle wake-ups less the fake NVML's 20 ms event poll (all CPUs / CPU 0)", "≤ 1 /s",
       Fmt("%.2f / %.2f /s", Median(plugin_fp[0].wakeups_less_fake_poll),
           Median(plugin_fp[1].wakeups_less_fake_poll)),
       Verdict(std::max(Median(plugin_fp[0].wakeups_less_fake_poll),
                        Median(plugin_fp[1].wakeups_less_fake_poll)) <= 1));
  Emit("idle CPU less the fake NVML's 20 ms event poll (all CPUs / CPU 0)", "≤ 1 ms/min",
       Fmt("%.2f / %.2f ms/min", Median(plugin_fp[0].cpu_less_fake_poll),
           Median(plugin_fp[1].cpu_less_fake_poll)),
       Verdict(std::max(Median(plugin_fp[0].cpu_less_fake_poll),
                        Median(plugin_fp[1].cpu_less_fake_poll)) <= 1));
  const double cpu =
      std::max(Median(plugin_fp[0].cpu_ms_per_min), Median(plugin_fp[1].cpu_ms_per_min));
  Emit("idle CPU (all CPUs / CPU 0)", "≤ 1 ms/min",
       Fmt("%.2f / %.2f ms/min", Median(plugin_fp[0].cpu_ms_per_min),
           Median(plugin_fp[1].cpu_ms_per_min)),
       Verdict(cpu <= 1));
  Emit("GetPreferredAllocation p99 / empty p99, 8×100", "≤ 1.5×",
       Fmt("%.2f× (rounds %.2f-%.2f)", Median(ratio[0]), Min(ratio[0]), Max(ratio[0])),
       Verdict(Median(ratio[0]) <= 1.5));
  Emit("GetPreferredAllocation p99 / empty p99, 8×1000", "≤ 3×",
       Fmt("%.2f× (rounds %.2f-%.2f)", Median(ratio[1]), Min(ratio[1]), Max(ratio[1])),
       Verdict(Median(ratio[1]) <= 3));
  Emit("first ListAndWatch, " + std::to_string(listed[0]) + " devices", "≤ 0.5 ms",
       Fmt("%.3f ms", Median(first_list_us[0]) / 1000), Verdict(Median(first_list_us[0]) <= 500));
  Emit("first ListAndWatch, " + std::to_string(listed[1]) + " devices", "report",
       Fmt("%.3f ms", Median(first_list_us[1]) / 1000), "info");
  const Footprint& ma = mpsd_fp[0];
  Emit("mps-control-daemon idle VmRSS (RssAnon / RssFile)", "≤ 9 MiB",
       Fmt("%.2f MiB (%.2f / %.2f)", Median(ma.rss_mib), Median(ma.anon_mib), Median(ma.file_mib)),
       Verdict(Median(ma.rss_mib) <= 9));
  const bool mpsd_same = Min(mpsd_fp[0].threads) == Max(mpsd_fp[1].threads) &&
                         Max(mpsd_fp[0].threads) == Min(mpsd_fp[1].threads);
  Emit("mps-control-daemon threads (all CPUs / CPU 0)", "≤ 6, same under both",
       Fmt("%.0f / %.0f", Median(mpsd_fp[0].threads), Median(mpsd_fp[1].threads)),
       Verdict(std::max(Max(mpsd_fp[0].threads), Max(mpsd_fp[1].threads)) <= 6 && mpsd_same));
  Emit("mps-control-daemon idle wake-ups (all CPUs / CPU 0)", "≤ 1 /s",
       Fmt("%.2f / %.2f /s", Median(mpsd_fp[0].wakeups_per_s), Median(mpsd_fp[1].wakeups_per_s)),
       Verdict(std::max(Median(mpsd_fp[0].wakeups_per_s), Median(mpsd_fp[1].wakeups_per_s)) <= 1));
  Emit(
      "mps-control-daemon idle CPU (all CPUs / CPU 0)", "≤ 1 ms/min",
      Fmt("%.2f / %.2f ms/min", Median(mpsd_fp[0].cpu_ms_per_min),
          Median(mpsd_fp[1].cpu_ms_per_min)),
      Verdict(std::max(Median(mpsd_fp[0].cpu_ms_per_min), Median(mpsd_fp[1].cpu_ms_per_min)) <= 1));
  return 0;
}
