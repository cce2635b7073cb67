#include "snapshot/internal/copy_text.h"

#include "core/pg_text.h"

namespace tenantsync::snapshot::internal {

Status ParseCopyTextRow(std::string_view line, size_t expected_columns, Tuple* out) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  out->resize(expected_columns);
  size_t col = 0;
  size_t i = 0;
  const size_t n = line.size();
  while (true) {
    if (col >= expected_columns) {
      return Corruption("COPY row has more than " + std::to_string(expected_columns) + " columns");
    }
    Datum& d = (*out)[col];
    // Find the end of this field.
    size_t end = i;
    bool has_escape = false;
    while (end < n && line[end] != '\t') {
      if (line[end] == '\\') {
        has_escape = true;
        if (end + 1 >= n) {
          return Corruption("COPY row ends inside an escape in column " + std::to_string(col + 1));
        }
        ++end;
      }
      ++end;
    }
    std::string_view field = line.substr(i, end - i);
    if (field == "\\N") {
      d.kind = Datum::Kind::kNull;
      d.text.clear();
    } else {
      d.kind = Datum::Kind::kText;
      if (!has_escape) {
        d.text.assign(field);
      } else {
        d.text.clear();
        d.text.reserve(field.size());
        for (size_t k = 0; k < field.size(); ++k) {
          char c = field[k];
          if (c != '\\') {
            d.text.push_back(c);
            continue;
          }
          char e = field[++k];  // in range: checked above
          switch (e) {
            case 'b': d.text.push_back('\b'); break;
            case 'f': d.text.push_back('\f'); break;
            case 'n': d.text.push_back('\n'); break;
            case 'r': d.text.push_back('\r'); break;
            case 't': d.text.push_back('\t'); break;
            case 'v': d.text.push_back('\v'); break;
            case 'x': {
              int v = 0, digits = 0;
              while (digits < 2 && k + 1 < field.size() && HexDigitValue(field[k + 1]) >= 0) {
                v = v * 16 + HexDigitValue(field[++k]);
                ++digits;
              }
              if (digits == 0) {
                d.text.push_back('x');
              } else {
                d.text.push_back(static_cast<char>(v));
              }
              break;
            }
            default:
              if (e >= '0' && e <= '7') {
                int v = e - '0', digits = 1;
                while (digits < 3 && k + 1 < field.size() && field[k + 1] >= '0' &&
                       field[k + 1] <= '7') {
                  v = v * 8 + (field[++k] - '0');
                  ++digits;
                }
                d.text.push_back(static_cast<char>(v & 0xff));
              } else {
                d.text.push_back(e);
              }
          }
        }
      }
    }
    ++col;
    if (end >= n) break;
    i = end + 1;  // skip the tab
  }
  if (col != expected_columns) {
    return Corruption("COPY row has " + std::to_string(col) + " columns, expected " +
                      std::to_string(expected_columns));
  }
  return Status::Ok();
}

void AppendCopyTextValue(std::string_view value, std::string* out) {
  size_t done = 0;  // value[0, done) is in *out; unescaped spans are appended whole
  for (size_t i = 0; i < value.size(); ++i) {
    char esc;
    switch (value[i]) {
      case '\\': esc = '\\'; break;
      case '\t': esc = 't'; break;
      case '\n': esc = 'n'; break;
      case '\r': esc = 'r'; break;
      default: continue;
    }
    out->append(value.data() + done, i - done);
    out->push_back('\\');
    out->push_back(esc);
    done = i + 1;
  }
  out->append(value.data() + done, value.size() - done);
}

void AppendCopyTextRow(const Tuple& row, std::string* out) {
  for (size_t i = 0; i < row.size(); ++i) {
    if (i) out->push_back('\t');
    if (row[i].kind == Datum::Kind::kText) {
      AppendCopyTextValue(row[i].text, out);
    } else {
      out->append("\\N");
    }
  }
  out->push_back('\n');
}

}  // namespace tenantsync::snapshot::internal
