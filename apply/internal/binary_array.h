// Binary array parameters for the array path (SendArrayRun): one column of a run sent in
// PostgreSQL's binary array format (what array_recv reads), built from the datums' text.
//
// Why: the target backend parses a text array literal twice (array_in counts, then splits and
// unescapes every element) and then calls each element's input function; on RAWDOG's wide rows
// that was a fifth of the apply backend's CPU (bench/RESULTS.md). A binary array is
// length-prefixed, and its elements go to the types' receive functions.
//
// Only values in the exact form PostgreSQL's own output functions write (ISO dates, decimal
// integers, `t`/`f`, `\x` hex) are converted; anything else makes the caller send that column as
// a text array, as before, so the server parses (or rejects, with its own error) exactly what it
// would have parsed. A converted value means the same as its text under any session setting:
// timestamps with time zone are converted only when their text carries the offset.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/change.h"

namespace tenantsync::apply::internal {

// The element type's OID when a column of target type `type` (format_type() text) can go as a
// binary array: text, character varying(n), bytea, json, jsonb, boolean, smallint, integer, bigint,
// date, timestamp with(out) time zone. 0 for every other type (text array only).
uint32_t BinaryArrayElementType(const std::string& type);

// Builds binary arrays of one element type, one element at a time.
class BinaryArrayBuilder {
 public:
  // REQUIRES: element_type was returned non-zero by BinaryArrayElementType.
  BinaryArrayBuilder(uint32_t element_type, int32_t elements);

  // Appends one element: NULL, or `d`'s text converted. false (and the builder must be dropped)
  // when the text is not in the form this converts. REQUIRES: !d.is_unchanged().
  [[nodiscard]] bool Append(const Datum& d);

  // The array's bytes (header, then the elements). REQUIRES: `elements` elements appended.
  std::string Finish() &&;

 private:
  uint32_t type_;
  std::string out_;
  bool has_nulls_ = false;
};

// "\\x" and pairs of hex digits (bytea_out's hex format) -> the bytes, appended to `out`. false
// for anything else (the escape format, blanks between pairs).
bool DecodeByteaHex(std::string_view text, std::string* out);

}  // namespace tenantsync::apply::internal
