// Helpers shared by cutover, replay and rollback: the target's progress row, the source slot's
// state, and counting data transactions in the journal.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <set>
#include <string>

#include "core/lsn.h"
#include "core/pg.h"
#include "core/status.h"
#include "state/state_store.h"

namespace tenantsync::cutover::internal {

struct AppliedPosition {
  Lsn lsn;
  int64_t commit_time_us = 0;
};

// The pipeline's row of the target's _tenantsync.progress; nullopt when the table or the row
// does not exist.
StatusOr<std::optional<AppliedPosition>> ReadAppliedPosition(PgConn& target,
                                                             const std::string& pipeline);

struct SlotState {
  bool exists = false;
  bool active = false;
  int64_t active_pid = 0;
  Lsn confirmed_flush;
};
StatusOr<SlotState> ReadSlot(PgConn& source, const std::string& slot);

// kFailedPrecondition naming the slot, the PID and the remedy when `slot` is active.
Status RequireSlotInactive(const SlotState& slot, const std::string& slot_name,
                           const std::string& what);

struct DataTransactions {
  int64_t transactions = 0;      // transactions holding at least one non-message change
  std::set<std::string> tables;  // source tables they changed
};
// Counts the journal's data transactions with after < commit LSN <= through (messages, such as
// our barrier markers, are not data). Read-only; works beside a running writer.
StatusOr<DataTransactions> CountDataTransactions(state::StateStore& store, Lsn after,
                                                 Lsn through);

// Drops the source publication `pub` when it exists and the source role may (owner or member of
// the owning role, or superuser); a publication the DBA created for a least-privilege role
// (ops/runbooks/security.md) is left in place with a line on `out` naming its owner and the
// statement, because it retains no WAL and is not ours to drop. `what` prefixes that line.
Status DropPublicationIfOurs(PgConn& source, const std::string& pub, const std::string& what,
                             FILE* out);

// SELECT returning one value as text.
StatusOr<std::string> QueryText(PgConn& conn, const std::string& sql,
                                const std::vector<std::optional<std::string>>& params = {});

}  // namespace tenantsync::cutover::internal
