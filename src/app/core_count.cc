// The core count this process reports to the libraries it links, capped at kReportedCoresMax.
//
// gRPC (1.51, as Debian ships it) sizes its internal thread pools by the machine's core count,
// read with sysconf(_SC_NPROCESSORS_CONF), whatever the process's CPU affinity: its EventEngine
// pool keeps min(cores, 32) + 1 threads (and the callback API's completion-queue pool, which the
// plugin no longer uses, min(cores / 2, 16)). On a 64-core GPU node that is 33 threads or more for
// a process that serves a handful of RPCs a minute. Nothing in gRPC's API sets these sizes, so this
// executable defines sysconf itself (an executable's symbols come first in the dynamic linker's
// lookup, so gRPC's calls land here, statically or dynamically linked) and reports at most two
// cores; every other query goes to the C library.
//
// Linked into the nvidia-device-plugin executable only (not into libraries or tests), and never
// built with sanitizers: their runtimes call sysconf before instrumented code may run.
#include <unistd.h>

// glibc's own implementation, which its `sysconf` is a weak alias of (exported since glibc 2.2.5;
// also in libc.a, so a static link works the same).
extern "C" long __sysconf(int name);

namespace {

constexpr long kReportedCoresMax = 2;

}  // namespace

extern "C" long sysconf(int name) {
  const long value = __sysconf(name);
  if ((name == _SC_NPROCESSORS_CONF || name == _SC_NPROCESSORS_ONLN) && value > kReportedCoresMax) {
    return kReportedCoresMax;
  }
  return value;
}
