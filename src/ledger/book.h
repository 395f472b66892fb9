// LedgerBook: the ledgers of every per-container MPS resource, kept fresh from kubelet's
// PodResources List: on a period (kubelet never tells a plugin about releases), soon after every
// Allocate, on re-registration, and at once when a caller asks (RefreshNow).
//
// Without a lister (no PodResources socket configured), or while List fails, the ledgers still
// learn from Allocate and GetPreferredAllocation but are not marked listed, so capacity shaping
// stays off. The first failure is logged once as a warning, with what it costs; recovery as info.
// Lists only while some ledger exists, so a node without such resources never calls kubelet.
//
// Owns one thread, started with the first ledger (after Start) and joined by Stop. Thread-safe:
// every public method may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ledger/ledger.h"
#include "podresources/lister.h"
#include "sharing/sharing.h"

namespace nvdp::ledger {

class LedgerBook {
 public:
  // `lister` may be null. `source` names it in log lines (the socket path).
  LedgerBook(std::unique_ptr<podresources::Lister> lister, std::string source,
             absl::Duration period);
  ~LedgerBook();

  LedgerBook(const LedgerBook&) = delete;
  LedgerBook& operator=(const LedgerBook&) = delete;

  void Start();
  void Stop();  // idempotent

  // The ledger of `spec`: the same object as long as the resource keeps its devices (name, mode,
  // shares and GPUs), a new one otherwise.
  std::shared_ptr<Ledger> For(const sharing::ResourceSpec& spec);
  // Forgets the ledgers of resources not named.
  void Retain(const std::set<std::string>& names);

  // Wakes the refresh thread.
  void RefreshSoon();
  // Lists now on the caller's thread (serialised with the refresh thread).
  absl::Status RefreshNow();

 private:
  void Run();
  void StartThreadIfNeededLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::unique_ptr<podresources::Lister> lister_;
  const std::string source_;
  const absl::Duration period_;

  absl::Mutex refresh_mu_;  // one List at a time
  bool failing_ ABSL_GUARDED_BY(refresh_mu_) = false;
  bool answered_ ABSL_GUARDED_BY(refresh_mu_) = false;

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Ledger>> ledgers_ ABSL_GUARDED_BY(mu_);
  bool poked_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Created under mu_ while !stop_ (from the first ledger on); joined by Stop once stop_ is set.
  std::thread thread_;
};

}  // namespace nvdp::ledger
