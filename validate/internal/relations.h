// Logical relations declared in the config (`tables.<t>.relations`, core/config.h): resolved
// against both catalogs and the mapping into the target-side shape of a foreign key, so the fk
// check runs the same orphan anti-join for them as for the tenant schema's constraints.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/crypto.h"
#include "core/status.h"
#include "validate/internal/catalog.h"

namespace tenantsync::validate::internal {

struct ResolvedRelation {
  std::string source_table;  // the child, source name (the `tables:` key)
  std::string path;          // "tables.<t>.relations.<name>", names it in details
  // Target names: table, columns, ref_table, ref_columns; name = the relation's name;
  // ref_schema = the tenant schema.
  ForeignKeyInfo fk;
  // What the target lacks for the check to run: "no table X" or "no column X.c"; empty when
  // it can run. A relation that can not run is a failed check, not an error: the schema check
  // reports the same gap.
  std::vector<std::string> missing;
};

// Resolves every relation of every non-skipped table of `config`. Names are source names; each
// column is mapped to its target name through the same transform the pipeline uses
// (invariant 5). Bad input is one kInvalidArgument line naming the config key and the fix: an
// unknown table or column, a column the mapping drops or encrypts (ciphertexts of two columns
// never match), a parent without a primary key when ref_columns is not given, or a column count
// that differs from the parent's key. `cipher` may be null when nothing is encrypted.
StatusOr<std::vector<ResolvedRelation>> ResolveRelations(
    const Config& config, const std::map<std::string, TableInfo>& source_tables,
    const std::map<std::string, TableInfo>& target_tables, const std::string& target_schema,
    const Cipher* cipher);

// The constraint among `fks` (of the tenant schema) that checks what `rel` checks: same child,
// same parent, same (column, referenced column) pairs in any order; null when there is none.
const ForeignKeyInfo* SameConstraint(const ResolvedRelation& rel,
                                     const std::vector<ForeignKeyInfo>& fks);

}  // namespace tenantsync::validate::internal
