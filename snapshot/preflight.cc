#include "snapshot/preflight.h"

#include <algorithm>
#include <map>

#include "core/pg.h"
#include "snapshot/catalog.h"
#include "snapshot/internal/plan.h"

namespace tenantsync::snapshot {

namespace {

std::string BaseType(const std::string& t) {
  size_t p = t.find('(');
  return p == std::string::npos ? t : t.substr(0, p);
}

int NumericRank(const std::string& t) {
  static const std::map<std::string, int> kRank = {
      {"smallint", 1}, {"integer", 2}, {"bigint", 3}, {"numeric", 4},
      {"real", 5},     {"double precision", 6}};
  auto it = kRank.find(BaseType(t));
  return it == kRank.end() ? 0 : it->second;
}

// Runs `sql` returning one row; the first column as text, or an empty optional on error.
std::optional<std::string> Value(PgConn& conn, const std::string& sql,
                                 std::vector<std::string>* failures, const std::string& what) {
  auto r = conn.Exec(sql);
  if (!r.ok()) {
    failures->push_back(what + ": " + r.status().message());
    return std::nullopt;
  }
  if (r->rows() == 0) return std::string();
  return std::string(r->Get(0, 0));
}

void CheckSource(const Config& config, const PreflightOptions& options, PgConn& src,
                 std::vector<std::string>* f) {
  const std::string& slot = config.source.slot;
  if (auto wal = Value(src, "SELECT current_setting('wal_level')", f, "source")) {
    if (*wal != "logical") {
      f->push_back("source: wal_level is '" + *wal +
                   "', logical decoding needs 'logical'; run ALTER SYSTEM SET wal_level = logical "
                   "and restart the source server");
    }
  }
  auto role = src.Exec(
      "SELECT current_user, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user");
  if (role.ok() && role->rows() == 1 && role->Get(0, 1) != "t") {
    std::string user(role->Get(0, 0));
    f->push_back("source: role " + user + " may not replicate (no REPLICATION attribute); run " +
                 "ALTER ROLE " + QuoteIdent(user) + " WITH REPLICATION, or connect as a role " +
                 "that has it");
  }
  auto slots = src.ExecParams(
      "SELECT current_setting('max_replication_slots')::int - "
      "  (SELECT count(*) FROM pg_replication_slots), "
      "  (SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1), "
      "  EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1), "
      "  current_setting('max_wal_senders')::int - "
      "  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')",
      {slot});
  if (!slots.ok()) {
    f->push_back("source: cannot read replication slots: " + slots.status().message());
    return;
  }
  bool exists = slots->Get(0, 2) == "t";
  if (exists && !slots->IsNull(0, 1)) {
    f->push_back("source: replication slot " + slot + " is in use by process " +
                 std::string(slots->Get(0, 1)) +
                 "; stop the other tenantsync (or pg_recvlogical) using it first");
  }
  if (exists && !options.slot_may_exist) {
    f->push_back("source: replication slot " + slot +
                 " already exists; drop it (SELECT pg_drop_replication_slot('" + slot +
                 "')) or set source.slot to another name");
  }
  if (!exists && std::atoi(std::string(slots->Get(0, 0)).c_str()) <= 0) {
    f->push_back("source: no free replication slot (all max_replication_slots are used); raise "
                 "max_replication_slots and restart, or drop an unused slot");
  }
  if (std::atoi(std::string(slots->Get(0, 3)).c_str()) <= 0) {
    f->push_back("source: no free wal sender (all max_wal_senders are connected); raise "
                 "max_wal_senders and restart, or stop an idle replication client");
  }
}

void CheckTables(const Config& config, const internal::PlanSet& plan, PgConn& src,
                 std::vector<std::string>* f) {
  for (const auto& e : plan.errors) f->push_back(e);
  const std::string& ss = config.source.schema;
  const std::string& ts = config.target.schema;
  for (const auto& name : plan.order) {
    const internal::TablePlan& tp = plan.tables.at(name);
    const CatalogTable& t = *tp.source;
    if (!t.HasReplicaIdentity()) {
      f->push_back("table " + ss + "." + name +
                   " has no primary key or replica identity, so its updates and deletes can not "
                   "be streamed; add a primary key or run ALTER TABLE " +
                   QuoteQualified(ss, name) + " REPLICA IDENTITY FULL");
    }
    auto priv = src.ExecParams("SELECT has_table_privilege($1, 'SELECT')",
                               {QuoteQualified(ss, name)});
    if (priv.ok() && priv->Get(0, 0) != "t") {
      f->push_back("table " + ss + "." + name + " is not readable by the source role; GRANT " +
                   "SELECT ON " + QuoteQualified(ss, name) + " TO the role in source.url");
    }
    const CatalogTable* existing = plan.target_catalog.FindTable(tp.target_table);
    if (!existing) continue;
    for (const auto& tc : tp.transform->target_columns()) {
      std::string produced = tc.encrypted ? "text" : RepointType(tc.type, ss, ts);
      const CatalogColumn* ec = existing->FindColumn(tc.name);
      if (!ec) {
        f->push_back("target table " + ts + "." + tp.target_table + " has no column " + tc.name +
                     "; run ALTER TABLE " + QuoteQualified(ts, tp.target_table) + " ADD COLUMN " +
                     QuoteIdent(tc.name) + " " + produced);
      } else if (!CompatibleTypes(produced, ec->type)) {
        f->push_back("target column " + ts + "." + tp.target_table + "." + tc.name + " is " +
                     ec->type + " but the mapping produces " + produced + "; run ALTER TABLE " +
                     QuoteQualified(ts, tp.target_table) + " ALTER COLUMN " + QuoteIdent(tc.name) +
                     " TYPE " + produced + ", or add a type: rule for it");
      }
    }
  }
}

}  // namespace

bool CompatibleTypes(const std::string& produced, const std::string& target) {
  if (produced == target) return true;
  std::string pb = BaseType(produced), tb = BaseType(target);
  if (target == "text" || target == "character varying") return true;
  int pr = NumericRank(produced), tr = NumericRank(target);
  if (pr && tr) return tr >= pr && !(pr == 4 && tr == 5);
  if (pb == "json" && tb == "jsonb") return true;
  if (pb == "timestamp without time zone" && tb == "timestamp with time zone") return true;
  return false;
}

StatusOr<std::vector<std::string>> Preflight(const Config& config,
                                             const PreflightOptions& options) {
  std::vector<std::string> f;
  auto src = PgConn::Connect(config.source.url, "tenantsync-check");
  if (!src.ok()) f.push_back("source: " + src.status().message());
  auto dst = PgConn::Connect(config.target.url, "tenantsync-check");
  if (!dst.ok()) f.push_back("target: " + dst.status().message());

  // A missing key is reported once here; the plan is then built with a throwaway key so that
  // the other rules are still checked.
  std::unique_ptr<Cipher> cipher;
  auto loaded = internal::LoadCipher(config);
  if (loaded.ok()) {
    cipher = std::move(loaded).value();
  } else {
    f.push_back(loaded.status().message());
    auto dummy = Cipher::FromBase64Key(Base64Encode(std::string(32, '\0')));
    if (dummy.ok()) cipher = std::make_unique<Cipher>(std::move(dummy).value());
  }
  if (!src.ok()) return f;

  CheckSource(config, options, *src, &f);
  auto plan = internal::LoadPlan(config, *src, dst.ok() ? &*dst : nullptr, cipher.get());
  if (!plan.ok()) {
    f.push_back(plan.status().message());
    return f;
  }
  CheckTables(config, **plan, *src, &f);
  if (dst.ok() && !(*plan)->target_schema_exists) {
    auto r = dst->Exec("SELECT has_database_privilege(current_database(), 'CREATE')");
    if (r.ok() && r->Get(0, 0) != "t") {
      f.push_back("target: schema " + config.target.schema +
                  " does not exist and the target role may not create schemas; GRANT CREATE ON "
                  "DATABASE to it, or create the schema first");
    }
  }
  return f;
}

}  // namespace tenantsync::snapshot
