// libFuzzer target: ParseConfig over arbitrary text. Every input either parses or gives one
// kInvalidArgument line starting with the origin; nothing crashes, throws or hangs.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  tenantsync::StatusOr<tenantsync::Config> c = tenantsync::ParseConfig(text, "fuzz.yaml");
  if (!c.ok()) {
    tenantsync::Status s = c.status();  // status() returns a copy: keep it alive
    if (s.code() != tenantsync::StatusCode::kInvalidArgument) abort();
    if (s.message().rfind("fuzz.yaml: ", 0) != 0) abort();
    if (s.message().find('\n') != std::string::npos) abort();
  } else {
    if (c->pipeline.empty() || c->tenant.slug.empty() || c->source.slot.empty()) abort();
  }
  return 0;
}
