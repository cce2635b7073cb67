// PostgreSQL COPY text format, one row at a time: parse a source row into Datums, write a target
// row from Datums. Pure functions over bytes (STYLE.md rule 5), unit-tested in copy_text_test.cc.
//
// Format (PostgreSQL docs, "COPY ... Text Format"): columns separated by a tab, the row ended by
// a newline; NULL is \N; a backslash escapes \b \f \n \r \t \v \\, \digits (1-3 octal) and \xHH
// (1-2 hex); a backslash before any other character stands for that character.
#pragma once

#include <string>
#include <string_view>

#include "core/change.h"
#include "core/status.h"

namespace tenantsync::snapshot::internal {

// Parses one row (with or without its trailing "\n") into `out` (resized to the column count).
// REQUIRES: `expected_columns` > 0. A row with another number of columns, or an escape that ends
// the row, is kCorruption naming the column number (never the value).
Status ParseCopyTextRow(std::string_view line, size_t expected_columns, Tuple* out);

// Appends `row` as one COPY text row, newline included. kNull → \N. kUnchanged is written as \N
// too; REQUIRES: the snapshot never produces it (rows come from COPY, not from pgoutput).
void AppendCopyTextRow(const Tuple& row, std::string* out);

// Appends one value escaped for COPY text format (no separators).
void AppendCopyTextValue(std::string_view value, std::string* out);

}  // namespace tenantsync::snapshot::internal
