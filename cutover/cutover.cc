#include "cutover/cutover.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/pg.h"
#include "cutover/internal/common.h"
#include "snapshot/catalog.h"
#include "state/journal.h"
#include "state/state_store.h"
#include "validate/validate.h"

namespace tenantsync::cutover {
namespace {

using Clock = std::chrono::steady_clock;
using internal::QueryText;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void AddCheck(CutoverReport* r, std::string name, std::string subject, bool ok,
              std::string details) {
  r->checks.push_back({std::move(name), std::move(subject), ok, std::move(details)});
}

std::string TablesList(const std::set<std::string>& tables) {
  std::string out;
  for (const auto& t : tables) out += (out.empty() ? "" : ", ") + t;
  return out;
}

// Emits a transactional barrier message on the source; returns its record LSN.
StatusOr<Lsn> EmitMarker(PgConn& source, const std::string& pipeline, const std::string& what) {
  TS_ASSIGN_OR_RETURN(
      std::string lsn,
      QueryText(source,
                "SELECT pg_logical_emit_message(true, 'tenantsync_barrier', $1)::text",
                {nlohmann::json{{"pipeline", pipeline}, {"marker", what}}.dump()}));
  return Lsn::Parse(lsn);
}

struct WaitResult {
  bool reached = false;
  Lsn applied;
  double seconds = 0;
};

// Polls the target's progress row until it reaches `lsn` or the timeout.
StatusOr<WaitResult> WaitApplied(PgConn& source, PgConn& target, const std::string& pipeline,
                                 Lsn lsn, Clock::time_point started,
                                 const CutoverOptions& options, const char* label) {
  WaitResult w;
  auto last_print = Clock::now() - options.progress_interval;
  for (;;) {
    TS_ASSIGN_OR_RETURN(auto applied, internal::ReadAppliedPosition(target, pipeline));
    if (applied) w.applied = applied->lsn;
    w.seconds = SecondsSince(started);
    if (applied && applied->lsn >= lsn) {
      w.reached = true;
      return w;
    }
    if (w.seconds >= options.barrier_timeout_seconds) return w;
    if (options.progress_out != nullptr && Clock::now() - last_print >= options.progress_interval) {
      std::fprintf(options.progress_out,
                   "cutover: waiting for %s %s: applied %s, %llu bytes behind, %.1f s\n", label,
                   lsn.ToString().c_str(), w.applied.ToString().c_str(),
                   static_cast<unsigned long long>(lsn.BytesSince(w.applied)), w.seconds);
      std::fflush(options.progress_out);
      last_print = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// --- sequences -----------------------------------------------------------------------------------

struct SeqPosition {
  int64_t last_value = 0;
  bool is_called = false;
  int64_t increment = 1;
  int64_t Next() const { return is_called ? last_value + increment : last_value; }
};

StatusOr<SeqPosition> ReadSequence(PgConn& conn, const std::string& qualified) {
  // `qualified` comes from the catalogs (regclass text, quoted as needed).
  TS_ASSIGN_OR_RETURN(PgResult r,
                      conn.ExecParams("SELECT s.last_value, s.is_called, p.seqincrement FROM " +
                                          qualified + " s, pg_sequence p WHERE p.seqrelid = "
                                          "$1::regclass",
                                      {qualified}));
  if (r.rows() != 1) return Fatal("sequence " + qualified + " has no pg_sequence row");
  SeqPosition p;
  TS_ASSIGN_OR_RETURN(p.last_value, r.GetInt(0, 0));
  p.is_called = r.Get(0, 1) == "t";
  TS_ASSIGN_OR_RETURN(p.increment, r.GetInt(0, 2));
  return p;
}

std::string TargetColumnName(const Config& config, const std::string& table,
                             const std::string& column) {
  const TableConfig* tc = config.FindTable(table);
  if (tc == nullptr) return column;
  auto it = tc->columns.find(column);
  if (it == tc->columns.end() || it->second.rename.empty()) return column;
  return it->second.rename;
}

Status SyncSequences(const Config& config, const CutoverOptions& options, PgConn& source,
                     PgConn& target, CutoverReport* report) {
  TS_ASSIGN_OR_RETURN(snapshot::Catalog src, snapshot::ReadCatalog(source, config.source.schema));
  TS_ASSIGN_OR_RETURN(snapshot::Catalog tgt, snapshot::ReadCatalog(target, config.target.schema));
  for (const snapshot::CatalogTable& table : src.tables) {
    const TableConfig* tc = config.FindTable(table.name);
    if (tc != nullptr && tc->skip) continue;
    for (const snapshot::CatalogColumn& col : table.columns) {
      if (col.sequence.empty()) continue;
      const TableConfig* rules = tc;
      if (rules != nullptr) {
        auto rule = rules->columns.find(col.name);
        if (rule != rules->columns.end() && rule->second.drop) continue;
      }
      std::string target_table = config.TargetTable(table.name);
      std::string target_column = TargetColumnName(config, table.name, col.name);
      std::string subject = config.target.schema + "." + target_table + "." + target_column;
      const snapshot::CatalogTable* tt = tgt.FindTable(target_table);
      const snapshot::CatalogColumn* tcol = tt ? tt->FindColumn(target_column) : nullptr;
      if (tcol == nullptr || tcol->sequence.empty()) {
        AddCheck(report, "sequence", subject, false,
                 "the source column " + table.name + "." + col.name + " owns sequence " +
                     col.sequence + " but the target column owns none; give it a sequence "
                     "(ALTER TABLE ... ALTER COLUMN ... ADD GENERATED BY DEFAULT AS IDENTITY)");
        continue;
      }
      TS_ASSIGN_OR_RETURN(SeqPosition s, ReadSequence(source, col.sequence));
      TS_ASSIGN_OR_RETURN(SeqPosition t, ReadSequence(target, tcol->sequence));
      SequenceSync sync;
      sync.table = target_table;
      sync.column = target_column;
      sync.source_sequence = col.sequence;
      sync.target_sequence = tcol->sequence;
      sync.source_next = s.Next();
      sync.target_next_before = t.Next();
      int64_t wanted_next = s.Next() + options.sequence_margin * (s.increment < 0 ? -1 : 1);
      bool ahead = s.increment >= 0 ? t.Next() > wanted_next : t.Next() < wanted_next;
      if (ahead) {
        sync.target_was_ahead = true;
      } else {
        // setval(v, false): the next nextval() returns v exactly.
        TS_RETURN_IF_ERROR_CTX(
            target.ExecParams("SELECT setval($1::regclass, $2::bigint, false)",
                              {tcol->sequence, std::to_string(wanted_next)})
                .status(),
            "setting sequence " + tcol->sequence);
      }
      TS_ASSIGN_OR_RETURN(SeqPosition after, ReadSequence(target, tcol->sequence));
      sync.target_next_after = after.Next();
      // The next id must not collide with a row already in the target.
      std::string qualified_table = QuoteQualified(config.target.schema, target_table);
      TS_ASSIGN_OR_RETURN(
          std::string max_text,
          QueryText(target, "SELECT coalesce(max(" + QuoteIdent(target_column) + ")::text, '') "
                            "FROM " + qualified_table));
      bool ok = sync.target_next_after == wanted_next || sync.target_was_ahead;
      std::string details = fmt::format("source next {}, target next {} (was {}{})",
                                        sync.source_next, sync.target_next_after,
                                        sync.target_next_before,
                                        sync.target_was_ahead ? ", already ahead: left alone" : "");
      if (!max_text.empty()) {
        long long max_value = std::stoll(max_text);
        bool clear = after.increment >= 0 ? sync.target_next_after > max_value
                                          : sync.target_next_after < max_value;
        if (!clear) {
          ok = false;
          details += fmt::format("; target max({}) is {}: the next insert would collide",
                                 target_column, max_value);
        }
      }
      AddCheck(report, "sequence", subject, ok, details);
      report->sequences.push_back(std::move(sync));
    }
  }
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path, const std::string& text) {
  std::filesystem::path p(path);
  if (p.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(p.parent_path(), ec);
  }
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text << "\n";
    out.flush();
    if (!out) return Fatal("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Fatal("cannot rename " + tmp + " to " + path + ": " + ec.message());
  return Status::Ok();
}

}  // namespace

std::string DefaultReportPath(const Config& config) {
  return config.state_dir + "/cutover-report.json";
}

std::string CutoverReport::ToJson() const {
  nlohmann::json j;
  j["pipeline"] = pipeline;
  j["target_schema"] = target_schema;
  j["go"] = go;
  j["barrier_lsn"] = barrier_lsn.ToString();
  j["marker_lsn"] = marker_lsn.ToString();
  j["applied_lsn"] = applied_lsn.ToString();
  j["barrier_reached"] = barrier_reached;
  j["barrier_to_applied_seconds"] = barrier_seconds;
  j["quiet_for_seconds"] = quiet_for_seconds;
  j["quiet_violations"] = quiet_violations;
  j["seconds"] = seconds;
  j["sequences"] = nlohmann::json::array();
  for (const auto& s : sequences) {
    j["sequences"].push_back({{"table", s.table},
                              {"column", s.column},
                              {"source_sequence", s.source_sequence},
                              {"target_sequence", s.target_sequence},
                              {"source_next", s.source_next},
                              {"target_next_before", s.target_next_before},
                              {"target_next_after", s.target_next_after},
                              {"target_was_ahead", s.target_was_ahead}});
  }
  j["checks"] = nlohmann::json::array();
  for (const auto& c : checks) {
    j["checks"].push_back(
        {{"check", c.name}, {"subject", c.subject}, {"ok", c.ok}, {"details", c.details}});
  }
  j["warnings"] = warnings;
  return j.dump(2);
}

std::string CutoverReport::ToText() const {
  std::ostringstream out;
  out << "cutover " << pipeline << " -> " << target_schema << "\n";
  out << fmt::format("  barrier {} (marker {}): {} in {:.2f} s, applied {}\n",
                     barrier_lsn.ToString(), marker_lsn.ToString(),
                     barrier_reached ? "reached" : "NOT reached", barrier_seconds,
                     applied_lsn.ToString());
  out << fmt::format("  write pause needed for the switch: {:.2f} s\n", barrier_seconds);
  int failed = 0;
  for (const auto& c : checks) {
    if (!c.ok) ++failed;
    out << fmt::format("  {:<4} {:<22} {:<44} {}\n", c.ok ? "ok" : "FAIL", c.name, c.subject,
                       c.details);
  }
  for (const auto& w : warnings) out << "  warning: " << w << "\n";
  out << (go ? "GO" : "NO-GO") << ": " << checks.size() - failed << " of " << checks.size()
      << " checks passed";
  if (!report_path.empty()) out << "; report " << report_path;
  out << "\n";
  return out.str();
}

StatusOr<CutoverReport> RunCutover(const Config& config, const CutoverOptions& options) {
  const auto started = Clock::now();
  CutoverReport report;
  report.pipeline = config.pipeline;
  report.target_schema = config.target.schema;
  report.quiet_for_seconds = options.quiet_for_seconds;
  report.report_path = options.report_path.empty() ? DefaultReportPath(config)
                                                   : options.report_path;

  TS_ASSIGN_OR_RETURN(PgConn source, PgConn::Connect(config.source.url, "tenantsync-cutover"));
  TS_ASSIGN_OR_RETURN(PgConn target, PgConn::Connect(config.target.url, "tenantsync-cutover"));
  TS_ASSIGN_OR_RETURN(std::string schema_exists,
                      QueryText(target, "SELECT to_regnamespace($1) IS NOT NULL",
                                {QuoteIdent(config.target.schema)}));
  if (schema_exists != "t") {
    return NotFound("tenant schema " + config.target.schema + " does not exist in the target; "
                    "run `tenantsync run` (snapshot and stream) before the cutover");
  }

  // The journal, read-only beside `run`: the quiet and writes-during-cutover checks count in it.
  std::unique_ptr<state::StateStore> store;
  Status store_status;
  {
    auto opened = state::StateStore::OpenReadOnly(config.state_dir);
    if (opened.ok()) {
      store = std::move(opened).value();
    } else {
      store_status = opened.status();
    }
  }

  // 1. Quiet window.
  Lsn window_start;
  if (options.quiet_for_seconds > 0) {
    TS_ASSIGN_OR_RETURN(std::string w, QueryText(source, "SELECT pg_current_wal_lsn()::text"));
    TS_ASSIGN_OR_RETURN(window_start, Lsn::Parse(w));
    if (options.progress_out != nullptr) {
      std::fprintf(options.progress_out, "cutover: checking the source is quiet for %.0f s\n",
                   options.quiet_for_seconds);
      std::fflush(options.progress_out);
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(options.quiet_for_seconds));
  }

  // 2. Barrier.
  TS_ASSIGN_OR_RETURN(std::string b, QueryText(source, "SELECT pg_current_wal_lsn()::text"));
  TS_ASSIGN_OR_RETURN(report.barrier_lsn, Lsn::Parse(b));
  const auto barrier_time = Clock::now();
  TS_ASSIGN_OR_RETURN(report.marker_lsn, EmitMarker(source, config.pipeline, "barrier"));
  // Write transactions open at the barrier commit after it: the old application is not stopped.
  TS_ASSIGN_OR_RETURN(
      std::string open_writers,
      QueryText(source, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND backend_type = 'client backend' AND "
                        "backend_xid IS NOT NULL AND pid <> pg_backend_pid()"));
  if (open_writers != "0") {
    report.warnings.push_back(open_writers + " write transaction(s) were open on the source at "
                              "the barrier: the old application is still writing");
  }
  TS_ASSIGN_OR_RETURN(WaitResult wait, WaitApplied(source, target, config.pipeline,
                                                   report.marker_lsn, barrier_time, options,
                                                   "barrier"));
  report.barrier_reached = wait.reached;
  report.barrier_seconds = wait.seconds;
  report.applied_lsn = wait.applied;
  AddCheck(&report, "barrier", report.marker_lsn.ToString(), wait.reached,
           wait.reached
               ? fmt::format("applied {} after {:.2f} s", wait.applied.ToString(), wait.seconds)
               : fmt::format("applied {} still short of the barrier after {:.0f} s; is "
                             "`tenantsync run` streaming? (tenantsync status)",
                             wait.applied.ToString(), wait.seconds));

  bool source_quiet = false;
  if (options.quiet_for_seconds > 0) {
    if (!store) {
      AddCheck(&report, "quiet", "", false,
               "not verified: cannot read the journal (" + store_status.ToString() + ")");
    } else if (!wait.reached) {
      AddCheck(&report, "quiet", "", false, "not verified: the barrier was not reached");
    } else {
      TS_ASSIGN_OR_RETURN(internal::DataTransactions d,
                          internal::CountDataTransactions(*store, window_start, report.marker_lsn));
      report.quiet_violations = d.transactions;
      source_quiet = d.transactions == 0;
      AddCheck(&report, "quiet", "", source_quiet,
               source_quiet
                   ? fmt::format("no write transactions on the mapped tables for {:.0f} s",
                                 options.quiet_for_seconds)
                   : fmt::format("{} write transaction(s) in the last {:.0f} s on {}: the old "
                                 "application is still writing; stop it and run cutover again",
                                 d.transactions, options.quiet_for_seconds, TablesList(d.tables)));
      if (!source_quiet) {
        report.warnings.push_back("the source is not quiet: " + std::to_string(d.transactions) +
                                  " write transaction(s) in the quiet window");
      }
    }
  }

  // 3. Sequences.
  TS_RETURN_IF_ERROR_CTX(SyncSequences(config, options, source, target, &report),
                         "syncing sequences");

  // 4. Validation.
  validate::ValidateOptions vo;
  vo.counts = true;
  vo.sums = true;
  vo.fks = true;
  vo.samples = false;
  vo.sample_size = 0;
  vo.schema = false;
  vo.full = options.full;
  vo.live.enabled = !source_quiet;
  vo.live.timeout_seconds = 30;
  TS_ASSIGN_OR_RETURN(validate::ValidationReport v, validate::Validate(config, vo));
  for (const validate::CheckResult& c : v.checks) {
    std::string subject = c.table + (c.column.empty() ? "" : "." + c.column);
    std::string details = "source " + c.source + ", target " + c.target;
    if (!c.details.empty()) details += "; " + c.details;
    if (c.rows_total > 0) details += "; " + std::to_string(c.rows_total) + " row(s) differ";
    AddCheck(&report, std::string("validate ") + c.check, subject,
             c.status == validate::CheckStatus::kPass,
             std::string(validate::CheckStatusName(c.status)) + ": " + details);
  }

  // 5. Writes while we synced and validated.
  if (wait.reached) {
    TS_ASSIGN_OR_RETURN(Lsn end_marker, EmitMarker(source, config.pipeline, "end"));
    CutoverOptions quick = options;
    quick.barrier_timeout_seconds = std::min(options.barrier_timeout_seconds, 60.0);
    TS_ASSIGN_OR_RETURN(WaitResult end_wait, WaitApplied(source, target, config.pipeline,
                                                         end_marker, Clock::now(), quick,
                                                         "end marker"));
    if (!store) {
      AddCheck(&report, "writes during cutover", "", false,
               "not verified: cannot read the journal (" + store_status.ToString() + ")");
    } else if (!end_wait.reached) {
      AddCheck(&report, "writes during cutover", "", false,
               "not verified: the end marker was not applied within " +
                   fmt::format("{:.0f} s", quick.barrier_timeout_seconds));
    } else {
      TS_ASSIGN_OR_RETURN(internal::DataTransactions d,
                          internal::CountDataTransactions(*store, report.marker_lsn, end_marker));
      AddCheck(&report, "writes during cutover", "", d.transactions == 0,
               d.transactions == 0
                   ? "none between the barrier and the end of validation"
                   : fmt::format("{} write transaction(s) after the barrier on {}: the source is "
                                 "still written to; stop the old application and run cutover "
                                 "again",
                                 d.transactions, TablesList(d.tables)));
      if (d.transactions > 0) {
        report.warnings.push_back("the source kept writing during the cutover");
      }
    }
  }

  // 6. Verdict and report.
  report.go = !report.checks.empty();
  for (const auto& c : report.checks) report.go = report.go && c.ok;
  report.seconds = SecondsSince(started);
  TS_RETURN_IF_ERROR_CTX(WriteFileAtomically(report.report_path, report.ToJson()),
                         "writing the cutover report");
  return report;
}

Status FinishCutover(const Config& config, const FinishOptions& options) {
  TS_ASSIGN_OR_RETURN(PgConn source, PgConn::Connect(config.source.url, "tenantsync-cutover"));
  const std::string& slot_name = config.source.slot;
  const std::string& pub = config.source.publication;
  TS_ASSIGN_OR_RETURN(internal::SlotState slot, internal::ReadSlot(source, slot_name));
  TS_RETURN_IF_ERROR(internal::RequireSlotInactive(slot, slot_name, "cutover --finish"));
  TS_ASSIGN_OR_RETURN(std::string pub_exists,
                      QueryText(source, "SELECT count(*) FROM pg_publication WHERE pubname = $1",
                                {pub}));
  if (!slot.exists && pub_exists == "0") {
    std::fprintf(options.out, "cutover --finish: slot %s and publication %s are already gone\n",
                 slot_name.c_str(), pub.c_str());
    return Status::Ok();
  }
  std::string question = "drop replication slot " + slot_name + " and publication " + pub +
                         " on the source (" + MaskUrl(config.source.url) +
                         ")? Streaming can not resume afterwards";
  if (!options.confirm) {
    if (!options.confirm_prompt) {
      return FailedPrecondition("cutover --finish drops the slot and the publication: add "
                                "--confirm (or answer the prompt on a terminal)");
    }
    if (!options.confirm_prompt(question)) return Cancelled("cutover --finish: not confirmed");
  }
  if (slot.exists) {
    auto dropped = source.ExecParams("SELECT pg_drop_replication_slot($1)", {slot_name});
    if (!dropped.ok()) {
      if (dropped.status().sqlstate() == "55006") {  // object_in_use: `run` started meanwhile
        return FailedPrecondition("replication slot " + slot_name + " became active: stop "
                                  "`tenantsync run` and run cutover --finish again");
      }
      return dropped.status().WithContext("dropping replication slot " + slot_name);
    }
    std::fprintf(options.out, "dropped replication slot %s\n", slot_name.c_str());
  }
  if (pub_exists != "0") {
    TS_RETURN_IF_ERROR(
        internal::DropPublicationIfOurs(source, pub, "cutover --finish", options.out));
  }
  std::fprintf(options.out, "cutover finished: the source no longer retains WAL for %s\n",
               config.pipeline.c_str());
  return Status::Ok();
}

}  // namespace tenantsync::cutover
