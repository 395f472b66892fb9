#include "mps/clock.h"

namespace nvdp::mps {
namespace {

class RealClockImpl final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }

  bool SleepUntil(absl::Time deadline, const absl::Notification* cancel) override {
    if (cancel == nullptr) {
      absl::SleepFor(deadline - absl::Now());
      return true;
    }
    return !cancel->WaitForNotificationWithDeadline(deadline);
  }
};

}  // namespace

Clock& RealClock() {
  static Clock* const clock = new RealClockImpl();
  return *clock;
}

bool Wakeup::SleepUntil(Clock& clock, absl::Time deadline) {
  auto woken = std::make_shared<absl::Notification>();
  {
    absl::MutexLock lock(&mu_);
    if (pending_) {
      pending_ = false;
      return false;
    }
    sleeping_ = woken;
  }
  const bool slept = clock.SleepUntil(deadline, woken.get());
  absl::MutexLock lock(&mu_);
  sleeping_.reset();
  // A Wake during the sleep was for this sleep (it ended it, or came as it ended).
  pending_ = false;
  return slept && !woken->HasBeenNotified();
}

void Wakeup::Wake() {
  absl::MutexLock lock(&mu_);
  pending_ = true;
  if (sleeping_ && !sleeping_->HasBeenNotified()) sleeping_->Notify();
}

}  // namespace nvdp::mps
