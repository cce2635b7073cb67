#include "cutover/internal/common.h"

#include "state/journal.h"

namespace tenantsync::cutover::internal {

StatusOr<std::string> QueryText(PgConn& conn, const std::string& sql,
                                const std::vector<std::optional<std::string>>& params) {
  TS_ASSIGN_OR_RETURN(PgResult r, conn.ExecParams(sql, params));
  if (r.rows() != 1 || r.columns() < 1) return Fatal("expected one row from: " + sql);
  return std::string(r.Get(0, 0));
}

StatusOr<std::optional<AppliedPosition>> ReadAppliedPosition(PgConn& target,
                                                             const std::string& pipeline) {
  TS_ASSIGN_OR_RETURN(std::string exists,
                      QueryText(target, "SELECT to_regclass('_tenantsync.progress') IS NOT NULL"));
  if (exists != "t") return std::optional<AppliedPosition>();
  TS_ASSIGN_OR_RETURN(
      PgResult r,
      target.ExecParams("SELECT applied_lsn::text, coalesce((extract(epoch FROM commit_time) * "
                        "1000000)::bigint, 0) FROM _tenantsync.progress WHERE pipeline = $1",
                        {pipeline}));
  if (r.rows() == 0 || r.IsNull(0, 0)) return std::optional<AppliedPosition>();
  AppliedPosition p;
  TS_ASSIGN_OR_RETURN(p.lsn, Lsn::Parse(r.Get(0, 0)));
  TS_ASSIGN_OR_RETURN(p.commit_time_us, r.GetInt(0, 1));
  return std::optional<AppliedPosition>(p);
}

StatusOr<SlotState> ReadSlot(PgConn& source, const std::string& slot) {
  TS_ASSIGN_OR_RETURN(
      PgResult r,
      source.ExecParams("SELECT active, coalesce(active_pid, 0), "
                        "coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots "
                        "WHERE slot_name = $1",
                        {slot}));
  SlotState s;
  if (r.rows() == 0) return s;
  s.exists = true;
  s.active = r.Get(0, 0) == "t";
  TS_ASSIGN_OR_RETURN(s.active_pid, r.GetInt(0, 1));
  TS_ASSIGN_OR_RETURN(s.confirmed_flush, Lsn::Parse(r.Get(0, 2)));
  return s;
}

Status RequireSlotInactive(const SlotState& slot, const std::string& slot_name,
                           const std::string& what) {
  if (!slot.active) return Status::Ok();
  return FailedPrecondition("replication slot " + slot_name +
                            " is active (walsender PID " + std::to_string(slot.active_pid) +
                            "): `tenantsync run` is still streaming; stop it (Ctrl-C or "
                            "systemctl stop) and run " + what + " again");
}

StatusOr<DataTransactions> CountDataTransactions(state::StateStore& store, Lsn after,
                                                 Lsn through) {
  TS_RETURN_IF_ERROR(store.Refresh());
  TS_ASSIGN_OR_RETURN(std::unique_ptr<state::JournalReader> reader,
                      store.journal().NewReader(after));
  DataTransactions out;
  TransactionInfo info;
  for (;;) {
    TS_ASSIGN_OR_RETURN(bool have, reader->NextTransaction(&info));
    if (!have || info.commit_lsn > through) break;
    bool data = false;
    Change c;
    for (;;) {
      TS_ASSIGN_OR_RETURN(bool more, reader->NextChange(&c));
      if (!more) break;
      if (c.op == ChangeOp::kMessage) continue;
      data = true;
      if (c.relation) out.tables.insert(c.relation->name);
    }
    if (data) ++out.transactions;
  }
  return out;
}

Status DropPublicationIfOurs(PgConn& source, const std::string& pub, const std::string& what,
                             FILE* out) {
  TS_ASSIGN_OR_RETURN(PgResult r, source.ExecParams(
      "SELECT pg_has_role(pubowner, 'USAGE'), pubowner::regrole::text, current_user "
      "FROM pg_publication WHERE pubname = $1",
      {pub}));
  if (r.rows() == 0) return Status::Ok();
  if (r.Get(0, 0) != "t") {
    std::fprintf(out,
                 "%s: publication %s is owned by %s, not by role %s: left in place (it retains "
                 "no WAL); to remove it run as %s or a superuser: DROP PUBLICATION %s\n",
                 what.c_str(), pub.c_str(), std::string(r.Get(0, 1)).c_str(),
                 std::string(r.Get(0, 2)).c_str(), std::string(r.Get(0, 1)).c_str(),
                 QuoteIdent(pub).c_str());
    return Status::Ok();
  }
  TS_RETURN_IF_ERROR_CTX(source.Run("DROP PUBLICATION IF EXISTS " + QuoteIdent(pub)),
                         "dropping publication " + pub);
  std::fprintf(out, "dropped publication %s\n", pub.c_str());
  return Status::Ok();
}

}  // namespace tenantsync::cutover::internal
