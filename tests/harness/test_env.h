// The two clusters every end-to-end test binary shares: `source` (the old single-tenant server)
// and `target` (the new multi-tenant server), both PostgreSQL 15 with wal_level=logical and
// wal2json available.
//
// How to use: link `test_harness` (plus GTest::gtest_main, which tenantsync_add_test adds) and
// call Clusters() from a test. No main() of your own is needed: test_env.cc registers a
// ::testing::Environment from a static initializer, and because Clusters() lives in that same
// file, any binary that calls it links the registration in. The environment starts both clusters
// (in parallel) before the first test and stops them after the last one; a binary that never
// calls Clusters() starts nothing.
//
//   TEST(Snapshot, CopiesOrders) {
//     auto& env = tenantsync::testing::Clusters();
//     auto db = env.source().CreateDatabase("snap");   // a fresh database per test
//     ASSERT_TRUE(db.ok()) << db.status().ToString();
//     ...
//   }
//
// Tests share the clusters, so each one works in its own databases (CreateDatabase) and drops
// the replication slots it creates (max_replication_slots = 20 per cluster).
//
// If a cluster fails to start, the environment's SetUp fails and gtest skips every test of the
// binary, which then exits non-zero with the reason (and the server log's tail).
#pragma once

#include "tests/harness/pg_cluster.h"

namespace tenantsync::testing {

class SharedClusters {
 public:
  // REQUIRES: called from a test (after the environment's SetUp). Aborts with a message
  // otherwise, since a test without its clusters can not mean anything.
  PgCluster& source();
  PgCluster& target();

 private:
  friend class ClusterEnvironment;
  std::unique_ptr<PgCluster> source_;
  std::unique_ptr<PgCluster> target_;
};

// The shared clusters of this test binary.
SharedClusters& Clusters();

}  // namespace tenantsync::testing
