#include "cutover/rollback.h"

#include <filesystem>

#include <fmt/format.h>

#include "core/pg.h"
#include "cutover/internal/common.h"
#include "state/state_store.h"

namespace tenantsync::cutover {
namespace {

using internal::QueryText;

// Tables of _tenantsync that have a `pipeline` column (progress, snapshot_chunks, runs, and any
// another stage adds later).
StatusOr<std::vector<std::string>> PipelineTables(PgConn& target) {
  TS_ASSIGN_OR_RETURN(
      PgResult r,
      target.Exec("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'pipeline' AND "
                  "NOT a.attisdropped WHERE n.nspname = '_tenantsync' AND c.relkind IN ('r', "
                  "'p') ORDER BY 1"));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Get(i, 0));
  return out;
}

struct TenantsyncSchemaRows {
  bool schema_exists = false;
  int64_t ours = 0;    // rows of this pipeline
  int64_t others = 0;  // rows of other pipelines
};

StatusOr<TenantsyncSchemaRows> CountTenantsyncRows(PgConn& target, const std::string& pipeline) {
  TenantsyncSchemaRows out;
  TS_ASSIGN_OR_RETURN(
      PgResult exists,
      target.Exec("SELECT to_regnamespace('_tenantsync') IS NOT NULL"));
  out.schema_exists = exists.rows() == 1 && exists.Get(0, 0) == "t";
  if (!out.schema_exists) return out;
  TS_ASSIGN_OR_RETURN(std::vector<std::string> tables, PipelineTables(target));
  for (const auto& t : tables) {
    TS_ASSIGN_OR_RETURN(
        PgResult r,
        target.ExecParams("SELECT count(*) FILTER (WHERE pipeline = $1), count(*) FILTER "
                          "(WHERE pipeline IS DISTINCT FROM $1) FROM " +
                              QuoteQualified("_tenantsync", t),
                          {pipeline}));
    TS_ASSIGN_OR_RETURN(int64_t ours, r.GetInt(0, 0));
    TS_ASSIGN_OR_RETURN(int64_t others, r.GetInt(0, 1));
    out.ours += ours;
    out.others += others;
  }
  return out;
}

bool StateDirExists(const Config& config) {
  std::error_code ec;
  return std::filesystem::exists(config.state_dir, ec);
}

}  // namespace

bool RollbackPlan::Empty() const {
  for (const auto& i : items) {
    if (i.exists) return false;
  }
  return true;
}

std::string RollbackPlan::ToText() const {
  std::string out;
  for (const auto& i : items) {
    out += fmt::format("  {:<6} {:<52} {}{}\n", i.where, i.what, i.exists ? "exists" : "absent",
                       i.note.empty() ? "" : " (" + i.note + ")");
  }
  return out;
}

StatusOr<RollbackPlan> PlanRollback(const Config& config) {
  RollbackPlan plan;
  TS_ASSIGN_OR_RETURN(PgConn source, PgConn::Connect(config.source.url, "tenantsync-rollback"));
  TS_ASSIGN_OR_RETURN(PgConn target, PgConn::Connect(config.target.url, "tenantsync-rollback"));

  TS_ASSIGN_OR_RETURN(internal::SlotState slot, internal::ReadSlot(source, config.source.slot));
  plan.slot_active = slot.active;
  plan.slot_pid = slot.active_pid;
  plan.items.push_back({"source", "replication slot " + config.source.slot, slot.exists,
                        slot.active ? "active, PID " + std::to_string(slot.active_pid) : ""});
  TS_ASSIGN_OR_RETURN(std::string pub,
                      QueryText(source, "SELECT count(*) FROM pg_publication WHERE pubname = $1",
                                {config.source.publication}));
  plan.items.push_back({"source", "publication " + config.source.publication, pub != "0", ""});

  TS_ASSIGN_OR_RETURN(std::string schema,
                      QueryText(target, "SELECT to_regnamespace($1) IS NOT NULL",
                                {QuoteIdent(config.target.schema)}));
  plan.items.push_back({"target", "schema " + config.target.schema + " (CASCADE)", schema == "t",
                        ""});
  TS_ASSIGN_OR_RETURN(std::string orgs,
                      QueryText(target, "SELECT to_regclass('public.organizations') IS NOT NULL"));
  bool org_row = false;
  if (orgs == "t") {
    TS_ASSIGN_OR_RETURN(std::string n,
                        QueryText(target, "SELECT count(*) FROM public.organizations WHERE slug "
                                          "= $1",
                                  {config.tenant.slug}));
    org_row = n != "0";
  }
  plan.items.push_back(
      {"target", "public.organizations row slug=" + config.tenant.slug, org_row, ""});
  TS_ASSIGN_OR_RETURN(TenantsyncSchemaRows ts, CountTenantsyncRows(target, config.pipeline));
  plan.items.push_back({"target", "_tenantsync rows of pipeline " + config.pipeline, ts.ours > 0,
                        ts.ours > 0 ? std::to_string(ts.ours) + " rows" : ""});
  plan.items.push_back({"target", "schema _tenantsync",
                        ts.schema_exists,
                        ts.others > 0 ? "kept: " + std::to_string(ts.others) +
                                            " rows of other pipelines"
                                      : ""});
  plan.items.push_back({"local", "state directory " + config.state_dir, StateDirExists(config),
                        ""});
  return plan;
}

Status Rollback(const Config& config, const RollbackOptions& options) {
  TS_ASSIGN_OR_RETURN(RollbackPlan plan, PlanRollback(config));
  FILE* out = options.out;
  if (plan.Empty()) {
    std::fprintf(out, "rollback %s: nothing to drop\n%s", config.pipeline.c_str(),
                 plan.ToText().c_str());
    return Status::Ok();
  }
  std::fprintf(out, "rollback %s %s:\n%s", config.pipeline.c_str(),
               options.confirm ? "drops" : "would drop", plan.ToText().c_str());
  if (plan.slot_active) {
    internal::SlotState s;
    s.active = true;
    s.active_pid = plan.slot_pid;
    return internal::RequireSlotInactive(s, config.source.slot, "rollback");
  }
  // The state directory must not be in use (a snapshot copying with the slot inactive, a replay).
  if (StateDirExists(config)) {
    state::StateOptions so;
    so.dir = config.state_dir;
    auto locked = state::StateStore::Open(so);
    if (!locked.ok() && locked.status().code() == StatusCode::kFailedPrecondition) {
      return locked.status().WithContext("rollback: stop the process using it first");
    }
    // Any other failure (a corrupt or foreign directory) does not stop the removal below.
  }
  if (!options.confirm) {
    std::fprintf(out, "nothing was dropped; run again with --confirm to drop the above\n");
    return Status::Ok();
  }

  TS_ASSIGN_OR_RETURN(PgConn source, PgConn::Connect(config.source.url, "tenantsync-rollback"));
  TS_ASSIGN_OR_RETURN(PgConn target, PgConn::Connect(config.target.url, "tenantsync-rollback"));
  // Source: the slot first, so WAL is released even if a later step fails.
  TS_ASSIGN_OR_RETURN(internal::SlotState slot, internal::ReadSlot(source, config.source.slot));
  if (slot.exists) {
    auto dropped = source.ExecParams("SELECT pg_drop_replication_slot($1)", {config.source.slot});
    if (!dropped.ok()) {
      if (dropped.status().sqlstate() == "55006") {
        return FailedPrecondition("replication slot " + config.source.slot + " became active: "
                                  "stop `tenantsync run` and run rollback again");
      }
      return dropped.status().WithContext("dropping replication slot " + config.source.slot);
    }
    std::fprintf(out, "dropped replication slot %s\n", config.source.slot.c_str());
  }
  TS_ASSIGN_OR_RETURN(std::string pub,
                      QueryText(source, "SELECT count(*) FROM pg_publication WHERE pubname = $1",
                                {config.source.publication}));
  if (pub != "0") {
    TS_RETURN_IF_ERROR(
        internal::DropPublicationIfOurs(source, config.source.publication, "rollback", out));
  }

  // Target: one transaction, so a failure leaves it as it was.
  TS_RETURN_IF_ERROR(target.Run("BEGIN"));
  Status st = target.Run("SET LOCAL client_min_messages = warning; DROP SCHEMA IF EXISTS " +
                         QuoteIdent(config.target.schema) + " CASCADE");
  if (st.ok()) {
    auto orgs = QueryText(target, "SELECT to_regclass('public.organizations') IS NOT NULL");
    st = orgs.status();
    if (st.ok() && *orgs == "t") {
      st = target.ExecParams("DELETE FROM public.organizations WHERE slug = $1",
                             {config.tenant.slug})
               .status();
    }
  }
  if (st.ok()) {
    auto tables = PipelineTables(target);
    st = tables.status();
    if (st.ok()) {
      for (const auto& t : *tables) {
        st = target.ExecParams("DELETE FROM " + QuoteQualified("_tenantsync", t) +
                                   " WHERE pipeline = $1",
                               {config.pipeline})
                 .status();
        if (!st.ok()) break;
      }
    }
  }
  if (st.ok()) {
    auto rows = CountTenantsyncRows(target, config.pipeline);
    st = rows.status();
    if (st.ok() && rows->schema_exists && rows->others == 0) {
      st = target.Run("DROP SCHEMA _tenantsync CASCADE");
    }
  }
  if (!st.ok()) {
    target.Run("ROLLBACK").IgnoreError();  // the failure above is what to report
    return st.WithContext("rolling back the target");
  }
  TS_RETURN_IF_ERROR_CTX(target.Run("COMMIT"), "rolling back the target");

  // Local: the state directory last.
  if (StateDirExists(config)) {
    std::error_code ec;
    std::filesystem::remove_all(config.state_dir, ec);
    if (ec) {
      return FailedPrecondition("cannot remove state directory " + config.state_dir + ": " +
                                ec.message());
    }
  }
  std::fprintf(out, "rollback %s done: nothing of the pipeline is left on either server\n",
               config.pipeline.c_str());
  return Status::Ok();
}

}  // namespace tenantsync::cutover
