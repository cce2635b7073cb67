#include "snapshot/snapshot.h"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/crypto.h"
#include "core/kill_point.h"
#include "core/pg.h"
#include "snapshot/catalog.h"
#include "snapshot/internal/chunk_copier.h"
#include "snapshot/internal/plan.h"
#include "snapshot/internal/progress.h"
#include "snapshot/internal/publication.h"
#include "snapshot/preflight.h"

namespace tenantsync::snapshot {

namespace {

using internal::Chunk;
using internal::PlanSet;
using internal::TablePlan;
using internal::TableProgress;

constexpr const char* kMetaCreatedPrefix = "snapshot/created/";

// Session settings that make text output of the source parse the same way on the target and in
// the transform engine, whatever the servers' defaults are.
const std::string kSessionSettings = std::string(kSourceOutputSettings) +
                                     "; SET client_encoding = 'UTF8'; "
                                     "SET client_min_messages = warning";

// The schema is only created when missing: CREATE SCHEMA IF NOT EXISTS checks the database's
// CREATE privilege first, which the least-privilege target role (owner of a `_tenantsync` the DBA
// created: ops/runbooks/security.md) does not have.
constexpr const char* kControlDdl = R"SQL(
DO $ts$ BEGIN
  IF to_regnamespace('_tenantsync') IS NULL THEN CREATE SCHEMA _tenantsync; END IF;
END $ts$;
CREATE TABLE IF NOT EXISTS _tenantsync.progress (
  pipeline text PRIMARY KEY,
  applied_lsn pg_lsn,
  commit_time timestamptz,
  updated_at timestamptz);
CREATE TABLE IF NOT EXISTS _tenantsync.snapshot_chunks (
  pipeline text NOT NULL,
  table_name text NOT NULL,
  chunk int NOT NULL,
  chunk_count int NOT NULL,
  rows bigint NOT NULL,
  bytes bigint NOT NULL,
  dead_letters bigint NOT NULL DEFAULT 0,
  snapshot_name text,
  done_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (pipeline, table_name, chunk))
)SQL";

constexpr const char* kOrganizationsDdl = R"SQL(
CREATE TABLE IF NOT EXISTS public.organizations (
  id bigserial PRIMARY KEY,
  slug text NOT NULL UNIQUE,
  name text NOT NULL,
  domain text,
  store_domain text,
  secrets jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now())
)SQL";

// Upsert that changes nothing (not even updated_at) when the record is already current.
constexpr const char* kOrganizationsUpsert = R"SQL(
INSERT INTO public.organizations AS o (slug, name, domain, store_domain, secrets)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name, domain = EXCLUDED.domain,
  store_domain = EXCLUDED.store_domain, secrets = EXCLUDED.secrets, updated_at = now()
WHERE (o.name, o.domain, o.store_domain, o.secrets) IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.domain, EXCLUDED.store_domain, EXCLUDED.secrets)
)SQL";

std::string Join(const std::vector<std::string>& lines, const char* sep) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : sep) + l;
  return out;
}

std::optional<std::string> EmptyToNull(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

Status UpsertOrganization(const Config& config, const Cipher* cipher, PgConn& dst) {
  nlohmann::json secrets = nlohmann::json::object();
  for (const auto& [name, value] : config.tenant.secrets) {
    if (!cipher) return InvalidArgument("tenant.secrets needs encryption.key");
    TS_ASSIGN_OR_RETURN(std::string enc, cipher->Encrypt(value, "organizations.secrets." + name));
    secrets[name] = enc;
  }
  // The platform usually owns public.organizations; CREATE TABLE IF NOT EXISTS would still need
  // CREATE on schema public, so it only runs when the table is missing.
  TS_ASSIGN_OR_RETURN(PgResult exists,
                      dst.Exec("SELECT to_regclass('public.organizations') IS NOT NULL"));
  if (exists.Get(0, 0) != "t") {
    TS_RETURN_IF_ERROR_CTX(dst.Run(kOrganizationsDdl), "creating public.organizations");
  }
  std::string name = config.tenant.name.empty() ? config.tenant.slug : config.tenant.name;
  auto r = dst.ExecParams(kOrganizationsUpsert,
                          {config.tenant.slug, name, EmptyToNull(config.tenant.domain),
                           EmptyToNull(config.tenant.store_domain), secrets.dump()});
  if (!r.ok()) {
    return r.status().WithContext(
        "upserting the organization record (public.organizations needs a unique slug column and "
        "name, domain, store_domain, secrets jsonb)");
  }
  return Status::Ok();
}

// Uses an existing publication as it is when it covers the mapped tables; otherwise creates or
// extends it when the source role may, and else stops with the statement for the DBA
// (internal/publication.h).
Status EnsurePublication(const Config& config, const PlanSet& plan, PgConn& src) {
  TS_ASSIGN_OR_RETURN(internal::PublicationState st,
                      internal::ReadPublicationState(config, plan.order, src));
  if (st.ready()) return Status::Ok();
  if (!st.role_may_fix) return FailedPrecondition(internal::PublicationFailure(config, st));
  TS_RETURN_IF_ERROR_CTX(src.Run(st.fix), "creating publication " + config.source.publication);
  return Status::Ok();
}

// What the slot step leaves for the copy.
struct Handoff {
  PgConn replication;      // holds the exported snapshot until every worker imported it
  std::string snapshot_name;  // the slot's, or when resumed the temporary slot's
  Lsn lsn;
  std::string now;
  bool resumed = false;
  // Resumed with chunks left: the consistent point of the newer snapshot they are read in.
  Lsn resumed_lsn;
};

Status CreateOrResumeSlot(const Config& config, state::StateStore& state, PgConn& src,
                          PgConn& dst, Handoff* h) {
  const std::string& slot = config.source.slot;
  TS_ASSIGN_OR_RETURN(auto recorded, state.GetMeta(kMetaConsistentLsn));
  TS_ASSIGN_OR_RETURN(PgResult sr, src.ExecParams(
      "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", {slot}));
  bool exists = sr.rows() == 1;
  if (recorded) {
    if (!exists) {
      return FailedPrecondition(
          "replication slot " + slot + " recorded in " + state.dir() +
          " is gone from the source, so changes since " + *recorded +
          " can not be streamed; start over: remove the state directory, empty the tenant schema "
          "and DELETE FROM _tenantsync.snapshot_chunks WHERE pipeline = '" + config.pipeline + "'");
    }
    TS_ASSIGN_OR_RETURN(h->lsn, Lsn::Parse(*recorded));
    TS_ASSIGN_OR_RETURN(auto now, state.GetMeta(kMetaNow));
    h->now = now.value_or("");
    h->resumed = true;
    return Status::Ok();
  }
  if (exists) {
    return FailedPrecondition(
        "replication slot " + slot + " exists on the source but " + state.dir() +
        " has no record of it (another pipeline's, or a lost state directory); drop it with "
        "SELECT pg_drop_replication_slot('" + slot + "') or set source.slot to another name");
  }
  TS_ASSIGN_OR_RETURN(PgResult marks, dst.ExecParams(
      "SELECT count(*) FROM _tenantsync.snapshot_chunks WHERE pipeline = $1", {config.pipeline}));
  if (marks.Get(0, 0) != "0") {
    return FailedPrecondition(
        "the target holds snapshot chunks of pipeline " + config.pipeline +
        " from an earlier run but " + state.dir() + " has no slot record, so those rows can not "
        "be joined to a new slot; empty the tenant schema and DELETE FROM "
        "_tenantsync.snapshot_chunks WHERE pipeline = '" + config.pipeline +
        "', or restore the state directory");
  }
  TS_ASSIGN_OR_RETURN(h->replication,
                      PgConn::Connect(config.source.url, "tenantsync-snapshot", true));
  std::string sql = "CREATE_REPLICATION_SLOT " + QuoteIdent(slot) + " LOGICAL " +
                    config.source.plugin;
  sql += PQserverVersion(h->replication.get()) >= 150000 ? " (SNAPSHOT 'export')"
                                                          : " EXPORT_SNAPSHOT";
  TS_ASSIGN_OR_RETURN(PgResult cr, h->replication.Exec(sql));
  if (cr.rows() != 1 || cr.columns() < 3) return Fatal("unexpected CREATE_REPLICATION_SLOT answer");
  TS_ASSIGN_OR_RETURN(h->lsn, Lsn::Parse(cr.Get(0, 1)));
  h->snapshot_name = std::string(cr.Get(0, 2));
  TS_ASSIGN_OR_RETURN(PgResult nr, src.Exec("SELECT now()::text"));
  h->now = std::string(nr.Get(0, 0));
  // Durable before any row is copied: the stream starts at this LSN (invariant 1). The LSN is
  // written last; its presence means the whole record is there.
  TS_RETURN_IF_ERROR(state.PutMeta(kMetaSlot, slot));
  TS_RETURN_IF_ERROR(state.PutMeta(kMetaSnapshotName, h->snapshot_name));
  TS_RETURN_IF_ERROR(state.PutMeta(kMetaNow, h->now));
  TS_RETURN_IF_ERROR(state.PutMeta(kMetaState, "copying"));
  TS_RETURN_IF_ERROR(state.PutMeta(kMetaConsistentLsn, h->lsn.ToString()));
  // Kill point: slot created and recorded, nothing copied. A resumed run copies everything in a
  // fresh snapshot.
  KillPoint("snapshot.after_slot");
  return Status::Ok();
}

// Resume without the exported snapshot: a newer snapshot whose consistent point is exact, from
// a TEMPORARY logical slot (snapshot.h, "Resume"). The slot is dropped by the server when
// `h->replication` closes (after every worker imported the snapshot) or when this process dies.
// It needs one free replication slot and wal sender while it exists.
Status CreateResumeSnapshot(const Config& config, Handoff* h) {
  const std::string name = config.source.slot.substr(0, 40) + "_resume_" + std::to_string(getpid());
  TS_ASSIGN_OR_RETURN(h->replication,
                      PgConn::Connect(config.source.url, "tenantsync-snapshot-resume", true));
  std::string sql = "CREATE_REPLICATION_SLOT " + QuoteIdent(name) + " TEMPORARY LOGICAL " +
                    config.source.plugin;
  sql += PQserverVersion(h->replication.get()) >= 150000 ? " (SNAPSHOT 'export')"
                                                          : " EXPORT_SNAPSHOT";
  auto cr = h->replication.Exec(sql);
  if (!cr.ok()) {
    return cr.status().WithContext(
        "creating the temporary slot " + name + " whose exported snapshot the resumed copy reads "
        "(needs one free replication slot and wal sender on the source)");
  }
  if (cr->rows() != 1 || cr->columns() < 3) {
    return Fatal("unexpected CREATE_REPLICATION_SLOT answer");
  }
  TS_ASSIGN_OR_RETURN(h->resumed_lsn, Lsn::Parse(cr->Get(0, 1)));
  h->snapshot_name = std::string(cr->Get(0, 2));
  return Status::Ok();
}

// The chunk boundaries of every table, fixed by the first run and reused when resuming.
StatusOr<std::vector<Chunk>> ChunkPlan(const Config& config, const PlanSet& plan,
                                       state::StateStore& state) {
  std::vector<Chunk> chunks;
  const int64_t block = plan.source_catalog.block_size;
  for (const auto& name : plan.order) {
    const TablePlan& tp = plan.tables.at(name);
    int64_t blocks_per_chunk = std::max<int64_t>(1, config.snapshot.chunk_bytes / block);
    int64_t count = std::max<int64_t>(1, (tp.source->pages + blocks_per_chunk - 1) / blocks_per_chunk);
    std::string key = std::string(kMetaPlanPrefix) + name;
    TS_ASSIGN_OR_RETURN(auto stored, state.GetMeta(key));
    if (stored) {
      if (std::sscanf(stored->c_str(), "%ld %ld", &count, &blocks_per_chunk) != 2 || count < 1) {
        return Corruption("state meta " + key + " is malformed: '" + *stored + "'");
      }
    } else {
      TS_RETURN_IF_ERROR(state.PutMeta(key, std::to_string(count) + " " +
                                                std::to_string(blocks_per_chunk)));
    }
    for (int64_t i = 0; i < count; ++i) {
      Chunk c;
      c.table = name;
      c.index = static_cast<int>(i);
      c.count = static_cast<int>(count);
      c.first_block = i * blocks_per_chunk;
      c.end_block = i + 1 == count ? -1 : (i + 1) * blocks_per_chunk;
      c.whole_created_table = count == 1 && !tp.target_exists;
      chunks.push_back(c);
    }
  }
  return chunks;
}

// Work queue shared by the copy workers. Tables whose target existed before the run may have
// foreign keys, so they wait for their parents; tables we created get their keys afterwards
// and run in parallel with everything.
class Scheduler {
 public:
  Scheduler(std::deque<Chunk> pending, std::map<std::string, int> remaining,
            std::map<std::string, std::set<std::string>> waits_for)
      : pending_(std::move(pending)), remaining_(std::move(remaining)),
        waits_for_(std::move(waits_for)) {}

  // Next chunk to copy, or nullopt when there is nothing left (or the run failed).
  std::optional<Chunk> Next() {
    std::unique_lock<std::mutex> l(mu_);
    while (true) {
      if (!error_.ok() || pending_.empty()) return std::nullopt;
      for (auto it = pending_.begin(); it != pending_.end(); ++it) {
        bool ready = true;
        for (const auto& p : waits_for_[it->table]) {
          if (remaining_[p] > 0) ready = false;
        }
        if (ready) {
          Chunk c = *it;
          pending_.erase(it);
          return c;
        }
      }
      cv_.wait(l);
    }
  }
  void Done(const Chunk& c, const Status& st) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!st.ok() && error_.ok()) error_ = st;
      if (st.ok()) --remaining_[c.table];
    }
    cv_.notify_all();
  }
  void Fail(const Status& st) { Done(Chunk{}, st); }
  Status error() {
    std::lock_guard<std::mutex> l(mu_);
    return error_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Chunk> pending_;
  std::map<std::string, int> remaining_;
  std::map<std::string, std::set<std::string>> waits_for_;
  Status error_;
};

// Counts workers that have imported the snapshot (or failed trying).
class ImportBarrier {
 public:
  explicit ImportBarrier(int n) : left_(n) {}
  void Arrive() {
    std::lock_guard<std::mutex> l(mu_);
    if (--left_ == 0) cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return left_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int left_;
};

struct WorkerShared {
  const Config* config;
  const PlanSet* plan;
  internal::CopierEnv env;
  Scheduler* scheduler;
  ImportBarrier* barrier;
  std::map<std::string, std::unique_ptr<TableProgress>>* progress;
};

Status WorkerBody(WorkerShared& w, int id) {
  bool arrived = false;
  auto arrive = [&] {
    if (!arrived) w.barrier->Arrive();
    arrived = true;
  };
  auto src = PgConn::Connect(w.config->source.url, "tenantsync-snapshot-" + std::to_string(id));
  Status st = src.status();
  if (st.ok()) st = src->Run(kSessionSettings);
  if (st.ok()) st = src->Run("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
  if (st.ok() && !w.env.snapshot_name.empty()) {
    st = src->Run("SET TRANSACTION SNAPSHOT " + QuoteLiteral(w.env.snapshot_name))
             .WithContext("importing the exported snapshot");
  }
  arrive();
  TS_RETURN_IF_ERROR(st);
  TS_ASSIGN_OR_RETURN(PgConn dst,
                      PgConn::Connect(w.config->target.url,
                                      "tenantsync-snapshot-" + std::to_string(id)));
  TS_RETURN_IF_ERROR(dst.Run(kSessionSettings));
  // Each chunk commits with its marker row in the same transaction, so an asynchronous commit
  // lost in a target crash loses data and marker together and the chunk is simply redone.
  TS_RETURN_IF_ERROR(dst.Run("SET synchronous_commit = off"));
  internal::ChunkCopier copier(w.env, *src, dst);
  while (auto chunk = w.scheduler->Next()) {
    if (w.env.cancel && w.env.cancel->load()) {
      w.scheduler->Done(*chunk, Cancelled("snapshot cancelled; run again to resume"));
      break;
    }
    TableProgress& p = *w.progress->at(chunk->table);
    int64_t zero = 0;
    p.start_us.compare_exchange_strong(zero, NowMicros());
    Status cs = copier.Copy(w.plan->tables.at(chunk->table), *chunk, &p);
    if (cs.ok() && p.chunks_done.fetch_add(1) + 1 >= p.chunks_total) p.end_us.store(NowMicros());
    w.scheduler->Done(*chunk, cs);
    if (!cs.ok()) return cs;
  }
  return src->Run("COMMIT");
}

Status RunPostItems(const Config& config, const std::vector<std::vector<std::string>>& units,
                    int workers) {
  std::mutex mu;
  size_t next = 0;
  Status first;
  auto body = [&]() -> Status {
    TS_ASSIGN_OR_RETURN(PgConn dst, PgConn::Connect(config.target.url, "tenantsync-postdata"));
    while (true) {
      size_t i;
      {
        std::lock_guard<std::mutex> l(mu);
        if (next >= units.size() || !first.ok()) return Status::Ok();
        i = next++;
      }
      for (const auto& sql : units[i]) TS_RETURN_IF_ERROR(dst.Run(sql));
    }
  };
  std::vector<std::thread> threads;
  int n = std::max(1, std::min<int>(workers, static_cast<int>(units.size())));
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&] {
      Status st = body();
      std::lock_guard<std::mutex> l(mu);
      if (!st.ok() && first.ok()) first = st;
    });
  }
  for (auto& t : threads) t.join();
  return first;
}

// Post-data in pg_dump order: keys, checks and indexes, then ANALYZE (per table, tables in
// parallel, biggest first), then foreign keys, then sequence positions. Objects that exist are
// skipped.
template <typename PhaseDone>
Status PostData(const Config& config, const PlanSet& plan, PgConn& src, PgConn& dst,
                int workers, bool foreign_keys_not_valid, PhaseDone& phase_done) {
  const std::string& ts = config.target.schema;
  std::set<std::string> existing;
  TS_ASSIGN_OR_RETURN(PgResult ex, dst.ExecParams(
      "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
      "WHERE n.nspname = $1 UNION SELECT relname FROM pg_class c "
      "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'i'",
      {ts}));
  for (int i = 0; i < ex.rows(); ++i) existing.insert(std::string(ex.Get(i, 0)));
  std::vector<std::string> by_size(plan.order);
  std::sort(by_size.begin(), by_size.end(), [&](const std::string& a, const std::string& b) {
    return plan.tables.at(a).source->bytes > plan.tables.at(b).source->bytes;
  });
  std::vector<std::vector<std::string>> units, fks;
  for (const auto& name : by_size) {
    const TablePlan& tp = plan.tables.at(name);
    std::vector<std::string> u, f;
    for (const auto& item : tp.post_data) {
      if (item.name.empty() || !existing.count(item.name)) u.push_back(item.sql);
    }
    for (const auto& item : tp.foreign_keys) {
      if (!existing.count(item.name)) {
        f.push_back(foreign_keys_not_valid ? item.sql + " NOT VALID" : item.sql);
      }
    }
    // Planner statistics for the copied rows, after the table's indexes. Without them every
    // statement on the table is planned blind until autovacuum first analyzes it: the applier's
    // prepared statements then ANDed a 5,000-row "order_id IS NULL" bitmap into a 2-row key probe
    // (10x slower). A table the role does not own is left to its owner (ANALYZE would only warn).
    const std::string tgt = QuoteQualified(ts, tp.target_table);
    u.push_back("DO $ts$ BEGIN IF pg_has_role((SELECT relowner FROM pg_class WHERE oid = " +
                QuoteLiteral(tgt) + "::regclass), 'USAGE') THEN ANALYZE " + tgt +
                "; END IF; END $ts$");
    units.push_back(std::move(u));
    if (!f.empty()) fks.push_back(std::move(f));
  }
  TS_RETURN_IF_ERROR_CTX(RunPostItems(config, units, workers),
                         "building keys and indexes, analyzing the tables");
  phase_done("keys+analyze");
  TS_RETURN_IF_ERROR_CTX(RunPostItems(config, fks, workers), "adding foreign keys");
  phase_done("foreign_keys");
  // Sequences: at least the source's position and the target's max, so that rows inserted in the
  // target after cutover never collide.
  for (const auto& name : plan.order) {
    const TablePlan& tp = plan.tables.at(name);
    const std::string tgt = QuoteQualified(ts, tp.target_table);
    for (const auto& seq : tp.sequences) {
      std::string source_last = "0";
      if (!seq.source_sequence.empty()) {
        auto r = src.Exec("SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM " +
                          seq.source_sequence);
        if (!r.ok()) {
          // Never a silent 0: the target's next id could then collide after the cutover.
          return r.status().WithContext("reading source sequence " + seq.source_sequence +
                                        " (GRANT SELECT ON SEQUENCE " + seq.source_sequence +
                                        " TO the role in source.url)");
        }
        if (r->rows() == 1) source_last = std::string(r->Get(0, 0));
      }
      TS_RETURN_IF_ERROR_CTX(
          dst.ExecParams("SELECT setval(pg_get_serial_sequence($1, $2), v) FROM (SELECT "
                         "GREATEST(coalesce(max(" + QuoteIdent(seq.target_column) + ")::bigint, 0), "
                         "$3::bigint) AS v FROM " + tgt + ") s WHERE v >= 1",
                         {tgt, seq.target_column, source_last})
              .status(),
          "setting the sequence of " + tgt + "." + seq.target_column);
    }
  }
  phase_done("sequences");
  return Status::Ok();
}

void PrintSummary(FILE* out, const SnapshotResult& r) {
  std::fprintf(out, "\n%-28s %12s %10s %9s %12s %6s\n", "table", "rows", "MB", "seconds",
               "rows/s", "dead");
  for (const auto& t : r.tables) {
    std::fprintf(out, "%-28.28s %12lld %10.1f %9.1f %12.0f %6lld%s\n", t.table.c_str(),
                 static_cast<long long>(t.rows), t.bytes / double(1 << 20), t.seconds,
                 t.seconds > 0 ? t.rows / t.seconds : 0.0, static_cast<long long>(t.dead_letters),
                 t.chunks_skipped == t.chunks && t.chunks > 0 ? "  (done earlier)" : "");
  }
  std::fprintf(out, "%-28s %12lld %10s %9.1f %12s %6lld\n", "total",
               static_cast<long long>(r.rows), "", r.seconds, "",
               static_cast<long long>(r.dead_letters));
  if (!r.phases.empty()) {
    std::string line;
    for (const auto& [name, seconds] : r.phases) {
      char part[64];
      std::snprintf(part, sizeof part, "%s%s %.1f s", line.empty() ? "" : ", ", name.c_str(),
                    seconds);
      line += part;
    }
    std::fprintf(out, "phases: %s\n", line.c_str());
  }
  std::fprintf(out, "snapshot consistent at %s (slot %s)%s\n", r.consistent_lsn.ToString().c_str(),
               r.slot.c_str(), r.resumed ? ", resumed in a fresh snapshot" : "");
  std::fflush(out);
}

Status WriteReport(const std::string& path, const SnapshotResult& r) {
  nlohmann::json j;
  j["snapshot_lsn"] = r.consistent_lsn.ToString();
  j["slot"] = r.slot;
  j["resumed"] = r.resumed;
  if (r.resumed_lsn.valid()) j["resumed_snapshot_lsn"] = r.resumed_lsn.ToString();
  j["seconds"] = r.seconds;
  j["rows"] = r.rows;
  j["dead_letters"] = r.dead_letters;
  j["phases"] = nlohmann::json::object();
  for (const auto& [name, seconds] : r.phases) j["phases"][name] = seconds;
  j["tables"] = nlohmann::json::array();
  for (const auto& t : r.tables) {
    j["tables"].push_back({{"table", t.table}, {"rows", t.rows}, {"bytes", t.bytes},
                           {"seconds", t.seconds}, {"dead_letters", t.dead_letters},
                           {"chunks", t.chunks}, {"chunks_skipped", t.chunks_skipped}});
  }
  std::ofstream f(path);
  f << j.dump(2) << "\n";
  f.close();
  if (!f) return InvalidArgument("cannot write the report to " + path);
  return Status::Ok();
}

}  // namespace

Status ValidateDeferredForeignKeys(const Config& config, state::StateStore& state) {
  TS_ASSIGN_OR_RETURN(auto mixed, state.GetMeta(kMetaMixedSnapshots));
  TS_ASSIGN_OR_RETURN(PgConn dst, PgConn::Connect(config.target.url, "tenantsync-validate-fk"));
  TS_ASSIGN_OR_RETURN(PgResult fks, dst.ExecParams(
      "SELECT c.conrelid::regclass::text, quote_ident(c.conname) FROM pg_constraint c "
      "JOIN pg_namespace n ON n.oid = c.connamespace "
      "WHERE n.nspname = $1 AND c.contype = 'f' AND NOT c.convalidated ORDER BY 1, 2",
      {config.target.schema}));
  for (int i = 0; i < fks.rows(); ++i) {
    TS_RETURN_IF_ERROR_CTX(dst.Run("ALTER TABLE " + std::string(fks.Get(i, 0)) +
                                   " VALIDATE CONSTRAINT " + std::string(fks.Get(i, 1))),
                           "validating the deferred foreign key");
  }
  if (mixed) TS_RETURN_IF_ERROR(state.DeleteMeta(kMetaMixedSnapshots));
  return Status::Ok();
}

Status PrintSnapshotPlan(const Config& config, FILE* out) {
  TS_ASSIGN_OR_RETURN(auto cipher, internal::LoadCipher(config));
  TS_ASSIGN_OR_RETURN(PgConn src, PgConn::Connect(config.source.url, "tenantsync-plan"));
  TS_ASSIGN_OR_RETURN(PgConn dst, PgConn::Connect(config.target.url, "tenantsync-plan"));
  TS_ASSIGN_OR_RETURN(auto plan, internal::LoadPlan(config, src, &dst, cipher.get()));
  std::string text = internal::FormatPlan(config, *plan);
  std::fputs(text.c_str(), out);
  std::fprintf(out, "\nDry run: nothing was written (no slot, publication, target DDL or state).\n");
  std::fflush(out);
  if (!plan->errors.empty()) return InvalidArgument(Join(plan->errors, "\n"));
  return Status::Ok();
}

Status RunSnapshot(const Config& config, const SnapshotOptions& options, state::StateStore& state,
                   SnapshotResult* result) {
  if (options.dry_run) return PrintSnapshotPlan(config, options.out);
  const int64_t t0 = NowMicros();
  *result = SnapshotResult();
  int64_t phase_start = t0;
  auto phase_done = [&](const char* name) {
    const int64_t now = NowMicros();
    result->phases.emplace_back(name, (now - phase_start) / 1e6);
    phase_start = now;
  };
  if (!options.skip_preflight) {
    TS_ASSIGN_OR_RETURN(auto failures, Preflight(config, {}));
    if (!failures.empty()) return FailedPrecondition(Join(failures, "\n"));
  }
  TS_ASSIGN_OR_RETURN(auto cipher, internal::LoadCipher(config));
  TS_ASSIGN_OR_RETURN(PgConn src, PgConn::Connect(config.source.url, "tenantsync-snapshot"));
  TS_ASSIGN_OR_RETURN(PgConn dst, PgConn::Connect(config.target.url, "tenantsync-snapshot"));
  TS_RETURN_IF_ERROR(src.Run(kSessionSettings));
  TS_RETURN_IF_ERROR(dst.Run(kSessionSettings));

  // Catalogs. Target tables this pipeline created in an earlier run count as not existing, so
  // their keys, indexes and foreign keys are still built after the data.
  TS_ASSIGN_OR_RETURN(Catalog source_cat, ReadCatalog(src, config.source.schema));
  Catalog target_cat;
  target_cat.schema = config.target.schema;
  bool target_exists = false;
  {
    auto t = ReadCatalog(dst, config.target.schema);
    if (t.ok()) {
      target_cat = std::move(t).value();
      target_exists = true;
    } else if (t.status().code() != StatusCode::kNotFound) {
      return t.status();
    }
  }
  TS_ASSIGN_OR_RETURN(auto created, state.ScanMeta(kMetaCreatedPrefix));
  std::set<std::string> created_targets;
  for (const auto& [k, v] : created) created_targets.insert(v);
  std::erase_if(target_cat.tables,
                [&](const CatalogTable& t) { return created_targets.count(t.name) > 0; });
  std::unique_ptr<PlanSet> plan = internal::BuildPlan(config, std::move(source_cat),
                                                      std::move(target_cat), target_exists,
                                                      cipher.get());
  if (!plan->errors.empty()) return InvalidArgument(Join(plan->errors, "\n"));

  // Target pre-data and the organization record.
  TS_RETURN_IF_ERROR_CTX(dst.Run(kControlDdl), "creating the _tenantsync control tables");
  for (const auto& sql : plan->pre_data) TS_RETURN_IF_ERROR_CTX(dst.Run(sql), "target schema");
  for (const auto& name : plan->order) {
    const TablePlan& tp = plan->tables.at(name);
    if (tp.pre_data.empty()) continue;
    // Recorded before the CREATE so that a crash in between still builds its keys later.
    TS_RETURN_IF_ERROR(state.PutMeta(kMetaCreatedPrefix + name, tp.target_table));
    for (const auto& sql : tp.pre_data) {
      TS_RETURN_IF_ERROR_CTX(dst.Run(sql), "creating target table " + tp.target_table);
    }
  }
  TS_RETURN_IF_ERROR(UpsertOrganization(config, cipher.get(), dst));
  phase_done("setup");

  // Publication, slot and exported snapshot.
  TS_RETURN_IF_ERROR(EnsurePublication(config, *plan, src));
  Handoff handoff;
  TS_RETURN_IF_ERROR(CreateOrResumeSlot(config, state, src, dst, &handoff));
  result->consistent_lsn = handoff.lsn;
  result->slot = config.source.slot;
  result->resumed = handoff.resumed;
  if (!handoff.resumed && options.after_slot_created) {
    options.after_slot_created(handoff.snapshot_name, handoff.lsn);
  }

  phase_done("slot");

  // Chunks, minus those whose marker is committed in the target.
  TS_ASSIGN_OR_RETURN(std::vector<Chunk> chunks, ChunkPlan(config, *plan, state));
  TS_ASSIGN_OR_RETURN(PgResult done_rows, dst.ExecParams(
      "SELECT table_name, chunk FROM _tenantsync.snapshot_chunks WHERE pipeline = $1",
      {config.pipeline}));
  std::set<std::pair<std::string, int>> done;
  for (int i = 0; i < done_rows.rows(); ++i) {
    TS_ASSIGN_OR_RETURN(int64_t c, done_rows.GetInt(i, 1));
    done.insert({std::string(done_rows.Get(i, 0)), static_cast<int>(c)});
  }
  // Resumed without the exported snapshot: a table whose chunks would come from two snapshots
  // could hold a row twice (an UPDATE after the first snapshot may have moved it to a chunk not
  // yet copied), so a partially copied table is emptied and copied whole in the new snapshot.
  // Tables finished before the crash stay.
  std::map<std::string, int> done_per_table, chunks_per_table;
  for (const auto& c : chunks) {
    chunks_per_table[c.table] = c.count;
    if (done.count({c.table, c.index})) ++done_per_table[c.table];
  }
  for (const auto& [table, n] : done_per_table) {
    if (!handoff.resumed || n >= chunks_per_table[table]) continue;
    const TablePlan& tp = plan->tables.at(table);
    TS_RETURN_IF_ERROR_CTX(
        dst.Run("BEGIN; TRUNCATE " + QuoteQualified(config.target.schema, tp.target_table) +
                "; DELETE FROM _tenantsync.snapshot_chunks WHERE pipeline = " +
                QuoteLiteral(config.pipeline) + " AND table_name = " + QuoteLiteral(table) +
                "; COMMIT"),
        "clearing the partially copied table " + tp.target_table);
    for (auto it = done.begin(); it != done.end();) {
      it = it->first == table ? done.erase(it) : std::next(it);
    }
    std::fprintf(stderr, "tenantsync: %s was partially copied in the lost snapshot; copying it "
                         "again whole\n", table.c_str());
  }
  // Resumed with chunks left: they are read in a newer exported snapshot, and every table that
  // has a chunk left records its consistent point before any of its rows is copied, so the
  // applier skips exactly the changes that snapshot already holds (snapshot.h, "Resume"; a crash
  // after this point leaves the table partly copied, and the next resume empties it and records
  // its own point).
  std::set<std::string> copied_now;
  for (const auto& c : chunks) {
    if (!done.count({c.table, c.index})) copied_now.insert(c.table);
  }
  if (handoff.resumed && !copied_now.empty()) {
    TS_RETURN_IF_ERROR(CreateResumeSnapshot(config, &handoff));
    result->resumed_lsn = handoff.resumed_lsn;
    for (const auto& table : copied_now) {
      TS_RETURN_IF_ERROR(
          state.PutMeta(kMetaResumedLsnPrefix + table, handoff.resumed_lsn.ToString()));
    }
    // Tables finished in the lost snapshot next to tables copied now: foreign keys between them
    // may not hold until the stream has applied everything committed before the new point, so
    // they are added NOT VALID and validated by ValidateDeferredForeignKeys after that. An
    // earlier resume's record moves on to this newer point.
    TS_ASSIGN_OR_RETURN(auto mixed_before, state.GetMeta(kMetaMixedSnapshots));
    if (!done.empty() || mixed_before) {
      TS_RETURN_IF_ERROR(state.PutMeta(kMetaMixedSnapshots, handoff.resumed_lsn.ToString()));
    }
  }
  std::map<std::string, std::unique_ptr<TableProgress>> progress;
  std::vector<TableProgress*> display_order;
  for (const auto& name : plan->order) {
    auto p = std::make_unique<TableProgress>();
    p->table = name;
    p->estimated_rows = static_cast<int64_t>(plan->tables.at(name).source->estimated_rows);
    display_order.push_back(p.get());
    progress[name] = std::move(p);
  }
  std::deque<Chunk> pending;
  std::map<std::string, int> remaining;
  for (const auto& c : chunks) {
    TableProgress& p = *progress[c.table];
    p.chunks_total = c.count;
    if (done.count({c.table, c.index})) {
      p.chunks_done.fetch_add(1);
      p.chunks_skipped.fetch_add(1);
    } else {
      pending.push_back(c);
      ++remaining[c.table];
    }
  }
  if (options.stats) {
    int64_t total = 0;
    for (auto& [n, p] : progress) total += p->estimated_rows;
    options.stats->snapshot_rows_total.store(total);
    options.stats->SetPhase(PipelineStats::Phase::kSnapshot);
  }
  if (handoff.resumed && !pending.empty()) {
    std::fprintf(stderr,
                 "tenantsync: resuming the snapshot: %zu chunks left; the exported snapshot is "
                 "gone, so they are read in a fresh snapshot consistent at %s, and the stream "
                 "(from %s) skips their tables' changes committed before that\n",
                 pending.size(), handoff.resumed_lsn.ToString().c_str(),
                 handoff.lsn.ToString().c_str());
  }
  result->already_done = pending.empty();

  // Copy.
  std::map<std::string, std::set<std::string>> waits_for;
  for (const auto& name : plan->order) {
    if (plan->tables.at(name).target_exists) waits_for[name] = plan->parents.at(name);
  }
  Scheduler scheduler(pending, remaining, waits_for);
  int workers = options.workers > 0 ? options.workers : config.snapshot.workers;
  if (workers <= 0) workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  workers = std::min<int>(workers, static_cast<int>(pending.size()));
  ImportBarrier barrier(workers);
  WorkerShared shared{&config, plan.get(), {}, &scheduler, &barrier, &progress};
  shared.env.config = &config;
  shared.env.state = &state;
  shared.env.context.now = handoff.now;
  shared.env.consistent_lsn = handoff.lsn;
  shared.env.snapshot_name = handoff.snapshot_name;
  shared.env.cancel = options.cancel;
  shared.env.stats = options.stats;
  SnapshotOptions::Progress pm = options.progress;
  if (pm == SnapshotOptions::Progress::kAuto) {
    pm = isatty(STDERR_FILENO) ? SnapshotOptions::Progress::kLive : SnapshotOptions::Progress::kPlain;
  }
  internal::ProgressDisplay display(
      pm == SnapshotOptions::Progress::kLive    ? internal::ProgressDisplay::Mode::kLive
      : pm == SnapshotOptions::Progress::kPlain ? internal::ProgressDisplay::Mode::kPlain
                                                : internal::ProgressDisplay::Mode::kNone,
      stderr, display_order);
  display.Start();
  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i) {
    threads.emplace_back([&shared, &scheduler, i] {
      Status st = WorkerBody(shared, i);
      if (!st.ok()) scheduler.Fail(st);
    });
  }
  barrier.Wait();
  // Every worker holds the snapshot in its own transaction now; the replication connection's
  // open transaction would only keep the source's vacuum waiting.
  handoff.replication = PgConn();
  for (auto& t : threads) t.join();
  display.Stop();
  TS_RETURN_IF_ERROR(scheduler.error());
  phase_done("copy");

  TS_ASSIGN_OR_RETURN(auto mixed, state.GetMeta(kMetaMixedSnapshots));
  TS_RETURN_IF_ERROR(PostData(config, *plan, src, dst, std::max(1, workers), mixed.has_value(),
                              phase_done));
  if (mixed) {
    std::fprintf(stderr,
                 "tenantsync: foreign keys were added NOT VALID (the resumed copy mixes two "
                 "snapshots); they are validated once the stream has caught up\n");
  }
  TS_RETURN_IF_ERROR(state.PutMeta(kMetaState, "done"));
  // Kill point: everything is done; a rerun must change nothing.
  KillPoint("snapshot.after_done");

  result->seconds = (NowMicros() - t0) / 1e6;
  for (const auto& name : plan->order) {
    const TableProgress& p = *progress[name];
    TableResult tr;
    tr.table = name;
    tr.rows = p.rows.load();
    tr.bytes = p.bytes.load();
    tr.dead_letters = p.dead_letters.load();
    tr.chunks = p.chunks_total;
    tr.chunks_skipped = p.chunks_skipped.load();
    tr.seconds = p.start_us.load() ? (p.end_us.load() - p.start_us.load()) / 1e6 : 0;
    result->rows += tr.rows;
    result->dead_letters += tr.dead_letters;
    result->tables.push_back(tr);
  }
  if (options.progress != SnapshotOptions::Progress::kNone) PrintSummary(options.out, *result);
  if (!options.report_path.empty()) TS_RETURN_IF_ERROR(WriteReport(options.report_path, *result));
  return Status::Ok();
}

}  // namespace tenantsync::snapshot
