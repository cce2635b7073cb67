// The audit trail: every command that changes or judges the pipeline (snapshot, stream, run,
// validate, cutover, replay, rollback, rotate-key) leaves a record of who ran it, when, with which
// arguments (URLs' passwords masked), its outcome and figures, and its JSON report if it wrote one.
//
// Where: the target's `_tenantsync.runs` table (authoritative, shared by every machine that runs
// commands against the pipeline) and the state store's meta keys `audit/<id>` when this process
// can open the store (it can not while `run` holds it in another process; then the target copy
// is the only one, and the record says so). Writing the audit never changes a command's exit code:
// a failure to record is logged as a warning.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/status.h"

namespace tenantsync::state {
class StateStore;
}  // namespace tenantsync::state

namespace tenantsync::ops {

struct AuditRecord {
  std::string id;            // "<started_us>-<pid>", sortable
  std::string command;
  std::string user;          // OS user
  std::string host;
  std::string arguments;     // the command line, secrets masked
  int64_t started_us = 0;
  int64_t finished_us = 0;   // 0 while running (or when the process was killed)
  int exit_code = -1;
  std::string outcome;       // "running", "ok", "failed"
  std::string error;         // the one-line error, empty on success
  nlohmann::json report;     // the command's JSON report, or null

  nlohmann::json ToJson() const;
  static AuditRecord FromJson(const nlohmann::json& j);
};

// The command line with every URL's password and every value after a secret-bearing flag masked.
std::string MaskArguments(int argc, char** argv);

// True for commands that are recorded.
bool IsAudited(const std::string& command);

AuditRecord BeginAudit(const std::string& command, int argc, char** argv);
// Stores the record in the target (upsert by id) and, when it can be opened and `state_copy`,
// the state store. A command that opens the store itself (stream, run) passes false for its
// start record and writes that copy with WriteAuditToStore once the store is open: opening the
// store twice took ~20 ms of every start.
Status WriteAudit(const Config& config, const AuditRecord& record, bool state_copy = true);
// Stores the record in a state store this process holds.
Status WriteAuditToStore(state::StateStore& store, const AuditRecord& record);
// Newest first, from the target; falls back to the state store when the target is unreachable.
StatusOr<std::vector<AuditRecord>> ReadHistory(const Config& config, size_t limit = 100);

// `history [--json]`.
int HistoryCommand(const Config& config, bool json);

}  // namespace tenantsync::ops
