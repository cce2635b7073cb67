#include "core/pg_text.h"

namespace tenantsync {
namespace {

// Exactly `n` decimal digits at text[*pos], advancing *pos.
bool Digits(std::string_view text, size_t* pos, size_t n, int* value) {
  if (*pos + n > text.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *value = v;
  return true;
}

bool Expect(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) return false;
  ++*pos;
  return true;
}

bool IsLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool DatePart(std::string_view text, size_t* pos, int64_t* unix_days) {
  int y, m, d;
  if (!Digits(text, pos, 4, &y) || !Expect(text, pos, '-') || !Digits(text, pos, 2, &m) ||
      !Expect(text, pos, '-') || !Digits(text, pos, 2, &d)) {
    return false;
  }
  static constexpr int kMonthDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1 || m < 1 || m > 12 || d < 1) return false;
  if (d > kMonthDays[m - 1] + (m == 2 && IsLeap(y) ? 1 : 0)) return false;
  *unix_days = DaysFromCivil(y, m, d);
  return true;
}

}  // namespace

bool ParseIsoDate(std::string_view text, int64_t* unix_days) {
  size_t pos = 0;
  return DatePart(text, &pos, unix_days) && pos == text.size();
}

bool ParseIsoTimestamp(std::string_view text, bool with_offset, int64_t* unix_micros) {
  size_t pos = 0;
  int64_t days;
  int h, mi, s;
  if (!DatePart(text, &pos, &days) || !Expect(text, &pos, ' ') || !Digits(text, &pos, 2, &h) ||
      !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &mi) || !Expect(text, &pos, ':') ||
      !Digits(text, &pos, 2, &s)) {
    return false;
  }
  if (h > 23 || mi > 59 || s > 59) return false;
  int64_t fraction = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (++digits > 6) return false;
      fraction = fraction * 10 + (text[pos++] - '0');
    }
    if (digits == 0) return false;
    for (; digits < 6; ++digits) fraction *= 10;
  }
  int64_t offset_secs = 0;
  if (with_offset) {
    if (pos >= text.size() || (text[pos] != '+' && text[pos] != '-')) return false;
    const int sign = text[pos++] == '-' ? -1 : 1;
    int oh, om = 0, os = 0;
    if (!Digits(text, &pos, 2, &oh)) return false;
    if (pos < text.size() && (!Expect(text, &pos, ':') || !Digits(text, &pos, 2, &om))) {
      return false;
    }
    if (pos < text.size() && (!Expect(text, &pos, ':') || !Digits(text, &pos, 2, &os))) {
      return false;
    }
    if (oh > 15 || om > 59 || os > 59) return false;
    offset_secs = sign * (oh * 3600 + om * 60 + os);
  }
  if (pos != text.size()) return false;
  *unix_micros = (days * 86400 + h * 3600 + mi * 60 + s - offset_secs) * 1000000 + fraction;
  return true;
}

}  // namespace tenantsync
