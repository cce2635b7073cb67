#include "ops/metrics.h"

#include <cstdio>

namespace tenantsync::ops {

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

class Writer {
 public:
  explicit Writer(std::string pipeline) : pipeline_(EscapeLabelValue(pipeline)) {}

  void Family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // One sample; `labels` is extra label text like `table="x",op="insert"` (already escaped).
  void Sample(const char* name, double value, const std::string& labels = "") {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", value);
    out_ += name;
    out_ += "{pipeline=\"" + pipeline_ + "\"";
    if (!labels.empty()) out_ += "," + labels;
    out_ += "} ";
    out_ += buf;
    out_ += '\n';
  }
  void Gauge(const char* name, const char* help, double value) {
    Family(name, "gauge", help);
    Sample(name, value);
  }
  void Counter(const char* name, const char* help, double value) {
    Family(name, "counter", help);
    Sample(name, value);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string pipeline_;
  std::string out_;
};

}  // namespace

std::string RenderMetrics(const StatusReport& r, const PipelineStats* live) {
  Writer w(r.pipeline);
  w.Family("tenantsync_build_info", "gauge", "Build information; always 1.");
  w.Sample("tenantsync_build_info", 1, "version=\"" TENANTSYNC_VERSION "\"");
  w.Family("tenantsync_phase", "gauge", "1 for the pipeline's current phase, 0 for the others.");
  for (const char* p : {"starting", "snapshot", "catching-up", "streaming", "stopped", "failed"}) {
    w.Sample("tenantsync_phase", r.phase == p ? 1 : 0, std::string("phase=\"") + p + "\"");
  }
  w.Gauge("tenantsync_source_up", "1 when the source server answered the last status query.",
          r.source_reachable ? 1 : 0);
  w.Gauge("tenantsync_target_up", "1 when the target server answered the last status query.",
          r.target_reachable ? 1 : 0);
  w.Gauge("tenantsync_lag_seconds",
          "Seconds the target trails the source (0 when caught up and the source is idle).",
          r.lag_seconds);
  w.Gauge("tenantsync_lag_bytes", "WAL bytes between the source's position and the applied position.",
          static_cast<double>(r.lag_bytes));
  w.Gauge("tenantsync_source_wal_lsn", "Source pg_current_wal_lsn() as a byte position.",
          static_cast<double>(r.source_wal_lsn.value()));
  w.Gauge("tenantsync_received_lsn", "Highest source WAL position received, as a byte position.",
          static_cast<double>(r.received_lsn.value()));
  w.Gauge("tenantsync_journaled_lsn",
          "Source WAL position durable in the journal (what is acknowledged), as a byte position.",
          static_cast<double>(r.journaled_lsn.value()));
  w.Gauge("tenantsync_applied_lsn", "Source WAL position applied in the target, as a byte position.",
          static_cast<double>(r.applied_lsn.value()));
  w.Gauge("tenantsync_slot_retained_wal_bytes",
          "WAL the source keeps for the replication slot (pg_current_wal_lsn - restart_lsn).",
          static_cast<double>(r.slot_retained_wal_bytes));
  w.Gauge("tenantsync_slot_active", "1 when the replication slot exists and a walsender uses it.",
          r.slot_active ? 1 : 0);
  w.Gauge("tenantsync_journal_bytes", "Bytes the state directory's journal uses on disk.",
          static_cast<double>(r.journal_bytes));
  w.Gauge("tenantsync_journal_transactions", "Transactions held in the journal.",
          static_cast<double>(r.journal_transactions));
  w.Counter("tenantsync_dead_letters_total", "Rows stored as dead letters (not applied).",
            static_cast<double>(r.dead_letters));
  if (live != nullptr) {
    w.Counter("tenantsync_transactions_total", "Source transactions applied in the target.",
              static_cast<double>(live->transactions_applied.load()));
    w.Counter("tenantsync_journaled_transactions_total", "Source transactions journaled.",
              static_cast<double>(live->transactions_journaled.load()));
    w.Counter("tenantsync_journaled_changes_total", "Row changes journaled.",
              static_cast<double>(live->changes_journaled.load()));
    w.Counter("tenantsync_reconnects_total", "Reconnections to the source after a failure.",
              static_cast<double>(live->reconnects.load()));
    w.Counter("tenantsync_snapshot_rows_total", "Rows copied by the snapshot.",
              static_cast<double>(live->snapshot_rows_done.load()));
    w.Family("tenantsync_rows_total", "counter", "Rows applied in the target, by table and operation.");
    for (const auto& [key, n] : live->RowsSnapshot()) {
      w.Sample("tenantsync_rows_total", static_cast<double>(n),
               "table=\"" + EscapeLabelValue(key.first) + "\",op=\"" + EscapeLabelValue(key.second) +
                   "\"");
    }
  }
  w.Gauge("tenantsync_last_error_timestamp_seconds",
          "Unix time of the last error (0 when there has been none).",
          static_cast<double>(r.last_error_time_us) / 1e6);
  return w.Take();
}

}  // namespace tenantsync::ops
