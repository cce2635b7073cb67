// Whole rows by key, fetched from both sides as text and compared through the transform engine:
// the authority for every row-level verdict of the sample and full checks (invariant 5).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/change.h"
#include "validate/internal/session.h"
#include "validate/internal/table_plan.h"
#include "validate/validate.h"

namespace tenantsync::validate::internal {

using Key = std::vector<std::string>;  // key column values as text, in key order

struct SourceRow {
  std::string xmin;  // changes whenever the row is updated: the live check's fingerprint
  Tuple values;      // one Datum per source column
  bool operator==(const SourceRow&) const = default;
};

struct TargetRow {
  std::vector<std::optional<std::string>> values;  // one per plan column; nullopt: NULL or absent
  bool operator==(const TargetRow&) const = default;
};

// "id=42" / "order_id=7,line=2".
std::string FormatKey(const TablePlan& plan, const Key& key);

// Rows with these keys (absent keys are absent from the map). REQUIRES: plan.has_key().
StatusOr<std::map<Key, SourceRow>> FetchSourceRows(Session& source, const TablePlan& plan,
                                                   const std::vector<Key>& keys);
StatusOr<std::map<Key, TargetRow>> FetchTargetRows(Session& target, const TablePlan& plan,
                                                   const std::vector<Key>& keys);

// Tables without a key (or whose key the mapping transforms): rows are found by the full diff's
// row hash (TablePlan::SourceRowHash / TargetRowHash, as decimal text), which the two sides
// compute alike for the columns it covers. Each call scans the table once on its server, which
// computes the hash of every row and returns only the rows whose hash is in `hashes`, grouped by
// hash (a hash absent from the map has no row).
StatusOr<std::map<std::string, std::vector<SourceRow>>> FetchSourceRowsByHash(
    Session& source, const TablePlan& plan, const std::vector<std::string>& hashes);
StatusOr<std::map<std::string, std::vector<TargetRow>>> FetchTargetRowsByHash(
    Session& target, const TablePlan& plan, const std::vector<std::string>& hashes);

// nullopt when the target row is what the transform makes of the source row (`now` columns and
// columns the target lacks are not compared; encrypted ones are decrypted and compared with the
// source plaintext; values whose text differs are compared again after the target's input
// function, so "1.50" equals "1.5" for numeric). Either row may be null (missing / extra).
StatusOr<std::optional<RowDifference>> CompareRow(Session& target, const TablePlan& plan,
                                                  const Key& key, const SourceRow* source,
                                                  const TargetRow* target_row);

}  // namespace tenantsync::validate::internal
