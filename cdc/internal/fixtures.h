// Loaders for the captured decoder fixtures in cdc/testdata (see capture.sh): used by unit
// tests and to seed the fuzzers. Test-only code: failures are reported as Status.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cdc/event.h"
#include "core/change.h"
#include "core/lsn.h"
#include "core/status.h"

namespace tenantsync::cdc::testing {

struct FixtureMessage {
  Lsn lsn;
  std::vector<uint8_t> bytes;
};

inline StatusOr<std::vector<std::string>> ReadLines(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("fixture " + path + " is missing; run cdc/testdata/capture.sh");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(std::move(line));
  }
  return lines;
}

// "<lsn> <hex>" lines (zoo.pgoutput.hex) or "<lsn> <json>" lines (zoo.wal2json.jsonl).
inline StatusOr<std::vector<FixtureMessage>> LoadFixture(const std::string& path, bool hex) {
  TS_ASSIGN_OR_RETURN(auto lines, ReadLines(path));
  std::vector<FixtureMessage> out;
  for (const auto& line : lines) {
    size_t sp = line.find(' ');
    if (sp == std::string::npos) return Corruption(path + ": line without a space");
    TS_ASSIGN_OR_RETURN(Lsn lsn, Lsn::Parse(line.substr(0, sp)));
    std::string_view payload = std::string_view(line).substr(sp + 1);
    FixtureMessage m{lsn, {}};
    if (hex) {
      if (payload.size() % 2) return Corruption(path + ": odd hex length");
      auto nib = [](char c) -> int {
        return c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0';
      };
      for (size_t i = 0; i < payload.size(); i += 2) {
        m.bytes.push_back(static_cast<uint8_t>(nib(payload[i]) * 16 + nib(payload[i + 1])));
      }
    } else {
      m.bytes.assign(payload.begin(), payload.end());
    }
    out.push_back(std::move(m));
  }
  return out;
}

// The captured source catalog (zoo.catalog.tsv): type names and relations.
struct FixtureCatalog {
  std::map<std::pair<uint32_t, int32_t>, std::string> types;
  std::map<std::pair<std::string, std::string>, Relation> relations;

  TypeNameLookup TypeNames() const {
    return [this](uint32_t oid, int32_t typmod) -> StatusOr<std::string> {
      auto it = types.find({oid, typmod});
      if (it == types.end()) return NotFound("type " + std::to_string(oid));
      return it->second;
    };
  }
  RelationLookup Relations() const {
    return [this](const std::string& schema, const std::string& table) -> StatusOr<Relation> {
      auto it = relations.find({schema, table});
      if (it == relations.end()) return NotFound("relation " + schema + "." + table);
      return it->second;
    };
  }
};

inline StatusOr<FixtureCatalog> LoadCatalog(const std::string& path) {
  TS_ASSIGN_OR_RETURN(auto lines, ReadLines(path));
  FixtureCatalog cat;
  for (const auto& line : lines) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string part; std::getline(ss, part, '\t');) f.push_back(part);
    if (f.size() == 4 && f[0] == "type") {
      cat.types[{static_cast<uint32_t>(std::stoul(f[1])), std::stoi(f[2])}] = f[3];
    } else if (f.size() == 10 && f[0] == "column") {
      Relation& rel = cat.relations[{f[1], f[2]}];
      rel.schema = f[1];
      rel.name = f[2];
      rel.oid = static_cast<uint32_t>(std::stoul(f[3]));
      rel.replica_identity = f[4][0];
      Relation::Column col;
      col.name = f[5];
      col.type_name = f[6];
      col.type_oid = static_cast<uint32_t>(std::stoul(f[7]));
      col.type_modifier = std::stoi(f[8]);
      col.is_key = f[9] == "1";
      rel.columns.push_back(std::move(col));
    } else {
      return Corruption(path + ": bad line " + line.substr(0, 40));
    }
  }
  return cat;
}

}  // namespace tenantsync::cdc::testing
