// libFuzzer target for the state record decoders: any bytes give a value or kCorruption, never a
// crash, an overrun or an allocation out of proportion to the input; a change that decodes
// re-encodes to bytes that decode to the same change.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "state/internal/codec.h"
#include "state/internal/records.h"

namespace tenantsync::state::internal {
namespace {

class FuzzRelations final : public RelationSource {
 public:
  StatusOr<std::shared_ptr<const Relation>> Get(uint64_t fp) override {
    if (fp % 3 == 0) return Corruption("missing relation");
    auto it = cache_.find(fp);
    if (it != cache_.end()) return it->second;
    auto r = std::make_shared<Relation>();
    r->name = "t" + std::to_string(fp % 7);
    r->columns.resize(fp % 5);
    return cache_[fp] = r;
  }

 private:
  std::map<uint64_t, std::shared_ptr<const Relation>> cache_;
};

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace
}  // namespace tenantsync::state::internal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tenantsync;
  using namespace tenantsync::state::internal;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string key = size >= 8 ? std::string(in.substr(0, 8)) : Key64(size);

  FuzzRelations relations;
  Change c;
  Status s = DecodeChange(key, in, &relations, &c);
  Check(s.ok() || s.code() == StatusCode::kCorruption);
  if (s.ok()) {
    // Re-encode with the relation fingerprint the input carried (bytes 2..9: after the version
    // and op bytes); truncated relations are left out of the comparison.
    uint64_t fp = c.relation ? DecodeFixed64BE(in.data() + 2) : 0;
    std::string again;
    EncodeChange(c, fp, {}, &again);
    Change c2;
    Status s2 = DecodeChange(key, again, &relations, &c2);
    Check(s2.ok() && c2.op == c.op && c2.new_tuple == c.new_tuple &&
          c2.old_tuple == c.old_tuple && c2.message_content == c.message_content &&
          c2.message_prefix == c.message_prefix &&
          c2.message_transactional == c.message_transactional &&
          c2.truncate_options == c.truncate_options);
  }
  {
    // The same bytes as a journal_change value: a block, or one change of state format 1.
    ChangeBlockReader block;
    s = block.Reset(key, in);
    Check(s.ok() || s.code() == StatusCode::kCorruption);
    for (uint64_t n = 0; s.ok(); ++n) {
      StatusOr<bool> more = block.Next(&relations, &c);
      Check(more.ok() || more.status().code() == StatusCode::kCorruption);
      if (!more.ok() || !*more) break;
      Check(n < block.count());
    }
  }
  TxnRecord t;
  s = DecodeTxn(key, in, &t);
  Check(s.ok() || s.code() == StatusCode::kCorruption);
  Relation rel;
  s = DecodeRelation(key, in, &rel);
  Check(s.ok() || s.code() == StatusCode::kCorruption);
  state::DeadLetter d;
  s = DecodeDeadLetter(key, in, &d);
  Check(s.ok() || s.code() == StatusCode::kCorruption);
  state::Checkpoint cp;
  s = DecodeCheckpoint(key, in, &cp);
  Check(s.ok() || s.code() == StatusCode::kCorruption);
  WriterState w;
  s = DecodeWriterState(in, &w);
  Check(s.ok() || s.code() == StatusCode::kCorruption);
  TrimState tr;
  s = DecodeTrimState(in, &tr);
  Check(s.ok() || s.code() == StatusCode::kCorruption);
  FormatMarker m;
  s = DecodeFormatMarker(in, &m);
  Check(s.ok() || s.code() == StatusCode::kCorruption);
  return 0;
}
