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

// A change the target already holds when it is at or before the target's position and can not
// be re-applied idempotently.
bool NotReplayable(const Change& c) {
  if (c.op == ChangeOp::kTruncate) return true;
  return c.relation != nullptr && c.relation->replica_identity == 'f';
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

  // 3. The scratch journal with (from, to].
  const std::string scratch_dir = config.state_dir + ".replay";
  std::error_code ec;
  std::filesystem::remove_all(scratch_dir, ec);
  state::StateOptions scratch_options;
  scratch_options.dir = scratch_dir;
  scratch_options.pipeline = config.pipeline;
  scratch_options.retention_hours = 1e6;
  scratch_options.max_journal_bytes = std::numeric_limits<int64_t>::max() / 2;
  scratch_options.checkpoint_interval_seconds = 1e9;
  scratch_options.sync_each_commit = false;  // scratch: durability is not needed, speed is
  Status outcome;
  {
    TS_ASSIGN_OR_RETURN(std::unique_ptr<state::StateStore> scratch,
                        state::StateStore::Open(scratch_options));
    state::Journal& sj = scratch->journal();
    TransactionInfo info;
    Lsn last_end;
    for (;;) {
      TS_ASSIGN_OR_RETURN(bool have, reader->NextTransaction(&info));
      if (!have || (result.to.valid() && info.commit_lsn > result.to)) break;
      const bool in_target = info.commit_lsn <= result.target_before;
      TS_RETURN_IF_ERROR(sj.Begin(info));
      Change c;
      bool any = false;
      for (;;) {
        TS_ASSIGN_OR_RETURN(bool more, reader->NextChange(&c));
        if (!more) break;
        if (in_target && NotReplayable(c)) {
          ++result.filtered_changes;
          continue;
        }
        TS_RETURN_IF_ERROR(sj.Append(c));
        any = true;
      }
      if (!any) {
        // Keeps the transaction (and so its commit LSN in the progress row) without effects.
        Change marker;
        marker.op = ChangeOp::kMessage;
        marker.message_prefix = "tenantsync_replay_filtered";
        marker.message_transactional = true;
        TS_RETURN_IF_ERROR(sj.Append(marker));
      }
      TS_RETURN_IF_ERROR(sj.Commit(info));
      last_end = info.end_lsn;
      ++result.transactions;
    }
    reader.reset();
    // Group commit: wait until the copy is durable, hence visible to the applier's reader.
    while (last_end.valid() && sj.JournaledLsn() < last_end) {
      sj.WaitForNewer(sj.JournaledLsn(), std::chrono::milliseconds(100));
    }
    if (options.out != nullptr) {
      std::fprintf(options.out, "replay: %llu transaction(s) after %s%s%s to apply\n",
                   static_cast<unsigned long long>(result.transactions),
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
    apply::Applier applier(config, apply::ApplyOptions::FromConfig(config), scratch.get(),
                           cipher ? &*cipher : nullptr);
    outcome = applier.ApplyAvailable();
    apply::ApplyCounters counters = applier.Counters();
    result.changes = counters.changes;
    // Dead letters of the replay belong to the pipeline's store.
    auto letters = scratch->DeadLetters();
    if (letters.ok()) {
      for (state::DeadLetter l : *letters) {
        l.phase = "replay";
        TS_RETURN_IF_ERROR(store->AddDeadLetter(std::move(l)));
        ++result.dead_letters;
      }
    } else if (outcome.ok()) {
      outcome = letters.status();
    }
  }
  std::filesystem::remove_all(scratch_dir, ec);
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
