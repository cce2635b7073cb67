#include "ops/audit.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "core/pg.h"
#include "core/pipeline_stats.h"
#include "state/state_store.h"

namespace tenantsync::ops {

namespace {

constexpr const char* kAuditPrefix = "audit/";

// client_min_messages: "already exists, skipping" notices are not for the user's terminal.
// The schema only when missing: CREATE SCHEMA IF NOT EXISTS needs the database's CREATE privilege
// even when the schema exists, which the least-privilege target role does not have.
const char* kCreateRuns =
    "SET client_min_messages = warning; DO $ts$ BEGIN IF to_regnamespace('_tenantsync') IS NULL "
    "THEN CREATE SCHEMA _tenantsync; END IF; END $ts$; "
    "CREATE TABLE IF NOT EXISTS _tenantsync.runs ("
    " id text PRIMARY KEY, pipeline text NOT NULL, command text NOT NULL, os_user text,"
    " host text, arguments text, started_at timestamptz NOT NULL, finished_at timestamptz,"
    " exit_code int, outcome text NOT NULL, error text, report jsonb)";

std::string Timestamp(int64_t us) {
  if (us == 0) return "";
  time_t secs = static_cast<time_t>(us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S+00", &tm);
  return buf;
}

}  // namespace

nlohmann::json AuditRecord::ToJson() const {
  return {{"id", id},           {"command", command},     {"user", user},
          {"host", host},       {"arguments", arguments}, {"started_us", started_us},
          {"finished_us", finished_us}, {"exit_code", exit_code}, {"outcome", outcome},
          {"error", error},     {"report", report}};
}

AuditRecord AuditRecord::FromJson(const nlohmann::json& j) {
  AuditRecord r;
  r.id = j.value("id", "");
  r.command = j.value("command", "");
  r.user = j.value("user", "");
  r.host = j.value("host", "");
  r.arguments = j.value("arguments", "");
  r.started_us = j.value("started_us", int64_t{0});
  r.finished_us = j.value("finished_us", int64_t{0});
  r.exit_code = j.value("exit_code", -1);
  r.outcome = j.value("outcome", "");
  r.error = j.value("error", "");
  if (j.contains("report")) r.report = j["report"];
  return r;
}

std::string MaskArguments(int argc, char** argv) {
  std::string out;
  bool mask_next = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    std::string shown;
    if (mask_next) {
      shown = MaskUrl(arg);
      mask_next = false;
    } else if (arg == "--source" || arg == "--target") {
      shown = arg;
      mask_next = true;
    } else if (arg.rfind("--source=", 0) == 0 || arg.rfind("--target=", 0) == 0) {
      size_t eq = arg.find('=');
      shown = arg.substr(0, eq + 1) + MaskUrl(arg.substr(eq + 1));
    } else {
      shown = MaskUrl(arg);
    }
    if (!out.empty()) out += ' ';
    out += shown;
  }
  return out;
}

bool IsAudited(const std::string& command) {
  static const char* kAudited[] = {"snapshot", "stream", "run", "validate", "cutover",
                                   "replay", "rollback", "rotate-key"};
  return std::find_if(std::begin(kAudited), std::end(kAudited),
                      [&](const char* c) { return command == c; }) != std::end(kAudited);
}

AuditRecord BeginAudit(const std::string& command, int argc, char** argv) {
  AuditRecord r;
  r.started_us = NowMicros();
  r.id = std::to_string(r.started_us) + "-" + std::to_string(getpid());
  r.command = command;
  if (const passwd* pw = getpwuid(geteuid()); pw != nullptr) r.user = pw->pw_name;
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) == 0) r.host = host;
  r.arguments = MaskArguments(argc, argv);
  r.outcome = "running";
  return r;
}

Status WriteAuditToStore(state::StateStore& store, const AuditRecord& record) {
  Status s = store.PutMeta(kAuditPrefix + record.id, record.ToJson().dump());
  return s.ok() ? s : s.WithContext("recording the run in the state directory");
}

Status WriteAudit(const Config& config, const AuditRecord& record, bool state_copy) {
  Status target_status;
  {
    auto conn = PgConn::Connect(config.target.url, "tenantsync audit");
    if (!conn.ok()) {
      target_status = conn.status();
    } else {
      target_status = conn->Run(kCreateRuns);
      if (target_status.ok()) {
        auto res = conn->ExecParams(
            "INSERT INTO _tenantsync.runs (id, pipeline, command, os_user, host, arguments,"
            " started_at, finished_at, exit_code, outcome, error, report) VALUES"
            " ($1, $2, $3, $4, $5, $6, $7::timestamptz, $8::timestamptz, $9::int, $10, $11, $12::jsonb)"
            " ON CONFLICT (id) DO UPDATE SET finished_at = EXCLUDED.finished_at,"
            " exit_code = EXCLUDED.exit_code, outcome = EXCLUDED.outcome, error = EXCLUDED.error,"
            " report = EXCLUDED.report",
            {record.id, config.pipeline, record.command, record.user, record.host,
             record.arguments, Timestamp(record.started_us),
             record.finished_us ? std::optional<std::string>(Timestamp(record.finished_us))
                                : std::nullopt,
             record.exit_code >= 0 ? std::optional<std::string>(std::to_string(record.exit_code))
                                   : std::nullopt,
             record.outcome, record.error,
             record.report.is_null() ? std::nullopt
                                     : std::optional<std::string>(record.report.dump())});
        if (!res.ok()) target_status = res.status();
      }
    }
  }
  // The state store copy: only when no other process holds the store (and the directory exists:
  // the audit never creates a state directory of its own).
  Status state_status;
  if (state_copy && access(config.state_dir.c_str(), F_OK) == 0) {
    state::StateOptions options;
    options.dir = config.state_dir;
    options.pipeline = config.pipeline;
    auto store = state::StateStore::Open(options);
    if (store.ok()) {
      state_status = (*store)->PutMeta(kAuditPrefix + record.id, record.ToJson().dump());
    } else {
      state_status = store.status();
    }
  }
  if (!target_status.ok()) return target_status.WithContext("recording the run in the target");
  if (!state_status.ok() && state_status.code() != StatusCode::kFailedPrecondition) {
    return state_status.WithContext("recording the run in the state directory");
  }
  return Status();
}

StatusOr<std::vector<AuditRecord>> ReadHistory(const Config& config, size_t limit) {
  std::vector<AuditRecord> records;
  auto conn = PgConn::Connect(config.target.url, "tenantsync history");
  if (conn.ok()) {
    auto res = conn->ExecParams(
        "SELECT id, command, os_user, host, arguments,"
        " (extract(epoch FROM started_at) * 1000000)::bigint,"
        " coalesce((extract(epoch FROM finished_at) * 1000000)::bigint, 0),"
        " coalesce(exit_code, -1), outcome, coalesce(error, ''), coalesce(report::text, 'null')"
        " FROM _tenantsync.runs WHERE pipeline = $1 ORDER BY started_at DESC, id DESC LIMIT " +
            std::to_string(limit),
        {config.pipeline});
    if (res.ok()) {
      for (int i = 0; i < res->rows(); ++i) {
        AuditRecord r;
        r.id = res->Get(i, 0);
        r.command = res->Get(i, 1);
        r.user = res->Get(i, 2);
        r.host = res->Get(i, 3);
        r.arguments = res->Get(i, 4);
        r.started_us = res->GetInt(i, 5).ok() ? *res->GetInt(i, 5) : 0;
        r.finished_us = res->GetInt(i, 6).ok() ? *res->GetInt(i, 6) : 0;
        r.exit_code = res->GetInt(i, 7).ok() ? static_cast<int>(*res->GetInt(i, 7)) : -1;
        r.outcome = res->Get(i, 8);
        r.error = res->Get(i, 9);
        r.report = nlohmann::json::parse(res->Get(i, 10), nullptr, false);
        records.push_back(std::move(r));
      }
      return records;
    }
    if (res.status().sqlstate() == "42P01") return records;  // no run recorded yet
  }
  // Target unreachable: what this machine's state directory holds.
  auto store = state::StateStore::OpenReadOnly(config.state_dir);
  if (!store.ok()) {
    return conn.ok() ? store.status() : conn.status().WithContext("reading the history");
  }
  TS_ASSIGN_OR_RETURN(auto rows, (*store)->ScanMeta(kAuditPrefix));
  for (const auto& [key, value] : rows) {
    auto j = nlohmann::json::parse(value, nullptr, false);
    if (!j.is_discarded()) records.push_back(AuditRecord::FromJson(j));
  }
  std::sort(records.begin(), records.end(),
            [](const AuditRecord& a, const AuditRecord& b) { return a.started_us > b.started_us; });
  if (records.size() > limit) records.resize(limit);
  return records;
}

int HistoryCommand(const Config& config, bool json) {
  auto records = ReadHistory(config);
  if (!records.ok()) {
    std::cerr << "tenantsync: " << records.status().ToString() << "\n";
    return 1;
  }
  if (json) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& r : *records) a.push_back(r.ToJson());
    std::cout << a.dump(2) << "\n";
    return 0;
  }
  if (records->empty()) {
    std::cout << "no runs recorded yet for pipeline " << config.pipeline << "\n";
    return 0;
  }
  std::printf("%-22s %-10s %-12s %-8s %9s  %s\n", "started (UTC)", "command", "user", "outcome",
              "seconds", "arguments / error");
  for (const auto& r : *records) {
    char secs[32] = "-";
    if (r.finished_us > 0) {
      std::snprintf(secs, sizeof secs, "%.1f", static_cast<double>(r.finished_us - r.started_us) / 1e6);
    }
    std::string ts = Timestamp(r.started_us);
    std::printf("%-22s %-10s %-12s %-8s %9s  %s\n", ts.substr(0, 19).c_str(), r.command.c_str(),
                r.user.c_str(), r.outcome.c_str(), secs, r.arguments.c_str());
    if (!r.error.empty()) std::printf("%67s  error: %s\n", "", r.error.c_str());
  }
  return 0;
}

}  // namespace tenantsync::ops
