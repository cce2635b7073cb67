#include "tests/harness/test_env.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <future>

namespace tenantsync::testing {

class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // initdb is mostly CPU and fsync-free: starting both at once halves the wait on 2 cores.
    auto source = std::async(std::launch::async, [] { return PgCluster::Start("source"); });
    auto target = std::async(std::launch::async, [] { return PgCluster::Start("target"); });
    auto s = source.get();
    auto t = target.get();
    ASSERT_TRUE(s.ok()) << "starting the source cluster: " << s.status().ToString();
    ASSERT_TRUE(t.ok()) << "starting the target cluster: " << t.status().ToString();
    Clusters().source_ = std::move(s).value();
    Clusters().target_ = std::move(t).value();
  }

  void TearDown() override {
    Clusters().source_.reset();
    Clusters().target_.reset();
  }
};

namespace {

[[noreturn]] void NoClusters(const char* which) {
  std::fprintf(stderr,
               "tenantsync test harness: Clusters().%s() called but the %s cluster is not "
               "running (called outside a test, or its start failed: see above)\n",
               which, which);
  std::abort();
}

// Registered before main(), as gtest documents for binaries that use gtest_main.
[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

}  // namespace

PgCluster& SharedClusters::source() {
  if (!source_) NoClusters("source");
  return *source_;
}

PgCluster& SharedClusters::target() {
  if (!target_) NoClusters("target");
  return *target_;
}

SharedClusters& Clusters() {
  static SharedClusters* clusters = new SharedClusters();  // leaked: outlives the environment
  return *clusters;
}

}  // namespace tenantsync::testing
