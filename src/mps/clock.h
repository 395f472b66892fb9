// Clock: the passage of time behind a small interface, so that supervision
// (readiness polling, liveness periods, restart backoff) can be tested with a
// fake clock instead of real sleeps.
//
// RealClock() is the process-wide wall clock. FakeClock (tests/mps/mps_fakes.h)
// only moves when a test advances it or when someone sleeps on it.
//
// Thread-safety: implementations must be safe to call from several threads at
// once.
#pragma once

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

}  // namespace nvdp::mps
