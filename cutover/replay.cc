#include "cutover/replay.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "apply/applier.h"
#include "core/crypto.h"
#include "core/pg.h"
#include "cutover/internal/common.h"
#include "cutover/internal/replay_journal.h"
#include "state/state_store.h"

namespace tenantsync::cutover {
namespace {

using Clock = std::chrono::steady_clock;

std::string FormatTime(int64_t us) {
  time_t secs = static_cast<time_t>(us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

Status RequireStateDir(const Config& config) {
  std::error_code ec;
  if (!std::filesystem::is_directory(config.state_dir, ec)) {
    return NotFound("state directory " + config.state_dir + " does not exist: nothing was "
                    "journaled for pipeline " + config.pipeline + " (check state_dir in the "
                    "config)");
  }
  return Status::Ok();
}

std::string WindowText(const std::vector<state::Checkpoint>& cps) {
  if (cps.empty()) return "no checkpoints are retained";
  return fmt::format("retained checkpoints: {} ({}) through {} ({})", cps.front().id,
                     cps.front().lsn.ToString(), cps.back().id, cps.back().lsn.ToString());
}

}  // namespace

StatusOr<std::vector<state::Checkpoint>> ListCheckpoints(const Config& config) {
  TS_RETURN_IF_ERROR(RequireStateDir(config));
  TS_ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore> store,
                      state::StateStore::OpenReadOnly(config.state_dir));
  TS_RETURN_IF_ERROR(store->Refresh());
  return store->journal().Checkpoints();
}

std::string CheckpointsText(const std::vector<state::Checkpoint>& checkpoints) {
  if (checkpoints.empty()) return "no checkpoints retained (nothing applied yet)\n";
  std::string out = fmt::format("{:>6}  {:<18}  {:<23}  {}\n", "id", "lsn", "time",
                                "transactions since previous");
  for (const auto& c : checkpoints) {
    out += fmt::format("{:>6}  {:<18}  {:<23}  {}\n", c.id, c.lsn.ToString(),
                       FormatTime(c.time_us), c.transactions);
  }
  return out;
}

std::string CheckpointsJson(const std::vector<state::Checkpoint>& checkpoints) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& c : checkpoints) {
    j.push_back({{"id", c.id},
                 {"lsn", c.lsn.ToString()},
                 {"time_us", c.time_us},
                 {"time", FormatTime(c.time_us)},
                 {"transactions", c.transactions}});
  }
  return j.dump(2);
}

StatusOr<ReplayResult> Replay(const Config& config, const ReplayOptions& options) {
  const auto started = Clock::now();
  ReplayResult result;
  TS_RETURN_IF_ERROR(RequireStateDir(config));

  state::StateOptions so;
  so.dir = config.state_dir;
  so.pipeline = config.pipeline;
  so.retention_hours = config.journal.retention_hours;
  so.max_journal_bytes = config.journal.max_bytes;
  auto opened = state::StateStore::Open(so);
  if (!opened.ok()) {
    return opened.status().WithContext("replay needs the state directory to itself (stop "
                                       "`tenantsync run` first)");
  }
  std::unique_ptr<state::StateStore> store = std::move(opened).value();
  state::Journal& journal = store->journal();

  // 1. --from: a checkpoint id or an LSN.
  TS_ASSIGN_OR_RETURN(std::vector<state::Checkpoint> checkpoints, journal.Checkpoints());
  if (options.from.empty()) return InvalidArgument("replay: --from ID|LSN is required");
  if (options.from.find('/') != std::string::npos) {
    TS_ASSIGN_OR_RETURN(result.from, Lsn::Parse(options.from));
  } else {
    uint64_t id = 0;
    for (char ch : options.from) {
      if (ch < '0' || ch > '9') {
        return InvalidArgument("replay --from: '" + options.from +
                               "' is neither a checkpoint id nor an LSN (X/X); see "
                               "`tenantsync checkpoints`");
      }
      id = id * 10 + static_cast<uint64_t>(ch - '0');
    }
    bool found = false;
    for (const auto& c : checkpoints) {
      if (c.id == id) {
        result.from = c.lsn;
        found = true;
      }
    }
    if (!found) {
      return NotFound("checkpoint " + options.from + " is not retained in " + config.state_dir +
                      " (" + WindowText(checkpoints) + "); pick one of `tenantsync checkpoints`");
    }
  }
  if (!options.to.empty()) {
    TS_ASSIGN_OR_RETURN(result.to, Lsn::Parse(options.to));
    if (result.to < result.from) {
      return InvalidArgument("replay: --to " + result.to.ToString() + " is before --from " +
                             result.from.ToString());
    }
  }
  // Outside the retained window: the journal's own message names it.
  TS_ASSIGN_OR_RETURN(std::unique_ptr<state::JournalReader> reader, journal.NewReader(result.from));

  // 2. The target's position.
  TS_ASSIGN_OR_RETURN(PgConn target, PgConn::Connect(config.target.url, "tenantsync-replay"));
  TS_ASSIGN_OR_RETURN(auto position, internal::ReadAppliedPosition(target, config.pipeline));
  if (!position) {
    return FailedPrecondition("the target has no _tenantsync.progress row for pipeline " +
                              config.pipeline + ": restore the _tenantsync schema together with " +
                              config.target.schema + " (pg_dump -n " + config.target.schema +
                              " -n _tenantsync), then replay");
  }
  result.target_before = position->lsn;
  if (position->lsn < result.from) {
    return FailedPrecondition(
        "the target's applied position " + position->lsn.ToString() + " is before --from " +
        result.from.ToString() + ": replaying from there would skip the transactions in between; "
        "replay --from a checkpoint at or before " + position->lsn.ToString() + " (" +
        WindowText(checkpoints) + ")");
  }

  // 3. A read-only view of the journal with (from, to], filtering what the target holds.
  reader.reset();
  internal::ReplayJournal view(&journal, result.to, result.target_before);
  if (options.out != nullptr) {
    std::fprintf(options.out, "replay: applying the journal's transactions after %s%s%s\n",
                 result.from.ToString().c_str(), result.to.valid() ? " through " : "",
                 result.to.valid() ? result.to.ToString().c_str() : "");
    std::fflush(options.out);
  }

  // 4. Progress back to `from`, then the applier.
  TS_RETURN_IF_ERROR_CTX(
      target
          .ExecParams("UPDATE _tenantsync.progress SET applied_lsn = $2::pg_lsn, updated_at = "
                      "now() WHERE pipeline = $1",
                      {config.pipeline, result.from.ToString()})
          .status(),
      "moving the target's progress row back to " + result.from.ToString());
  std::optional<Cipher> cipher;
  if (config.NeedsEncryptionKey()) {
    TS_ASSIGN_OR_RETURN(Cipher c, Cipher::FromConfig(config.encryption));
    cipher.emplace(std::move(c));
  }
  apply::ApplyOptions apply_options = apply::ApplyOptions::FromConfig(config);
  apply_options.dead_letter_phase = "replay";
  apply::Applier applier(config, std::move(apply_options), store.get(), &view,
                         cipher ? &*cipher : nullptr);
  Status outcome = applier.ApplyAvailable();
  apply::ApplyCounters counters = applier.Counters();
  result.transactions = counters.transactions;
  result.changes = counters.changes;
  result.dead_letters = counters.dead_letters;
  result.filtered_changes = view.filtered_changes();
  TS_RETURN_IF_ERROR_CTX(outcome, "replaying into the target");

  // 5. Mirror the new position.
  TS_ASSIGN_OR_RETURN(auto after, internal::ReadAppliedPosition(target, config.pipeline));
  if (after) {
    result.applied = after->lsn;
    TS_RETURN_IF_ERROR(journal.RecordApplied(after->lsn, after->commit_time_us));
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (options.out != nullptr) {
    std::fprintf(options.out,
                 "replay: applied %llu transaction(s), %llu change(s) from %s; target now at %s "
                 "(was %s); %llu already-applied keyless/truncate change(s) left out, %llu dead "
                 "letter(s), %.1f s\n",
                 static_cast<unsigned long long>(result.transactions),
                 static_cast<unsigned long long>(result.changes), result.from.ToString().c_str(),
                 result.applied.ToString().c_str(), result.target_before.ToString().c_str(),
                 static_cast<unsigned long long>(result.filtered_changes),
                 static_cast<unsigned long long>(result.dead_letters), result.seconds);
  }
  return result;
}

}  // namespace tenantsync::cutover
