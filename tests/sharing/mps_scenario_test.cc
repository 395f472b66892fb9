// Table-driven scenarios of per-container MPS on the 8x A100-40GB node: each
// step admits a container through the fake kubelet (PreferredAllocation, then
// GrantContainer) or releases an earlier one, and checks the GPUs it landed on
// and the exact limit values, or the exact refusal.
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sharing/test_node.h"

namespace nvdp::sharing {
namespace {

using ::testing::ElementsAreArray;
using testing::FakeKubelet;

struct Step {
  Step(std::string label_in, int shares_in, std::vector<unsigned> gpus_in, int threads_in,
       std::optional<std::string> memory_in, std::string error_in = "")
      : label(std::move(label_in)),
        shares(shares_in),
        gpus(std::move(gpus_in)),
        threads(threads_in),
        memory(std::move(memory_in)),
        error(std::move(error_in)) {}

  std::string label;  // admit: names the container; release: "-<label>"
  int shares;
  std::vector<unsigned> gpus;  // expected GPU indices, container order
  int threads;
  std::optional<std::string> memory;  // expected pinned memory limit
  std::string error;                  // non-empty: the exact expected error message
};

struct Scenario {
  std::string name;
  int replicas = 100;
  config::MemoryLimit memory_limit = config::MemoryLimit::kProportional;
  std::vector<Step> steps;
};

// Test names and failure output show the scenario's name.
void PrintTo(const Scenario& scenario, std::ostream* os) { *os << scenario.name; }

Step Release(const std::string& label) { return Step("-" + label, 0, {}, 0, std::nullopt); }

Step Refuse(int shares, std::string error) {
  return Step("refused", shares, {}, 0, std::nullopt, std::move(error));
}

const std::vector<Scenario>& Scenarios() {
  static const auto* scenarios = new std::vector<Scenario>{
      {"MixedSequence100",
       100,
       config::MemoryLimit::kProportional,
       {
           {"a", 30, {0}, 30, "0=12288M"},
           {"b", 70, {0}, 70, "0=28672M"},
           {"c", 50, {1}, 50, "0=20480M"},
           {"d", 50, {1}, 50, "0=20480M"},
           {"e", 100, {2}, 100, "0=40960M"},
           // GPU 3 is the last free one on NUMA 0: a pair comes from NUMA 1.
           {"f", 200, {4, 5}, 100, "0=40960M,1=40960M"},
           Refuse(150,
                  "nvidia.com/gpu: request for 150 shares cannot be satisfied: "
                  "shares are 100 per GPU, so a request must be below 100 (one "
                  "GPU) or a multiple of 100 (whole GPUs); ask for 100 or 200"),
           Release("a"),
           {"g", 20, {0}, 20, "0=8192M"},   // best fit: GPU 0 has 30 free
           {"h", 40, {3}, 40, "0=16384M"},  // GPU 0 has 10: lowest free GPU
           {"i", 10, {0}, 10, "0=4096M"},   // fills GPU 0 exactly
           {"j", 200, {6, 7}, 100, "0=40960M,1=40960M"},
           Release("f"),
           {"k", 100, {4}, 100, "0=40960M"},
           Release("e"),
           {"l", 60, {3}, 60, "0=24576M"},  // exactly the 60 left on GPU 3
           {"m", 90, {2}, 90, "0=36864M"},  // GPUs 2 and 5 tie: lowest index
           {"n", 100, {5}, 100, "0=40960M"},
           {"o", 10, {2}, 10, "0=4096M"},
       }},
      {"FragmentedNode",
       100,
       config::MemoryLimit::kProportional,
       {
           {"a0", 60, {0}, 60, "0=24576M"},
           {"a1", 60, {1}, 60, "0=24576M"},
           {"a2", 60, {2}, 60, "0=24576M"},
           {"a3", 60, {3}, 60, "0=24576M"},
           {"a4", 60, {4}, 60, "0=24576M"},
           {"a5", 60, {5}, 60, "0=24576M"},
           {"a6", 60, {6}, 60, "0=24576M"},
           {"a7", 60, {7}, 60, "0=24576M"},
           // 320 shares free in total, but at most 40 on one GPU.
           Refuse(70,
                  "nvidia.com/gpu: no single GPU has 70 free shares; the most "
                  "free on one GPU is 40"),
           Refuse(100,
                  "nvidia.com/gpu: a request for 100 shares needs 1 completely "
                  "free GPU(s) (100 free shares each); none is completely "
                  "free"),
           {"b", 40, {0}, 40, "0=16384M"},
           Release("a3"),
           {"c", 70, {3}, 70, "0=28672M"},
           {"d", 30, {3}, 30, "0=12288M"},  // best fit: GPU 3 has exactly 30
           Release("a5"),
           Release("a6"),
           {"e", 5, {1}, 5, "0=2048M"},  // GPUs 1,2,4,7 have 40: lowest
           {"f", 100, {5}, 100, "0=40960M"},
       }},
      {"MemoryLimitNone",
       100,
       config::MemoryLimit::kNone,
       {
           {"a", 30, {0}, 30, std::nullopt},
           {"b", 100, {1}, 100, std::nullopt},
           {"c", 200, {2, 3}, 100, std::nullopt},
           {"d", 1, {0}, 1, std::nullopt},
       }},
      {"Replicas10",
       10,
       config::MemoryLimit::kProportional,
       {
           {"a", 1, {0}, 10, "0=4096M"},
           {"b", 3, {0}, 30, "0=12288M"},
           {"c", 10, {1}, 100, "0=40960M"},
           Refuse(15,
                  "nvidia.com/gpu: request for 15 shares cannot be satisfied: "
                  "shares are 10 per GPU, so a request must be below 10 (one "
                  "GPU) or a multiple of 10 (whole GPUs); ask for 10 or 20"),
           {"d", 20, {2, 3}, 100, "0=40960M,1=40960M"},
           {"e", 40, {4, 5, 6, 7}, 100, "0=40960M,1=40960M,2=40960M,3=40960M"},
           {"f", 6, {0}, 60, "0=24576M"},  // the node is full now
           Release("c"),
           Release("d"),
           Release("e"),
           {"g", 6, {1}, 60, "0=24576M"},
           {"h", 6, {2}, 60, "0=24576M"},
           {"i", 6, {3}, 60, "0=24576M"},
           // 52 shares free, but only GPUs 4-7 whole.
           Refuse(50,
                  "nvidia.com/gpu: a request for 50 shares needs 5 completely "
                  "free GPU(s) (10 free shares each); only 4 are completely "
                  "free"),
           {"j", 40, {4, 5, 6, 7}, 100, "0=40960M,1=40960M,2=40960M,3=40960M"},
           {"k", 4, {1}, 40, "0=16384M"},
           Refuse(5,
                  "nvidia.com/gpu: no single GPU has 5 free shares; the most "
                  "free on one GPU is 4"),
       }},
      {"RoundingThirds",
       3,
       config::MemoryLimit::kProportional,
       {
           {"a", 1, {0}, 33, "0=13653M"},  // floor(40960/3)
           {"b", 2, {0}, 66, "0=27306M"},  // floor(2*40960/3)
           {"c", 3, {1}, 100, "0=40960M"},
           Refuse(4,
                  "nvidia.com/gpu: request for 4 shares cannot be satisfied: "
                  "shares are 3 per GPU, so a request must be below 3 (one "
                  "GPU) or a multiple of 3 (whole GPUs); ask for 3 or 6"),
           {"d", 6, {2, 3}, 100, "0=40960M,1=40960M"},
           Refuse(7,
                  "nvidia.com/gpu: request for 7 shares cannot be satisfied: "
                  "shares are 3 per GPU, so a request must be below 3 (one "
                  "GPU) or a multiple of 3 (whole GPUs); ask for 6 or 9"),
       }},
      {"RoundingSevenths",
       7,
       config::MemoryLimit::kProportional,
       {
           {"a", 1, {0}, 14, "0=5851M"},
           {"b", 6, {0}, 85, "0=35108M"},
           {"c", 5, {1}, 71, "0=29257M"},
       }},
      {"ThreadsAtLeastOne",
       1000,
       config::MemoryLimit::kProportional,
       {
           {"a", 1, {0}, 1, "0=40M"},
           {"b", 9, {0}, 1, "0=368M"},
           {"c", 10, {0}, 1, "0=409M"},
           {"d", 999, {1}, 99, "0=40919M"},
           {"e", 1000, {2}, 100, "0=40960M"},
           {"f", 2000, {4, 5}, 100, "0=40960M,1=40960M"},
       }},
  };
  return *scenarios;
}

class MpsScenarioTest : public ::testing::TestWithParam<Scenario> {};

TEST_P(MpsScenarioTest, EveryStepLandsWhereExpected) {
  const Scenario& scenario = GetParam();
  ResourceSpec spec = testing::MpsSpec(scenario.replicas);
  spec.memory_limit = scenario.memory_limit;
  FakeKubelet kubelet(spec);
  std::map<std::string, std::vector<std::string>> live;

  for (size_t i = 0; i < scenario.steps.size(); ++i) {
    const Step& step = scenario.steps[i];
    SCOPED_TRACE("step " + std::to_string(i) + " (" + step.label + ", " +
                 std::to_string(step.shares) + ")");
    if (step.label.starts_with("-")) {
      auto it = live.find(step.label.substr(1));
      ASSERT_NE(it, live.end());
      kubelet.Release(it->second);
      live.erase(it);
      continue;
    }
    auto admitted = kubelet.Admit(step.shares);
    if (!step.error.empty()) {
      ASSERT_FALSE(admitted.ok());
      EXPECT_EQ(admitted.status().message(), step.error);
      continue;
    }
    ASSERT_TRUE(admitted.ok()) << admitted.status();
    EXPECT_EQ(admitted->ids.size(), static_cast<size_t>(step.shares));
    EXPECT_THAT(testing::Indices(admitted->grant), ElementsAreArray(step.gpus));
    ASSERT_TRUE(admitted->grant.mps_limits.has_value());
    EXPECT_EQ(admitted->grant.mps_limits->active_thread_percentage, step.threads);
    EXPECT_EQ(admitted->grant.mps_limits->pinned_mem_limit, step.memory);
    live[step.label] = admitted->ids;
  }
}

INSTANTIATE_TEST_SUITE_P(A100Node, MpsScenarioTest, ::testing::ValuesIn(Scenarios()),
                         [](const ::testing::TestParamInfo<Scenario>& param_info) {
                           return param_info.param.name;
                         });

// Best fit hands out the lowest free share IDs of the chosen GPU.
TEST(MpsScenario, SharesAreTheLowestFreeOfTheChosenGpu) {
  FakeKubelet kubelet(testing::MpsSpec());
  auto a = kubelet.Admit(30);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->ids, testing::Shares(0, 0, 30));
  auto b = kubelet.Admit(20);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ids, testing::Shares(0, 30, 50));
  kubelet.Release(a->ids);
  auto c = kubelet.Admit(40);  // GPU 0 has 80 free (0..29, 50..99)
  ASSERT_TRUE(c.ok());
  std::vector<std::string> want = testing::Shares(0, 0, 30);
  for (const auto& id : testing::Shares(0, 50, 60)) want.push_back(id);
  EXPECT_EQ(c->ids, want);
}

// Kubelet sends its sets in no particular order: the picks do not depend on it.
TEST(MpsScenario, OrderOfAvailableDoesNotMatter) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    FakeKubelet shuffled(testing::MpsSpec(), seed);
    FakeKubelet ordered(testing::MpsSpec());
    for (int k : {30, 70, 50, 50, 100, 200, 10, 90}) {
      auto x = shuffled.Admit(k);
      auto y = ordered.Admit(k);
      ASSERT_TRUE(x.ok() && y.ok());
      EXPECT_EQ(x->ids, y->ids);
    }
  }
}

}  // namespace
}  // namespace nvdp::sharing
