#include "snapshot/internal/copy_binary.h"

#include <cstdint>

#include "core/pg_text.h"

namespace tenantsync::snapshot::internal {

namespace {

constexpr std::string_view kSignature("PGCOPY\n\377\r\n\0", 11);

uint32_t ReadU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}

}  // namespace

bool IsPaddedCharType(std::string_view type) {
  for (std::string_view prefix : {"character(", "char(", "bpchar("}) {
    if (type.size() <= prefix.size() + 1 || type.substr(0, prefix.size()) != prefix) continue;
    std::string_view digits = type.substr(prefix.size(), type.size() - prefix.size() - 1);
    return type.back() == ')' && digits.find_first_not_of("0123456789") == std::string_view::npos;
  }
  return false;
}

Status BinaryPaddingTrimmer::Append(std::string_view message, std::string* out) {
  const size_t start = out->size();
  auto fail = [&](const std::string& what) {
    out->resize(start);
    return Corruption("binary COPY message: " + what);
  };
  size_t pos = 0;
  if (header_pending_) {
    if (message.size() < 19 || message.substr(0, 11) != kSignature) {
      return fail("the first message does not start with the PGCOPY signature");
    }
    const uint32_t extension = ReadU32(message.data() + 15);
    if (extension > message.size() - 19) return fail("header extension past the end");
    pos = 19 + extension;
    out->append(message.data(), pos);
    header_pending_ = false;
    if (pos == message.size()) return Status::Ok();  // a header on its own
  }
  if (message.size() - pos < 2) return fail("no field count");
  const auto* u = reinterpret_cast<const unsigned char*>(message.data() + pos);
  const int16_t fields = static_cast<int16_t>((u[0] << 8) | u[1]);
  if (fields == -1) {  // the trailer
    if (message.size() - pos != 2) return fail("bytes after the trailer");
    out->append(message.data() + pos, 2);
    return Status::Ok();
  }
  if (fields < 0 || static_cast<size_t>(fields) != trim_.size()) {
    return fail("field count " + std::to_string(fields) + ", expected " +
                std::to_string(trim_.size()));
  }
  out->append(message.data() + pos, 2);
  pos += 2;
  for (size_t f = 0; f < trim_.size(); ++f) {
    if (message.size() - pos < 4) return fail("field " + std::to_string(f + 1) + " cut short");
    const auto len = static_cast<int32_t>(ReadU32(message.data() + pos));
    pos += 4;
    if (len < 0) {
      if (len != -1) return fail("field " + std::to_string(f + 1) + " has a negative length");
      AppendBigEndian32(0xffffffffu, out);  // NULL
      continue;
    }
    if (static_cast<size_t>(len) > message.size() - pos) {
      return fail("field " + std::to_string(f + 1) + " runs past the end of the message");
    }
    size_t keep = static_cast<size_t>(len);
    if (trim_[f]) {
      while (keep > 0 && message[pos + keep - 1] == ' ') --keep;
    }
    AppendBigEndian32(static_cast<uint32_t>(keep), out);
    out->append(message.data() + pos, keep);
    pos += static_cast<size_t>(len);
  }
  if (pos != message.size()) return fail("bytes after the last field");
  return Status::Ok();
}

}  // namespace tenantsync::snapshot::internal
