// Ledger: who holds which device IDs of one resource, as far as the plugin can tell. Kubelet never
// tells a plugin about releases, so the ledger pieces the picture together from three sources:
//
// - Allocate: the IDs a container was just granted (RecordAllocate). Kubelet records the grant only
//   after Allocate returns, so these are known before PodResources lists them.
// - GetPreferredAllocation: kubelet's `available` IDs are free at that moment, except the
//   `must_include` ones, which an init container of the same pod holds (RecordAvailable).
// - PodResources List: the app containers and their IDs (ApplyList). A container that is no longer
//   listed has gone (kubelet frees a deleted pod's devices on that very List call).
//
// Init containers are never listed, although kubelet keeps their devices for the pod's whole life.
// The ledger keeps them as holders of their own: an app container that reuses some of an init
// container's IDs (its Allocate names IDs already held) joins the init container's pod group, and
// when the group's listed containers are all gone, its init holders go with them.
//
// A grant that kMissedListsToForget Lists in a row do not show (counting only Lists that started
// kListGrace or more after the grant), and whose pod group has no listed container, is forgotten:
// its pod ended (or failed admission) before a List saw it. The grace covers kubelet's admission
// of the rest of the pod: an init container's grant is not listed, and the app container that
// ties it to its pod is granted and recorded a moment later. That also
// forgets an init container whose app containers use none of the resource; its IDs come back as
// held the next time kubelet leaves them out of `available` although it sees them Healthy
// (RecordAvailable's `offered`), and stay held until kubelet offers them again.
//
// The ledger is advice, never trusted over what kubelet sends: GetPreferredAllocation still picks
// only from `available`. It feeds capacity shaping and the MPS client cap (sharing/capacity.h).
//
// Thread-safe: every method may be called from any thread. The change callback runs on the caller's
// thread after the ledger's lock is released.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "podresources/lister.h"
#include "sharing/capacity.h"
#include "sharing/sharing.h"

namespace nvdp::ledger {

class Ledger {
 public:
  explicit Ledger(sharing::ResourceSpec spec);

  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  const sharing::ResourceSpec& spec() const { return spec_; }

  // True when every ID is a known ID of the resource held by some container (an app container
  // reusing its init containers' IDs). False for an empty list.
  bool AllHeld(const std::vector<std::string>& ids) const;
  // A container was granted `ids` (unknown IDs are ignored). IDs held before pass to it: the
  // earlier holder (an init container) stops counting as an MPS client and joins its pod group.
  void RecordAllocate(const std::vector<std::string>& ids, absl::Time now = absl::Now());
  // Kubelet offered `available` (minus `must_include`) as free. `offered`, per slot (or empty):
  // 1 where kubelet is known to see the ID Healthy; such an ID missing from `available` is held.
  void RecordAvailable(const std::vector<std::string>& available,
                       const std::vector<std::string>& must_include,
                       const std::vector<char>& offered = {});
  // A PodResources List that started at `started` (entries of every resource; only this
  // resource's are used). Marks the ledger as listed.
  void ApplyList(const std::vector<podresources::ContainerDevices>& containers,
                 absl::Time started = absl::Now());

  // Whether ApplyList ran at least once, i.e. releases are being seen.
  bool Listed() const;
  sharing::Occupancy Occupancy() const;
  // Per GPU position: 1 when its MPS server serves as many clients as it accepts.
  std::vector<char> GpusAtClientCap() const;

  // Called after any change of Occupancy() (not under the ledger's lock). Replaces the previous
  // callback; an empty function clears it. Once SetOnChange returns, the old callback is not
  // running and will not be called again.
  void SetOnChange(std::function<void()> on_change);

 private:
  // Lists in a row that may miss a grant (kubelet records it just after Allocate returns, so the
  // List that Allocate triggers can run first) before it is forgotten.
  static constexpr int kMissedListsToForget = 2;
  static constexpr absl::Duration kListGrace = absl::Seconds(1);

  struct Holder {
    std::string key;        // "<namespace>/<pod>/<container>" once listed; empty before
    int group = 0;          // pod group: holders linked by reused IDs
    bool client = true;     // counts as an MPS client (false once its IDs were reused)
    bool observed = false;  // inferred from `available`, not granted: only kubelet frees it
    int missed_lists = 0;   // Lists since the grant (and its grace) that did not show it
    absl::Time granted_at = absl::InfinitePast();
    int slots = 0;  // slots held
  };

  std::vector<int> Resolve(const std::vector<std::string>& ids) const;
  void Assign(int slot, int holder) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(int slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropEmptyHolders() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MergeGroups(int from, int into) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  sharing::Occupancy OccupancyLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void NotifyChanged();

  const sharing::ResourceSpec spec_;
  const int slots_per_gpu_;
  const std::vector<sharing::AdvertisedDevice> devices_;  // slot order

  mutable absl::Mutex mu_;
  std::vector<int> owner_ ABSL_GUARDED_BY(mu_);  // per slot: holder id, -1 when free
  std::map<int, Holder> holders_ ABSL_GUARDED_BY(mu_);
  int next_holder_ ABSL_GUARDED_BY(mu_) = 0;
  int next_group_ ABSL_GUARDED_BY(mu_) = 0;
  bool listed_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex callback_mu_;  // held while the callback runs, so clearing it waits for the call
  std::function<void()> on_change_ ABSL_GUARDED_BY(callback_mu_);
};

}  // namespace nvdp::ledger
