// What gRPC alone costs a process that serves on a unix socket, the floor under the plugin's own
// figures (docs/performance.md): a bare server on gRPC's async API (an empty generic service, one
// completion queue drained by one thread, as DevicePluginServer does) with one client connection
// open, idle. Prints threads by name and idle wake-ups and CPU per thread over the window, from
// /proc/self/task/*/schedstat, then FIGURE lines (info) for bench/run.sh's final table.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"

namespace {

struct TaskSample {
  std::string name;
  long long cpu_ns = 0;
  long long timeslices = 0;
};

// Every thread of this process but `skip` (the one measuring), by thread id.
std::map<int, TaskSample> SampleTasks(int skip) {
  std::map<int, TaskSample> tasks;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    const int tid = std::atoi(entry.path().filename().c_str());
    if (tid == skip) continue;
    TaskSample sample;
    std::ifstream(entry.path() / "comm") >> sample.name;
    long long wait_ns = 0;
    std::ifstream(entry.path() / "schedstat") >> sample.cpu_ns >> wait_ns >> sample.timeslices;
    tasks[tid] = sample;
  }
  return tasks;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Threads, idle wake-ups and idle CPU of a bare gRPC async server (the floor)"};
  double idle_seconds = 10;
  cli.add_option("--idle-seconds", idle_seconds, "idle window")->check(CLI::PositiveNumber);
  CLI11_PARSE(cli, argc, argv);

  const std::string socket =
      (std::filesystem::temp_directory_path() / ("grpc-floor-" + std::to_string(::getpid())))
          .string();
  grpc::AsyncGenericService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
  builder.RegisterAsyncGenericService(&service);
  auto queue = builder.AddCompletionQueue();
  auto server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "cannot serve on %s\n", socket.c_str());
    return 1;
  }
  std::thread drain([&queue] {
    ::pthread_setname_np(::pthread_self(), "app-queue");
    void* tag = nullptr;
    bool ok = false;
    while (queue->Next(&tag, &ok)) {
    }
  });
  auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  const bool connected =
      channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5));

  std::this_thread::sleep_for(std::chrono::seconds(1));
  const int self = static_cast<int>(::gettid());
  const auto before = SampleTasks(self);
  std::this_thread::sleep_for(std::chrono::duration<double>(idle_seconds));
  const auto after = SampleTasks(self);

  std::map<std::string, TaskSample> by_name;  // timeslices and CPU summed per name
  std::map<std::string, int> counts;
  long long timeslices = 0;
  long long cpu_ns = 0;
  for (const auto& [tid, now] : after) {
    TaskSample delta{now.name, now.cpu_ns, now.timeslices};
    if (auto it = before.find(tid); it != before.end()) {
      delta.cpu_ns -= it->second.cpu_ns;
      delta.timeslices -= it->second.timeslices;
    }
    by_name[now.name].cpu_ns += delta.cpu_ns;
    by_name[now.name].timeslices += delta.timeslices;
    ++counts[now.name];
    timeslices += delta.timeslices;
    cpu_ns += delta.cpu_ns;
  }
  const double per_minute = 60.0 / idle_seconds;
  std::printf("Bare gRPC %s async server, one client connection open%s, idle %.0f s:\n\n",
              grpc::Version().c_str(), connected ? "" : " (it did not connect)", idle_seconds);
  std::printf("| thread (comm) | count | wake-ups/s | CPU ms/min |\n|---|---:|---:|---:|\n");
  for (const auto& [name, total] : by_name) {
    std::printf("| %s | %d | %.2f | %.2f |\n", name.c_str(), counts[name],
                static_cast<double>(total.timeslices) / idle_seconds,
                static_cast<double>(total.cpu_ns) / 1e6 * per_minute);
  }
  std::printf(
      "(the measuring thread is not counted; `app-queue` is the application's queue thread)\n");
  std::printf("FIGURE\tgRPC floor: gRPC's own threads, bare async server\treport\t%zu\tinfo\n",
              after.size() - counts["app-queue"]);
  std::printf("FIGURE\tgRPC floor: idle wake-ups\treport\t%.2f /s\tinfo\n",
              static_cast<double>(timeslices) / idle_seconds);
  std::printf("FIGURE\tgRPC floor: idle CPU\treport\t%.2f ms/min\tinfo\n",
              static_cast<double>(cpu_ns) / 1e6 * per_minute);
  std::fflush(stdout);
  // gRPC's shutdown is not what is measured: leave it to the process exit.
  std::filesystem::remove(socket);
  std::_Exit(0);
}
