// The SQL the applier sends, built from a target table's shape. Pure functions over strings, so
// every statement form is unit-tested without a server (apply/internal/sql_builder_test.cc).
//
// Parameters are always text ($1..$n, types inferred by the server from the target columns), in
// the order the function documents. Identifiers are quoted with QuoteIdent, so any table or column
// name (quotes, case, unicode) is safe.
#pragma once

#include <string>
#include <vector>

#include "core/change.h"

namespace tenantsync::apply::internal {

// A target table as the applier writes it: the transform's target columns, their types in the
// target catalog, and the target's primary key.
struct TableShape {
  std::string qualified;             // "schema"."table", quoted
  std::vector<std::string> columns;  // target column names, in the transform's output order
  std::vector<std::string> types;    // format_type() of each column in the target catalog
  // The same without the type modifier: the array path's casts. An explicit cast to a typmod
  // cuts a value too long for it ('abcdef'::varchar(3) is 'abc'); assigning to the column
  // rejects it, as a one-row INSERT does.
  std::vector<std::string> base_types;
  std::vector<int> key;              // indexes into `columns` of the target primary key; empty: none
  std::vector<bool> added;           // true for `value:` columns (not fed by a source column)
  // true for character(n) columns (snapshot::internal::IsPaddedCharType): the target pads what
  // it receives back to n blanks, so the COPY text to the bulk path's staging table leaves
  // trailing blanks out (AppendCopyText).
  std::vector<bool> blank_padded;
};

// A predicate "col = $n" for key columns, or a NULL-safe match for full-row identity. Types
// without an equality operator compare through jsonb (json) or text (xml, geometric types).
std::string MatchExpr(const std::string& column_sql, const std::string& type, int param,
                      bool null_safe);

// INSERT INTO t (cols) VALUES ($1..$n) ON CONFLICT (key) DO UPDATE SET <non-key, non-added cols>
// = EXCLUDED...; DO NOTHING when nothing is left to set; no ON CONFLICT clause without a key.
// Params: the values of `cols`, in order.
std::string InsertSql(const TableShape& t, const std::vector<int>& cols);

// UPDATE t SET <set_cols> WHERE <key> = ... Params: `set_cols` values, then the key values in
// `t.key` order. REQUIRES: !t.key.empty(), !set_cols.empty().
std::string UpdateByKeySql(const TableShape& t, const std::vector<int>& set_cols);

// Tables without a primary key: one row matched on every column of the old row
// (ctid = (SELECT ctid ... LIMIT 1)): `match_cols` by `=`, `null_cols` by IS NULL (the values that
// were NULL), so an index on any matched column can find the row (IS NOT DISTINCT FROM would
// scan the table for every change). Params: `set_cols` values, then `match_cols` values.
std::string UpdateByMatchSql(const TableShape& t, const std::vector<int>& set_cols,
                             const std::vector<int>& match_cols, const std::vector<int>& null_cols);

// DELETE FROM t WHERE <key> = ... Params: the key values. REQUIRES: !t.key.empty().
std::string DeleteByKeySql(const TableShape& t);
// One row matched as by UpdateByMatchSql. Params: `match_cols` values.
std::string DeleteByMatchSql(const TableShape& t, const std::vector<int>& match_cols,
                             const std::vector<int>& null_cols);

// TRUNCATE of every listed table in one statement (so FKs between them are fine), never CASCADE:
// the source lists every table its cascade reached.
std::string TruncateSql(const std::vector<std::string>& qualified_tables, bool restart_identity);

// --- bulk path: rows COPYed into a temporary staging table, then one set-based statement ---
// `stage` below is the staging table's name as SQL (quoted where needed, qualified or not).

// Name of the staging table of relation entry `id` (unqualified, in pg_temp).
std::string StageTableName(int id);
// CREATE TEMP TABLE IF NOT EXISTS <stage> (ts_seq bigint, <every column with its target type>)
// ON COMMIT DELETE ROWS.
std::string CreateStageSql(const TableShape& t, const std::string& stage);
// CREATE UNLOGGED TABLE <stage> (the same columns) WITH (autovacuum_enabled = false): a staging
// table another session fills and commits (a live transaction's parallel staging).
std::string CreateSharedStageSql(const TableShape& t, const std::string& stage);
// "stage_<16 hex digits of a hash of the pipeline name>_": the names of a pipeline's shared
// staging tables in _tenantsync start with it (so a restart finds and drops what a crash left).
std::string SharedStagePrefix(const std::string& pipeline);
// COPY <stage> (ts_seq, <cols>) FROM STDIN (text format).
std::string CopyIntoStageSql(const TableShape& t, const std::string& stage,
                             const std::vector<int>& cols);
// COPY t (<cols>) FROM STDIN (text format), straight into the target table; `cols` non-empty.
std::string CopyIntoTableSql(const TableShape& t, const std::vector<int>& cols);
// INSERT INTO t (cols) SELECT the last staged row per key (by ts_seq) ON CONFLICT ... as InsertSql;
// without a key, every staged row in ts_seq order. `unique_keys`: the caller knows no key occurs
// twice in the stage, so the per-key sort (DISTINCT ON) is left out.
std::string BulkInsertSql(const TableShape& t, const std::string& stage,
                          const std::vector<int>& cols, bool unique_keys = false);
// UPDATE t SET <set_cols but the key> FROM (the last staged row per key) s WHERE t.key = s.key.
// Only for runs whose key did not change. REQUIRES: !t.key.empty(), every key column is in
// `set_cols` (it is staged to match on). `unique_keys`: as for BulkInsertSql.
std::string BulkUpdateSql(const TableShape& t, const std::string& stage,
                          const std::vector<int>& set_cols, bool unique_keys = false);
// DELETE FROM t USING <stage> s WHERE t.key = s.key. REQUIRES: !t.key.empty().
std::string BulkDeleteSql(const TableShape& t, const std::string& stage);
std::string TruncateStageSql(const std::string& stage);

// --- array path: a short run as one statement, its rows passed as one array per column ---
// "(SELECT * FROM unnest($1::<base type>[], ..) WITH ORDINALITY AS u(<cols>, ts_seq))": the rows
// of `cols`, in order, as a stage the Bulk*Sql statements above read (keyless INSERT: append an
// alias, " u"); base_types, so the column's own modifier applies on assignment. Params: one array
// per column of `cols`, from $1. An array-typed column's param is a text[] of its values' text,
// each cast to the column's base type in the stage's select list.
std::string ArrayStageSql(const TableShape& t, const std::vector<int>& cols);
// A table without a key: several deletes as one statement, with the effect of deleting them one
// at a time (DeleteByMatchSql each). The rows are grouped by value (GROUP BY: the columns' own
// equality, through jsonb for json and text for types without one, as MatchExpr), and a value
// given n times deletes up to n of the rows that match it, each row once (row_number() over the
// matches, ctid order). Every row given has NULL in exactly `null_cols` and a value in every
// column of `match_cols` (REQUIRES: !match_cols.empty()). Params: one array per column of
// `match_cols`, from $1, as ArrayStageSql's.
std::string KeylessDeleteSql(const TableShape& t, const std::vector<int>& match_cols,
                             const std::vector<int>& null_cols);
// A table without a key: several updates as one statement, with the effect of running them one
// at a time (UpdateByMatchSql each) when no update's old row is another's new row: the updates
// of one old value (grouped as by KeylessDeleteSql) take the rows that match it in ctid order,
// the first update given the first row, and those beyond the rows there find none. Every old
// row has NULL in exactly `null_cols` and a value in every column of `match_cols` (REQUIRES:
// !match_cols.empty(), !set_cols.empty()). Params: one array per column of `match_cols` (the
// old values), then one per column of `set_cols` (the new), as ArrayStageSql's.
std::string KeylessUpdateSql(const TableShape& t, const std::vector<int>& match_cols,
                             const std::vector<int>& null_cols, const std::vector<int>& set_cols);
// A type KeylessDeleteSql can group by: every type but an array of json, xml or a geometric type.
bool KeylessGroupable(const std::string& type);
// The column type is an array type (format_type's "<element>[]").
bool IsArrayType(const std::string& type);
// Appends one datum as an element of an array literal: NULL, or double-quoted with \ and "
// escaped (the element's input function then sees exactly the datum's text).
// `trim_trailing_blanks`: as for AppendCopyText. REQUIRES: !d.is_unchanged().
void AppendArrayElement(const Datum& d, std::string* out, bool trim_trailing_blanks = false);

// Appends one datum in COPY text format: \N for NULL, backslash escapes for \ \n \r \t.
// `trim_trailing_blanks` (for blank_padded columns): trailing ' ' are left out.
// REQUIRES: !d.is_unchanged().
void AppendCopyText(const Datum& d, std::string* out, bool trim_trailing_blanks = false);

}  // namespace tenantsync::apply::internal
