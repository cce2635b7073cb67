#include "validate/internal/checks.h"

#include <algorithm>

#include "core/pg.h"
#include "core/transform.h"
#include "validate/internal/rows.h"

namespace tenantsync::validate::internal {

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

CheckResult NewResult(const std::string& check, const TablePlan& plan) {
  CheckResult r;
  r.check = check;
  r.table = plan.target_table;
  r.source_table = plan.source_table;
  return r;
}

using Values = std::vector<std::optional<std::string>>;

}  // namespace

void AddRowVerdict(CheckResult* result, const RowDifference& diff, Verdict verdict, int max_rows) {
  if (verdict == Verdict::kSame) return;
  RowDifference d = diff;
  if (verdict == Verdict::kUnverified) {
    d.kind = RowDifference::Kind::kUnverified;
    d.details = "the source row kept changing or the applier did not catch up; last seen: " +
                diff.details;
    if (result->status == CheckStatus::kPass) result->status = CheckStatus::kUnverified;
  } else {
    result->status = CheckStatus::kFail;
  }
  ++result->rows_total;
  if (static_cast<int>(result->rows.size()) < max_rows) result->rows.push_back(std::move(d));
}

std::vector<int> SumColumns(const TablePlan& plan, const TableConfig* cfg) {
  std::vector<int> out;
  for (size_t j = 0; j < plan.columns.size(); ++j) {
    const ColumnPlan& c = plan.columns[j];
    if (!c.in_target || c.kind == ColumnKind::kEncrypted || c.kind == ColumnKind::kNow) continue;
    bool wanted;
    if (cfg && !cfg->sum_columns.empty()) {
      std::string source_name = c.source_index >= 0 ? plan.source.columns[c.source_index].name : "";
      wanted = std::find(cfg->sum_columns.begin(), cfg->sum_columns.end(), c.name) !=
                   cfg->sum_columns.end() ||
               (!source_name.empty() &&
                std::find(cfg->sum_columns.begin(), cfg->sum_columns.end(), source_name) !=
                    cfg->sum_columns.end());
    } else {
      wanted = Lower(c.type) == "bigint" && EndsWith(c.name, "_cents");
    }
    if (wanted) out.push_back(static_cast<int>(j));
  }
  return out;
}

CheckResult SchemaCheck(const TablePlan& plan) {
  CheckResult r = NewResult("schema", plan);
  r.source = std::to_string(plan.columns.size()) + " columns mapped";
  if (!plan.target_exists) {
    r.target = "no table";
    r.status = CheckStatus::kFail;
    r.details = "the target has no table " + plan.target_schema + "." + plan.target_table;
    return r;
  }
  r.target = std::to_string(plan.target.columns.size()) + " columns";
  std::vector<std::string> problems;
  for (const ColumnPlan& c : plan.columns) {
    if (!c.in_target) {
      problems.push_back(c.name + " missing");
    } else if (Lower(c.target_type) != Lower(c.type)) {
      problems.push_back(c.name + " is " + c.target_type + ", mapping says " + c.type);
    }
  }
  for (const ColumnInfo& tc : plan.target.columns) {
    bool mapped = std::any_of(plan.columns.begin(), plan.columns.end(),
                              [&](const ColumnPlan& c) { return c.name == tc.name; });
    if (!mapped) problems.push_back(tc.name + " is not in the mapping");
  }
  if (!problems.empty()) {
    r.status = CheckStatus::kFail;
    for (size_t i = 0; i < problems.size(); ++i) r.details += (i ? "; " : "") + problems[i];
  } else {
    r.details = "every column has the mapped type";
  }
  return r;
}

namespace {

// Source aggregate: count, the xmin fingerprint, then one sum per column. A cast column's sum is
// the SQL cast of the values certain to cast alike plus the engine's CastText of the others.
std::string SourceAggregateSql(const TablePlan& plan, const std::vector<int>& sums,
                               bool with_xmin) {
  std::string sql = with_xmin ? "SELECT count(*)::text, sum(xmin::text::bigint)::text"
                              : "SELECT count(*)::text, NULL";
  for (int j : sums) {
    const ColumnPlan& c = plan.columns[j];
    std::string sq = c.source_index >= 0 ? QuoteIdent(plan.source.columns[c.source_index].name)
                                         : std::string("NULL");
    if (c.kind == ColumnKind::kCast && !c.certain_predicate.empty()) {
      sql += ", sum(CASE WHEN " + c.certain_predicate + " THEN btrim(" + sq +
             "::text)::numeric END)::text";
    } else if (c.kind == ColumnKind::kConstant) {
      sql += ", (count(*) * " + QuoteLiteral(c.value.value_or("0")) + "::numeric)::text";
    } else {
      sql += ", sum(" + sq + ")::text";
    }
  }
  return sql + " FROM " + plan.SourceQualified();
}

std::string TargetAggregateSql(const TablePlan& plan, const std::vector<int>& sums) {
  std::string sql = "SELECT count(*)::text, NULL";
  for (int j : sums) sql += ", sum(" + QuoteIdent(plan.columns[j].name) + ")::text";
  return sql + " FROM " + plan.TargetQualified();
}

Values ToValues(const PgResult& r) {
  Values out;
  for (int i = 0; i < r.columns(); ++i) out.push_back(r.GetOptional(0, i));
  return out;
}

// Adds the engine's value of every uncertain value of cast sum columns to the SQL sums in `out`.
Status AddUncertainCastValues(Session& source, const TablePlan& plan,
                              const std::vector<int>& sums, Values* values) {
  Values& out = *values;
  for (size_t k = 0; k < sums.size(); ++k) {
    const ColumnPlan& c = plan.columns[sums[k]];
    if (c.kind != ColumnKind::kCast) continue;
    std::string sq = QuoteIdent(plan.source.columns[c.source_index].name);
    std::string pred = c.certain_predicate.empty() ? "false" : c.certain_predicate;
    // Uncertain values: few (garbage the cast rejects), so they travel to the client.
    TS_ASSIGN_OR_RETURN(PgResult u, source.Query("SELECT " + sq + "::text FROM " +
                                                 plan.SourceQualified() + " WHERE " + sq +
                                                 " IS NOT NULL AND NOT (" + pred + ")"));
    if (u.rows() == 0) continue;
    TS_ASSIGN_OR_RETURN(std::string type, NormalizeCastType(c.type));
    std::vector<std::string> values;
    for (int i = 0; i < u.rows(); ++i) {
      auto cast = CastText(type, u.Get(i, 0));
      if (cast.ok()) {
        values.push_back(*cast);
      } else if (c.on_error) {
        values.push_back(*c.on_error);
      }  // else the pipeline dead-letters the row: it is not in the target's sum either
    }
    TS_ASSIGN_OR_RETURN(PgResult add,
                        source.Query("SELECT (coalesce($1::numeric, 0) + coalesce((SELECT "
                                     "sum(x::numeric) FROM unnest($2::text[]) x), 0))::text",
                                     {out[2 + k], TextArrayLiteral(values)}));
    out[2 + k] = add.GetOptional(0, 0);
  }
  return Status::Ok();
}

StatusOr<Values> ReadSourceAggregates(Session& source, const TablePlan& plan,
                                      const std::vector<int>& sums, bool with_xmin) {
  TS_ASSIGN_OR_RETURN(PgResult r, source.Query(SourceAggregateSql(plan, sums, with_xmin)));
  Values out = ToValues(r);
  TS_RETURN_IF_ERROR(AddUncertainCastValues(source, plan, sums, &out));
  return out;
}

StatusOr<Values> ReadTargetAggregates(Session& target, const TablePlan& plan,
                                      const std::vector<int>& sums) {
  TS_ASSIGN_OR_RETURN(PgResult r, target.Query(TargetAggregateSql(plan, sums)));
  return ToValues(r);
}

bool AggregatesEqual(const Values& s, const Values& t) {
  if (s.size() != t.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 1) continue;  // the xmin fingerprint exists on the source side only
    // A sum over no rows is NULL on one side and may be 0 on the other after engine values.
    std::string a = s[i].value_or("0"), b = t[i].value_or("0");
    if (a != b) return false;
  }
  return true;
}

}  // namespace

StatusOr<std::vector<CheckResult>> CountAndSumChecks(CheckContext& ctx, const TablePlan& plan,
                                                     const std::vector<int>& sums,
                                                     int64_t* source_rows, int64_t* target_rows) {
  std::vector<CheckResult> out;
  CheckResult count = NewResult("count", plan);
  *target_rows = 0;
  if (!plan.target_exists) {
    TS_ASSIGN_OR_RETURN(Values s, ReadSourceAggregates(*ctx.source, plan, sums, false));
    *source_rows = std::stoll(s[0].value_or("0"));
    count.source = s[0].value_or("0");
    count.target = "no table";
    count.status = CheckStatus::kFail;
    count.details = "the target has no table " + plan.target_schema + "." + plan.target_table;
    out.push_back(count);
    return out;
  }
  // Both servers count at once; the xmin fingerprint only when rechecks may need it.
  const bool live = ctx.gate->active();
  TS_ASSIGN_OR_RETURN(auto both, RunBoth(*ctx.source, SourceAggregateSql(plan, sums, live), {},
                                         *ctx.target, TargetAggregateSql(plan, sums), {}));
  Values s = ToValues(both.source);
  Values t = ToValues(both.target);
  TS_RETURN_IF_ERROR(AddUncertainCastValues(*ctx.source, plan, sums, &s));
  Verdict verdict = Verdict::kSame;
  if (!AggregatesEqual(s, t)) {
    ConfirmFns<int, Values, Values> fns;
    fns.read_source = [&](const std::vector<int>&) -> StatusOr<std::map<int, Values>> {
      TS_ASSIGN_OR_RETURN(Values v, ReadSourceAggregates(*ctx.source, plan, sums, true));
      return std::map<int, Values>{{0, std::move(v)}};
    };
    fns.read_target = [&](const std::vector<int>&) -> StatusOr<std::map<int, Values>> {
      TS_ASSIGN_OR_RETURN(Values v, ReadTargetAggregates(*ctx.target, plan, sums));
      return std::map<int, Values>{{0, std::move(v)}};
    };
    fns.same = [](const int&, const Values* a, const Values* b) -> StatusOr<bool> {
      return a && b && AggregatesEqual(*a, *b);
    };
    std::map<int, Values> first_s{{0, s}};
    std::map<int, Values> first_t{{0, t}};
    TS_ASSIGN_OR_RETURN(auto confirmed, Confirm(*ctx.gate, std::vector<int>{0}, first_s, first_t,
                                                fns));
    verdict = confirmed.verdicts[0];
    if (confirmed.source.count(0)) s = confirmed.source[0];
    if (confirmed.target.count(0)) t = confirmed.target[0];
  }
  auto status_of = [&](bool equal) {
    if (equal) return CheckStatus::kPass;
    return verdict == Verdict::kUnverified ? CheckStatus::kUnverified : CheckStatus::kFail;
  };
  count.source = s[0].value_or("0");
  count.target = t[0].value_or("0");
  *source_rows = std::stoll(count.source);
  *target_rows = std::stoll(count.target);
  bool count_equal = count.source == count.target;
  count.status = verdict == Verdict::kSame ? CheckStatus::kPass : status_of(count_equal);
  if (count.status == CheckStatus::kFail) {
    count.details = "row counts differ by " + std::to_string(*target_rows - *source_rows);
  } else if (count.status == CheckStatus::kUnverified) {
    count.details = "counts differed and the source kept changing; not confirmed";
  }
  out.push_back(count);
  for (size_t k = 0; k < sums.size(); ++k) {
    CheckResult sum = NewResult("sum", plan);
    sum.column = plan.columns[sums[k]].name;
    sum.source = s[2 + k].value_or("0");
    sum.target = t[2 + k].value_or("0");
    sum.status = verdict == Verdict::kSame ? CheckStatus::kPass : status_of(sum.source == sum.target);
    if (sum.status == CheckStatus::kFail) {
      sum.details = "sums differ";
    } else if (sum.status == CheckStatus::kUnverified) {
      sum.details = "sums differed and the source kept changing; not confirmed";
    }
    out.push_back(sum);
  }
  return out;
}

StatusOr<int64_t> EstimateSourceRows(Session& source, const TablePlan& plan) {
  TS_ASSIGN_OR_RETURN(PgResult r,
                      source.Query("SELECT greatest(reltuples, 0)::bigint::text FROM pg_class "
                                   "WHERE oid = $1::regclass",
                                   {plan.SourceQualified()}));
  if (r.rows() == 0) return int64_t{0};
  return r.GetInt(0, 0);
}

namespace {

// TABLESAMPLE clause that leaves about 4x the sample to ORDER BY random(), for large tables.
std::string TableSampleClause(int64_t source_rows, int sample_size) {
  if (source_rows > 20 * static_cast<int64_t>(sample_size) && source_rows > 10000) {
    double pct = std::min(100.0, 100.0 * 4.0 * sample_size / static_cast<double>(source_rows));
    return " TABLESAMPLE BERNOULLI (" + std::to_string(pct) + ")";
  }
  return "";
}

// One distinct sampled row of a table without a key.
struct KeylessSample {
  std::string ctid;        // of one source copy, names it in the report
  std::string hash;        // the full diff's row hash (decimal text)
  SourceRow row;           // xmin left empty: the values are what is compared
  bool transforms = true;  // false: the pipeline dead-letters it, the target must have no copy
};

// A sampled row's copies in the source: how many rows have exactly its values, and their
// xmins (sorted), the live recheck's fingerprint.
struct SourceCopies {
  int64_t n = 0;
  std::vector<std::string> xmins;
  bool operator==(const SourceCopies&) const = default;
};

// Rows of the target with a sampled row's hash: candidates, judged by the engine (CompareRow).
using TargetCandidates = std::vector<TargetRow>;

// Samples of a table without a key: N random source rows; for each, the number of source rows
// equal to it must be the number of target rows equal to its transform. Both sides find the
// candidate rows by the full diff's row hash in one scan each (no key, so no index helps); the
// transform engine decides which candidates are equal, so columns the hash leaves out (encrypted,
// `now`, casts SQL can not reproduce) are compared too. Without a key a changed row can only be
// named by the ctid of its source copy; a candidate with the same hash that the engine finds
// different names its columns.
StatusOr<CheckResult> KeylessSampleCheck(CheckContext& ctx, const TablePlan& plan,
                                         int64_t source_rows) {
  CheckResult r = NewResult("sample", plan);
  const ValidateOptions& opt = *ctx.options;
  if (!plan.target_exists) {
    r.status = CheckStatus::kFail;
    r.details = "no target table";
    return r;
  }
  bool hashed = std::any_of(plan.columns.begin(), plan.columns.end(),
                            [](const ColumnPlan& c) { return !c.source_hash_expr.empty(); });
  if (!hashed) {
    r.source = "-";
    r.target = "-";
    r.details = "no key and no column the row hash covers: rows are covered by the counts";
    return r;
  }
  std::string sql = "SELECT t.ctid::text, " + plan.SourceRowHash() + "::text";
  for (const ColumnInfo& c : plan.source.columns) sql += ", t." + QuoteIdent(c.name);
  sql += " FROM " + plan.SourceQualified() + " t" +
         TableSampleClause(source_rows, opt.sample_size) + " ORDER BY random() LIMIT " +
         std::to_string(opt.sample_size);
  TS_ASSIGN_OR_RETURN(PgResult picked, ctx.source->Query(sql));
  std::vector<KeylessSample> samples;
  std::map<std::string, std::vector<size_t>> by_hash;  // indexes into samples
  for (int i = 0; i < picked.rows(); ++i) {
    KeylessSample s;
    s.ctid = std::string(picked.Get(i, 0));
    s.hash = std::string(picked.Get(i, 1));
    for (size_t c = 0; c < plan.source.columns.size(); ++c) {
      int col = 2 + static_cast<int>(c);
      s.row.values.push_back(picked.IsNull(i, col) ? Datum::Null()
                                                   : Datum::Text(std::string(picked.Get(i, col))));
    }
    // Exact duplicates (a keyless table may hold them) are one sample: their copies are counted.
    std::vector<size_t>& same_hash = by_hash[s.hash];
    bool seen = std::any_of(same_hash.begin(), same_hash.end(),
                            [&](size_t o) { return samples[o].row.values == s.row.values; });
    if (seen) continue;
    same_hash.push_back(samples.size());
    Tuple unused;
    TransformContext tctx;
    tctx.now = "1970-01-01 00:00:00+00";
    s.transforms = plan.transform.Apply(s.row.values, &unused, tctx).ok();
    samples.push_back(std::move(s));
  }
  r.source = std::to_string(samples.size()) + " rows";

  auto hashes_of = [&](const std::vector<int>& ids) {
    std::vector<std::string> out;
    for (int id : ids) out.push_back(samples[id].hash);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  };
  ConfirmFns<int, SourceCopies, TargetCandidates> fns;
  fns.read_source = [&](const std::vector<int>& ids) -> StatusOr<std::map<int, SourceCopies>> {
    TS_ASSIGN_OR_RETURN(auto rows, FetchSourceRowsByHash(*ctx.source, plan, hashes_of(ids)));
    std::map<int, SourceCopies> out;
    for (int id : ids) {
      SourceCopies& copies = out[id];
      auto it = rows.find(samples[id].hash);
      if (it == rows.end()) continue;
      for (const SourceRow& row : it->second) {
        if (row.values != samples[id].row.values) continue;
        ++copies.n;
        copies.xmins.push_back(row.xmin);
      }
      std::sort(copies.xmins.begin(), copies.xmins.end());
    }
    return out;
  };
  fns.read_target = [&](const std::vector<int>& ids) -> StatusOr<std::map<int, TargetCandidates>> {
    TS_ASSIGN_OR_RETURN(auto rows, FetchTargetRowsByHash(*ctx.target, plan, hashes_of(ids)));
    std::map<int, TargetCandidates> out;
    for (int id : ids) {
      auto it = rows.find(samples[id].hash);
      out[id] = it == rows.end() ? TargetCandidates{} : it->second;
    }
    return out;
  };
  // Target copies equal to the sample's transform, and the first candidate that is not.
  auto judge = [&](int id, const TargetCandidates& candidates, int64_t* equal,
                   std::optional<RowDifference>* near) -> Status {
    *equal = 0;
    for (const TargetRow& t : candidates) {
      TS_ASSIGN_OR_RETURN(auto d, CompareRow(*ctx.target, plan, {}, &samples[id].row, &t));
      if (!d) {
        ++*equal;
      } else if (!*near) {
        *near = std::move(d);
      }
    }
    return Status::Ok();
  };
  fns.same = [&](const int& id, const SourceCopies* s,
                 const TargetCandidates* t) -> StatusOr<bool> {
    int64_t want = s && samples[id].transforms ? s->n : 0;
    int64_t have = 0;
    std::optional<RowDifference> near;
    TS_RETURN_IF_ERROR(judge(id, t ? *t : TargetCandidates{}, &have, &near));
    return want == have;
  };

  std::vector<int> ids(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) ids[i] = static_cast<int>(i);
  TS_ASSIGN_OR_RETURN(auto first_s, fns.read_source(ids));
  TS_ASSIGN_OR_RETURN(auto first_t, fns.read_target(ids));
  std::vector<int> differing;
  for (int id : ids) {
    TS_ASSIGN_OR_RETURN(bool same, fns.same(id, &first_s[id], &first_t[id]));
    if (!same) differing.push_back(id);
  }
  int64_t matched = static_cast<int64_t>(samples.size() - differing.size());
  if (!differing.empty()) {
    TS_ASSIGN_OR_RETURN(auto confirmed, Confirm(*ctx.gate, differing, first_s, first_t, fns));
    for (int id : differing) {
      Verdict v = confirmed.verdicts[id];
      if (v == Verdict::kSame) {
        ++matched;
        continue;
      }
      auto s = confirmed.source.find(id);
      auto t = confirmed.target.find(id);
      int64_t source_n = s == confirmed.source.end() ? 0 : s->second.n;
      int64_t want = samples[id].transforms ? source_n : 0;
      int64_t have = 0;
      std::optional<RowDifference> near;
      TS_RETURN_IF_ERROR(
          judge(id, t == confirmed.target.end() ? TargetCandidates{} : t->second, &have, &near));
      RowDifference d;
      d.key = "ctid=" + samples[id].ctid;
      d.details = std::to_string(source_n) + " copies in the source, " + std::to_string(have) +
                  " in the target (row hash " + samples[id].hash + ")";
      if (!samples[id].transforms) d.details += "; the row fails the transform";
      if (have < want && near) {
        d.kind = RowDifference::Kind::kDifferent;
        d.columns = near->columns;
        d.details += "; a target row with its hash differs: " + near->details;
      } else {
        d.kind = have < want ? RowDifference::Kind::kMissing : RowDifference::Kind::kExtra;
      }
      AddRowVerdict(&r, d, v, opt.max_rows_reported);
    }
  }
  r.target = std::to_string(matched) + " match";
  if (r.status != CheckStatus::kPass) {
    r.details = std::to_string(r.rows_total) + " of " + std::to_string(samples.size()) +
                " distinct sampled rows differ (no key: found by row hash, named by source ctid)";
  } else {
    r.details = "no key: " + std::to_string(samples.size()) +
                " distinct rows found by row hash, copies counted on both sides";
  }
  return r;
}

}  // namespace

StatusOr<CheckResult> SampleCheck(CheckContext& ctx, const TablePlan& plan, int64_t source_rows) {
  if (!plan.has_key()) return KeylessSampleCheck(ctx, plan, source_rows);
  CheckResult r = NewResult("sample", plan);
  const ValidateOptions& opt = *ctx.options;
  if (!plan.target_exists) {
    r.status = CheckStatus::kFail;
    r.details = "no target table";
    return r;
  }
  std::string sample = TableSampleClause(source_rows, opt.sample_size);
  TS_ASSIGN_OR_RETURN(PgResult keys_r,
                      ctx.source->Query("SELECT " + plan.SourceKeyList() + " FROM " +
                                        plan.SourceQualified() + sample +
                                        " ORDER BY random() LIMIT " +
                                        std::to_string(opt.sample_size)));
  std::vector<Key> keys;
  for (int i = 0; i < keys_r.rows(); ++i) {
    Key k;
    for (int c = 0; c < keys_r.columns(); ++c) k.emplace_back(keys_r.Get(i, c));
    keys.push_back(std::move(k));
  }
  TS_ASSIGN_OR_RETURN(auto srows, FetchSourceRows(*ctx.source, plan, keys));
  TS_ASSIGN_OR_RETURN(auto trows, FetchTargetRows(*ctx.target, plan, keys));
  r.source = std::to_string(keys.size()) + " rows";
  int matched = 0;
  ConfirmFns<Key, SourceRow, TargetRow> fns;
  fns.read_source = [&](const std::vector<Key>& k) { return FetchSourceRows(*ctx.source, plan, k); };
  fns.read_target = [&](const std::vector<Key>& k) { return FetchTargetRows(*ctx.target, plan, k); };
  fns.same = [&](const Key& k, const SourceRow* s, const TargetRow* t) -> StatusOr<bool> {
    TS_ASSIGN_OR_RETURN(auto d, CompareRow(*ctx.target, plan, k, s, t));
    return !d.has_value();
  };
  std::vector<Key> differing;
  for (const Key& k : keys) {
    auto s = srows.find(k);
    auto t = trows.find(k);
    TS_ASSIGN_OR_RETURN(bool same, fns.same(k, s == srows.end() ? nullptr : &s->second,
                                            t == trows.end() ? nullptr : &t->second));
    if (same) {
      ++matched;
    } else {
      differing.push_back(k);
    }
  }
  if (!differing.empty()) {
    TS_ASSIGN_OR_RETURN(auto confirmed, Confirm(*ctx.gate, differing, srows, trows, fns));
    for (const Key& k : differing) {
      Verdict v = confirmed.verdicts[k];
      if (v == Verdict::kSame) {
        ++matched;
        continue;
      }
      auto s = confirmed.source.find(k);
      auto t = confirmed.target.find(k);
      TS_ASSIGN_OR_RETURN(
          auto d, CompareRow(*ctx.target, plan, k, s == confirmed.source.end() ? nullptr : &s->second,
                             t == confirmed.target.end() ? nullptr : &t->second));
      if (!d) continue;  // a row deleted on both sides meanwhile
      AddRowVerdict(&r, *d, v, opt.max_rows_reported);
    }
  }
  r.target = std::to_string(matched) + " match";
  if (r.status != CheckStatus::kPass) {
    r.details = std::to_string(r.rows_total) + " of " + std::to_string(keys.size()) +
                " sampled rows differ";
  }
  return r;
}

StatusOr<CheckResult> ForeignKeyCheck(CheckContext& ctx, const std::string& schema,
                                      const ForeignKeyInfo& fk, const TablePlan* child) {
  CheckResult r;
  r.check = "fk";
  r.table = fk.table;
  r.source_table = child ? child->source_table : "";
  r.column = fk.name;
  std::string not_null, match, shown;
  for (size_t i = 0; i < fk.columns.size(); ++i) {
    if (i) {
      not_null += " AND ";
      match += " AND ";
    }
    not_null += "c." + QuoteIdent(fk.columns[i]) + " IS NOT NULL";
    match += "p." + QuoteIdent(fk.ref_columns[i]) + " = c." + QuoteIdent(fk.columns[i]);
  }
  std::vector<std::string> label_columns;
  if (child) label_columns = child->key_target;
  for (const std::string& c : fk.columns) label_columns.push_back(c);
  for (const std::string& c : label_columns) shown += ", c." + QuoteIdent(c) + "::text";
  std::string sql = "SELECT count(*) OVER ()" + shown + " FROM " +
                    QuoteQualified(schema, fk.table) + " c WHERE " + not_null +
                    " AND NOT EXISTS (SELECT 1 FROM " + QuoteQualified(fk.ref_schema, fk.ref_table) +
                    " p WHERE " + match + ") LIMIT " +
                    std::to_string(ctx.options->max_rows_reported);
  TS_ASSIGN_OR_RETURN(PgResult orphans, ctx.target->Query(sql));
  if (orphans.rows() > 0 && ctx.gate->active()) {
    // A child may be ahead of nothing (commit order is kept), but recheck after the applier
    // passed the source's position, so an orphan the source itself had and fixed does not count.
    TS_ASSIGN_OR_RETURN(Lsn lsn, ctx.gate->SourceLsn());
    TS_ASSIGN_OR_RETURN(bool reached, ctx.gate->WaitApplied(lsn));
    TS_ASSIGN_OR_RETURN(orphans, ctx.target->Query(sql));
    if (!reached && orphans.rows() > 0) r.status = CheckStatus::kUnverified;
  }
  int64_t n = 0;
  if (orphans.rows() > 0) {
    TS_ASSIGN_OR_RETURN(n, orphans.GetInt(0, 0));
  }
  r.source = "-";
  r.target = std::to_string(n) + " orphans";
  r.rows_total = n;
  std::string cols;
  for (size_t i = 0; i < fk.columns.size(); ++i) cols += (i ? "," : "") + fk.columns[i];
  r.details = fk.table + "(" + cols + ") -> " + fk.ref_table;
  if (n == 0) return r;
  if (r.status == CheckStatus::kPass) r.status = CheckStatus::kFail;
  for (int i = 0; i < orphans.rows(); ++i) {
    RowDifference d;
    d.kind = RowDifference::Kind::kOrphan;
    for (size_t c = 0; c < label_columns.size(); ++c) {
      d.key += (c ? "," : "") + label_columns[c] + "=" + std::string(orphans.Get(i, 1 + c));
    }
    d.columns = fk.columns;
    d.details = "no " + fk.ref_table + " row it references";
    r.rows.push_back(std::move(d));
  }
  return r;
}

}  // namespace tenantsync::validate::internal
