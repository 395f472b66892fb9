#include "ledger/book.h"

#include <utility>
#include <vector>

#include "logging/logging.h"
#include "spdlog/spdlog.h"

namespace nvdp::ledger {
namespace {

bool SameDevices(const sharing::ResourceSpec& a, const sharing::ResourceSpec& b) {
  if (a.name != b.name || a.mode != b.mode || a.replicas != b.replicas ||
      a.gpus.size() != b.gpus.size()) {
    return false;
  }
  for (size_t i = 0; i < a.gpus.size(); ++i) {
    if (a.gpus[i].uuid != b.gpus[i].uuid) return false;
  }
  return true;
}

}  // namespace

LedgerBook::LedgerBook(std::unique_ptr<podresources::Lister> lister, std::string source,
                       absl::Duration period)
    : lister_(std::move(lister)), source_(std::move(source)), period_(period) {}

LedgerBook::~LedgerBook() { Stop(); }

void LedgerBook::Start() {
  absl::MutexLock lock(&mu_);
  started_ = true;
  StartThreadIfNeededLocked();
}

void LedgerBook::StartThreadIfNeededLocked() {
  // A node without per-container MPS resources never needs the thread.
  if (lister_ == nullptr || !started_ || stop_ || ledgers_.empty() || thread_.joinable()) return;
  thread_ = std::thread([this] {
    logging::NameThisThread("nvdp-ledger");
    Run();
  });
}

void LedgerBook::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<Ledger> LedgerBook::For(const sharing::ResourceSpec& spec) {
  std::shared_ptr<Ledger> ledger;
  {
    absl::MutexLock lock(&mu_);
    auto& slot = ledgers_[spec.name];
    if (slot == nullptr || !SameDevices(slot->spec(), spec)) {
      slot = std::make_shared<Ledger>(spec);
      poked_ = true;  // learn what is held before shaping
    }
    ledger = slot;
    StartThreadIfNeededLocked();
  }
  return ledger;
}

void LedgerBook::Retain(const std::set<std::string>& names) {
  absl::MutexLock lock(&mu_);
  for (auto it = ledgers_.begin(); it != ledgers_.end();) {
    it = names.contains(it->first) ? std::next(it) : ledgers_.erase(it);
  }
}

void LedgerBook::RefreshSoon() {
  absl::MutexLock lock(&mu_);
  poked_ = true;
}

absl::Status LedgerBook::RefreshNow() {
  if (lister_ == nullptr) return absl::FailedPreconditionError("no pod-resources socket");
  std::vector<std::shared_ptr<Ledger>> ledgers;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, ledger] : ledgers_) ledgers.push_back(ledger);
  }
  if (ledgers.empty()) return absl::OkStatus();
  absl::MutexLock refresh(&refresh_mu_);
  const absl::Time started = absl::Now();
  auto listed = lister_->List();
  if (!listed.ok()) {
    if (!failing_) {
      spdlog::warn(
          "pod-resources socket {}: {}; capacity shaping is off and the MPS client cap counts only "
          "what this plugin allocated, until it answers (mount kubelet's pod-resources directory, "
          "or set --pod-resources-socket)",
          source_, std::string(listed.status().message()));
    }
    failing_ = true;
    return listed.status();
  }
  if (failing_ || !answered_) {
    spdlog::info("pod-resources socket {} answers: {} container(s) hold devices", source_,
                 listed->size());
  }
  failing_ = false;
  answered_ = true;
  for (const auto& ledger : ledgers) ledger->ApplyList(*listed, started);
  return absl::OkStatus();
}

void LedgerBook::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || poked_; };
      // Nothing to keep fresh: sleep until a ledger appears (For pokes).
      if (ledgers_.empty()) {
        mu_.Await(absl::Condition(&wake));
      } else {
        mu_.AwaitWithTimeout(absl::Condition(&wake), period_);
      }
      if (stop_) return;
      poked_ = false;
    }
    RefreshNow().IgnoreError();
  }
}

}  // namespace nvdp::ledger
