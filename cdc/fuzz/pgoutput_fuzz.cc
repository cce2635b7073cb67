// libFuzzer target for PgoutputDecoder: malformed input must give a Status, never a crash, a
// sanitizer report or an allocation larger than the input (ASan's -malloc_limit_mb / -rss_limit).
//
// Input: one pgoutput message, decoded by a decoder that already holds the relations of the
// type-zoo fixture (so Insert/Update/Delete/Truncate bodies reach the tuple reader). An input
// starting with 0xFF is instead a sequence of messages, each prefixed by a 2-byte big-endian
// length, fed to one decoder (Relation then changes, relation replacement, ...); 0xFE is the
// same with a protocol 2 decoder (stream blocks, xid-prefixed messages, stream commit/abort).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "cdc/internal/fixtures.h"
#include "cdc/pgoutput_decoder.h"

namespace {

using tenantsync::cdc::PgoutputDecoder;

PgoutputDecoder* MakePrimed(int protocol_version) {
  auto* d = new PgoutputDecoder(
      [](uint32_t oid, int32_t typmod) -> tenantsync::StatusOr<std::string> {
        if (oid == 0) return tenantsync::NotFound("type 0");  // exercise lookup failures too
        return std::string("type") + std::to_string(oid);
      },
      protocol_version);
  auto msgs = tenantsync::cdc::testing::LoadFixture(
      std::string(TENANTSYNC_CDC_TESTDATA) + "/zoo.pgoutput.hex", true);
  if (msgs.ok()) {
    for (const auto& m : *msgs) d->Decode(m.bytes).status().IgnoreError();  // primes relations
  }
  return d;
}

const PgoutputDecoder& Primed(int protocol_version) {
  static const PgoutputDecoder* v1 = MakePrimed(1);
  static const PgoutputDecoder* v2 = MakePrimed(2);
  return protocol_version == 2 ? *v2 : *v1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 0xFE: the same sequence form under protocol 2 (stream blocks, xid-prefixed messages).
  const bool v2 = size > 0 && data[0] == 0xFE;
  PgoutputDecoder decoder = Primed(v2 ? 2 : 1);
  if (size > 0 && (data[0] == 0xFF || v2)) {
    size_t pos = 1;
    while (pos + 2 <= size) {
      size_t len = (size_t{data[pos]} << 8) | data[pos + 1];
      pos += 2;
      if (len > size - pos) len = size - pos;
      decoder.Decode(std::span<const uint8_t>(data + pos, len)).status().IgnoreError();
      pos += len;
    }
    return 0;
  }
  // Result ignored on purpose: any Status is fine, only crashes and leaks are findings.
  decoder.Decode(std::span<const uint8_t>(data, size)).status().IgnoreError();
  return 0;
}
