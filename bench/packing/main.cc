// packing_sim: runs the packing model (packing.h) for every policy, load and pod-size mix and
// prints one markdown table per policy (rows: loads, columns: mixes, cells: "fail% / util%"),
// then the share of arrivals the scheduler turned away. See bench/packing/README.md.
//
// Exit status: 1 when capacity shaping without lag lets any scheduled pod fail admission or
// GrantContainer ever refuses what PreferredAllocation chose; with --smoke (a short run of the
// unshaped and shaped policies) also when the unshaped node never fails a pod at 110% load with mix
// 10-90. 2 for bad arguments.
//
// Single-threaded.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "packing/packing.h"

namespace nvdp::packing {
namespace {

constexpr double kLoads[] = {0.7, 0.9, 1.1};

struct Options {
  int64_t arrivals = 200000;
  int runs = 4;
  uint64_t seed = 1;
  double lag_seconds = 10;
  double mean_life = 60;
  bool smoke = false;
  bool detail = false;
};

// One cell's seed: the same for every policy, so they all see the same pods.
uint64_t CellSeed(uint64_t seed, size_t load, size_t mix, int run) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(load), static_cast<uint32_t>(mix),
                    static_cast<uint32_t>(run)};
  uint32_t words[2];
  seq.generate(words, words + 2);
  return (static_cast<uint64_t>(words[0]) << 32) | words[1];
}

int Main(int argc, char** argv) {
  Options opt;
  CLI::App cli{
      "Simulates pods of GPU shares arriving at one 8-GPU node whose scheduler counts shares, and "
      "reports how many scheduled pods fail admission with and without capacity shaping"};
  cli.add_option("--arrivals", opt.arrivals, "pods offered per cell (all runs together)")
      ->check(CLI::PositiveNumber);
  cli.add_option("--runs", opt.runs, "independent runs per cell, seeds derived from --seed")
      ->check(CLI::PositiveNumber);
  cli.add_option("--seed", opt.seed, "base seed");
  cli.add_option("--lag-seconds", opt.lag_seconds,
                 "shaped-lag: how often the scheduler's allocatable is refreshed")
      ->check(CLI::PositiveNumber);
  cli.add_option("--mean-life", opt.mean_life, "mean pod lifetime in seconds (exponential)")
      ->check(CLI::PositiveNumber);
  cli.add_flag("--smoke", opt.smoke,
               "short run with checks: 1000 arrivals per cell, one run, unshaped and shaped only");
  cli.add_flag("--detail", opt.detail, "also print every cell's raw counts");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;
  }
  std::vector<Policy> policies(std::begin(kPolicies), std::end(kPolicies));
  if (opt.smoke) {
    opt.arrivals = 1000;
    opt.runs = 1;
    policies = {Policy::kUnshaped, Policy::kShaped};  // what the checks need
  }
  const int64_t per_run = (opt.arrivals + opt.runs - 1) / opt.runs;
  const std::vector<Mix> mixes = DefaultMixes();

  std::printf("# Packing simulation\n\n");
  std::printf(
      "Node: 8 GPUs x 100 shares (per-container MPS, A100-SXM4-40GB-like). Poisson arrivals, "
      "exponential lifetimes (mean %g s), pod sizes uniform over the mix. Load = arrival rate x "
      "mean size x mean life / 800. Per cell: %d run(s) of %lld arrivals, seeds from %llu "
      "(the same pods for every policy). shaped-lag: allocatable refreshed every %g s.\n\n",
      opt.mean_life, opt.runs, static_cast<long long>(per_run),
      static_cast<unsigned long long>(opt.seed), opt.lag_seconds);
  std::printf(
      "Cells: failed admissions in %% of the pods the scheduler sent / mean utilisation "
      "(allocated shares / 800, time-weighted) in %%.\n\n");
  std::fflush(stdout);

  // results[policy][load][mix]
  std::vector<std::vector<std::vector<CellResult>>> results;
  int exit_code = 0;
  const auto start = std::chrono::steady_clock::now();
  for (Policy policy : policies) {
    const auto policy_start = std::chrono::steady_clock::now();
    auto& by_load = results.emplace_back();
    for (size_t l = 0; l < std::size(kLoads); ++l) {
      auto& by_mix = by_load.emplace_back();
      for (size_t m = 0; m < mixes.size(); ++m) {
        CellResult total;
        for (int run = 0; run < opt.runs; ++run) {
          CellParams params;
          params.policy = policy;
          params.load = kLoads[l];
          params.mix = mixes[m];
          params.arrivals = per_run;
          params.mean_life_seconds = opt.mean_life;
          params.lag_seconds = opt.lag_seconds;
          params.seed = CellSeed(opt.seed, l, m, run);
          total.Add(RunCell(params));
        }
        by_mix.push_back(total);
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - policy_start).count();

    std::printf("## %s (%.1f s)\n\n| load |", std::string(PolicyName(policy)).c_str(), secs);
    for (const auto& mix : mixes) std::printf(" %s |", mix.name.c_str());
    std::printf("\n|---|");
    for (size_t m = 0; m < mixes.size(); ++m) std::printf("---|");
    std::printf("\n");
    for (size_t l = 0; l < std::size(kLoads); ++l) {
      std::printf("| %.0f%% |", kLoads[l] * 100);
      for (const auto& cell : by_load[l]) {
        std::printf(" %.1f / %.1f |", cell.FailPercent(), cell.UtilPercent());
        if (cell.failed_grant > 0) exit_code = 1;
        if (policy == Policy::kShaped && cell.Failed() > 0) exit_code = 1;
      }
      std::printf("\n");
    }
    std::printf("\n");
    std::fflush(stdout);
  }

  std::printf("## Not scheduled (%% of arrivals)\n\n| policy | load |");
  for (const auto& mix : mixes) std::printf(" %s |", mix.name.c_str());
  std::printf("\n|---|---|");
  for (size_t m = 0; m < mixes.size(); ++m) std::printf("---|");
  std::printf("\n");
  for (size_t p = 0; p < results.size(); ++p) {
    for (size_t l = 0; l < std::size(kLoads); ++l) {
      std::printf("| %s | %.0f%% |", std::string(PolicyName(policies[p])).c_str(), kLoads[l] * 100);
      for (const auto& cell : results[p][l]) std::printf(" %.1f |", cell.LostPercent());
      std::printf("\n");
    }
  }
  std::printf("\n");

  if (opt.detail) {
    std::printf(
        "## Detail\n\n| policy | load | mix | arrivals | not scheduled | scheduled | failed: too "
        "few devices | failed: PreferredAllocation | failed: GrantContainer | simulated s |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t p = 0; p < results.size(); ++p) {
      for (size_t l = 0; l < std::size(kLoads); ++l) {
        for (size_t m = 0; m < mixes.size(); ++m) {
          const CellResult& c = results[p][l][m];
          std::printf("| %s | %.0f%% | %s | %lld | %lld | %lld | %lld | %lld | %lld | %.0f |\n",
                      std::string(PolicyName(policies[p])).c_str(), kLoads[l] * 100,
                      mixes[m].name.c_str(), static_cast<long long>(c.arrivals),
                      static_cast<long long>(c.not_scheduled), static_cast<long long>(c.scheduled),
                      static_cast<long long>(c.failed_count),
                      static_cast<long long>(c.failed_preferred),
                      static_cast<long long>(c.failed_grant), c.seconds);
        }
      }
    }
    std::printf("\n");
  }

  int64_t calls = 0;
  for (const auto& by_load : results) {
    for (const auto& by_mix : by_load) {
      for (const auto& cell : by_mix) calls += cell.preferred_calls;
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("Run time: %.1f s for %lld PreferredAllocation calls.\n", secs,
              static_cast<long long>(calls));

  if (exit_code != 0) {
    std::fprintf(stderr,
                 "packing_sim: FAIL: shaped (no lag) had failed admissions, or GrantContainer "
                 "refused a PreferredAllocation answer\n");
  }
  if (opt.smoke) {
    // 110% load (index 2), mix 10-90 (index 1): fragmentation must show without shaping.
    if (results[0][2][1].Failed() == 0) {
      std::fprintf(stderr,
                   "packing_sim: FAIL: unshaped had no failed admission at 110%% load, mix "
                   "10-90\n");
      exit_code = 1;
    }
    if (exit_code == 0) std::printf("smoke: ok\n");
  }
  return exit_code;
}

}  // namespace
}  // namespace nvdp::packing

int main(int argc, char** argv) { return nvdp::packing::Main(argc, argv); }
