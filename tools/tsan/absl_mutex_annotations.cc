// ThreadSanitizer annotations for Debian's absl::Mutex (scripts/tsan.sh only; never in a product
// build).
//
// Debian's abseil is not built with ThreadSanitizer, so the happens-before edges its Mutex creates
// (futexes and atomics inside libabsl_synchronization.so) are invisible to TSan, and every access
// guarded by an absl::Mutex, ours and gRPC's (grpc_core::Mutex wraps it), looks like a race. This
// library is loaded first (LD_PRELOAD), so its definitions of the Mutex and CondVar entry points
// interpose on abseil's for every caller: each one calls abseil's own function (found with
// dlsym(RTLD_NEXT)) and tells TSan that the mutex was released before and acquired after. Abseil
// evaluates an Await/LockWhen condition inside those calls, in the waiting thread or in whichever
// thread unlocks, always with the mutex held: each evaluation is wrapped so that TSan sees it
// acquire and release the mutex too. Abseil's deadlock detector (whose bookkeeping is equally
// invisible) is switched off.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"

namespace {

template <typename Fn>
Fn Real(const char* mangled) {
  void* symbol = dlsym(RTLD_NEXT, mangled);
  if (symbol == nullptr) {
    std::fprintf(stderr, "absl_mutex_annotations: %s not found in abseil\n", mangled);
    std::abort();
  }
  return reinterpret_cast<Fn>(symbol);
}

#define NVDP_REAL(type, mangled) static const auto real = Real<type>(mangled)

// A condition evaluated "under" `mu` as far as TSan can tell.
struct Annotated {
  const absl::Condition* inner;
  absl::Mutex* mu;

  static bool Eval(void* self) {
    auto* annotated = static_cast<Annotated*>(self);
    __tsan_acquire(annotated->mu);
    const bool holds = annotated->inner->Eval();
    __tsan_release(annotated->mu);
    return holds;
  }
};

struct DisableDeadlockDetection {
  DisableDeadlockDetection() {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
} disable_deadlock_detection;

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  NVDP_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::Unlock() {
  NVDP_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex6UnlockEv");
  __tsan_release(this);
  real(this);
}

bool Mutex::TryLock() {
  NVDP_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::ReaderLock() {
  NVDP_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::ReaderUnlock() {
  NVDP_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

bool Mutex::ReaderTryLock() {
  NVDP_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::Await(const Condition& cond) {
  NVDP_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  Annotated annotated{&cond, this};
  __tsan_release(this);
  real(this, Condition(&Annotated::Eval, &annotated));
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  NVDP_REAL(bool (*)(Mutex*, const Condition&, Duration),
            "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Annotated annotated{&cond, this};
  __tsan_release(this);
  const bool held = real(this, Condition(&Annotated::Eval, &annotated), timeout);
  __tsan_acquire(this);
  return held;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  NVDP_REAL(bool (*)(Mutex*, const Condition&, Time),
            "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Annotated annotated{&cond, this};
  __tsan_release(this);
  const bool held = real(this, Condition(&Annotated::Eval, &annotated), deadline);
  __tsan_acquire(this);
  return held;
}

void Mutex::LockWhen(const Condition& cond) {
  NVDP_REAL(void (*)(Mutex*, const Condition&),
            "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  Annotated annotated{&cond, this};
  real(this, Condition(&Annotated::Eval, &annotated));
  __tsan_acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  NVDP_REAL(bool (*)(Mutex*, const Condition&, Duration),
            "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Annotated annotated{&cond, this};
  const bool held = real(this, Condition(&Annotated::Eval, &annotated), timeout);
  __tsan_acquire(this);
  return held;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  NVDP_REAL(bool (*)(Mutex*, const Condition&, Time),
            "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Annotated annotated{&cond, this};
  const bool held = real(this, Condition(&Annotated::Eval, &annotated), deadline);
  __tsan_acquire(this);
  return held;
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  NVDP_REAL(void (*)(Mutex*, const Condition&),
            "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Annotated annotated{&cond, this};
  real(this, Condition(&Annotated::Eval, &annotated));
  __tsan_acquire(this);
}

void CondVar::Wait(Mutex* mu) {
  NVDP_REAL(void (*)(CondVar*, Mutex*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  NVDP_REAL(bool (*)(CondVar*, Mutex*, Duration),
            "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, timeout);
  __tsan_acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  NVDP_REAL(bool (*)(CondVar*, Mutex*, Time),
            "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, deadline);
  __tsan_acquire(mu);
  return timed_out;
}

ABSL_NAMESPACE_END
}  // namespace absl
