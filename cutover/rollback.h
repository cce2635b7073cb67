// rollback: removes everything tenantsync created for one pipeline (`tenantsync rollback`), so
// the migration can be abandoned or started over. The old database keeps serving throughout.
//
// What it drops (PlanRollback lists each with whether it exists):
//   source  the replication slot (refused while active: `run` still streams), the publication
//   target  the tenant schema (CASCADE), the tenant's public.organizations row, this pipeline's
//           rows in every _tenantsync table, and the _tenantsync schema itself once no other
//           pipeline has rows there (other tenants' pipelines may share it)
//   local   the state directory (refused while another process holds its lock)
// public.organizations itself is left: it belongs to the multi-tenant application.
//
// Safe to run twice: every drop is conditional, the second run finds nothing ("nothing to
// drop"). Order: the slot first (so no WAL is retained even if a later step fails), then the
// target, then the state directory last (it is the record of what was done).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace tenantsync::cutover {

struct RollbackItem {
  std::string where;  // "source", "target", "local"
  std::string what;   // "replication slot tenantsync_rawdog", "schema tenant_rawdog", ...
  bool exists = false;
  std::string note;   // "active (PID 123)", "12 rows", ...
};

struct RollbackPlan {
  std::vector<RollbackItem> items;
  bool slot_active = false;
  int64_t slot_pid = 0;
  bool Empty() const;  // nothing exists
  std::string ToText() const;
};

// Reads what exists. Read-only.
StatusOr<RollbackPlan> PlanRollback(const Config& config);

struct RollbackOptions {
  bool confirm = false;  // without it only the plan is printed
  FILE* out = stdout;
};

// Prints the plan; with confirm, drops what exists. kFailedPrecondition (nothing dropped) when
// the slot is active or the state directory is locked by a running process.
Status Rollback(const Config& config, const RollbackOptions& options);

}  // namespace tenantsync::cutover
