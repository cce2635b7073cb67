// The full diff: in-server checksums of ranges of row positions, bisected down to rows
// (validate.h, "Full diff"). Every query here returns aggregates or the rows of differing
// leaf ranges, so what reaches the client is O(first-pass ranges + differences).
#include <algorithm>
#include <cmath>

#include "core/pg.h"
#include "validate/internal/checks.h"
#include "validate/internal/rows.h"

namespace tenantsync::validate::internal {

namespace {

struct RangeAgg {
  int64_t count = 0;
  std::string sum;   // sum of row hashes (numeric text)
  std::string xmin;  // source only: sum of xmins, changes with any write in the range
  bool operator==(const RangeAgg&) const = default;
};

using Aggs = std::map<int64_t, RangeAgg>;

std::string BigintArray(const std::vector<int64_t>& v) {
  std::string out = "'{";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out + "}'::bigint[]";
}

int64_t RangeLo(int64_t bucket, int shift) {
  return static_cast<int64_t>(static_cast<uint64_t>(bucket) << shift);
}
int64_t RangeHi(int64_t bucket, int shift) {
  uint64_t width = shift >= 63 ? ~uint64_t{0} >> 1 : (uint64_t{1} << shift) - 1;
  return static_cast<int64_t>(static_cast<uint64_t>(RangeLo(bucket, shift)) + width);
}

// FROM clause (with alias t) restricted to the buckets `parents` at `parent_shift`, or the whole
// table when parents is null. Integer keys are restricted through the key's index.
std::string From(const TablePlan& plan, bool source, const std::vector<int64_t>* parents,
                 int parent_shift) {
  std::string table = source ? plan.SourceQualified() : plan.TargetQualified();
  if (!parents || parent_shift >= 64) return " FROM " + table + " t";
  if (plan.mode == PositionMode::kIntegerKey) {
    std::vector<int64_t> lo, hi;
    for (int64_t p : *parents) {
      lo.push_back(RangeLo(p, parent_shift));
      hi.push_back(RangeHi(p, parent_shift));
    }
    std::string key = QuoteIdent(source ? plan.source.columns[plan.key_source[0]].name
                                        : plan.key_target[0]);
    return " FROM unnest(" + BigintArray(lo) + ", " + BigintArray(hi) + ") r(lo, hi) JOIN " +
           table + " t ON t." + key + " BETWEEN r.lo AND r.hi";
  }
  std::string pos = source ? plan.SourcePosition() : plan.TargetPosition();
  return " FROM " + table + " t WHERE (" + pos + " >> " + std::to_string(parent_shift) +
         ") = ANY(" + BigintArray(*parents) + ")";
}

// The range of `pos` at `shift`; shift 64 is the whole table (range 0).
std::string Bucket(const std::string& pos, int shift) {
  if (shift >= 64) return "0";
  return "(" + pos + " >> " + std::to_string(shift) + ")";
}

// `with_xmin`: also sum the source rows' xmin, the fingerprint live rechecks compare (it costs a
// text conversion per row, so the first pass leaves it out; a range that differs there is
// simply observed once more).
std::string AggSql(const TablePlan& plan, bool source, int shift,
                   const std::vector<int64_t>* parents, int parent_shift, bool with_xmin) {
  std::string pos = source ? plan.SourcePosition() : plan.TargetPosition();
  std::string hash = source ? plan.SourceRowHash() : plan.TargetRowHash();
  // shift 64: the whole table as one range, without the cost of grouping.
  bool whole = shift >= 64;
  return "SELECT " + Bucket("x.v", shift) +
         "::text, count(*)::text, sum(x.h)::text, sum(x.xm)::text FROM (SELECT " +
         (whole ? std::string("0") : pos) + " AS v, " + hash + " AS h, " +
         (source && with_xmin ? "t.xmin::text::bigint" : "0::bigint") + " AS xm" +
         From(plan, source, parents, parent_shift) + ") x" + (whole ? "" : " GROUP BY 1");
}

StatusOr<Aggs> ParseAggs(const PgResult& r) {
  Aggs out;
  for (int i = 0; i < r.rows(); ++i) {
    TS_ASSIGN_OR_RETURN(int64_t b, r.GetInt(i, 0));
    TS_ASSIGN_OR_RETURN(int64_t n, r.GetInt(i, 1));
    out[b] = RangeAgg{n, std::string(r.Get(i, 2)), std::string(r.Get(i, 3))};
  }
  return out;
}

bool SameRange(const RangeAgg* s, const RangeAgg* t) {
  if (!s || !t) return s == t;
  return s->count == t->count && s->sum == t->sum;
}

struct DiffState {
  CheckContext* ctx;
  const TablePlan* plan;
  CheckResult* result;
  int64_t ranges = 0;        // range aggregates compared
  int64_t leaf_rows = 0;     // (key, hash) pairs fetched
  int64_t unresolved = 0;    // differing ranges left when enough rows were listed
};

// Rows of the leaf buckets (at `shift`) on both sides, compared by hash, then the candidates
// through the engine, confirmed live.
Status ResolveKeyedLeaves(DiffState& st, const std::vector<int64_t>& buckets, int shift,
                          const std::map<int64_t, Verdict>& bucket_verdicts) {
  const TablePlan& plan = *st.plan;
  CheckContext& ctx = *st.ctx;
  std::string s_sql = "SELECT " + plan.SourceKeyList() + ", " + plan.SourceRowHash() +
                      "::text, " + Bucket(plan.SourcePosition(), shift) + "::text" +
                      From(plan, true, &buckets, shift);
  std::string t_sql = "SELECT " + plan.TargetKeyList() + ", " + plan.TargetRowHash() +
                      "::text, " + Bucket(plan.TargetPosition(), shift) + "::text" +
                      From(plan, false, &buckets, shift);
  TS_ASSIGN_OR_RETURN(auto both, RunBoth(*ctx.source, s_sql, {}, *ctx.target, t_sql, {}));
  const int nk = static_cast<int>(plan.key_source.size());
  auto read = [&](const PgResult& r, std::map<Key, std::pair<std::string, int64_t>>* out) -> Status {
    for (int i = 0; i < r.rows(); ++i) {
      Key k;
      for (int c = 0; c < nk; ++c) k.emplace_back(r.Get(i, c));
      TS_ASSIGN_OR_RETURN(int64_t b, r.GetInt(i, nk + 1));
      (*out)[std::move(k)] = {std::string(r.Get(i, nk)), b};
    }
    st.leaf_rows += r.rows();
    return Status::Ok();
  };
  std::map<Key, std::pair<std::string, int64_t>> s, t;
  TS_RETURN_IF_ERROR(read(both.source, &s));
  TS_RETURN_IF_ERROR(read(both.target, &t));
  std::vector<Key> candidates;
  for (const auto& [k, v] : s) {
    auto it = t.find(k);
    if (it == t.end() || it->second.first != v.first) candidates.push_back(k);
  }
  for (const auto& [k, v] : t) {
    if (!s.count(k)) candidates.push_back(k);
  }
  const int max_rows = ctx.options->max_rows_reported;
  for (size_t start = 0; start < candidates.size(); start += 500) {
    if (st.result->rows_total >= max_rows) {
      st.unresolved += static_cast<int64_t>(candidates.size() - start);
      break;
    }
    std::vector<Key> batch(candidates.begin() + static_cast<long>(start),
                           candidates.begin() +
                               static_cast<long>(std::min(candidates.size(), start + 500)));
    TS_ASSIGN_OR_RETURN(auto srows, FetchSourceRows(*ctx.source, plan, batch));
    TS_ASSIGN_OR_RETURN(auto trows, FetchTargetRows(*ctx.target, plan, batch));
    ConfirmFns<Key, SourceRow, TargetRow> fns;
    fns.read_source = [&](const std::vector<Key>& k) { return FetchSourceRows(*ctx.source, plan, k); };
    fns.read_target = [&](const std::vector<Key>& k) { return FetchTargetRows(*ctx.target, plan, k); };
    fns.same = [&](const Key& k, const SourceRow* a, const TargetRow* b) -> StatusOr<bool> {
      TS_ASSIGN_OR_RETURN(auto d, CompareRow(*ctx.target, plan, k, a, b));
      return !d.has_value();
    };
    std::vector<Key> differing;
    for (const Key& k : batch) {
      auto a = srows.find(k);
      auto b = trows.find(k);
      TS_ASSIGN_OR_RETURN(bool same, fns.same(k, a == srows.end() ? nullptr : &a->second,
                                              b == trows.end() ? nullptr : &b->second));
      if (!same) differing.push_back(k);
    }
    if (differing.empty()) continue;
    TS_ASSIGN_OR_RETURN(auto confirmed, Confirm(*ctx.gate, differing, srows, trows, fns));
    for (const Key& k : differing) {
      auto a = confirmed.source.find(k);
      auto b = confirmed.target.find(k);
      TS_ASSIGN_OR_RETURN(auto d, CompareRow(*ctx.target, plan, k,
                                             a == confirmed.source.end() ? nullptr : &a->second,
                                             b == confirmed.target.end() ? nullptr : &b->second));
      if (!d) continue;
      AddRowVerdict(st.result, *d, confirmed.verdicts[k], max_rows);
    }
  }
  (void)bucket_verdicts;
  return Status::Ok();
}

// Tables without a key: rows are their hash; a hash with more copies on one side is a missing
// (source) or extra (target) row, named by the ctid of one copy.
Status ResolveKeylessLeaves(DiffState& st, const std::vector<int64_t>& buckets, int shift,
                            const std::map<int64_t, Verdict>& bucket_verdicts) {
  const TablePlan& plan = *st.plan;
  CheckContext& ctx = *st.ctx;
  auto sql = [&](bool source) {
    std::string hash = source ? plan.SourceRowHash() : plan.TargetRowHash();
    return "SELECT " + hash + "::text, count(*)::text, (array_agg(t.ctid::text))[1], " +
           Bucket(hash, shift) + "::text" + From(plan, source, &buckets, shift) + " GROUP BY " +
           hash;
  };
  TS_ASSIGN_OR_RETURN(auto both, RunBoth(*ctx.source, sql(true), {}, *ctx.target, sql(false), {}));
  struct Copies {
    int64_t n = 0;
    std::string ctid;
    int64_t bucket = 0;
  };
  auto read = [&](const PgResult& r, std::map<std::string, Copies>* out) -> Status {
    for (int i = 0; i < r.rows(); ++i) {
      TS_ASSIGN_OR_RETURN(int64_t n, r.GetInt(i, 1));
      TS_ASSIGN_OR_RETURN(int64_t b, r.GetInt(i, 3));
      (*out)[std::string(r.Get(i, 0))] = {n, std::string(r.Get(i, 2)), b};
    }
    st.leaf_rows += r.rows();
    return Status::Ok();
  };
  std::map<std::string, Copies> s, t;
  TS_RETURN_IF_ERROR(read(both.source, &s));
  TS_RETURN_IF_ERROR(read(both.target, &t));
  std::map<std::string, bool> hashes;
  for (const auto& [h, c] : s) hashes[h] = true;
  for (const auto& [h, c] : t) hashes[h] = true;
  for (const auto& [h, unused] : hashes) {
    Copies a = s.count(h) ? s[h] : Copies{};
    Copies b = t.count(h) ? t[h] : Copies{};
    if (a.n == b.n) continue;
    RowDifference d;
    bool missing = a.n > b.n;
    d.kind = missing ? RowDifference::Kind::kMissing : RowDifference::Kind::kExtra;
    d.key = "ctid=" + (missing ? a.ctid : b.ctid);
    d.details = std::to_string(a.n) + " copies in the source, " + std::to_string(b.n) +
                " in the target (row hash " + h + ")";
    auto v = bucket_verdicts.find(missing ? a.bucket : b.bucket);
    AddRowVerdict(st.result, d, v == bucket_verdicts.end() ? Verdict::kDiffers : v->second,
                  ctx.options->max_rows_reported);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<CheckResult> FullDiffCheck(CheckContext& ctx, const TablePlan& plan, int64_t rows,
                                    int64_t* source_rows, int64_t* target_rows) {
  *source_rows = 0;
  *target_rows = 0;
  CheckResult r;
  r.check = "full";
  r.table = plan.target_table;
  r.source_table = plan.source_table;
  if (!plan.target_exists) {
    r.status = CheckStatus::kFail;
    r.source = "-";
    r.target = "no table";
    r.details = "no target table";
    return r;
  }
  const ValidateOptions& opt = *ctx.options;
  const int leaf = std::max(1, opt.full_leaf_rows);
  int bits = 0;
  while (bits < opt.full_first_bits && (int64_t{1} << bits) * leaf < rows) ++bits;
  int shift;
  if (plan.mode == PositionMode::kIntegerKey) {
    std::string sk = QuoteIdent(plan.source.columns[plan.key_source[0]].name);
    std::string tk = QuoteIdent(plan.key_target[0]);
    TS_ASSIGN_OR_RETURN(
        auto mm, RunBoth(*ctx.source, "SELECT min(" + sk + ")::text, max(" + sk + ")::text FROM " +
                                          plan.SourceQualified(), {},
                         *ctx.target, "SELECT min(" + tk + ")::text, max(" + tk + ")::text FROM " +
                                          plan.TargetQualified(), {}));
    bool any = false;
    int64_t lo = 0, hi = 0;
    for (const PgResult* p : {&mm.source, &mm.target}) {
      if (p->IsNull(0, 0)) continue;
      TS_ASSIGN_OR_RETURN(int64_t a, p->GetInt(0, 0));
      TS_ASSIGN_OR_RETURN(int64_t b, p->GetInt(0, 1));
      lo = any ? std::min(lo, a) : a;
      hi = any ? std::max(hi, b) : b;
      any = true;
    }
    if (!any) {
      r.source = r.target = "0 rows";
      r.details = "both tables are empty";
      return r;
    }
    shift = 0;
    while (shift < 63 && (hi >> shift) - (lo >> shift) + 1 > (int64_t{1} << bits)) ++shift;
  } else {
    shift = std::min(63, 64 - std::max(1, bits));
  }

  DiffState st{&ctx, &plan, &r};
  int64_t source_total = 0, target_total = 0;
  std::vector<int64_t> parents;
  // Level 0 is the whole table (one aggregate per server: the whole cost when nothing differs);
  // level 1 the 2^full_first_bits ranges of `shift`; then the fan-out.
  const int first_shift = shift;
  shift = 64;
  bool first = true;
  int parent_shift = shift;
  while (true) {
    std::string s_sql = AggSql(plan, true, shift, first ? nullptr : &parents, parent_shift, false);
    std::string t_sql = AggSql(plan, false, shift, first ? nullptr : &parents, parent_shift, false);
    TS_ASSIGN_OR_RETURN(auto both, RunBoth(*ctx.source, s_sql, {}, *ctx.target, t_sql, {}));
    TS_ASSIGN_OR_RETURN(Aggs s, ParseAggs(both.source));
    TS_ASSIGN_OR_RETURN(Aggs t, ParseAggs(both.target));
    if (shift == 64) {
      for (const auto& [b, a] : s) source_total += a.count;
      for (const auto& [b, a] : t) target_total += a.count;
    }
    st.ranges += static_cast<int64_t>(std::max(s.size(), t.size()));
    std::vector<int64_t> differing;
    for (const auto& [b, a] : s) {
      auto it = t.find(b);
      if (!SameRange(&a, it == t.end() ? nullptr : &it->second)) differing.push_back(b);
    }
    for (const auto& [b, a] : t) {
      if (!s.count(b)) differing.push_back(b);
    }
    if (differing.empty()) break;
    const int cur_shift = shift;
    ConfirmFns<int64_t, RangeAgg, RangeAgg> fns;
    auto reader = [&, cur_shift](bool source) {
      return [&, source, cur_shift](const std::vector<int64_t>& ids) -> StatusOr<Aggs> {
        Session& sess = source ? *ctx.source : *ctx.target;
        TS_ASSIGN_OR_RETURN(PgResult res, sess.Query(AggSql(plan, source, cur_shift, &ids, cur_shift, true)));
        return ParseAggs(res);
      };
    };
    fns.read_source = reader(true);
    fns.read_target = reader(false);
    fns.same = [](const int64_t&, const RangeAgg* a, const RangeAgg* b) -> StatusOr<bool> {
      return SameRange(a, b);
    };
    TS_ASSIGN_OR_RETURN(auto confirmed, Confirm(*ctx.gate, differing, s, t, fns));
    std::vector<int64_t> leaves, refine;
    for (int64_t b : differing) {
      if (confirmed.verdicts[b] == Verdict::kSame) continue;
      int64_t n = 0;
      if (auto it = confirmed.source.find(b); it != confirmed.source.end()) n = it->second.count;
      if (auto it = confirmed.target.find(b); it != confirmed.target.end()) {
        n = std::max(n, it->second.count);
      }
      (n <= leaf || shift == 0 ? leaves : refine).push_back(b);
    }
    if (!leaves.empty()) {
      if (r.rows_total >= opt.max_rows_reported) {
        st.unresolved += static_cast<int64_t>(leaves.size());
      } else if (plan.has_key()) {
        TS_RETURN_IF_ERROR(ResolveKeyedLeaves(st, leaves, shift, confirmed.verdicts));
      } else {
        TS_RETURN_IF_ERROR(ResolveKeylessLeaves(st, leaves, shift, confirmed.verdicts));
      }
    }
    if (refine.empty()) break;
    if (r.rows_total >= opt.max_rows_reported) {
      st.unresolved += static_cast<int64_t>(refine.size());
      if (r.status == CheckStatus::kPass) r.status = CheckStatus::kFail;
      break;
    }
    if (shift == 64) {
      // The whole table differs: level 1 covers it again, grouped (no filter needed).
      shift = first_shift;
      parent_shift = first_shift;
      parents.clear();
      first = true;
      continue;
    }
    parents = std::move(refine);
    parent_shift = shift;
    shift = std::max(0, shift - std::max(1, opt.full_fanout_bits));
    first = false;
  }
  *source_rows = source_total;
  *target_rows = target_total;
  r.source = std::to_string(source_total) + " rows";
  r.target = std::to_string(target_total) + " rows";
  r.details = std::to_string(st.ranges) + " ranges compared, " + std::to_string(st.leaf_rows) +
              " leaf rows fetched";
  if (st.unresolved > 0) {
    r.details += ", " + std::to_string(st.unresolved) + " differing ranges/rows not resolved";
  }
  if (!plan.unhashed.empty()) {
    r.details += "; not in the checksum (verified by samples and fetched rows): ";
    for (size_t i = 0; i < plan.unhashed.size(); ++i) r.details += (i ? ", " : "") + plan.unhashed[i];
  }
  return r;
}

}  // namespace tenantsync::validate::internal
