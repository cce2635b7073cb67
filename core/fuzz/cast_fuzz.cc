// libFuzzer target: CastText for every known type over arbitrary text. A cast either fails with
// kInvalidArgument or returns text that casts again to itself (the normal form is stable, which
// keeps snapshot and stream values equal, DESIGN.md invariant 5).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/transform.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* kTypes[] = {"smallint", "integer", "bigint", "real", "double precision",
                                 "numeric", "numeric(6,2)", "boolean", "text", "varchar(5)",
                                 "timestamptz", "date", "jsonb", "uuid"};
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const char* t : kTypes) {
    tenantsync::StatusOr<std::string> type = tenantsync::NormalizeCastType(t);
    if (!type.ok()) abort();
    tenantsync::StatusOr<std::string> once = tenantsync::CastText(*type, text);
    if (!once.ok()) {
      if (once.status().code() != tenantsync::StatusCode::kInvalidArgument) abort();
      continue;
    }
    tenantsync::StatusOr<std::string> twice = tenantsync::CastText(*type, *once);
    if (!twice.ok() || *twice != *once) abort();
  }
  return 0;
}
