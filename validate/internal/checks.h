// The individual checks of validate.h, each over one table plan (or the tenant schema's foreign
// keys), each returning CheckResults; differences are results, errors are Status.
#pragma once

#include <vector>

#include "validate/internal/catalog.h"
#include "validate/internal/live.h"
#include "validate/internal/session.h"
#include "validate/internal/table_plan.h"
#include "validate/validate.h"

namespace tenantsync::validate::internal {

struct CheckContext {
  Session* source = nullptr;
  Session* target = nullptr;
  LiveGate* gate = nullptr;
  const ValidateOptions* options = nullptr;
};

// Target columns whose sums are compared: TableConfig::sum_columns (source or target names), else
// the mapping's bigint columns named *_cents.
std::vector<int> SumColumns(const TablePlan& plan, const TableConfig* cfg);

// Every mapped column exists in the target with the mapping's type.
CheckResult SchemaCheck(const TablePlan& plan);
// The count check and one sum check per column of `sum_columns`. Sets *source_rows to the
// source count (used to size samples and the full diff).
StatusOr<std::vector<CheckResult>> CountAndSumChecks(CheckContext& ctx, const TablePlan& plan,
                                                     const std::vector<int>& sum_columns,
                                                     int64_t* source_rows, int64_t* target_rows);
StatusOr<CheckResult> SampleCheck(CheckContext& ctx, const TablePlan& plan, int64_t source_rows);
// Orphans of one foreign key of the tenant schema. `child` is the plan of the child table when it
// is validated (its key names the orphans), else null.
StatusOr<CheckResult> ForeignKeyCheck(CheckContext& ctx, const std::string& schema,
                                      const ForeignKeyInfo& fk, const TablePlan* child);
// The checksum diff (validate.h, "Full diff").
// `rows`: about how many rows the table has (sizes the first pass). Sets the row counts the
// whole-table pass saw on each side.
StatusOr<CheckResult> FullDiffCheck(CheckContext& ctx, const TablePlan& plan, int64_t rows,
                                    int64_t* source_rows, int64_t* target_rows);
// pg_class.reltuples of the source table (0 when never analyzed): a free size estimate.
StatusOr<int64_t> EstimateSourceRows(Session& source, const TablePlan& plan);

// Turns a row-level Confirm outcome into the check's status and listed rows.
void AddRowVerdict(CheckResult* result, const RowDifference& diff, Verdict verdict,
                   int max_rows);

}  // namespace tenantsync::validate::internal
