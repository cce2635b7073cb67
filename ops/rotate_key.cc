#include "ops/rotate_key.h"

#include <openssl/crypto.h>

#include <chrono>
#include <cinttypes>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "core/crypto.h"
#include "core/kill_point.h"
#include "core/pg.h"

namespace tenantsync::ops {
namespace {

using Clock = std::chrono::steady_clock;

// Passes over one table before values still under an old key are reported instead of retried:
// a pass leaves only rows the applier held locked at that moment (retried) or rows written
// under an old key meanwhile (a `run` still on the old config: retrying can not help).
constexpr int kMaxPasses = 10;
constexpr auto kPassPause = std::chrono::milliseconds(200);

constexpr const char* kOrganizations = "public.organizations";

struct KeyColumn {
  std::string name;
  std::string type;  // format_type(), for casting the text of the key back
};

struct ColumnTarget {
  std::string name;     // target column
  std::string context;  // "<source table>.<source column>", as the transform engine encrypts
  size_t result = 0;    // index into RotateKeyResult::columns
};

struct TablePlan {
  std::string qualified;       // "tenant_rawdog"."customers", ready for SQL
  std::string display;         // tenant_rawdog.customers
  std::vector<KeyColumn> key;  // the primary key; empty: ctid order
  std::vector<ColumnTarget> columns;
};

// A value that needs re-encryption: tenantsync ciphertext under a key id other than `current`.
std::string NeedsRotation(const std::string& column, const std::string& current_prefix) {
  return "(" + column + " LIKE 'tsenc1:________:%' AND left(" + column + ", 16) <> " +
         QuoteLiteral(current_prefix) + ")";
}

// Rolls back an open transaction after a failure; the failure is what the caller reports.
void RollbackQuietly(PgConn& conn) {
  conn.Run("ROLLBACK").IgnoreError();  // the connection may be gone; the server rolls back then
}

std::string KeyIdList(const std::vector<std::string>& ids) {
  std::string s;
  for (const auto& id : ids) s += (s.empty() ? "" : ", ") + id;
  return s;
}

class Rotator {
 public:
  Rotator(const Config& config, const RotateKeyOptions& options, Cipher cipher, PgConn conn)
      : config_(config), options_(options), cipher_(std::move(cipher)), conn_(std::move(conn)) {
    current_prefix_ = "tsenc1:" + cipher_.key_id() + ":";
    result_.dry_run = options.dry_run;
    result_.key_id = cipher_.key_id();
    std::vector<std::string> ids = cipher_.key_ids();
    result_.previous_ids.assign(ids.begin() + 1, ids.end());
  }

  StatusOr<RotateKeyResult> Run() {
    auto start = Clock::now();
    TS_RETURN_IF_ERROR(PlanTables());
    for (TablePlan& t : tables_) TS_RETURN_IF_ERROR(Survey(t));
    TS_RETURN_IF_ERROR(SurveyOrganization());
    // Nothing is written before every value's key is known to be configured (invariant 10).
    for (const RotatedColumn& c : result_.columns) {
      for (const auto& [id, n] : c.pending_by_key_id) {
        if (cipher_.HasKey(id)) continue;
        return NotFound("rotate-key: " + c.table + "." + c.column + ": " + std::to_string(n) +
                        " value(s) are encrypted with key id " + id +
                        ", which is not configured (configured: " + KeyIdList(cipher_.key_ids()) +
                        "); add that key to encryption.previous_keys and run rotate-key again; "
                        "nothing was changed");
      }
    }
    if (!options_.dry_run) {
      for (const TablePlan& t : tables_) TS_RETURN_IF_ERROR(RotateTable(t));
      if (org_result_) TS_RETURN_IF_ERROR(RotateOrganization());
    }
    result_.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return result_;
  }

 private:
  // The config's encrypted columns, checked against the target's catalogs.
  Status PlanTables() {
    const std::string& schema = config_.target.schema;
    for (const auto& [source_table, table] : config_.tables) {
      if (table.skip) continue;
      TablePlan plan;
      for (const auto& [source_column, rule] : table.columns) {
        if (!rule.encrypt) continue;
        ColumnTarget col;
        col.name = rule.rename.empty() ? source_column : rule.rename;
        col.context = source_table + "." + source_column;
        plan.columns.push_back(std::move(col));
      }
      if (plan.columns.empty()) continue;
      const std::string target_table = config_.TargetTable(source_table);
      plan.qualified = QuoteQualified(schema, target_table);
      plan.display = schema + "." + target_table;
      TS_ASSIGN_OR_RETURN(PgResult rel,
                          conn_.ExecParams("SELECT to_regclass($1)::oid", {plan.qualified}));
      if (rel.rows() != 1 || rel.IsNull(0, 0)) {
        return FailedPrecondition("rotate-key: target table " + plan.display +
                                  " does not exist; run the snapshot first (tables." +
                                  source_table + " encrypts columns)");
      }
      std::string oid(rel.Get(0, 0));
      for (ColumnTarget& col : plan.columns) {
        TS_ASSIGN_OR_RETURN(
            PgResult a,
            conn_.ExecParams("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                             "WHERE attrelid = $1::oid AND attname = $2 AND attnum > 0 AND "
                             "NOT attisdropped",
                             {oid, col.name}));
        if (a.rows() != 1) {
          return FailedPrecondition("rotate-key: " + plan.display + " has no column " + col.name +
                                    " (tables." + col.context +
                                    " is encrypted); run the "
                                    "snapshot first or fix the config");
        }
        std::string type(a.Get(0, 0));
        if (type != "text" && type.rfind("character varying", 0) != 0) {
          return FailedPrecondition("rotate-key: " + plan.display + "." + col.name + " is " + type +
                                    ", not text; an encrypted column is stored as text");
        }
        col.result = result_.columns.size();
        RotatedColumn rc;
        rc.table = plan.display;
        rc.column = col.name;
        rc.context = col.context;
        result_.columns.push_back(std::move(rc));
      }
      TS_ASSIGN_OR_RETURN(
          PgResult key,
          conn_.ExecParams(
              "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_index i "
              "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
              "WHERE i.indrelid = $1::oid AND i.indisprimary "
              "ORDER BY array_position(i.indkey::int2[], a.attnum)",
              {oid}));
      for (int i = 0; i < key.rows(); ++i) {
        plan.key.push_back({std::string(key.Get(i, 0)), std::string(key.Get(i, 1))});
      }
      tables_.push_back(std::move(plan));
    }
    return Status::Ok();
  }

  // Counts, per column, the values under another key id (by id) and the non-ciphertext ones.
  Status Survey(const TablePlan& t) {
    for (const ColumnTarget& col : t.columns) {
      const std::string c = QuoteIdent(col.name);
      TS_ASSIGN_OR_RETURN(
          PgResult r,
          conn_.Exec("SELECT CASE WHEN " + c + " LIKE 'tsenc1:________:%' THEN substr(" + c +
                     ", 8, 8) END, count(*) FROM " + t.qualified + " WHERE " + c +
                     " IS NOT NULL AND left(" + c + ", 16) <> " + QuoteLiteral(current_prefix_) +
                     " GROUP BY 1"));
      RotatedColumn& rc = result_.columns[col.result];
      for (int i = 0; i < r.rows(); ++i) {
        TS_ASSIGN_OR_RETURN(int64_t n, r.GetInt(i, 1));
        if (r.IsNull(i, 0)) {
          rc.not_ciphertext += n;
        } else {
          rc.pending_by_key_id[std::string(r.Get(i, 0))] += n;
        }
      }
    }
    return Status::Ok();
  }

  Status SurveyOrganization() {
    TS_ASSIGN_OR_RETURN(PgResult rel, conn_.Exec("SELECT to_regclass('public.organizations')"));
    if (rel.rows() != 1 || rel.IsNull(0, 0)) return Status::Ok();  // no organization yet
    TS_ASSIGN_OR_RETURN(
        PgResult r,
        conn_.ExecParams("SELECT secrets::text FROM public.organizations WHERE slug = $1",
                         {config_.tenant.slug}));
    if (r.rows() != 1 || r.IsNull(0, 0)) return Status::Ok();
    RotatedColumn rc;
    rc.table = kOrganizations;
    rc.column = "secrets";
    rc.context = "organizations.secrets (slug " + config_.tenant.slug + ")";
    TS_ASSIGN_OR_RETURN(nlohmann::json secrets, ParseSecrets(r.Get(0, 0)));
    for (const auto& [name, value] : secrets.items()) {
      if (!value.is_string()) {
        ++rc.not_ciphertext;
        continue;
      }
      std::string_view id = Cipher::KeyIdOf(value.get_ref<const std::string&>());
      if (id.empty()) {
        ++rc.not_ciphertext;
      } else if (id != cipher_.key_id()) {
        ++rc.pending_by_key_id[std::string(id)];
      }
    }
    org_result_ = result_.columns.size();
    result_.columns.push_back(std::move(rc));
    return Status::Ok();
  }

  static StatusOr<nlohmann::json> ParseSecrets(std::string_view text) {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return Corruption("rotate-key: public.organizations.secrets is not a JSON object");
    }
    return j;
  }

  // Decrypts `value` (under an old key) and encrypts it with the current key.
  StatusOr<std::string> Reencrypt(const std::string& value, const std::string& context,
                                  const std::string& where) {
    StatusOr<std::string> plain = cipher_.Decrypt(value, context);
    if (!plain.ok()) return plain.status().WithContext("rotate-key: " + where);
    StatusOr<std::string> fresh = cipher_.Encrypt(*plain, context);
    OPENSSL_cleanse(plain->data(), plain->size());
    if (!fresh.ok()) return fresh.status().WithContext("rotate-key: " + where);
    return fresh;
  }

  // Keyset passes over one table until no value under an old key is left (see the header).
  Status RotateTable(const TablePlan& t) {
    int64_t pending = 0;
    for (const ColumnTarget& col : t.columns) {
      for (const auto& [id, n] : result_.columns[col.result].pending_by_key_id) pending += n;
    }
    if (pending == 0) return Status::Ok();
    const bool by_ctid = t.key.empty();
    std::string need;
    for (const ColumnTarget& col : t.columns) {
      need += (need.empty() ? "" : " OR ") +
              NeedsRotation("_ts_r." + QuoteIdent(col.name), current_prefix_);
    }
    // SELECT: key as text, then the encrypted columns.
    // Columns are qualified with the table's alias: an unqualified name in ORDER BY would
    // mean the output column of the same name, the key's text (found by the kill-point test:
    // ids came in the order 1, 10, 100, ...).
    std::string key_list, key_text, key_params;
    if (by_ctid) {
      key_list = "_ts_r.ctid";
      key_text = "_ts_r.ctid::text";
      key_params = "$1::tid";
    } else {
      for (size_t i = 0; i < t.key.size(); ++i) {
        std::string k = "_ts_r." + QuoteIdent(t.key[i].name);
        key_list += (i ? ", " : "") + k;
        key_text += (i ? ", " : "") + k + "::text";
        key_params += (i ? ", " : "") + ("$" + std::to_string(i + 1)) + "::" + t.key[i].type;
      }
    }
    const size_t nkey = by_ctid ? 1 : t.key.size();
    std::string cols;
    for (const ColumnTarget& col : t.columns) cols += ", _ts_r." + QuoteIdent(col.name);
    const std::string select_tail = " FROM " + t.qualified + " AS _ts_r WHERE ";
    const std::string order = " ORDER BY " + key_list + " LIMIT " +
                              std::to_string(options_.batch_rows) + " FOR UPDATE SKIP LOCKED";
    const std::string first_select =
        "SELECT " + key_text + cols + select_tail + "(" + need + ")" + order;
    const std::string next_select = "SELECT " + key_text + cols + select_tail + "(" + key_list +
                                    ") > (" + key_params + ") AND (" + need + ")" + order;
    // UPDATE from the batch as a JSON recordset: one statement per batch. Every column is
    // guarded with the value read, although the row lock already keeps it.
    std::string rec = "i int", set, where;
    for (size_t k = 0; k < nkey; ++k) {
      rec += ", k" + std::to_string(k) + " text";
      where += (k ? " AND " : "") + (by_ctid ? std::string("_ts_t.ctid = _ts_v.k0::tid")
                                             : "_ts_t." + QuoteIdent(t.key[k].name) + " = _ts_v.k" +
                                                   std::to_string(k) + "::" + t.key[k].type);
    }
    for (size_t c = 0; c < t.columns.size(); ++c) {
      std::string q = QuoteIdent(t.columns[c].name), n = std::to_string(c);
      rec += ", o" + n + " text, n" + n + " text";
      set += (c ? ", " : "") + q + " = COALESCE(_ts_v.n" + n + ", _ts_t." + q + ")";
      where += " AND _ts_t." + q + " IS NOT DISTINCT FROM _ts_v.o" + n;
    }
    const std::string update = "UPDATE " + t.qualified + " AS _ts_t SET " + set +
                               " FROM jsonb_to_recordset($1::jsonb) AS _ts_v(" + rec + ") WHERE " +
                               where + " RETURNING _ts_v.i";

    int64_t done_in_table = 0;
    auto last_progress = Clock::now();
    for (int pass = 1;; ++pass) {
      std::optional<std::vector<std::string>> after;  // keyset cursor
      for (;;) {
        if (options_.cancel != nullptr && options_.cancel->load()) {
          return Cancelled("rotate-key: stopped by a signal after " +
                           std::to_string(result_.reencrypted()) +
                           " value(s) were re-encrypted; run rotate-key again to finish");
        }
        TS_RETURN_IF_ERROR(conn_.Run("BEGIN"));
        std::vector<std::optional<std::string>> params;
        if (after) params.assign(after->begin(), after->end());
        StatusOr<PgResult> rows = conn_.ExecParams(after ? next_select : first_select, params);
        if (!rows.ok()) {
          RollbackQuietly(conn_);
          return rows.status().WithContext("rotate-key: reading " + t.display);
        }
        if (rows->rows() == 0) {
          TS_RETURN_IF_ERROR(conn_.Run("COMMIT"));
          break;
        }
        nlohmann::json batch = nlohmann::json::array();
        // Per batch row, which columns it re-encrypts (for exact per-column counts).
        std::vector<std::vector<size_t>> changed(static_cast<size_t>(rows->rows()));
        for (int r = 0; r < rows->rows(); ++r) {
          nlohmann::json rec_json = {{"i", r}};
          for (size_t k = 0; k < nkey; ++k) {
            rec_json["k" + std::to_string(k)] = std::string(rows->Get(r, static_cast<int>(k)));
          }
          for (size_t c = 0; c < t.columns.size(); ++c) {
            int field = static_cast<int>(nkey + c);
            std::string n = std::to_string(c);
            std::optional<std::string> old = rows->GetOptional(r, field);
            rec_json["o" + n] = old ? nlohmann::json(*old) : nlohmann::json(nullptr);
            rec_json["n" + n] = nullptr;
            if (!old || !Cipher::LooksEncrypted(*old) ||
                old->compare(0, current_prefix_.size(), current_prefix_) == 0) {
              continue;
            }
            // The row's key names it in an error (keys are not secret: dead letters show them
            // too); the value never does.
            std::string row_key;
            for (size_t k = 0; k < nkey; ++k) {
              row_key += (k ? ", " : "") + std::string(rows->Get(r, static_cast<int>(k)));
            }
            if (row_key.size() > 80) row_key = row_key.substr(0, 80) + "...";
            StatusOr<std::string> fresh =
                Reencrypt(*old, t.columns[c].context,
                          t.display + "." + t.columns[c].name + " (row " +
                              (by_ctid ? "ctid " : "key ") + row_key + ")");
            if (!fresh.ok()) {
              RollbackQuietly(conn_);
              return fresh.status();
            }
            rec_json["n" + n] = std::move(fresh).value();
            changed[static_cast<size_t>(r)].push_back(c);
          }
          batch.push_back(std::move(rec_json));
        }
        std::string batch_text;
        try {
          batch_text = batch.dump();
        } catch (const nlohmann::json::exception&) {
          RollbackQuietly(conn_);
          return Fatal(
              "rotate-key: " + t.display +
              ": a key value is not valid UTF-8; rotate-key needs a UTF-8 target database");
        }
        StatusOr<PgResult> updated = conn_.ExecParams(update, {batch_text});
        if (!updated.ok()) {
          RollbackQuietly(conn_);
          return updated.status().WithContext("rotate-key: updating " + t.display);
        }
        KillPoint("rotate_key.before_batch_commit");
        TS_RETURN_IF_ERROR_CTX(conn_.Run("COMMIT"),
                               "rotate-key: committing a batch of " + t.display);
        KillPoint("rotate_key.after_batch_commit");
        ++result_.batches;
        for (int u = 0; u < updated->rows(); ++u) {
          TS_ASSIGN_OR_RETURN(int64_t i, updated->GetInt(u, 0));
          if (i < 0 || static_cast<size_t>(i) >= changed.size()) continue;
          for (size_t c : changed[static_cast<size_t>(i)]) {
            ++result_.columns[t.columns[c].result].reencrypted;
            ++done_in_table;
          }
          ++result_.rows_updated;
        }
        int last = rows->rows() - 1;
        std::vector<std::string> cursor;
        for (size_t k = 0; k < nkey; ++k) cursor.emplace_back(rows->Get(last, static_cast<int>(k)));
        after = std::move(cursor);
        if (options_.progress != nullptr &&
            std::chrono::duration<double>(Clock::now() - last_progress).count() >=
                options_.progress_seconds) {
          last_progress = Clock::now();
          std::fprintf(options_.progress,
                       "rotate-key: %s: %" PRId64 " of %" PRId64 " value(s) re-encrypted\n",
                       t.display.c_str(), done_in_table, pending);
          std::fflush(options_.progress);
        }
      }
      // What the pass left: rows the applier held locked (skipped), or values written under an
      // old key since the survey.
      TS_ASSIGN_OR_RETURN(PgResult left, conn_.Exec("SELECT count(*) FROM " + t.qualified +
                                                    " AS _ts_r WHERE " + need));
      TS_ASSIGN_OR_RETURN(int64_t remaining, left.GetInt(0, 0));
      if (remaining == 0) break;
      if (pass >= kMaxPasses) {
        return FailedPrecondition(
            "rotate-key: " + t.display + ": " + std::to_string(remaining) +
            " row(s) still hold values under an old key after " + std::to_string(pass) +
            " passes; a `run` or `stream` still using the old encryption.key writes them: "
            "restart it with the new config and run rotate-key again");
      }
      std::this_thread::sleep_for(kPassPause);
    }
    return Status::Ok();
  }

  // The tenant's secrets: one JSON object in one row, re-encrypted in one transaction.
  Status RotateOrganization() {
    RotatedColumn& rc = result_.columns[*org_result_];
    int64_t pending = 0;
    for (const auto& [id, n] : rc.pending_by_key_id) pending += n;
    if (pending == 0) return Status::Ok();
    TS_RETURN_IF_ERROR(conn_.Run("BEGIN"));
    Status st = RotateOrganizationInTransaction(rc);
    if (!st.ok()) {
      RollbackQuietly(conn_);
      return st;
    }
    return Status::Ok();
  }

  Status RotateOrganizationInTransaction(RotatedColumn& rc) {
    TS_ASSIGN_OR_RETURN(
        PgResult r, conn_.ExecParams(
                        "SELECT secrets::text FROM public.organizations WHERE slug = $1 FOR UPDATE",
                        {config_.tenant.slug}));
    if (r.rows() != 1 || r.IsNull(0, 0)) return conn_.Run("COMMIT");
    std::string old_text(r.Get(0, 0));
    TS_ASSIGN_OR_RETURN(nlohmann::json secrets, ParseSecrets(old_text));
    int64_t changed = 0;
    for (auto& [name, value] : secrets.items()) {
      if (!value.is_string()) continue;
      const std::string& text = value.get_ref<const std::string&>();
      if (!Cipher::LooksEncrypted(text) ||
          text.compare(0, current_prefix_.size(), current_prefix_) == 0) {
        continue;
      }
      TS_ASSIGN_OR_RETURN(std::string fresh,
                          Reencrypt(text, "organizations.secrets." + name,
                                    std::string(kOrganizations) + ".secrets." + name));
      value = std::move(fresh);
      ++changed;
    }
    if (changed == 0) return conn_.Run("COMMIT");
    TS_ASSIGN_OR_RETURN(
        PgResult u,
        conn_.ExecParams("UPDATE public.organizations SET secrets = $2::jsonb, updated_at = now() "
                         "WHERE slug = $1 AND secrets = $3::jsonb",
                         {config_.tenant.slug, secrets.dump(), old_text}));
    KillPoint("rotate_key.before_batch_commit");
    TS_RETURN_IF_ERROR(conn_.Run("COMMIT"));
    KillPoint("rotate_key.after_batch_commit");
    ++result_.batches;
    if (std::string_view(PQcmdTuples(u.get())) == "1") {
      rc.reencrypted += changed;
      ++result_.rows_updated;
    }
    return Status::Ok();
  }

  const Config& config_;
  const RotateKeyOptions& options_;
  Cipher cipher_;
  PgConn conn_;
  std::string current_prefix_;  // "tsenc1:<current key id>:"
  std::vector<TablePlan> tables_;
  std::optional<size_t> org_result_;  // index of the organization's secrets in result_.columns
  RotateKeyResult result_;
};

}  // namespace

int64_t RotateKeyResult::pending() const {
  int64_t n = 0;
  for (const auto& c : columns) {
    for (const auto& [id, count] : c.pending_by_key_id) n += count;
  }
  return n;
}

int64_t RotateKeyResult::reencrypted() const {
  int64_t n = 0;
  for (const auto& c : columns) n += c.reencrypted;
  return n;
}

std::string RotateKeyResult::ToText() const {
  std::ostringstream o;
  o << "rotate-key" << (dry_run ? " (dry run)" : "") << ": current key id " << key_id;
  if (!previous_ids.empty()) o << ", previous key id(s) " << KeyIdList(previous_ids);
  o << "\n";
  for (const auto& c : columns) {
    std::string name = c.table + "." + c.column;
    int64_t pending = 0;
    std::string by_id;
    for (const auto& [id, n] : c.pending_by_key_id) {
      pending += n;
      by_id += (by_id.empty() ? "" : ", ") + id + ": " + std::to_string(n);
    }
    o << "  " << name << ": ";
    if (dry_run) {
      o << pending << " to re-encrypt";
    } else {
      o << c.reencrypted << " re-encrypted";
    }
    if (!by_id.empty()) o << " (under key id " << by_id << ")";
    if (c.not_ciphertext > 0) o << ", " << c.not_ciphertext << " not tenantsync ciphertext (left)";
    o << "\n";
  }
  if (columns.empty()) o << "  (the config encrypts no column and the tenant has no secrets)\n";
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.1f", seconds);
  if (dry_run) {
    o << "rotate-key (dry run): " << pending() << " value(s) would be re-encrypted with key id "
      << key_id << "; nothing was changed\n";
  } else {
    o << "rotate-key: " << reencrypted() << " value(s) re-encrypted in " << rows_updated
      << " row(s), " << batches << " transaction(s), " << secs
      << " s; every encrypted value is under key id " << key_id << "\n";
  }
  return o.str();
}

nlohmann::json RotateKeyResult::ToJson() const {
  nlohmann::json cols = nlohmann::json::array();
  for (const auto& c : columns) {
    cols.push_back({{"table", c.table},
                    {"column", c.column},
                    {"pending_by_key_id", c.pending_by_key_id},
                    {"not_ciphertext", c.not_ciphertext},
                    {"reencrypted", c.reencrypted}});
  }
  return {{"dry_run", dry_run},
          {"key_id", key_id},
          {"previous_key_ids", previous_ids},
          {"columns", cols},
          {"pending", pending()},
          {"reencrypted", reencrypted()},
          {"rows_updated", rows_updated},
          {"batches", batches},
          {"seconds", seconds}};
}

StatusOr<RotateKeyResult> RotateKey(const Config& config, const RotateKeyOptions& options) {
  if (options.batch_rows < 1) return InvalidArgument("rotate-key: --batch-rows must be at least 1");
  StatusOr<Cipher> cipher = Cipher::FromConfig(config.encryption);
  if (!cipher.ok()) return cipher.status().WithContext("rotate-key");
  TS_ASSIGN_OR_RETURN(PgConn conn, PgConn::Connect(config.target.url, "tenantsync rotate-key"));
  Rotator rotator(config, options, std::move(cipher).value(), std::move(conn));
  StatusOr<RotateKeyResult> result = rotator.Run();
  if (result.ok() && !options.report_path.empty()) {
    std::ofstream out(options.report_path, std::ios::trunc);
    out << result->ToJson().dump(2) << "\n";
    if (!out) {
      return Fatal("rotate-key: can not write the report to " + options.report_path +
                   "; the keys were rotated (run again with another --report to get it)");
    }
  }
  return result;
}

}  // namespace tenantsync::ops
