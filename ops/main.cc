// tenantsync: the command line. A thin main: it parses flags, loads the config once, sets up
// logging and hands over to one command handler per subcommand. The work lives in the folders'
// libraries (snapshot/, cdc/, apply/, validate/, ops/).
//
// Exit codes (documented in the README):
//   0  success
//   1  the command ran and failed (server unreachable, validation differences, ...)
//   2  bad usage or bad config: nothing was touched
//   3  the command is not available yet in this build (temporary, see kCommands)
//
// Wiring a command: give its row in kCommands a handler `int(const Config&, const CommandArgs&)`
// and, if it has flags of its own, an `add_flags` function that registers them into fields of
// CommandArgs (add the fields you need below).
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/crypto.h"
#include "core/log.h"
#include "core/pg.h"
#include "core/pipeline_stats.h"
#include "core/status.h"
#include "ops/audit.h"
#include "ops/commands.h"
#include "ops/live_publisher.h"
#include "ops/rotate_key.h"
#include "snapshot/preflight.h"
#include "snapshot/snapshot.h"
#include "apply/pipeline.h"
#include "ops/ops_service.h"
#include "state/state_store.h"
#include "validate/validate.h"
#include "cutover/cutover.h"
#include "cutover/replay.h"
#include "cutover/rollback.h"

#ifndef TENANTSYNC_VERSION
#define TENANTSYNC_VERSION "0.0.0"
#endif

namespace tenantsync {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotAvailable = 3;

// Global flags and every subcommand's own flags. A handler reads only the fields its command
// registered (plus the global ones).
struct CommandArgs {
  // Global.
  std::string config_path;   // -c/--config
  std::string source_url;    // --source (zero-config)
  std::string target_url;    // --target
  std::string tenant_slug;   // --tenant
  std::string log_format = "text";
  std::string log_level = "info";

  // snapshot
  bool dry_run = false;      // --dry-run: print the plan, write nothing
  std::string report_path;   // --report FILE
  // status, lag
  bool json = false;         // --json: machine-readable output on stdout
  bool watch = false;        // --watch: refresh every second
  // validate, cutover
  bool full = false;         // --full: checksum diff of every row
  int sample = 100;          // --sample N
  std::string tables;        // --tables a,b
  std::string json_path;     // --json-report FILE
  // cutover
  double quiet_for_seconds = 0;  // --quiet-for S
  bool finish = false;           // --finish: stop streaming, drop slot and publication
  double timeout_seconds = 600;  // --timeout S: longest wait for the barrier
  int64_t sequence_margin = 0;   // --sequence-margin N
  // replay
  std::string from;          // --from ID|LSN
  std::string to;            // --to LSN
  // rollback, cutover --finish
  bool confirm = false;      // --confirm: really do it
  // rotate-key (also --dry-run, --report)
  int batch_rows = 1000;     // --batch-rows N: rows per target transaction
};

using Handler = int (*)(const Config&, const CommandArgs&);
using FlagAdder = void (*)(CLI::App*, CommandArgs*);

struct Command {
  const char* name;
  const char* description;  // one line, shown by --help
  FlagAdder add_flags;      // nullptr: no flags of its own
  // nullptr: "not available yet in this build", exit 3. TEMPORARY: every command gets a handler
  // as its folder lands; then this fallback goes away.
  Handler handler;
};

// The last error a handler reported, for the audit trail (ops/audit.h).
std::string g_last_error;
// The start record of a command that writes its state-store copy itself, through the store it
// opens (stream, run); taken by the first writer.
std::optional<ops::AuditRecord> g_audit_for_store;

// Prints `status` as one line on stderr and returns the exit code for it.
int ReportError(const Status& status) {
  g_last_error = status.ToString();
  std::cerr << "tenantsync: " << status.ToString() << "\n";
  return status.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailed;
}

// --- check -------------------------------------------------------------------------------------
// For now: the config is valid (it was loaded before any handler runs) and the encryption key
// works. The snapshot engineer extends this with the server preflight (reachability,
// wal_level, privileges, primary keys, slot state), which must stay read-only.
int RunCheck(const Config& config, const CommandArgs& args) {
  if (config.NeedsEncryptionKey()) {
    StatusOr<Cipher> cipher = Cipher::FromConfig(config.encryption);
    if (!cipher.ok()) return ReportError(cipher.status());
  }
  int mapped = 0, skipped = 0, columns = 0, encrypted = 0;
  for (const auto& [name, table] : config.tables) {
    if (table.skip) {
      ++skipped;
      continue;
    }
    ++mapped;
    for (const auto& [col, rule] : table.columns) {
      ++columns;
      if (rule.encrypt) ++encrypted;
    }
  }
  std::cout << "config OK: " << mapped << " tables mapped (" << columns << " column rules, "
            << encrypted << " encrypted), " << skipped << " skipped, plugin "
            << config.source.plugin << "\n"
            << "  pipeline " << config.pipeline << ": " << MaskUrl(config.source.url) << " schema "
            << config.source.schema << " -> " << MaskUrl(config.target.url) << " schema "
            << config.target.schema << "\n"
            << "  slot " << config.source.slot << ", publication " << config.source.publication
            << ", state " << config.state_dir << "\n";
  // Server preflight (read-only): one line per failure, all of them.
  auto failures = snapshot::Preflight(config);
  if (!failures.ok()) return ReportError(failures.status());
  for (const auto& f : *failures) std::cerr << "check: " << f << "\n";
  if (!failures->empty()) {
    std::cerr << "check: " << failures->size() << " problem(s); nothing was changed\n";
    return kExitFailed;
  }
  std::cout << "servers OK: source and target ready for snapshot and streaming\n";
  return kExitOk;
}

// --- snapshot ----------------------------------------------------------------------------------
std::atomic<bool> g_snapshot_cancel{false};

int RunSnapshotCommand(const Config& config, const CommandArgs& args) {
  snapshot::SnapshotOptions opts;
  opts.dry_run = args.dry_run;
  opts.report_path = args.report_path;
  opts.cancel = &g_snapshot_cancel;
  if (args.dry_run) {
    Status st = snapshot::PrintSnapshotPlan(config, stdout);
    return st.ok() ? kExitOk : ReportError(st);
  }
  std::signal(SIGINT, [](int) { g_snapshot_cancel.store(true); });
  std::signal(SIGTERM, [](int) { g_snapshot_cancel.store(true); });
  state::StateOptions so;
  so.dir = config.state_dir;
  so.pipeline = config.pipeline;
  so.retention_hours = config.journal.retention_hours;
  so.max_journal_bytes = config.journal.max_bytes;
  auto store = state::StateStore::Open(so);
  if (!store.ok()) return ReportError(store.status());
  snapshot::SnapshotResult result;
  Status st = snapshot::RunSnapshot(config, opts, **store, &result);
  if (!st.ok()) return ReportError(st);
  return kExitOk;
}

// --- stream, run (apply/pipeline.h) ------------------------------------------------------------
// The ops HTTP service (metrics, status page) runs beside the pipeline; failing to bind its port
// is a warning, not a reason to stop moving data.
int RunPipelineCommand(const Config& config, bool with_snapshot) {
  PipelineStats stats;
  std::unique_ptr<ops::OpsService> service;
  std::unique_ptr<ops::LivePublisher> publisher;
  apply::PipelineOptions opts;
  opts.snapshot = with_snapshot;
  opts.stats = &stats;
  opts.on_started = [&](state::StateStore* store, PipelineStats* live) -> Status {
    if (g_audit_for_store) {
      if (Status st = ops::WriteAuditToStore(*store, *g_audit_for_store); !st.ok()) {
        spdlog::warn("audit: {}", st.ToString());
      }
      g_audit_for_store.reset();
    }
    publisher = std::make_unique<ops::LivePublisher>(store, live);
    auto started = ops::OpsService::Start(config, live, store);
    if (started.ok()) {
      service = std::move(started).value();
    } else {
      std::cerr << "tenantsync: warning: ops HTTP service not started: "
                << started.status().ToString() << "\n";
    }
    return Status::Ok();
  };
  opts.on_stopping = [&] {
    if (service) service->Stop();
    if (publisher) publisher->Stop();
  };
  Status st = apply::RunPipeline(config, opts);
  if (service) service->Stop();
  if (publisher) publisher->Stop();
  if (st.code() == StatusCode::kCancelled) {
    std::cerr << "tenantsync: stopped during the snapshot; run again to resume it\n";
    return kExitOk;
  }
  return st.ok() ? kExitOk : ReportError(st);
}
int RunStreamCommand(const Config& config, const CommandArgs&) {
  return RunPipelineCommand(config, false);
}
int RunRunCommand(const Config& config, const CommandArgs&) {
  return RunPipelineCommand(config, true);
}

// --- status, lag (ops/commands.h) ---------------------------------------------------------------
int RunStatus(const Config& config, const CommandArgs& args) {
  return ops::StatusCommand(config, args.json);
}
int RunLag(const Config& config, const CommandArgs& args) {
  return ops::LagCommand(config, args.watch, args.json);
}
int RunDeadLetters(const Config& config, const CommandArgs& args) {
  return ops::DeadLettersCommand(config, args.json);
}
int RunHistory(const Config& config, const CommandArgs& args) {
  return ops::HistoryCommand(config, args.json);
}

// --- validate ----------------------------------------------------------------------------------
int RunValidateCommand(const Config& config, const CommandArgs& args) {
  validate::ValidateOptions opts;
  opts.full = args.full;
  opts.sample_size = args.sample;
  opts.json_path = args.json_path;
  for (size_t start = 0; start < args.tables.size();) {
    size_t comma = args.tables.find(',', start);
    if (comma == std::string::npos) comma = args.tables.size();
    if (comma > start) opts.tables.push_back(args.tables.substr(start, comma - start));
    start = comma + 1;
  }
  StatusOr<validate::ValidationReport> report = validate::Validate(config, opts);
  if (!report.ok()) return ReportError(report.status());
  std::cout << report->ToText();
  if (!report->passed()) {
    g_last_error = std::to_string(report->failures()) + " checks failed, " +
                   std::to_string(report->unverified()) + " unverified";
  }
  return report->ExitCode() == 0 ? kExitOk : kExitFailed;
}

// --- cutover, checkpoints, replay, rollback (cutover/) -------------------------------------------
int RunCutoverCommand(const Config& config, const CommandArgs& args) {
  if (args.finish) {
    cutover::FinishOptions fo;
    fo.confirm = args.confirm;
    if (isatty(STDIN_FILENO)) {
      fo.confirm_prompt = [](const std::string& question) {
        std::cout << question << " [yes/no] " << std::flush;
        std::string answer;
        std::getline(std::cin, answer);
        return answer == "yes";
      };
    }
    Status st = cutover::FinishCutover(config, fo);
    return st.ok() ? kExitOk : ReportError(st);
  }
  cutover::CutoverOptions co;
  co.quiet_for_seconds = args.quiet_for_seconds;
  co.barrier_timeout_seconds = args.timeout_seconds;
  co.sequence_margin = args.sequence_margin;
  co.full = args.full;
  co.report_path = args.report_path;
  StatusOr<cutover::CutoverReport> report = cutover::RunCutover(config, co);
  if (!report.ok()) return ReportError(report.status());
  std::cout << report->ToText();
  if (!report->go) {
    g_last_error = "cutover: no-go (see " + report->report_path + ")";
    return kExitFailed;
  }
  return kExitOk;
}
int RunCheckpointsCommand(const Config& config, const CommandArgs& args) {
  auto checkpoints = cutover::ListCheckpoints(config);
  if (!checkpoints.ok()) return ReportError(checkpoints.status());
  std::cout << (args.json ? cutover::CheckpointsJson(*checkpoints) + "\n"
                          : cutover::CheckpointsText(*checkpoints));
  return kExitOk;
}
int RunReplayCommand(const Config& config, const CommandArgs& args) {
  cutover::ReplayOptions ro;
  ro.from = args.from;
  ro.to = args.to;
  auto result = cutover::Replay(config, ro);
  return result.ok() ? kExitOk : ReportError(result.status());
}
int RunRollbackCommand(const Config& config, const CommandArgs& args) {
  cutover::RollbackOptions ro;
  ro.confirm = args.confirm;
  Status st = cutover::Rollback(config, ro);
  return st.ok() ? kExitOk : ReportError(st);
}

// --- rotate-key (ops/rotate_key.h) -----------------------------------------------------------
std::atomic<bool> g_rotate_cancel{false};

int RunRotateKeyCommand(const Config& config, const CommandArgs& args) {
  ops::RotateKeyOptions ro;
  ro.dry_run = args.dry_run;
  ro.batch_rows = args.batch_rows;
  ro.report_path = args.report_path;
  ro.cancel = &g_rotate_cancel;
  // Ctrl-C / SIGTERM: the batch in flight commits, then it stops; a rerun finishes the job.
  std::signal(SIGINT, [](int) { g_rotate_cancel.store(true); });
  std::signal(SIGTERM, [](int) { g_rotate_cancel.store(true); });
  StatusOr<ops::RotateKeyResult> result = ops::RotateKey(config, ro);
  if (!result.ok()) return ReportError(result.status());
  std::cout << result->ToText();
  return kExitOk;
}

// --- flags per command -------------------------------------------------------------------------
void SnapshotFlags(CLI::App* cmd, CommandArgs* a) {
  cmd->add_flag("--dry-run", a->dry_run, "Print the plan (tables, sizes, chunks) and write nothing");
  cmd->add_option("--report", a->report_path, "Write a JSON report (rows, bytes, seconds) to FILE");
}
void StatusFlags(CLI::App* cmd, CommandArgs* a) {
  cmd->add_flag("--json", a->json, "Print the status as JSON");
}
void LagFlags(CLI::App* cmd, CommandArgs* a) {
  cmd->add_flag("--watch", a->watch, "Refresh every second");
  cmd->add_flag("--json", a->json, "Print the lag as JSON");
}
void ValidateFlags(CLI::App* cmd, CommandArgs* a) {
  cmd->add_flag("--full", a->full, "Also compare a checksum of every row");
  cmd->add_option("--sample", a->sample, "Rows per table compared by key")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--tables", a->tables, "Only these tables (comma separated)");
  cmd->add_option("--json", a->json_path, "Write every result as JSON to FILE");
}
void CutoverFlags(CLI::App* cmd, CommandArgs* a) {
  cmd->add_option("--quiet-for", a->quiet_for_seconds,
                  "Require no source writes for this many seconds first")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--full", a->full, "Run the full checksum validation");
  cmd->add_flag("--finish", a->finish, "Stop streaming and drop the slot and publication");
  cmd->add_flag("--confirm", a->confirm, "Do not ask before --finish");
  cmd->add_option("--report", a->report_path,
                  "Write the go/no-go report as JSON to FILE (default <state_dir>/cutover-report.json)");
  cmd->add_option("--timeout", a->timeout_seconds, "Longest wait for the barrier, in seconds")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--sequence-margin", a->sequence_margin,
                  "Add N to every source sequence position set in the target")
      ->check(CLI::NonNegativeNumber);
}
void ReplayFlags(CLI::App* cmd, CommandArgs* a) {
  cmd->add_option("--from", a->from, "Checkpoint id or LSN to replay from")->required();
  cmd->add_option("--to", a->to, "Stop at this LSN (default: the end of the journal)");
}
void RollbackFlags(CLI::App* cmd, CommandArgs* a) {
  cmd->add_flag("--confirm", a->confirm, "Really drop; without it, only show what would go");
}
void RotateKeyFlags(CLI::App* cmd, CommandArgs* a) {
  cmd->add_flag("--dry-run", a->dry_run,
                "Count the values under older keys, per column and key id; change nothing");
  cmd->add_option("--batch-rows", a->batch_rows, "Rows re-encrypted per target transaction")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--report", a->report_path, "Write the result as JSON to FILE");
}
void JsonFlag(CLI::App* cmd, CommandArgs* a) {
  cmd->add_flag("--json", a->json, "Print as JSON");
}

// Every subcommand, in the order --help lists them.
const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"check", "Validate the config and the servers without changing anything", nullptr,
       RunCheck},
      {"snapshot", "Create the slot and copy every table into the tenant schema", SnapshotFlags,
       RunSnapshotCommand},
      {"stream", "Stream changes from the slot into the journal and apply them (no snapshot)",
       nullptr, RunStreamCommand},
      {"run", "Snapshot if needed, then stream and apply continuously (the main job)", nullptr,
       RunRunCommand},
      {"status", "Show phase, lag, throughput and errors of the pipeline", StatusFlags, RunStatus},
      {"lag", "Show replication lag (--watch for a live view)", LagFlags, RunLag},
      {"validate", "Compare source and target: counts, sums, samples, FK orphans, --full diff",
       ValidateFlags, RunValidateCommand},
      {"cutover", "Catch up, validate and hand over to the new database", CutoverFlags,
       RunCutoverCommand},
      {"replay", "Re-apply the journal from a checkpoint or LSN", ReplayFlags,
       RunReplayCommand},
      {"checkpoints", "List retained checkpoints", JsonFlag, RunCheckpointsCommand},
      {"rollback", "Drop what tenantsync created (only with --confirm)", RollbackFlags,
       RunRollbackCommand},
      {"dead-letters", "List rows that could not be transformed or applied", JsonFlag,
       RunDeadLetters},
      {"history", "List past runs with their outcome", JsonFlag, RunHistory},
      {"rotate-key", "Re-encrypt encrypted columns and secrets with the current key",
       RotateKeyFlags, RunRotateKeyCommand},
  };
  return kCommands;
}

StatusOr<Config> LoadConfigFromArgs(const CommandArgs& args) {
  bool any_flag = !args.source_url.empty() || !args.target_url.empty() ||
                  !args.tenant_slug.empty();
  if (!args.config_path.empty()) {
    if (any_flag) {
      return InvalidArgument("-c and --source/--target/--tenant do not mix; use one of them");
    }
    return LoadConfig(args.config_path);
  }
  if (!any_flag) {
    return InvalidArgument("no configuration; pass -c FILE (see examples/rawdog.yaml) or "
                           "--source URL --target URL --tenant SLUG");
  }
  return ConfigFromFlags(args.source_url, args.target_url, args.tenant_slug);
}

int Main(int argc, char** argv) {
  CLI::App app{"tenantsync: move a single-tenant PostgreSQL database into a tenant schema of a "
               "multi-tenant PostgreSQL, with zero downtime"};
  app.set_version_flag("--version", std::string("tenantsync ") + TENANTSYNC_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global flags may also follow the subcommand
  CommandArgs args;
  app.add_option("-c,--config", args.config_path, "Pipeline config file (YAML)");
  app.add_option("--source", args.source_url, "Zero-config: source database URL");
  app.add_option("--target", args.target_url, "Zero-config: target database URL");
  app.add_option("--tenant", args.tenant_slug, "Zero-config: tenant slug ([a-z0-9_]+)");
  app.add_option("--log-format", args.log_format, "Log format on stderr")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--log-level", args.log_level, "trace, debug, info, warn, error")
      ->capture_default_str();

  std::vector<std::pair<CLI::App*, const Command*>> subcommands;
  for (const Command& cmd : Commands()) {
    CLI::App* sub = app.add_subcommand(cmd.name, cmd.description);
    if (cmd.add_flags != nullptr) cmd.add_flags(sub, &args);
    subcommands.emplace_back(sub, &cmd);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "tenantsync: " << e.what() << "; see tenantsync --help\n";
    return kExitUsage;
  }

  Status log = InitLogging(args.log_format, args.log_level);
  if (!log.ok()) return ReportError(log);

  const Command* chosen = nullptr;
  for (const auto& [sub, cmd] : subcommands) {
    if (sub->parsed()) chosen = cmd;
  }
  if (chosen == nullptr) return kExitUsage;  // require_subcommand makes this unreachable

  StatusOr<Config> config = LoadConfigFromArgs(args);
  if (!config.ok()) return ReportError(config.status());

  if (chosen->handler == nullptr) {
    std::cerr << "tenantsync: '" << chosen->name << "' is not available yet in this build\n";
    return kExitNotAvailable;
  }
  // The audit trail: who ran what, when, and how it ended (ops/audit.h). A dry run changes
  // nothing and is not recorded.
  // A confirmed rollback removes _tenantsync and the state directory, where the audit lives:
  // recording it would create them again. It is not recorded; its output is the record.
  const bool confirmed_rollback = std::string_view(chosen->name) == "rollback" && args.confirm;
  if (!ops::IsAudited(chosen->name) || args.dry_run || confirmed_rollback) {
    return chosen->handler(*config, args);
  }
  ops::AuditRecord record = ops::BeginAudit(chosen->name, argc, argv);
  const std::string_view name = chosen->name;
  const bool store_copy_by_handler = name == "stream" || name == "run";
  if (Status st = ops::WriteAudit(*config, record, !store_copy_by_handler); !st.ok()) {
    spdlog::warn("audit: {}", st.ToString());
  }
  if (store_copy_by_handler) g_audit_for_store = record;
  int rc = chosen->handler(*config, args);
  record.finished_us = NowMicros();
  record.exit_code = rc;
  record.outcome = rc == kExitOk ? "ok" : "failed";
  record.error = rc == kExitOk ? "" : g_last_error;
  for (const std::string& path : {args.report_path, args.json_path}) {
    if (path.empty()) continue;
    std::ifstream in(path);
    auto report = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!report.is_discarded()) record.report = std::move(report);
  }
  if (Status st = ops::WriteAudit(*config, record); !st.ok()) {
    spdlog::warn("audit: {}", st.ToString());
  }
  return rc;
}

}  // namespace
}  // namespace tenantsync

int main(int argc, char** argv) {
  try {
    return tenantsync::Main(argc, argv);
  } catch (const std::exception& e) {
    // Libraries' exceptions are turned into Status at folder boundaries; one that gets here is
    // a bug, reported in one line rather than as an abort.
    std::cerr << "tenantsync: fatal: " << e.what() << "\n";
    return tenantsync::kExitFailed;
  }
}
