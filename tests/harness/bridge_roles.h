// The least-privilege roles the integration tests run the bridge as: the roles of
// ops/runbooks/security.md ("Least-privilege roles"), granted on a test's own databases, so
// that every end-to-end test (not only least_privilege_test) would fail if tenantsync started
// to need a privilege the runbook does not give. Test setup and checks (loading data, the
// workload, comparing tables, pg_dump) stay the superuser's, as the application's and the
// DBA's would.
//
//   auto& env = Clusters();
//   ASSERT_OK(GrantBridgeSource(env.source(), src_db, "my_publication"));  // after the tables
//   ASSERT_OK(GrantBridgeTarget(env.target(), tgt_db, "tenant_rawdog"));
//   config: source.url = env.source().Url(src_db, kBridgeSourceRole), publication my_publication
//           target.url = env.target().Url(tgt_db, kBridgeTargetRole), schema tenant_rawdog
//
// The roles belong to the cluster and are created on first use (LOGIN, no password: the harness
// clusters trust 127.0.0.1); the grants are per database. A test that needs the superuser for
// the bridge (for example to show what tenantsync does with a publication it created itself)
// says why where it does.
//
// Thread safety: as PgCluster (one thread at a time per cluster).
#pragma once

#include <string>

#include "core/status.h"
#include "tests/harness/pg_cluster.h"

namespace tenantsync::testing {

// Source role: LOGIN REPLICATION, SELECT on the published tables and the schema's sequences.
inline constexpr char kBridgeSourceRole[] = "ts_bridge_source";
// Target role: LOGIN, owner of the tenant schema and _tenantsync, writes public.organizations,
// may SET session_replication_role.
inline constexpr char kBridgeTargetRole[] = "ts_bridge_target";

// As the superuser in `db` of the source (the DBA's part of the runbook): creates
// kBridgeSourceRole if needed, grants CONNECT, USAGE on `schema`, SELECT on every table of
// `schema` that exists now and on its sequences, and creates `publication` FOR TABLE those
// tables (insert, update, delete, truncate). A table created afterwards is neither readable nor
// published, as in production: call this after the test's tables exist. With `publication`
// empty no publication is created (a test that makes its own, as the DBA, FOR ALL TABLES).
// Idempotent but for the publication.
// REQUIRES: `publication` does not exist in `db`.
Status GrantBridgeSource(PgCluster& source, const std::string& db, const std::string& publication,
                         const std::string& schema = "public");

// As the superuser in `db` of the target: creates kBridgeTargetRole if needed, grants CONNECT,
// creates `tenant_schema` and _tenantsync owned by the role (if they do not exist), creates
// public.organizations as the runbook's DDL if it does not exist, grants SELECT, INSERT, UPDATE
// and DELETE on it (DELETE: `rollback`) and USAGE on its sequence, and SET ON PARAMETER
// session_replication_role (the applier's default `replica`).
Status GrantBridgeTarget(PgCluster& target, const std::string& db,
                         const std::string& tenant_schema);

// The fenced block after "<!-- least-privilege:NAME -->" in ops/runbooks/security.md (the SQL
// and pg_hba.conf lines the runbook documents); "" when missing.
std::string SecurityRunbookBlock(const std::string& name);

}  // namespace tenantsync::testing
