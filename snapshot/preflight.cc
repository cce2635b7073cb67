#include "snapshot/preflight.h"

#include <algorithm>
#include <map>

#include "core/pg.h"
#include "snapshot/catalog.h"
#include "snapshot/internal/plan.h"
#include "snapshot/internal/publication.h"

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

// Returns whether the source role may replicate (then the publication is checked too).
bool CheckSource(const Config& config, const PreflightOptions& options, PgConn& src,
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
      "SELECT current_user, rolreplication OR rolsuper, current_database() FROM pg_roles "
      "WHERE rolname = current_user");
  bool may_replicate = true;
  if (role.ok() && role->rows() == 1 && role->Get(0, 1) != "t") {
    std::string user(role->Get(0, 0));
    may_replicate = false;
    f->push_back("source: role " + user + " may not replicate (no REPLICATION attribute); run " +
                 "ALTER ROLE " + QuoteIdent(user) + " WITH REPLICATION, or connect as a role " +
                 "that has it");
  } else if (role.ok() && role->rows() == 1) {
    // The slot is created over a replication connection, which pg_hba.conf admits separately.
    auto repl = PgConn::Connect(config.source.url, "tenantsync-check", /*replication=*/true);
    Status st = repl.ok() ? repl->Exec("IDENTIFY_SYSTEM").status() : repl.status();
    if (!st.ok()) {
      std::string user(role->Get(0, 0)), db(role->Get(0, 2));
      f->push_back("source: replication connection failed (" + st.message() +
                   "); pg_hba.conf must admit it, and a logical replication connection matches "
                   "the database name, not the keyword replication: add e.g. host " + db + " " +
                   user + " <client address>/32 scram-sha-256 and run SELECT pg_reload_conf()");
    }
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
    return may_replicate;
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
  return may_replicate;
}

// `role_checks`: also the role's privileges on the sequences (see Preflight for when not).
void CheckTables(const Config& config, const internal::PlanSet& plan, PgConn& src,
                 bool role_checks, std::vector<std::string>* f) {
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
    auto priv = src.ExecParams("SELECT has_table_privilege($1, 'SELECT'), current_user",
                               {QuoteQualified(ss, name)});
    if (priv.ok() && priv->Get(0, 0) != "t") {
      f->push_back("table " + ss + "." + name + " is not readable by source role " +
                   std::string(priv->Get(0, 1)) + "; run as its owner: GRANT SELECT ON " +
                   QuoteQualified(ss, name) + " TO " + QuoteIdentIfNeeded(std::string(priv->Get(0, 1))));
    }
    // The snapshot and the cutover copy the positions of the columns' sequences.
    for (const auto& c : t.columns) {
      if (!role_checks || c.sequence.empty()) continue;
      auto seq = src.ExecParams("SELECT has_sequence_privilege($1, 'SELECT'), current_user",
                                {c.sequence});
      if (seq.ok() && seq->Get(0, 0) != "t") {
        f->push_back("sequence " + c.sequence + " (of " + ss + "." + name + "." + c.name +
                     ") is not readable by source role " + std::string(seq->Get(0, 1)) +
                     ", so its position can not be copied; run as its owner: GRANT SELECT ON "
                     "SEQUENCE " + c.sequence + " TO " + QuoteIdentIfNeeded(std::string(seq->Get(0, 1))));
      }
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

// What the target role needs (ops/runbooks/security.md, "Least-privilege roles"): create tables in
// the tenant schema and in _tenantsync (or create them), the tenant's row in
// public.organizations, and SET session_replication_role when the applier uses `replica`.
void CheckTarget(const Config& config, const internal::PlanSet& plan, PgConn& dst,
                 std::vector<std::string>* f) {
  auto r = dst.ExecParams(
      "SELECT current_user, has_database_privilege(current_database(), 'CREATE'), "
      "  (SELECT has_schema_privilege(oid, 'CREATE') AND has_schema_privilege(oid, 'USAGE') "
      "     FROM pg_namespace WHERE nspname = $1), "
      "  (SELECT has_schema_privilege(oid, 'CREATE') AND has_schema_privilege(oid, 'USAGE') "
      "     FROM pg_namespace WHERE nspname = '_tenantsync'), "
      "  to_regclass('public.organizations') IS NOT NULL, "
      "  (SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = 'public'), "
      "  (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
      {config.target.schema});
  if (!r.ok()) {
    f->push_back("target: cannot read the role's privileges: " + r.status().message());
    return;
  }
  const std::string user(r->Get(0, 0));
  const std::string role = QuoteIdentIfNeeded(user);
  const bool may_create_schemas = r->Get(0, 1) == "t";
  const bool superuser = r->Get(0, 6) == "t";
  const std::string& ts = config.target.schema;
  if (!plan.target_schema_exists || r->IsNull(0, 2)) {
    if (!may_create_schemas) {
      f->push_back("target: schema " + ts + " does not exist and role " + user +
                   " may not create schemas; run as a superuser: CREATE SCHEMA " + QuoteIdent(ts) +
                   " AUTHORIZATION " + role);
    }
  } else if (r->Get(0, 2) != "t") {
    f->push_back("target: role " + user + " may not create tables in schema " + ts +
                 "; run as a superuser: ALTER SCHEMA " + QuoteIdent(ts) + " OWNER TO " + role);
  }
  if (r->IsNull(0, 3)) {
    if (!may_create_schemas) {
      f->push_back("target: schema _tenantsync (tenantsync's progress and snapshot markers) does "
                   "not exist and role " + user + " may not create schemas; run as a superuser: "
                   "CREATE SCHEMA _tenantsync AUTHORIZATION " + role);
    }
  } else if (r->Get(0, 3) != "t") {
    f->push_back("target: role " + user + " may not create tables in schema _tenantsync; run as a "
                 "superuser: ALTER SCHEMA _tenantsync OWNER TO " + role);
  }
  if (r->Get(0, 4) != "t") {
    if (r->Get(0, 5) != "t") {
      f->push_back("target: public.organizations does not exist and role " + user +
                   " may not create it; create it as the platform's owner (DDL in "
                   "ops/runbooks/security.md) or GRANT CREATE ON SCHEMA public TO " + role);
    }
  } else {
    auto t = dst.Exec(
        "SELECT has_table_privilege('public.organizations', 'SELECT'), "
        "  has_table_privilege('public.organizations', 'INSERT'), "
        "  has_table_privilege('public.organizations', 'UPDATE'), "
        "  (SELECT string_agg(s, ', ' ORDER BY s) FROM (SELECT pg_get_serial_sequence("
        "     'public.organizations', attname) s FROM pg_attribute WHERE attrelid = "
        "     'public.organizations'::regclass AND attnum > 0 AND NOT attisdropped) x "
        "   WHERE s IS NOT NULL AND NOT has_sequence_privilege(s, 'USAGE'))");
    if (!t.ok()) {
      f->push_back("target: cannot read the privileges on public.organizations: " +
                   t.status().message());
    } else {
      std::string missing;
      const char* kPrivs[] = {"SELECT", "INSERT", "UPDATE"};
      for (int i = 0; i < 3; ++i) {
        if (t->Get(0, i) != "t") missing += (missing.empty() ? "" : ", ") + std::string(kPrivs[i]);
      }
      if (!missing.empty()) {
        f->push_back("target: role " + user + " lacks " + missing + " on public.organizations "
                     "(the tenant's record); run as its owner: GRANT SELECT, INSERT, UPDATE ON "
                     "public.organizations TO " + role);
      }
      if (!t->IsNull(0, 3)) {
        f->push_back("target: role " + user + " may not use sequence " +
                     std::string(t->Get(0, 3)) + " of public.organizations; run as its owner: "
                     "GRANT USAGE ON SEQUENCE " + std::string(t->Get(0, 3)) + " TO " + role);
      }
    }
  }
  if (config.apply.session_replication_role == "replica" && !superuser) {
    // GRANT SET ON PARAMETER exists from PostgreSQL 15; before, only superusers may set it.
    bool may_set = false;
    if (PQserverVersion(dst.get()) >= 150000) {
      auto p = dst.Exec("SELECT has_parameter_privilege('session_replication_role', 'SET')");
      may_set = p.ok() && p->Get(0, 0) == "t";
    }
    if (!may_set) {
      f->push_back("target: role " + user + " may not SET session_replication_role (the applier "
                   "sets it to replica so target triggers and foreign keys do not fire on "
                   "replicated rows); run as a superuser: GRANT SET ON PARAMETER "
                   "session_replication_role TO " + role +
                   ", or set apply.session_replication_role: origin");
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

  const bool may_replicate = CheckSource(config, options, *src, &f);
  auto plan = internal::LoadPlan(config, *src, dst.ok() ? &*dst : nullptr, cipher.get());
  if (!plan.ok()) {
    f.push_back(plan.status().message());
    return f;
  }
  // The sequences and the publication only for a role that may replicate: for one that may not,
  // the fix may well be another role, whose privileges differ; the next check reports them.
  CheckTables(config, **plan, *src, may_replicate, &f);
  if (may_replicate) {
    auto pub = internal::ReadPublicationState(config, (*plan)->order, *src);
    if (!pub.ok()) {
      f.push_back("source: cannot read publication " + config.source.publication + ": " +
                  pub.status().message());
    } else if (!pub->ready() && !pub->role_may_fix) {
      f.push_back(internal::PublicationFailure(config, *pub));
    }
  }
  if (dst.ok()) CheckTarget(config, **plan, *dst, &f);
  return f;
}

}  // namespace tenantsync::snapshot
