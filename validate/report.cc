// ValidationReport output: the human summary table and the JSON document.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "validate/validate.h"

namespace tenantsync::validate {

const char* CheckStatusName(CheckStatus s) {
  switch (s) {
    case CheckStatus::kPass:
      return "pass";
    case CheckStatus::kFail:
      return "FAIL";
    case CheckStatus::kUnverified:
      return "unverified";
  }
  return "?";
}

const char* RowDifferenceKindName(RowDifference::Kind k) {
  switch (k) {
    case RowDifference::Kind::kMissing:
      return "missing";
    case RowDifference::Kind::kExtra:
      return "extra";
    case RowDifference::Kind::kDifferent:
      return "different";
    case RowDifference::Kind::kOrphan:
      return "orphan";
    case RowDifference::Kind::kUnverified:
      return "unverified";
  }
  return "?";
}

int ValidationReport::failures() const {
  int n = 0;
  for (const CheckResult& c : checks) n += c.status == CheckStatus::kFail;
  return n;
}

int ValidationReport::unverified() const {
  int n = 0;
  for (const CheckResult& c : checks) n += c.status == CheckStatus::kUnverified;
  return n;
}

int ValidationReport::ExitCode() const { return passed() ? 0 : 1; }

namespace {

std::string Cut(const std::string& s, size_t width) {
  if (s.size() <= width) return s;
  return s.substr(0, width - 3) + "...";
}

std::string Pad(const std::string& s, size_t width) {
  std::string out = Cut(s, width);
  out.resize(width, ' ');
  return out;
}

}  // namespace

std::string ValidationReport::ToText() const {
  std::ostringstream out;
  const size_t w_check = 6, w_table = 40, w_value = 20, w_status = 10;
  out << Pad("check", w_check) << "  " << Pad("table", w_table) << "  " << Pad("source", w_value)
      << "  " << Pad("target", w_value) << "  " << "status\n";
  out << std::string(w_check + w_table + 2 * w_value + w_status + 8, '-') << "\n";
  for (const CheckResult& c : checks) {
    std::string table = c.column.empty() ? c.table : c.table + "." + c.column;
    out << Pad(c.check, w_check) << "  " << Pad(table, w_table) << "  " << Pad(c.source, w_value)
        << "  " << Pad(c.target, w_value) << "  " << CheckStatusName(c.status) << "\n";
  }
  bool any = false;
  for (const CheckResult& c : checks) {
    if (c.status == CheckStatus::kPass) continue;
    if (!any) out << "\n";
    any = true;
    out << CheckStatusName(c.status) << " " << c.check << " " << c.table
        << (c.column.empty() ? "" : "." + c.column) << ": " << c.details << "\n";
    for (const RowDifference& r : c.rows) {
      out << "    " << RowDifferenceKindName(r.kind) << " " << r.key;
      if (!r.details.empty()) out << ": " << r.details;
      out << "\n";
    }
    if (c.rows_total > static_cast<int64_t>(c.rows.size())) {
      out << "    ... " << (c.rows_total - static_cast<int64_t>(c.rows.size()))
          << " more rows not listed\n";
    }
  }
  out << "\n" << checks.size() << " checks: " << (checks.size() - failures() - unverified())
      << " passed, " << failures() << " failed, " << unverified() << " unverified ("
      << seconds << " s; bytes fetched: source " << source_bytes << ", target " << target_bytes
      << ")\n";
  return out.str();
}

std::string ValidationReport::ToJson() const {
  nlohmann::json j;
  j["pipeline"] = pipeline;
  j["source"] = source_url;
  j["target"] = target_url;
  j["target_schema"] = target_schema;
  j["full"] = full;
  j["live"] = live;
  j["seconds"] = seconds;
  j["bytes_fetched"] = {{"source", source_bytes}, {"target", target_bytes}};
  j["passed"] = passed();
  j["failures"] = failures();
  j["unverified"] = unverified();
  j["checks"] = nlohmann::json::array();
  for (const CheckResult& c : checks) {
    nlohmann::json cj;
    cj["check"] = c.check;
    cj["table"] = c.table;
    cj["source_table"] = c.source_table;
    if (!c.column.empty()) cj["column"] = c.column;
    cj["source"] = c.source;
    cj["target"] = c.target;
    cj["status"] = c.status == CheckStatus::kFail ? "fail" : CheckStatusName(c.status);
    cj["details"] = c.details;
    cj["rows_total"] = c.rows_total;
    cj["rows"] = nlohmann::json::array();
    for (const RowDifference& r : c.rows) {
      cj["rows"].push_back({{"kind", RowDifferenceKindName(r.kind)},
                            {"key", r.key},
                            {"columns", r.columns},
                            {"details", r.details}});
    }
    j["checks"].push_back(std::move(cj));
  }
  // Values come from databases and may not be UTF-8: replace rather than throw.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Status ValidationReport::WriteJson(const std::string& path) const {
  std::ofstream f(path, std::ios::trunc);
  if (!f) return InvalidArgument("cannot write the JSON report to " + path);
  f << ToJson();
  f.close();
  if (!f) return ResourceExhausted("cannot write the JSON report to " + path);
  return Status::Ok();
}

}  // namespace tenantsync::validate
