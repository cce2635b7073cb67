#include "tests/harness/bridge_roles.h"

#include <fstream>
#include <sstream>

#include "core/pg.h"

namespace tenantsync::testing {
namespace {

// CREATE ROLE unless it exists (roles are cluster-wide; the tests of one binary share them).
Status EnsureRole(PgConn& conn, const std::string& role, const std::string& attributes) {
  return conn.Run("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = " +
                  QuoteLiteral(role) + ") THEN CREATE ROLE " + QuoteIdent(role) + " " +
                  attributes + "; END IF; END $$");
}

}  // namespace

std::string SecurityRunbookBlock(const std::string& name) {
  std::ifstream in(std::string(TENANTSYNC_SOURCE_DIR) + "/ops/runbooks/security.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  size_t at = doc.find("<!-- least-privilege:" + name + " -->");
  if (at == std::string::npos) return "";
  size_t open = doc.find("```", at);
  if (open == std::string::npos) return "";
  size_t body = doc.find('\n', open);
  if (body == std::string::npos) return "";
  size_t close = doc.find("\n```", body);
  if (close == std::string::npos) return "";
  return doc.substr(body + 1, close - body);
}

Status GrantBridgeSource(PgCluster& source, const std::string& db, const std::string& publication,
                         const std::string& schema) {
  TS_ASSIGN_OR_RETURN(PgConn conn, source.Connect(db));
  TS_RETURN_IF_ERROR(EnsureRole(conn, kBridgeSourceRole, "LOGIN REPLICATION"));
  const std::string role = QuoteIdent(kBridgeSourceRole);
  TS_ASSIGN_OR_RETURN(
      PgResult tables,
      conn.Exec("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = " + QuoteLiteral(schema) +
                " AND c.relkind IN ('r', 'p') ORDER BY 1"));
  std::string list;
  for (int i = 0; i < tables.rows(); ++i) {
    list += (list.empty() ? "" : ", ") + QuoteQualified(schema, tables.Get(i, 0));
  }
  std::string sql = "GRANT CONNECT ON DATABASE " + QuoteIdent(db) + " TO " + role + ";\n" +
                    "GRANT USAGE ON SCHEMA " + QuoteIdent(schema) + " TO " + role + ";\n" +
                    "GRANT SELECT ON ALL SEQUENCES IN SCHEMA " + QuoteIdent(schema) + " TO " +
                    role + ";\n";
  if (!list.empty()) sql += "GRANT SELECT ON " + list + " TO " + role + ";\n";
  if (!publication.empty()) {
    sql += "CREATE PUBLICATION " + QuoteIdent(publication) +
           (list.empty() ? "" : " FOR TABLE " + list) + ";\n";
  }
  return conn.Run(sql).WithContext("granting " + std::string(kBridgeSourceRole) + " on " + db);
}

Status GrantBridgeTarget(PgCluster& target, const std::string& db,
                         const std::string& tenant_schema) {
  TS_ASSIGN_OR_RETURN(PgConn conn, target.Connect(db));
  TS_RETURN_IF_ERROR(EnsureRole(conn, kBridgeTargetRole, "LOGIN"));
  const std::string role = QuoteIdent(kBridgeTargetRole);
  TS_ASSIGN_OR_RETURN(PgResult orgs,
                      conn.Exec("SELECT to_regclass('public.organizations') IS NULL"));
  if (orgs.Get(0, 0) == "t") {
    // The platform's table, as the runbook documents it (and tenantsync creates it when it may).
    std::string ddl = SecurityRunbookBlock("organizations");
    if (ddl.empty()) {
      return NotFound("ops/runbooks/security.md has no least-privilege:organizations block");
    }
    TS_RETURN_IF_ERROR(conn.Run(ddl));
  }
  return conn
      .Run("GRANT CONNECT ON DATABASE " + QuoteIdent(db) + " TO " + role + ";\n" +
           "CREATE SCHEMA IF NOT EXISTS " + QuoteIdent(tenant_schema) + " AUTHORIZATION " + role +
           ";\n" + "CREATE SCHEMA IF NOT EXISTS _tenantsync AUTHORIZATION " + role + ";\n" +
           "GRANT USAGE ON SCHEMA public TO " + role + ";\n" +
           "GRANT SELECT, INSERT, UPDATE, DELETE ON public.organizations TO " + role + ";\n" +
           "GRANT USAGE ON SEQUENCE public.organizations_id_seq TO " + role + ";\n" +
           "GRANT SET ON PARAMETER session_replication_role TO " + role + ";\n")
      .WithContext("granting " + std::string(kBridgeTargetRole) + " on " + db);
}

}  // namespace tenantsync::testing
