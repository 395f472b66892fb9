// libfake-cores.so: an LD_PRELOAD shim that makes a process believe the machine has FAKE_CORES
// cores (sysconf and glibc's __sysconf, for _SC_NPROCESSORS_CONF and _SC_NPROCESSORS_ONLN), so
// tests on a 2-core machine can see what the plugin does on a 64-core GPU node. Without
// FAKE_CORES it changes nothing.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>

namespace {

using SysconfFn = long (*)(int);

long Answer(int name, SysconfFn real) {
  if (name == _SC_NPROCESSORS_CONF || name == _SC_NPROCESSORS_ONLN) {
    if (const char* cores = std::getenv("FAKE_CORES")) return std::atol(cores);
  }
  return real != nullptr ? real(name) : -1;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) long sysconf(int name) {
  static const auto real = reinterpret_cast<SysconfFn>(dlsym(RTLD_NEXT, "sysconf"));
  return Answer(name, real);
}

extern "C" __attribute__((visibility("default"))) long __sysconf(int name) {
  static const auto real = reinterpret_cast<SysconfFn>(dlsym(RTLD_NEXT, "__sysconf"));
  return Answer(name, real);
}
