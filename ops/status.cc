#include "ops/status.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "core/pg.h"
#include "ops/live_publisher.h"
#include "state/journal.h"
#include "state/state_store.h"

namespace tenantsync::ops {

namespace {

// Keeps `conn` connected; on failure records why in `error` and returns nullptr.
PgConn* Ensure(PgConn& conn, const std::string& url, std::string* error) {
  if (conn.connected()) return &conn;
  auto c = PgConn::Connect(url, "tenantsync status");
  if (!c.ok()) {
    *error = c.status().message();
    return nullptr;
  }
  conn = std::move(*c);
  return &conn;
}

void CollectSource(const Config& config, PgConn& source, StatusReport* r) {
  PgConn* conn = Ensure(source, config.source.url, &r->source_error);
  if (conn == nullptr) return;
  auto res = conn->ExecParams(
      "SELECT pg_current_wal_lsn()::text, s.confirmed_flush_lsn::text, s.active, "
      "pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint "
      "FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1",
      {config.source.slot});
  if (!res.ok()) {
    r->source_error = res.status().message();
    return;
  }
  r->source_reachable = true;
  if (auto lsn = Lsn::Parse(res->Get(0, 0)); lsn.ok()) r->source_wal_lsn = *lsn;
  if (!res->IsNull(0, 1)) {
    r->slot_exists = true;
    if (auto lsn = Lsn::Parse(res->Get(0, 1)); lsn.ok()) r->slot_confirmed_flush_lsn = *lsn;
    r->slot_active = res->Get(0, 2) == "t";
    if (auto bytes = res->GetInt(0, 3); bytes.ok() && *bytes > 0) {
      r->slot_retained_wal_bytes = static_cast<uint64_t>(*bytes);
    }
  }
}

void CollectTarget(const Config& config, PgConn& target, StatusReport* r) {
  PgConn* conn = Ensure(target, config.target.url, &r->target_error);
  if (conn == nullptr) return;
  r->target_reachable = true;
  auto res = conn->ExecParams(
      "SELECT applied_lsn::text, (extract(epoch FROM commit_time) * 1000000)::bigint "
      "FROM _tenantsync.progress WHERE pipeline = $1",
      {config.pipeline});
  if (!res.ok()) {
    // No progress table yet: nothing applied (42P01 undefined_table); anything else is an error.
    if (res.status().sqlstate() != "42P01") r->target_error = res.status().message();
    return;
  }
  if (res->rows() == 1) {
    if (auto lsn = Lsn::Parse(res->Get(0, 0)); lsn.ok()) r->applied_lsn = *lsn;
    if (auto t = res->GetInt(0, 1); t.ok()) r->applied_commit_time_us = *t;
  }
}

// The running pipeline's published counters (another process), when fresh.
void ApplyLiveFigures(const LiveFigures& f, int64_t now_us, StatusReport* r) {
  if (f.phase == "stopped" || f.phase == "failed") return;  // it said goodbye: meta has the rest
  if (now_us - f.at_us > kLiveFiguresMaxAgeUs) {
    // Not running (killed or crashed without a word), or hung: its rates are history, and the
    // phase the state directory recorded is no longer true.
    if (r->phase == "starting" || r->phase == "snapshot" || r->phase == "catching-up" ||
        r->phase == "streaming") {
      r->phase = "stopped";
      r->vanished_since_us = f.at_us;
    }
    return;
  }
  r->live_pid = f.pid;
  r->phase = f.phase;
  r->apply_txn_per_second = f.txn_per_second;
  r->apply_rows_per_second = f.rows_per_second;
  r->transactions_applied = f.transactions_applied;
  r->rows_applied = f.rows_applied;
  if (f.received_lsn > r->received_lsn) r->received_lsn = f.received_lsn;
  if (f.journaled_lsn > r->journaled_lsn) r->journaled_lsn = f.journaled_lsn;
  if (f.applied_lsn > r->applied_lsn) r->applied_lsn = f.applied_lsn;
  if (f.applied_commit_time_us > r->applied_commit_time_us) {
    r->applied_commit_time_us = f.applied_commit_time_us;
  }
  if (f.caught_up_time_us > r->caught_up_time_us) r->caught_up_time_us = f.caught_up_time_us;
  if (f.dead_letters > r->dead_letters) r->dead_letters = f.dead_letters;
}

void CollectState(state::StateStore& store, bool read_live_figures, StatusReport* r) {
  r->state_readable = true;
  state::JournalStats js = store.journal().Stats();
  r->received_lsn = js.received_lsn;
  r->journaled_lsn = js.journaled_lsn;
  if (js.applied_lsn > r->applied_lsn) r->applied_lsn = js.applied_lsn;
  if (r->applied_commit_time_us == 0) r->applied_commit_time_us = js.last_applied_commit_time_us;
  r->journal_transactions = js.transactions;
  r->journal_oldest_lsn = js.oldest_lsn;
  r->journal_bytes = store.DiskBytes();
  if (auto n = store.DeadLetterCount(); n.ok()) r->dead_letters = *n;
  auto meta = [&](const char* key) -> std::string {
    auto v = store.GetMeta(key);
    return v.ok() && v->has_value() ? **v : std::string();
  };
  if (std::string phase = meta(kMetaPhase); !phase.empty()) r->phase = phase;
  r->last_error = meta(kMetaLastError);
  if (std::string t = meta(kMetaLastErrorTime); !t.empty()) {
    r->last_error_time_us = std::strtoll(t.c_str(), nullptr, 10);
  }
  if (std::string t = meta(kMetaCaughtUpTime); !t.empty()) {
    r->caught_up_time_us = std::strtoll(t.c_str(), nullptr, 10);
  }
  if (read_live_figures) {
    if (auto f = LiveFigures::Decode(meta(kMetaLive)); f.has_value()) {
      ApplyLiveFigures(*f, NowMicros(), r);
    }
  }
  if (std::string rows = meta(kMetaSnapshotRows); !rows.empty()) {
    unsigned long long done = 0, total = 0;
    if (std::sscanf(rows.c_str(), "%llu %llu", &done, &total) == 2 && total > 0) {
      r->snapshot_percent = 100.0 * static_cast<double>(done) / static_cast<double>(total);
    }
  }
  // Nothing journaled is left to apply: the acknowledged journal position is fully applied.
  if (js.journaled_commit_lsn <= r->applied_lsn && js.journaled_lsn > r->applied_lsn) {
    r->applied_lsn = js.journaled_lsn;
  }
}

}  // namespace

struct StatusCollector::Conns {
  PgConn source, target;
};

StatusCollector::StatusCollector(const Config& config, const PipelineStats* live,
                                 state::StateStore* store)
    : config_(config), live_(live), store_(store), conns_(std::make_unique<Conns>()) {}

StatusCollector::~StatusCollector() = default;

StatusOr<StatusReport> StatusCollector::Collect() {
  const Config& config = config_;
  const PipelineStats* live = live_;
  if (config.state_dir.empty()) return InvalidArgument("state_dir is not set in the config");
  StatusReport r;
  r.pipeline = config.pipeline;
  r.phase = "stopped";
  r.retention_hours = config.journal.retention_hours;
  CollectSource(config, conns_->source, &r);
  CollectTarget(config, conns_->target, &r);
  if (store_ != nullptr) {
    CollectState(*store_, live == nullptr, &r);
  } else {
    auto store = state::StateStore::OpenReadOnly(config.state_dir);
    if (store.ok()) {
      CollectState(**store, live == nullptr, &r);
    } else {
      r.state_error = store.status().message();
    }
  }
  if (live != nullptr) {
    r.phase = PipelineStats::PhaseName(live->GetPhase());
    r.received_lsn = Lsn(live->received_lsn.load());
    r.journaled_lsn = Lsn(live->journaled_lsn.load());
    Lsn applied(live->applied_lsn.load());
    if (applied > r.applied_lsn) r.applied_lsn = applied;
    int64_t t = live->applied_commit_time_us.load();
    if (t > r.applied_commit_time_us) r.applied_commit_time_us = t;
    r.caught_up_time_us = live->caught_up_time_us.load();
    r.transactions_applied = live->transactions_applied.load();
    r.live_pid = static_cast<int64_t>(::getpid());
    r.dead_letters = live->dead_letters.load();
    auto [err, when] = live->LastError();
    r.last_error = err;
    r.last_error_time_us = when;
    uint64_t done = live->snapshot_rows_done.load(), total = live->snapshot_rows_total.load();
    if (live->GetPhase() == PipelineStats::Phase::kSnapshot && total > 0) {
      r.snapshot_percent = 100.0 * static_cast<double>(done) / static_cast<double>(total);
    }
  }
  r.collected_at_us = NowMicros();
  if (live != nullptr) {
    uint64_t txns = live->transactions_applied.load(), rows = 0;
    for (const auto& [key, n] : live->RowsSnapshot()) rows += n;
    if (last_time_us_ > 0 && r.collected_at_us > last_time_us_) {
      double dt = static_cast<double>(r.collected_at_us - last_time_us_) / 1e6;
      r.apply_txn_per_second = static_cast<double>(txns - last_txns_) / dt;
      r.apply_rows_per_second = static_cast<double>(rows - last_rows_) / dt;
    }
    last_time_us_ = r.collected_at_us;
    last_txns_ = txns;
    last_rows_ = rows;
    r.rows_applied = rows;
  }
  if (r.source_reachable && r.applied_lsn.valid()) {
    r.lag_bytes = r.source_wal_lsn.BytesSince(r.applied_lsn);
    int64_t since = std::max(r.applied_commit_time_us, r.caught_up_time_us);
    if (r.lag_bytes > 0 && since > 0) {
      r.lag_seconds = std::max(0.0, static_cast<double>(r.collected_at_us - since) / 1e6);
    }
  }
  return r;
}

StatusOr<StatusReport> CollectStatus(const Config& config, const PipelineStats* live) {
  StatusCollector collector(config, live, nullptr);
  return collector.Collect();
}

nlohmann::json ToJson(const StatusReport& r) {
  nlohmann::json j;
  j["pipeline"] = r.pipeline;
  j["phase"] = r.phase;
  if (r.snapshot_percent >= 0) j["snapshot_percent"] = r.snapshot_percent;
  j["source"] = {{"reachable", r.source_reachable},
                 {"error", r.source_error},
                 {"wal_lsn", r.source_wal_lsn.ToString()},
                 {"slot_exists", r.slot_exists},
                 {"slot_active", r.slot_active},
                 {"slot_confirmed_flush_lsn", r.slot_confirmed_flush_lsn.ToString()},
                 {"slot_retained_wal_bytes", r.slot_retained_wal_bytes}};
  j["target"] = {{"reachable", r.target_reachable}, {"error", r.target_error}};
  j["received_lsn"] = r.received_lsn.ToString();
  j["journaled_lsn"] = r.journaled_lsn.ToString();
  j["applied_lsn"] = r.applied_lsn.ToString();
  j["applied_commit_time_us"] = r.applied_commit_time_us;
  j["caught_up_time_us"] = r.caught_up_time_us;
  j["lag_bytes"] = r.lag_bytes;
  j["lag_seconds"] = r.lag_seconds;
  j["journal"] = {{"readable", r.state_readable},
                  {"error", r.state_error},
                  {"bytes", r.journal_bytes},
                  {"transactions", r.journal_transactions},
                  {"oldest_lsn", r.journal_oldest_lsn.ToString()},
                  {"retention_hours", r.retention_hours}};
  if (r.vanished_since_us != 0) j["vanished_since_us"] = r.vanished_since_us;
  j["apply"] = {{"running_pid", r.live_pid},
                {"transactions_total", r.transactions_applied},
                {"rows_total", r.rows_applied},
                {"txn_per_second", r.apply_txn_per_second},
                {"rows_per_second", r.apply_rows_per_second}};
  j["dead_letters"] = r.dead_letters;
  j["last_error"] = r.last_error;
  j["last_error_time_us"] = r.last_error_time_us;
  j["collected_at_us"] = r.collected_at_us;
  return j;
}

namespace {

std::string HumanBytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(b) / (1ull << 30));
  } else if (b >= (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1ull << 20));
  } else if (b >= 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024);
  } else {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  }
  return buf;
}

}  // namespace

std::string ToText(const StatusReport& r) {
  std::string s;
  char buf[256];
  auto line = [&](const char* k, const std::string& v) {
    std::snprintf(buf, sizeof buf, "%-22s %s\n", k, v.c_str());
    s += buf;
  };
  line("pipeline", r.pipeline);
  std::string phase = r.phase;
  if (r.snapshot_percent >= 0) {
    std::snprintf(buf, sizeof buf, " (%.1f%% copied)", r.snapshot_percent);
    phase += buf;
  }
  line("phase", phase);
  if (r.vanished_since_us != 0) {
    std::snprintf(buf, sizeof buf, "not running: its process stopped reporting %.0f s ago (killed "
                  "or crashed?); start it again, it resumes from its journal",
                  static_cast<double>(r.collected_at_us - r.vanished_since_us) / 1e6);
    line("bridge", buf);
  }
  line("source", r.source_reachable ? "reachable" : "UNREACHABLE: " + r.source_error);
  line("target", r.target_reachable ? "reachable" : "UNREACHABLE: " + r.target_error);
  if (!r.target_error.empty() && r.target_reachable) line("target error", r.target_error);
  line("source WAL LSN", r.source_wal_lsn.ToString());
  line("received LSN", r.received_lsn.ToString());
  line("journaled LSN", r.journaled_lsn.ToString());
  line("applied LSN", r.applied_lsn.ToString());
  std::snprintf(buf, sizeof buf, "%.1f s, %s", r.lag_seconds, HumanBytes(r.lag_bytes).c_str());
  line("lag", buf);
  line("slot", r.slot_exists ? std::string(r.slot_active ? "active" : "inactive") +
                                   ", retains " + HumanBytes(r.slot_retained_wal_bytes) +
                                   " of WAL, confirmed " + r.slot_confirmed_flush_lsn.ToString()
                             : "missing");
  line("journal", r.state_readable ? HumanBytes(r.journal_bytes) + ", " +
                                         std::to_string(r.journal_transactions) +
                                         " transactions since " + r.journal_oldest_lsn.ToString()
                                   : "unreadable: " + r.state_error);
  if (r.live_pid != 0) {
    std::snprintf(buf, sizeof buf, "%.0f txn/s, %.0f rows/s (pid %lld)", r.apply_txn_per_second,
                  r.apply_rows_per_second, static_cast<long long>(r.live_pid));
    line("apply rate", buf);
    std::snprintf(buf, sizeof buf, "%llu transactions, %llu rows since start",
                  static_cast<unsigned long long>(r.transactions_applied),
                  static_cast<unsigned long long>(r.rows_applied));
    line("applied", buf);
  }
  line("dead letters", std::to_string(r.dead_letters));
  line("last error", r.last_error.empty() ? "none" : r.last_error);
  return s;
}

void LagHistory::Add(int64_t time_us, double lag_seconds, uint64_t lag_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  samples_.push_back({time_us, lag_seconds, lag_bytes});
  while (samples_.size() > kMaxSamples) samples_.pop_front();
}

nlohmann::json LagHistory::ToJson() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json a = nlohmann::json::array();
  for (const auto& s : samples_) a.push_back({s.time_us / 1000, s.lag_seconds, s.lag_bytes});
  return a;
}

}  // namespace tenantsync::ops
