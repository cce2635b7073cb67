// Copies one chunk (a table, or a ctid range of it) from a source transaction into the target,
// as one target transaction that also inserts the chunk's marker row into
// _tenantsync.snapshot_chunks (so the chunk is in the target entirely or not at all).
//
// Paths:
//  - binary pass-through (TablePlan::binary): COPY ... TO STDOUT (FORMAT binary) bytes go to
//    COPY ... FROM STDIN (FORMAT binary) without being parsed, grouped into ~8 kB CopyData
//    messages (the source sends one message per row; the target backend need not handle millions
//    of tiny ones);
//  - transform: COPY text out → ParseCopyTextRow → TableTransform::Apply → AppendCopyTextRow →
//    COPY text in, 256 kB at a time (memory does not grow with the chunk: invariant 7).
// A row that fails its transform is a dead letter (or aborts under on_error: abort). When the
// target rejects the COPY as a whole (a constraint, a bad value), the chunk is redone row by row,
// each INSERT in a savepoint, so only the bad rows become dead letters (invariant 6).
//
// Dead letters are stored before the target commit: a crash between the two can store a row's
// dead letter twice, never lose it.
//
// Thread safety: one ChunkCopier per worker thread; the plan, transform and state store are
// shared (immutable / thread-safe).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/lsn.h"
#include "core/pg.h"
#include "core/pipeline_stats.h"
#include "core/transform.h"
#include "snapshot/internal/plan.h"
#include "snapshot/internal/progress.h"
#include "state/state_store.h"

namespace tenantsync::snapshot::internal {

struct Chunk {
  std::string table;         // source table
  int index = 0;
  int count = 1;
  int64_t first_block = 0;
  int64_t end_block = -1;    // exclusive; -1 = to the end of the table
  // The chunk is the whole table and the table was created by this pipeline (no rows but this
  // chunk's, no foreign keys yet): its transaction empties the table first and copies with
  // COPY ... FREEZE, so the rows are written frozen and the key build, the foreign key checks
  // and the target's vacuum do not have to set hint bits on (rewrite) every page again.
  bool whole_created_table = false;
};

// The WHERE clause selecting the chunk's rows by ctid ("" for a single-chunk table).
std::string ChunkPredicate(const Chunk& chunk);

struct CopierEnv {
  const Config* config = nullptr;
  state::StateStore* state = nullptr;
  TransformContext context;
  Lsn consistent_lsn;
  std::string snapshot_name;             // recorded in the marker row ("" when resumed)
  const std::atomic<bool>* cancel = nullptr;
  PipelineStats* stats = nullptr;
};

class ChunkCopier {
 public:
  // `source` is in the worker's REPEATABLE READ snapshot transaction; `target` is idle.
  ChunkCopier(const CopierEnv& env, PgConn& source, PgConn& target)
      : env_(env), source_(source), target_(target) {}

  // Copies the chunk and commits it with its marker. Counters in `progress` grow as rows are sent
  // and are corrected if the chunk rolls back. On error the target transaction is rolled back;
  // the source transaction may be unusable (the caller stops the worker).
  Status Copy(const TablePlan& plan, const Chunk& chunk, TableProgress* progress);

 private:
  struct Pass {
    int64_t rows = 0;
    int64_t bytes = 0;
    int64_t dead = 0;
    bool target_failed = false;
    Status target_status;
  };
  Status CopyPass(const TablePlan& plan, const Chunk& chunk, TableProgress* progress, Pass* pass);
  Status RowByRowPass(const TablePlan& plan, const Chunk& chunk, bool record_transform_failures,
                      TableProgress* progress, Pass* pass);
  Status DeadLetter(const TablePlan& plan, const Chunk& chunk, int64_t row_number,
                    const Tuple& row, const std::string& reason);
  Status Commit(const TablePlan& plan, const Chunk& chunk, const Pass& pass);

  const CopierEnv& env_;
  PgConn& source_;
  PgConn& target_;
  int statement_counter_ = 0;
};

}  // namespace tenantsync::snapshot::internal
