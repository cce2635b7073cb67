// The row-by-row proof the end-to-end, fault and cutover tests end with: every table of the
// source schema, passed through the pipeline's own transform (casts, renames, encryption with the
// configured keys), must equal the tenant table as a multiset of full rows. The comparison runs in
// the target server, in the target's types: the transformed source rows are copied into a temp
// table and compared with EXCEPT ALL both ways. Target columns the source does not feed
// (`value: now`) are not compared.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/crypto.h"
#include "core/pg.h"

namespace tenantsync::testing {

struct TableComparison {
  std::vector<std::string> differences;  // "<table>: <what differs>", one per differing table
  int64_t rows_compared = 0;             // source rows, all tables
};

// Compares `tables` (source names, in config.source.schema) with their tenant tables
// (config.target.schema, names after renames). `cipher` may be null when nothing is encrypted.
// A table that can not be compared (missing, unreadable) is a difference, never skipped.
TableComparison CompareTables(PgConn* source, PgConn* target, const Config& config,
                              const Cipher* cipher, const std::vector<std::string>& tables);

}  // namespace tenantsync::testing
