#include "snapshot/internal/publication.h"

#include <algorithm>

namespace tenantsync::snapshot::internal {

namespace {

// Whether the current role has the privileges of the owner of `qualified` (ownership, or
// membership in the owning role, or superuser): what CREATE/ALTER PUBLICATION checks per table.
StatusOr<bool> OwnsTable(PgConn& source, const std::string& qualified) {
  TS_ASSIGN_OR_RETURN(PgResult r,
                      source.ExecParams("SELECT pg_has_role(relowner, 'USAGE') FROM pg_class "
                                        "WHERE oid = to_regclass($1)",
                                        {qualified}));
  return r.rows() == 1 && r.Get(0, 0) == "t";
}

std::string JoinQualified(const std::string& schema, const std::vector<std::string>& tables) {
  std::string out;
  for (const auto& t : tables) out += (out.empty() ? "" : ", ") + QuoteQualified(schema, t);
  return out;
}

}  // namespace

StatusOr<PublicationState> ReadPublicationState(const Config& config,
                                                const std::vector<std::string>& tables,
                                                PgConn& source) {
  const std::string& pub = config.source.publication;
  const std::string& ss = config.source.schema;
  PublicationState st;
  TS_ASSIGN_OR_RETURN(PgResult role,
                      source.Exec("SELECT current_user, has_database_privilege("
                                  "current_database(), 'CREATE')"));
  st.role = std::string(role.Get(0, 0));
  const bool may_create = role.Get(0, 1) == "t";
  TS_ASSIGN_OR_RETURN(PgResult r, source.ExecParams(
      "SELECT pubowner::regrole::text, puballtables, pubinsert, pubupdate, pubdelete, "
      "pubtruncate, pg_has_role(pubowner, 'USAGE') FROM pg_publication WHERE pubname = $1",
      {pub}));
  std::vector<std::string> missing(tables.begin(), tables.end());
  std::sort(missing.begin(), missing.end());
  bool owns_publication = false;
  if (r.rows() == 1) {
    st.exists = true;
    st.owner = std::string(r.Get(0, 0));
    owns_publication = r.Get(0, 6) == "t";
    const char* kActions[] = {"insert", "update", "delete", "truncate"};
    for (int i = 0; i < 4; ++i) {
      // Without truncate a source TRUNCATE is lost; that only matters unless it is ignored.
      if (i == 3 && config.apply.truncate == TruncatePolicy::kIgnore) continue;
      if (r.Get(0, 2 + i) != "t") st.missing_actions.push_back(kActions[i]);
    }
    if (r.Get(0, 1) == "t") {
      missing.clear();
    } else {
      TS_ASSIGN_OR_RETURN(PgResult have, source.ExecParams(
          "SELECT tablename FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2",
          {pub, ss}));
      for (int i = 0; i < have.rows(); ++i) {
        std::erase(missing, std::string(have.Get(i, 0)));
      }
    }
  }
  st.missing_tables = missing;
  bool owns_tables = true;
  for (const auto& t : st.exists ? missing : std::vector<std::string>(tables)) {
    TS_ASSIGN_OR_RETURN(bool owns, OwnsTable(source, QuoteQualified(ss, t)));
    owns_tables = owns_tables && owns;
  }
  const std::string q = QuoteIdent(pub);
  if (!st.exists) {
    st.role_may_fix = may_create && owns_tables;
    st.fix = missing.empty() ? "CREATE PUBLICATION " + q
                             : "CREATE PUBLICATION " + q + " FOR TABLE " + JoinQualified(ss, missing);
  } else {
    st.role_may_fix = owns_publication && owns_tables;
    std::vector<std::string> fixes;
    if (!missing.empty()) {
      fixes.push_back("ALTER PUBLICATION " + q + " ADD TABLE " + JoinQualified(ss, missing));
    }
    if (!st.missing_actions.empty()) {
      fixes.push_back("ALTER PUBLICATION " + q + " SET (publish = 'insert, update, delete" +
                      std::string(config.apply.truncate == TruncatePolicy::kIgnore
                                      ? "" : ", truncate") + "')");
    }
    for (const auto& f : fixes) st.fix += (st.fix.empty() ? "" : "; ") + f;
  }
  return st;
}

std::string PublicationFailure(const Config& config, const PublicationState& st) {
  const std::string& pub = config.source.publication;
  const std::string& ss = config.source.schema;
  if (!st.exists) {
    return "source: publication " + pub + " does not exist and role " + st.role +
           " may not create it (CREATE PUBLICATION ... FOR TABLE needs the owner of every "
           "table); run as a superuser: " + st.fix;
  }
  std::string what;
  if (!st.missing_tables.empty()) {
    std::string list;
    for (const auto& t : st.missing_tables) list += (list.empty() ? "" : ", ") + ss + "." + t;
    what = "does not publish " + list;
  }
  if (!st.missing_actions.empty()) {
    std::string list;
    for (const auto& a : st.missing_actions) list += (list.empty() ? "" : ", ") + a;
    what += (what.empty() ? "" : " and ") + std::string("does not publish ") + list +
            " changes";
  }
  return "source: publication " + pub + " (owner " + st.owner + ") " + what + "; run as " +
         st.owner + " or a superuser: " + st.fix;
}

}  // namespace tenantsync::snapshot::internal
