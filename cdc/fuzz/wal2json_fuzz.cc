// libFuzzer target for Wal2jsonDecoder: malformed JSON (or valid JSON of the wrong shape) must
// give a Status, never a crash or a sanitizer report.
//
// Input: newline-separated wal2json objects fed to one decoder whose catalog lookup knows the
// type-zoo tables (from the captured catalog), so relation mapping, unchanged-TOAST filling and
// the schema-changed paths are reached.
#include <cstddef>
#include <cstdint>
#include <span>

#include "cdc/internal/fixtures.h"
#include "cdc/wal2json_decoder.h"

namespace {

const tenantsync::cdc::testing::FixtureCatalog& Catalog() {
  static const auto* catalog = [] {
    auto c = tenantsync::cdc::testing::LoadCatalog(std::string(TENANTSYNC_CDC_TESTDATA) +
                                                   "/zoo.catalog.tsv");
    return new tenantsync::cdc::testing::FixtureCatalog(
        c.ok() ? std::move(c).value() : tenantsync::cdc::testing::FixtureCatalog{});
  }();
  return *catalog;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tenantsync::cdc::Wal2jsonDecoder decoder(Catalog().Relations());
  size_t start = 0;
  for (size_t i = 0; i <= size; ++i) {
    if (i == size || data[i] == '\n') {
      // Any Status is fine; only crashes and sanitizer reports are findings.
      decoder.Decode(std::span<const uint8_t>(data + start, i - start)).status().IgnoreError();
      start = i + 1;
    }
  }
  return 0;
}
