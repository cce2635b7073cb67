// Preflight: everything `snapshot` and `run` need, checked before anything is written
// (DESIGN.md invariant 10). `tenantsync check` runs exactly this.
//
// Checks: both servers reachable; source wal_level = logical; the source role may replicate
// (REPLICATION or superuser), pg_hba.conf admits its replication connection, and it may read
// every mapped table and their sequences; the publication covers the mapped tables, or the role
// may create or extend it; a free replication slot and wal sender (unless the slot exists
// already); the slot is not in use by another process; every table named in the config exists;
// every mapped table has a primary key, a replica identity index or REPLICA IDENTITY FULL; the
// transform rules fit the source columns; target tables that exist already have every mapped
// column with a compatible type; the target role may create tables in the tenant schema and in
// _tenantsync (or create those schemas), write the tenant's row of public.organizations (or
// create that table), and SET session_replication_role when the applier uses `replica`; the
// encryption key is present and valid when a column or tenant secret needs it.
//
// The privileges are those of the least-privilege roles of ops/runbooks/security.md; a missing
// one is a line holding the GRANT (or CREATE/ALTER) statement that fixes it.
//
// Each failure is one line naming the table/column/setting and the fix. Nothing is written on
// either server. Secrets never appear in the lines (URLs are masked).
#pragma once

#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace tenantsync::snapshot {

struct PreflightOptions {
  // The slot may already exist (a resumed snapshot, or `check` of a running pipeline): then it
  // needs no free slot, but it must not be active in another process.
  bool slot_may_exist = true;
};

// All failures (empty: ready to go). A non-OK status only for an unexpected internal error.
StatusOr<std::vector<std::string>> Preflight(const Config& config,
                                             const PreflightOptions& options = {});

// True when a column of type `target_type` can take values of `produced_type` (what the mapping
// produces) without loss: equal types, text-like targets, numeric widening, json → jsonb,
// timestamp → timestamptz, varchar(n) → text.
bool CompatibleTypes(const std::string& produced_type, const std::string& target_type);

}  // namespace tenantsync::snapshot
