#include "ledger/ledger.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace nvdp::ledger {

Ledger::Ledger(sharing::ResourceSpec spec)
    : spec_(std::move(spec)),
      slots_per_gpu_(spec_.mode == sharing::Mode::kExclusive ? 1 : spec_.replicas),
      devices_(sharing::AdvertisedDevices(spec_)) {
  owner_.assign(devices_.size(), -1);
}

std::vector<int> Ledger::Resolve(const std::vector<std::string>& ids) const {
  // GetPreferredAllocation passes every ID kubelet offers (8,000 at 8 GPUs x 1,000 shares): parsed
  // in place, never hashed or compared whole.
  sharing::AdvertisedIndex index(spec_);
  std::vector<int> slots;
  slots.reserve(ids.size());
  for (const auto& id : ids) {
    if (auto slot = index.Find(id)) slots.push_back(static_cast<int>(*slot));
  }
  return slots;
}

void Ledger::Assign(int slot, int holder) {
  int& owner = owner_[static_cast<size_t>(slot)];
  if (owner == holder) return;
  if (owner >= 0) holders_[owner].slots--;
  owner = holder;
  holders_[holder].slots++;
}

void Ledger::Release(int slot) {
  int& owner = owner_[static_cast<size_t>(slot)];
  if (owner < 0) return;
  holders_[owner].slots--;
  owner = -1;
}

void Ledger::DropEmptyHolders() {
  for (auto it = holders_.begin(); it != holders_.end();) {
    it = it->second.slots == 0 ? holders_.erase(it) : std::next(it);
  }
}

void Ledger::MergeGroups(int from, int into) {
  if (from == into) return;
  for (auto& [id, holder] : holders_) {
    if (holder.group == from) holder.group = into;
  }
}

bool Ledger::AllHeld(const std::vector<std::string>& ids) const {
  if (ids.empty()) return false;
  const std::vector<int> slots = Resolve(ids);
  if (slots.size() != ids.size()) return false;
  absl::ReaderMutexLock lock(&mu_);
  for (int s : slots) {
    if (owner_[static_cast<size_t>(s)] < 0) return false;
  }
  return true;
}

void Ledger::RecordAllocate(const std::vector<std::string>& ids, absl::Time now) {
  const std::vector<int> slots = Resolve(ids);
  if (slots.empty()) return;
  {
    absl::MutexLock lock(&mu_);
    const int id = next_holder_++;
    Holder& holder = holders_[id];
    holder.group = next_group_++;
    holder.granted_at = now;
    for (int s : slots) {
      const int previous = owner_[static_cast<size_t>(s)];
      if (previous >= 0 && previous != id) {
        // Kubelet reuses an init container's IDs for an app container of the same pod: the init
        // container has finished (no longer a client) and stays with the pod.
        Holder& earlier = holders_[previous];
        earlier.client = false;
        MergeGroups(earlier.group, holder.group);
      }
      Assign(s, id);
    }
    DropEmptyHolders();
  }
  NotifyChanged();
}

void Ledger::RecordAvailable(const std::vector<std::string>& available,
                             const std::vector<std::string>& must_include,
                             const std::vector<char>& offered) {
  const std::vector<int> free = Resolve(available);
  const std::vector<int> held = Resolve(must_include);
  const std::set<int> keep(held.begin(), held.end());
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    std::vector<char> in_request(owner_.size(), 0);
    for (int s : free) {
      in_request[static_cast<size_t>(s)] = 1;
      if (owner_[static_cast<size_t>(s)] < 0 || keep.contains(s)) continue;
      Release(s);
      changed = true;
    }
    if (offered.size() == owner_.size()) {
      // Healthy in kubelet's eyes, not available, and no grant known: someone holds it (an init
      // container this ledger forgot, or a grant from before the plugin started).
      int observer = -1;
      for (size_t s = 0; s < owner_.size(); ++s) {
        if (offered[s] == 0 || in_request[s] != 0 || owner_[s] >= 0) continue;
        if (observer < 0) {
          observer = next_holder_++;
          Holder& holder = holders_[observer];
          holder.group = next_group_++;
          holder.client = false;
          holder.observed = true;
        }
        Assign(static_cast<int>(s), observer);
        changed = true;
      }
    }
    if (changed) DropEmptyHolders();
  }
  if (changed) NotifyChanged();
}

void Ledger::ApplyList(const std::vector<podresources::ContainerDevices>& containers,
                       absl::Time started) {
  // The listed app containers of this resource, by key.
  std::map<std::string, std::vector<int>> listed;
  for (const auto& c : containers) {
    if (c.resource_name != spec_.name) continue;
    auto& slots = listed[absl::StrCat(c.pod_namespace, "/", c.pod_name, "/", c.container_name)];
    for (int s : Resolve(c.device_ids)) slots.push_back(s);
  }
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    const std::vector<int> before = owner_;
    std::map<std::string, int> by_key;
    for (const auto& [id, holder] : holders_) {
      if (!holder.key.empty()) by_key[holder.key] = id;
    }
    std::map<int, std::vector<int>> slots_of;
    for (size_t s = 0; s < owner_.size(); ++s) {
      if (owner_[s] >= 0) slots_of[owner_[s]].push_back(static_cast<int>(s));
    }
    std::set<int> seen;
    for (const auto& [key, slots] : listed) {
      int id = -1;
      if (auto it = by_key.find(key); it != by_key.end()) {
        id = it->second;
      } else {
        // Not listed before: the holder its Allocate created (the one owning most of its IDs and
        // not listed under another key), else a new one (e.g. after the plugin restarted).
        std::map<int, int> owned;
        for (int s : slots) {
          const int o = owner_[static_cast<size_t>(s)];
          if (o >= 0 && holders_[o].key.empty()) owned[o]++;
        }
        int best = 0;
        for (const auto& [o, count] : owned) {
          if (count > best) {
            best = count;
            id = o;
          }
        }
        if (id < 0) {
          id = next_holder_++;
          holders_[id].group = next_group_++;
        }
        holders_[id].key = key;
      }
      seen.insert(id);
      // Kubelet's list is the truth for its app containers: exactly these IDs.
      std::set<int> now(slots.begin(), slots.end());
      if (auto it = slots_of.find(id); it != slots_of.end()) {
        for (int s : it->second) {
          if (owner_[static_cast<size_t>(s)] == id && !now.contains(s)) Release(s);
        }
      }
      for (int s : now) {
        const int previous = owner_[static_cast<size_t>(s)];
        if (previous >= 0 && previous != id && holders_[previous].key.empty()) {
          // An unlisted holder of this container's IDs is an init container of its pod.
          holders_[previous].client = false;
          MergeGroups(holders_[previous].group, holders_[id].group);
        }
        Assign(s, id);
      }
    }
    // Groups that still have a listed container.
    std::set<int> live_groups;
    for (int id : seen) live_groups.insert(holders_[id].group);
    // Groups that had one: their unlisted members (init containers) go with the pod.
    std::set<int> listed_groups;
    for (const auto& [id, holder] : holders_) {
      if (!holder.key.empty()) listed_groups.insert(holder.group);
    }
    std::set<int> gone;
    for (auto& [id, holder] : holders_) {
      if (seen.contains(id)) continue;
      if (!holder.key.empty() ||
          (listed_groups.contains(holder.group) && !live_groups.contains(holder.group))) {
        gone.insert(id);
      } else if (!holder.observed && !live_groups.contains(holder.group) &&
                 started - holder.granted_at >= kListGrace &&
                 ++holder.missed_lists >= kMissedListsToForget) {
        gone.insert(id);  // a grant no List showed: its pod has gone
      }
    }
    if (!gone.empty()) {
      for (size_t s = 0; s < owner_.size(); ++s) {
        if (gone.contains(owner_[s])) Release(static_cast<int>(s));
      }
    }
    DropEmptyHolders();
    listed_ = true;
    changed = owner_ != before;
  }
  if (changed) NotifyChanged();
}

bool Ledger::Listed() const {
  absl::ReaderMutexLock lock(&mu_);
  return listed_;
}

sharing::Occupancy Ledger::OccupancyLocked() const {
  sharing::Occupancy occupancy = sharing::EmptyOccupancy(spec_);
  std::vector<std::set<int>> clients(spec_.gpus.size());
  for (size_t s = 0; s < owner_.size(); ++s) {
    const int o = owner_[s];
    if (o < 0) continue;
    occupancy.allocated[s] = 1;
    const size_t gpu = s / static_cast<size_t>(slots_per_gpu_);
    if (auto it = holders_.find(o); it != holders_.end() && it->second.client) {
      clients[gpu].insert(o);
    }
  }
  for (size_t g = 0; g < clients.size(); ++g) {
    occupancy.clients[g] = static_cast<int>(clients[g].size());
  }
  return occupancy;
}

sharing::Occupancy Ledger::Occupancy() const {
  absl::ReaderMutexLock lock(&mu_);
  return OccupancyLocked();
}

std::vector<char> Ledger::GpusAtClientCap() const {
  const sharing::Occupancy occupancy = Occupancy();
  std::vector<char> at_cap(spec_.gpus.size(), 0);
  for (size_t g = 0; g < spec_.gpus.size(); ++g) {
    at_cap[g] = occupancy.clients[g] >= sharing::MpsClientCap(spec_.gpus[g]) ? 1 : 0;
  }
  return at_cap;
}

void Ledger::SetOnChange(std::function<void()> on_change) {
  absl::MutexLock lock(&callback_mu_);
  on_change_ = std::move(on_change);
}

void Ledger::NotifyChanged() {
  absl::MutexLock lock(&callback_mu_);
  if (on_change_) on_change_();
}

}  // namespace nvdp::ledger
