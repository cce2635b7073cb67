// PostgreSQL COPY binary format, one CopyData message at a time: drops the blank padding of
// character(n) values on the way from the source to the target. Pure functions over bytes
// (STYLE.md rule 5), unit-tested in copy_binary_test.cc.
//
// Why: a character(n) value is stored, and sent by COPY TO, padded with blanks to n characters,
// and the target's character(n) input pads it back to n whatever it receives (bpchar_input), so
// sending it without the trailing blanks stores exactly the same value while the target reads
// fewer bytes and counts the characters of a short string instead of all n. (pgbench_accounts'
// filler is character(84) and blank: 114-byte rows become 30 bytes, and the target's COPY FROM,
// the slowest process of a snapshot, takes ~35% less time; see bench/RESULTS.md, Snapshot.) The
// byte 0x20 is a blank and nothing else in every encoding PostgreSQL supports: server encodings
// are ASCII-safe, and the trailing bytes of the client-only ones (SJIS, BIG5, GBK, UHC, GB18030,
// JOHAB) are all 0x30 or above. So trimming 0x20 bytes never cuts a character.
//
// Format (PostgreSQL docs, "COPY ... Binary Format"), big-endian: the first message starts with
// the header (11-byte signature, Int32 flags, Int32 extension length, the extension); each row is
// Int16 field count, then per field Int32 length (-1: NULL) and the bytes; the trailer is the
// Int16 -1. COPY TO sends one message per row (the header with the first row).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tenantsync::snapshot::internal {

// True for format_type()'s "character(n)" (and the spellings "char(n)", "bpchar(n)" a config may
// give): values stored padded to n characters, whose trailing blanks the input function ignores.
// Not for bpchar without a length (stored as given), arrays, or anything else. Used by the
// snapshot's binary pass-through and the applier's staging COPY.
bool IsPaddedCharType(std::string_view type);

class BinaryPaddingTrimmer {
 public:
  // `trim[i]`: field i is character(n) and loses its trailing blanks. REQUIRES: some are true.
  explicit BinaryPaddingTrimmer(std::vector<bool> trim) : trim_(std::move(trim)) {}

  // Appends `message` to `out` with the marked fields trimmed. A message that is not what COPY
  // TO sends (wrong field count, a length past the end, a bad header) is kCorruption and appends
  // nothing: never a silently changed row.
  Status Append(std::string_view message, std::string* out);

 private:
  std::vector<bool> trim_;
  bool header_pending_ = true;  // the first message starts with the file header
};

}  // namespace tenantsync::snapshot::internal
