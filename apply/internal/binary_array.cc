#include "apply/internal/binary_array.h"

#include <charconv>
#include <limits>

#include "core/pg_text.h"

namespace tenantsync::apply::internal {
namespace {

// Element type OIDs (pg_type.dat): fixed for every PostgreSQL server.
constexpr uint32_t kBool = 16, kBytea = 17, kInt8 = 20, kInt2 = 21, kInt4 = 23, kText = 25,
                   kJson = 114, kVarchar = 1043, kDate = 1082, kTimestamp = 1114,
                   kTimestampTz = 1184, kJsonb = 3802;

// array_recv's header: ndim, flags (1: has NULLs), element type, then per dimension its length
// and lower bound.
constexpr size_t kFlagsOffset = 4;

// PostgreSQL's date and timestamp epoch, 2000-01-01, from the Unix epoch.
constexpr int64_t kPgEpochDays = 10957;
constexpr int64_t kPgEpochMicros = kPgEpochDays * 86400 * 1000000;

template <typename T>
bool ParseInt(std::string_view text, T* v) {
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, *v);
  return ec == std::errc() && p == end && !text.empty();
}

}  // namespace

uint32_t BinaryArrayElementType(const std::string& type) {
  if (type == "text") return kText;
  if (type == "character varying" || type.starts_with("character varying(")) return kVarchar;
  if (type == "bytea") return kBytea;
  if (type == "json") return kJson;
  if (type == "jsonb") return kJsonb;
  if (type == "boolean") return kBool;
  if (type == "smallint") return kInt2;
  if (type == "integer") return kInt4;
  if (type == "bigint") return kInt8;
  if (type == "date") return kDate;
  if (type == "timestamp without time zone") return kTimestamp;
  if (type == "timestamp with time zone") return kTimestampTz;
  return 0;
}

bool DecodeByteaHex(std::string_view text, std::string* out) {
  if (text.size() < 2 || text[0] != '\\' || text[1] != 'x' || text.size() % 2 != 0) return false;
  out->reserve(out->size() + (text.size() - 2) / 2);
  for (size_t i = 2; i < text.size(); i += 2) {
    const int hi = HexDigitValue(text[i]), lo = HexDigitValue(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi << 4 | lo));
  }
  return true;
}

BinaryArrayBuilder::BinaryArrayBuilder(uint32_t element_type, int32_t elements)
    : type_(element_type) {
  AppendBigEndian32(1, &out_);  // one dimension
  AppendBigEndian32(0, &out_);  // flags: set to 1 by Finish when an element is NULL
  AppendBigEndian32(element_type, &out_);
  AppendBigEndian32(static_cast<uint32_t>(elements), &out_);
  AppendBigEndian32(1, &out_);  // lower bound
}

bool BinaryArrayBuilder::Append(const Datum& d) {
  if (d.kind != Datum::Kind::kText) {
    AppendBigEndian32(0xFFFFFFFFu, &out_);  // length -1: NULL
    has_nulls_ = true;
    return true;
  }
  const std::string_view v = d.text;
  auto fixed32 = [&](uint32_t x) {
    AppendBigEndian32(4, &out_);
    AppendBigEndian32(x, &out_);
  };
  auto fixed64 = [&](uint64_t x) {
    AppendBigEndian32(8, &out_);
    AppendBigEndian64(x, &out_);
  };
  switch (type_) {
    case kText:
    case kVarchar:
    case kJson:
      if (v.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) return false;
      AppendBigEndian32(static_cast<uint32_t>(v.size()), &out_);
      out_.append(v);
      return true;
    case kJsonb:  // jsonb_recv: a version byte (1), then the text
      if (v.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max())) return false;
      AppendBigEndian32(static_cast<uint32_t>(v.size() + 1), &out_);
      out_.push_back('\x01');
      out_.append(v);
      return true;
    case kBytea: {
      const size_t at = out_.size();
      AppendBigEndian32(0, &out_);
      if (!DecodeByteaHex(v, &out_)) return false;
      const size_t n = out_.size() - at - 4;
      if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max())) return false;
      std::string len;
      AppendBigEndian32(static_cast<uint32_t>(n), &len);
      out_.replace(at, 4, len);
      return true;
    }
    case kBool:
      if (v == "t" || v == "true") {
        AppendBigEndian32(1, &out_);
        out_.push_back('\x01');
        return true;
      }
      if (v == "f" || v == "false") {
        AppendBigEndian32(1, &out_);
        out_.push_back('\x00');
        return true;
      }
      return false;
    case kInt2: {
      int16_t x;
      if (!ParseInt(v, &x)) return false;
      AppendBigEndian32(2, &out_);
      out_.push_back(static_cast<char>(static_cast<uint16_t>(x) >> 8));
      out_.push_back(static_cast<char>(x));
      return true;
    }
    case kInt4: {
      int32_t x;
      if (!ParseInt(v, &x)) return false;
      fixed32(static_cast<uint32_t>(x));
      return true;
    }
    case kInt8: {
      int64_t x;
      if (!ParseInt(v, &x)) return false;
      fixed64(static_cast<uint64_t>(x));
      return true;
    }
    case kDate: {
      int64_t days;
      if (!ParseIsoDate(v, &days)) return false;
      fixed32(static_cast<uint32_t>(static_cast<int32_t>(days - kPgEpochDays)));
      return true;
    }
    case kTimestamp:
    case kTimestampTz: {
      int64_t micros;
      if (!ParseIsoTimestamp(v, type_ == kTimestampTz, &micros)) return false;
      fixed64(static_cast<uint64_t>(micros - kPgEpochMicros));
      return true;
    }
    default:
      return false;
  }
}

std::string BinaryArrayBuilder::Finish() && {
  if (has_nulls_) out_[kFlagsOffset + 3] = 1;
  return std::move(out_);
}

}  // namespace tenantsync::apply::internal
