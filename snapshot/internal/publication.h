// The source publication: whether it exists, covers the mapped tables with every kind of change,
// and whether the source role may create or extend it.
//
// Why this is a question and not just a CREATE: PostgreSQL 15 lets only the owner of every table
// (or a superuser) run CREATE PUBLICATION ... FOR TABLE / ALTER PUBLICATION ... ADD TABLE, and
// the least-privilege source role (LOGIN REPLICATION + SELECT: ops/runbooks/security.md) owns
// nothing. The DBA then creates the publication once; tenantsync uses it as it is when it
// covers the mapped tables, and otherwise stops with one line holding the exact statement to
// run (DESIGN.md invariant 10). Preflight (`check`) and the snapshot share this code, so `check`
// reports exactly what the snapshot would stop on.
#pragma once

#include <string>
#include <vector>

#include "core/config.h"
#include "core/pg.h"
#include "core/status.h"

namespace tenantsync::snapshot::internal {

struct PublicationState {
  bool exists = false;
  // Mapped tables (source names) the publication does not publish, sorted. All of them when it
  // does not exist.
  std::vector<std::string> missing_tables;
  // Kinds of change among insert, update, delete, truncate that it does not publish.
  std::vector<std::string> missing_actions;
  // The source role may run `fix` itself: for a new publication, CREATE on the database and
  // ownership of every mapped table; for an existing one, ownership of it and of every missing
  // table. A superuser always may.
  bool role_may_fix = false;
  std::string role;   // current_user of the source connection
  std::string owner;  // the publication's owner (when it exists)
  // The statement that makes the publication cover the mapped tables (empty when it does).
  std::string fix;

  bool ready() const { return exists && missing_tables.empty() && missing_actions.empty(); }
};

// Reads the state of config.source.publication for `tables` (mapped source tables). Read-only.
StatusOr<PublicationState> ReadPublicationState(const Config& config,
                                                const std::vector<std::string>& tables,
                                                PgConn& source);

// The one line for a publication that is not ready and that the role may not fix: what is
// missing and the exact statement for its owner or a superuser. REQUIRES: !state.ready().
std::string PublicationFailure(const Config& config, const PublicationState& state);

}  // namespace tenantsync::snapshot::internal
