// fake-mps-control: a stand-in for NVIDIA's `nvidia-cuda-mps-control`, for
// tests without a GPU.
//
// Behaves like the real tool for what the device plugin uses:
//   fake-mps-control -d   start the control daemon in the background; the
//   launcher exits 0 once
//                         the daemon listens (1 if it could not start, e.g. one
//                         already runs)
//   fake-mps-control -f   run the control daemon in the foreground
//   fake-mps-control      client: commands on stdin, one per line; replies on
//   stdout, errors on
//                         stderr; exit 1 when a command was rejected or no
//                         daemon is reachable
// The daemon listens on the unix socket <CUDA_MPS_PIPE_DIRECTORY>/control and
// keeps the state the commands change (default thread percentage, default
// pinned memory limits). `quit` stops it.
//
// Failure modes, read by the daemon (and the -d launcher) when it starts, from
// FAKE_MPS_MODE and from the file named by FAKE_MPS_MODE_FILE (re-read at every
// start, so a test can change what the next restart does); comma-separated:
//   crash-on-start     -d: the launcher prints an error and exits 1; -f: exits
//   1 at once exit-at-once       the daemon dies right after it started
//   listening (-d still exits 0) crash-after=N      the daemon dies (exit 1)
//   right after answering its Nth command crash-after-ms=T   the daemon dies T
//   ms after starting hang               the daemon accepts connections but
//   never answers hang-after=N       the daemon answers N commands, then never
//   answers again hang-start         -d never returns; -f never listens
//   reject=VERB        commands whose first word is VERB are answered with an
//   error
//
// What it was told, for tests to assert on (in CUDA_MPS_LOG_DIRECTORY):
//   fake-commands.log  every command the daemon received, one per line
//   fake-daemon.log    one line per daemon start: "start pid=P launch=-d|-f
//                      CUDA_VISIBLE_DEVICES=<value|(unset)> mode=<modes>"
//   fake-daemon.pid    the running daemon's pid
//   control.log        a human-readable log, like the real one's
//
// Safety net for tests that fail half-way: the daemon exits when its socket
// file disappears or is replaced, and after FAKE_MPS_MAX_LIFETIME_S seconds
// (default 900).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::string Env(const char* name, const std::string& fallback) {
  const char* value = getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::string PipeDir() { return Env("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"); }
std::string LogDir() { return Env("CUDA_MPS_LOG_DIRECTORY", "/var/log/nvidia-mps"); }
std::string SocketPath() { return PipeDir() + "/control"; }

std::vector<std::string> Split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep)) {
    while (!part.empty() && (part.back() == ' ' || part.back() == '\n' || part.back() == '\r' ||
                             part.back() == '\t')) {
      part.pop_back();
    }
    size_t start = part.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    parts.push_back(part.substr(start));
  }
  return parts;
}

std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  std::string word;
  while (in >> word) words.push_back(word);
  return words;
}

void AppendLine(const std::string& path, const std::string& line) {
  std::ofstream out(path, std::ios::app);
  out << line << '\n';
}

std::string Timestamp() {
  char buffer[64];
  std::time_t now = std::time(nullptr);
  std::tm tm_now;
  localtime_r(&now, &tm_now);
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S", &tm_now);
  return buffer;
}

void ControlLog(const std::string& message) {
  AppendLine(LogDir() + "/control.log", "[" + Timestamp() + "] " + message);
}

struct Mode {
  std::string text;
  bool crash_on_start = false;
  bool exit_at_once = false;
  bool hang = false;
  bool hang_start = false;
  long crash_after = -1;
  long crash_after_ms = -1;
  long hang_after = -1;
  std::vector<std::string> reject;
};

Mode ReadMode() {
  std::string text = Env("FAKE_MPS_MODE", "");
  const std::string file = Env("FAKE_MPS_MODE_FILE", "");
  if (!file.empty()) {
    std::ifstream in(file);
    std::stringstream content;
    content << in.rdbuf();
    if (!content.str().empty()) text += "," + content.str();
  }
  Mode mode;
  std::vector<std::string> items = Split(text, ',');
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (!mode.text.empty()) mode.text += ",";
    mode.text += item;
    if (key == "crash-on-start") {
      mode.crash_on_start = true;
    } else if (key == "exit-at-once") {
      mode.exit_at_once = true;
    } else if (key == "hang") {
      mode.hang = true;
    } else if (key == "hang-start") {
      mode.hang_start = true;
    } else if (key == "crash-after") {
      mode.crash_after = std::atol(value.c_str());
    } else if (key == "crash-after-ms") {
      mode.crash_after_ms = std::atol(value.c_str());
    } else if (key == "hang-after") {
      mode.hang_after = std::atol(value.c_str());
    } else if (key == "reject") {
      mode.reject.push_back(value);
    } else {
      std::cerr << "fake-mps-control: unknown FAKE_MPS_MODE item '" << item << "'\n";
    }
  }
  return mode;
}

[[noreturn]] void HangForever() {
  while (true) pause();
}

int ConnectTo(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return -1;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// The daemon.

struct DaemonState {
  double default_thread_percentage = 100.0;
  std::map<long, std::string> default_mem_limits;
  long visible_devices = -1;  // from CUDA_VISIBLE_DEVICES; -1: unset (any ordinal accepted)
};

bool ParseLong(const std::string& text, long& out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtol(text.c_str(), &end, 10);
  return errno == 0 && end != nullptr && *end == '\0';
}

bool ValidMemLimit(const std::string& value) {
  if (value.size() < 2) return false;
  const char unit = value.back();
  if (unit != 'M' && unit != 'G') return false;
  for (size_t i = 0; i + 1 < value.size(); ++i) {
    if (value[i] < '0' || value[i] > '9') return false;
  }
  return true;
}

std::string FormatPercentage(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f", value);
  return buffer;
}

// Returns {ok, reply}. Sets `quit` for the quit command.
std::pair<bool, std::string> Handle(DaemonState& state, const Mode& mode, const std::string& line,
                                    bool& quit) {
  const std::vector<std::string> words = Words(line);
  if (words.empty()) return {true, ""};
  const std::string& verb = words[0];
  for (const std::string& rejected : mode.reject) {
    if (verb == rejected) return {false, "fake rejection of '" + verb + "' (FAKE_MPS_MODE)"};
  }
  if (verb == "quit" && words.size() == 1) {
    quit = true;
    return {true, ""};
  }
  if (verb == "get_default_active_thread_percentage" && words.size() == 1) {
    return {true, FormatPercentage(state.default_thread_percentage)};
  }
  if (verb == "set_default_active_thread_percentage" && words.size() == 2) {
    char* end = nullptr;
    const double value = std::strtod(words[1].c_str(), &end);
    if (end == words[1].c_str() || *end != '\0' || !(value > 0.0) || value > 100.0) {
      return {false, "Invalid active thread percentage: " + words[1]};
    }
    state.default_thread_percentage = value;
    return {true, FormatPercentage(value)};
  }
  if ((verb == "set_default_device_pinned_mem_limit" && words.size() == 3) ||
      (verb == "get_default_device_pinned_mem_limit" && words.size() == 2)) {
    long device = 0;
    if (!ParseLong(words[1], device) || device < 0 ||
        (state.visible_devices >= 0 && device >= state.visible_devices)) {
      return {false, "Invalid device: " + words[1]};
    }
    if (words.size() == 2) {
      auto it = state.default_mem_limits.find(device);
      return {true, it == state.default_mem_limits.end() ? "0" : it->second};
    }
    if (!ValidMemLimit(words[2])) return {false, "Invalid memory limit: " + words[2]};
    state.default_mem_limits[device] = words[2];
    return {true, ""};
  }
  if ((verb == "get_server_list" || verb == "ps" || verb == "get_device_client_list") &&
      words.size() <= 3) {
    return {true, ""};
  }
  return {false, "Unrecognized command: " + line};
}

struct Client {
  int fd;
  std::string input;
};

int ListenOn(const std::string& path) {
  // A socket file nobody answers on is stale (a crashed daemon): replace it.
  if (const int fd = ConnectTo(path); fd >= 0) {
    close(fd);
    errno = EADDRINUSE;
    return -1;
  }
  unlink(path.c_str());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 16) != 0) {
    const int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  chmod(path.c_str(), 0666);
  return fd;
}

bool SameFile(const std::string& path, ino_t inode) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && st.st_ino == inode;
}

// Runs the daemon until quit (exit 0) or a failure mode ends it. `ready_fd` (or
// -1) gets one byte once it listens. Never returns.
[[noreturn]] void RunDaemon(const Mode& mode, int ready_fd, const char* launch) {
  const std::string socket_path = SocketPath();
  const int listener = ListenOn(socket_path);
  if (listener < 0) {
    const int err = errno;
    std::string message = err == EADDRINUSE ? "An instance of this daemon is already running"
                                            : std::string("cannot listen on ") + socket_path +
                                                  ": " + std::strerror(err);
    std::cerr << "fake-mps-control: " << message << "\n";
    ControlLog(message);
    _exit(1);
  }
  ino_t socket_inode = 0;
  {
    struct stat sst;
    if (stat(socket_path.c_str(), &sst) == 0) socket_inode = sst.st_ino;
  }
  const std::string log_dir = LogDir();
  const char* cvd = getenv("CUDA_VISIBLE_DEVICES");
  DaemonState state;
  if (cvd != nullptr) state.visible_devices = static_cast<long>(Split(cvd, ',').size());
  {
    std::ofstream pid_file(log_dir + "/fake-daemon.pid", std::ios::trunc);
    pid_file << getpid() << "\n";
  }
  AppendLine(log_dir + "/fake-daemon.log",
             "start pid=" + std::to_string(getpid()) + " launch=" + launch +
                 " CUDA_VISIBLE_DEVICES=" + (cvd != nullptr ? cvd : "(unset)") +
                 " mode=" + mode.text);
  ControlLog("Control daemon started (fake, pid " + std::to_string(getpid()) + ")");
  if (ready_fd >= 0) {
    const char byte = 'R';
    (void)!write(ready_fd, &byte, 1);
    close(ready_fd);
    // Detach from the launcher's stderr now that it knows we are up.
    const int null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, 2);
    if (null_fd > 2) close(null_fd);
  }
  if (mode.exit_at_once) {
    ControlLog("exit-at-once (FAKE_MPS_MODE)");
    _exit(1);
  }

  const auto started = Clock::now();
  const long max_lifetime_s = std::atol(Env("FAKE_MPS_MAX_LIFETIME_S", "900").c_str());
  std::vector<Client> clients;
  long answered = 0;
  bool hung = mode.hang;
  while (true) {
    int timeout_ms = 1000;
    const long elapsed_ms = static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
    if (mode.crash_after_ms >= 0) {
      if (elapsed_ms >= mode.crash_after_ms) {
        ControlLog("crash-after-ms (FAKE_MPS_MODE)");
        _exit(1);
      }
      timeout_ms = static_cast<int>(std::min<long>(timeout_ms, mode.crash_after_ms - elapsed_ms));
    }
    if (elapsed_ms / 1000 >= max_lifetime_s || !SameFile(socket_path, socket_inode)) {
      ControlLog("socket gone or lifetime over; exiting");
      _exit(2);
    }
    std::vector<pollfd> fds;
    fds.push_back(pollfd{listener, POLLIN, 0});
    for (const Client& client : clients) fds.push_back(pollfd{client.fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) _exit(3);
    if (fds[0].revents & POLLIN) {
      const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) clients.push_back(Client{fd, ""});
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Client& client = clients[i - 1];
      char buffer[1024];
      const ssize_t n = read(client.fd, buffer, sizeof buffer);
      if (n <= 0) {
        close(client.fd);
        client.fd = -1;
        continue;
      }
      client.input.append(buffer, static_cast<size_t>(n));
      size_t newline;
      while (client.fd >= 0 && (newline = client.input.find('\n')) != std::string::npos) {
        const std::string line = client.input.substr(0, newline);
        client.input.erase(0, newline + 1);
        if (line.empty()) continue;
        AppendLine(log_dir + "/fake-commands.log", line);
        ControlLog("Command: " + line);
        if (hung || (mode.hang_after >= 0 && answered >= mode.hang_after)) {
          hung = true;
          continue;  // never answer
        }
        bool quit = false;
        auto [ok, reply] = Handle(state, mode, line, quit);
        if (quit) {
          unlink(socket_path.c_str());
          close(listener);
          unlink((log_dir + "/fake-daemon.pid").c_str());
          ControlLog("quit: exiting");
        }
        std::string frame =
            std::string(ok ? "OK " : "ERR ") + std::to_string(reply.size()) + "\n" + reply;
        SendAll(client.fd, frame);
        ++answered;
        if (quit) _exit(0);
        if (mode.crash_after >= 0 && answered >= mode.crash_after) {
          ControlLog("crash-after (FAKE_MPS_MODE)");
          _exit(1);
        }
      }
    }
    std::vector<Client> open_clients;
    for (const Client& client : clients) {
      if (client.fd >= 0) open_clients.push_back(client);
    }
    clients.swap(open_clients);
  }
}

int StartBackground() {
  const Mode mode = ReadMode();
  if (mode.crash_on_start) {
    std::cerr << "fake-mps-control: failed to start the control daemon: "
                 "crash-on-start "
                 "(FAKE_MPS_MODE)\n";
    return 1;
  }
  if (mode.hang_start) HangForever();
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return 1;
  const pid_t middle = fork();
  if (middle < 0) return 1;
  if (middle == 0) {
    close(ready[0]);
    setsid();
    const pid_t daemon = fork();
    if (daemon != 0) _exit(daemon < 0 ? 1 : 0);
    // The daemon: no controlling terminal, stdio on /dev/null (it must not hold
    // the launcher's output pipes open), but errors before it is ready still go
    // to the launcher.
    const int null_fd = open("/dev/null", O_RDWR);
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    if (null_fd > 2) close(null_fd);
    // stderr stays until ready; RunDaemon writes the ready byte, after which we
    // detach it.
    if (chdir("/") != 0) _exit(1);
    RunDaemon(mode, ready[1], "-d");
  }
  close(ready[1]);
  int status = 0;
  waitpid(middle, &status, 0);
  char byte = 0;
  ssize_t n;
  do {
    n = read(ready[0], &byte, 1);
  } while (n < 0 && errno == EINTR);
  close(ready[0]);
  if (n != 1) {
    std::cerr << "fake-mps-control: the control daemon failed to start\n";
    return 1;
  }
  return 0;
}

int RunForeground() {
  const Mode mode = ReadMode();
  if (mode.crash_on_start) {
    std::cerr << "fake-mps-control: failed to start the control daemon: "
                 "crash-on-start "
                 "(FAKE_MPS_MODE)\n";
    return 1;
  }
  if (mode.hang_start) HangForever();
  std::cout << "fake-mps-control: control daemon running in the foreground (pid " << getpid() << ")"
            << std::endl;
  RunDaemon(mode, -1, "-f");
}

// ---------------------------------------------------------------------------------------------
// The client.

bool ReadReply(int fd, std::string& buffer, bool& ok, std::string& reply) {
  while (true) {
    const size_t newline = buffer.find('\n');
    if (newline != std::string::npos) {
      const std::string header = buffer.substr(0, newline);
      const size_t space = header.find(' ');
      if (space == std::string::npos) return false;
      const size_t length = std::strtoul(header.c_str() + space + 1, nullptr, 10);
      if (buffer.size() >= newline + 1 + length) {
        ok = header.substr(0, space) == "OK";
        reply = buffer.substr(newline + 1, length);
        buffer.erase(0, newline + 1 + length);
        return true;
      }
    }
    char chunk[1024];
    const ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

int RunClient() {
  int fd = -1;
  int exit_code = 0;
  std::string buffer;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (Words(line).empty()) continue;
    if (fd < 0) {
      fd = ConnectTo(SocketPath());
      if (fd < 0) {
        std::cerr << "Cannot find MPS control daemon process (no daemon at " << SocketPath()
                  << ")\n";
        return 1;
      }
    }
    bool ok = false;
    std::string reply;
    if (!SendAll(fd, line + "\n") || !ReadReply(fd, buffer, ok, reply)) {
      std::cerr << "Connection to the MPS control daemon was lost\n";
      return 1;
    }
    if (ok) {
      if (!reply.empty()) std::cout << reply << "\n";
    } else {
      std::cerr << reply << "\n";
      exit_code = 1;
    }
  }
  if (fd >= 0) close(fd);
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 1) return RunClient();
  const std::string arg = argv[1];
  if (arg == "-d") return StartBackground();
  if (arg == "-f") return RunForeground();
  std::cerr << "usage: " << argv[0] << " [-d | -f]   (no arguments: client, commands on stdin)\n";
  return 2;
}
