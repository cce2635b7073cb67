#include "core/change.h"

#include "core/hash.h"

namespace tenantsync {

uint64_t Relation::Fingerprint() const {
  Fnv1a f;
  f.Field(std::to_string(oid));
  f.Field(schema);
  f.Field(name);
  f.Field(std::string_view(&replica_identity, 1));
  for (const auto& c : columns) {
    f.Field(c.name);
    f.Field(c.type_name);
    f.Field(std::to_string(c.type_oid));
    f.Field(std::to_string(c.type_modifier));
    f.Field(c.is_key ? "k" : "-");
  }
  return f.h;
}

}  // namespace tenantsync
