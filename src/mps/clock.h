// Clock: the passage of time behind a small interface, so that supervision
// (readiness polling, liveness periods, restart backoff) can be tested with a
// fake clock instead of real sleeps. Wakeup: a sleep on a Clock that another
// thread can cut short (a child exited, a marker file changed).
//
// RealClock() is the process-wide wall clock. FakeClock (tests/mps/mps_fakes.h)
// only moves when a test advances it or when someone sleeps on it.
//
// Thread-safety: Clock implementations must be safe to call from several
// threads at once. A Wakeup is slept on by one thread at a time; Wake may be
// called from any thread.
#pragma once

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace nvdp::mps {

class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() = 0;

  // Waits until Now() >= `deadline` or until `cancel` (may be null) is
  // notified, whichever comes first. Returns false when it returned because of
  // `cancel` (also when it was already notified).
  virtual bool SleepUntil(absl::Time deadline, const absl::Notification* cancel) = 0;
};

// The real clock (absl::Now, real waits). Never destroyed.
Clock& RealClock();

// A resettable wake-up for a loop that sleeps on a Clock. No Wake is lost: one
// that comes while the loop is busy makes its next SleepUntil return at once.
class Wakeup {
 public:
  // Sleeps on `clock` until `deadline`, or until Wake is called (or was called
  // since the previous SleepUntil returned). Returns false when woken.
  bool SleepUntil(Clock& clock, absl::Time deadline);
  void Wake();

 private:
  absl::Mutex mu_;
  bool pending_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<absl::Notification> sleeping_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nvdp::mps
