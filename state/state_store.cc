#include "state/state_store.h"

#include <chrono>
#include <filesystem>
#include <limits>
#include <mutex>

#include "state/internal/codec.h"
#include "state/internal/db.h"
#include "state/internal/journal_impl.h"
#include "state/internal/records.h"

namespace tenantsync::state {

using internal::Db;
using internal::JournalImpl;

class StateStore::Impl {
 public:
  std::shared_ptr<Db> db;  // shared with the journal and its readers
  std::shared_ptr<JournalImpl> journal;
  std::mutex dead_letter_mu;
  uint64_t next_dead_letter_id = 0;  // guarded by dead_letter_mu; 0 = not loaded yet

  // Id of the newest dead letter, 0 when there is none.
  StatusOr<uint64_t> LastDeadLetterId() const {
    auto it = db->NewIterator(internal::kCfDeadLetters);
    it->SeekToLast();
    uint64_t id = 0;
    if (it->Valid()) {
      if (it->key().size() != 8) {
        return Corruption("state record dead_letters " +
                          internal::HexKey(std::string_view(it->key().data(), it->key().size())) +
                          " is malformed: key is not 8 bytes");
      }
      id = internal::DecodeFixed64BE(it->key().data());
    }
    TS_RETURN_IF_ERROR(internal::FromRocks(it->status(), db->dir(), "reading dead letters"));
    return id;
  }
};

namespace {

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

rocksdb::Slice AsSlice(const std::string& s) { return rocksdb::Slice(s.data(), s.size()); }

}  // namespace

StateStore::StateStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StateStore::~StateStore() {
  // A last fsync of group-committed transactions; readers may keep the journal alive longer.
  if (impl_ && impl_->journal) impl_->journal->Shutdown();
}

StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const StateOptions& options) {
  auto impl = std::make_unique<Impl>();
  TS_ASSIGN_OR_RETURN(impl->db, Db::Open(options));
  TS_ASSIGN_OR_RETURN(impl->journal, JournalImpl::Open(impl->db, options));
  TS_ASSIGN_OR_RETURN(uint64_t last, impl->LastDeadLetterId());
  impl->next_dead_letter_id = last + 1;
  return std::unique_ptr<StateStore>(new StateStore(std::move(impl)));
}

StatusOr<std::unique_ptr<StateStore>> StateStore::OpenReadOnly(const std::string& dir) {
  auto impl = std::make_unique<Impl>();
  TS_ASSIGN_OR_RETURN(impl->db, Db::OpenReadOnly(dir));
  StateOptions options;
  options.dir = dir;
  TS_ASSIGN_OR_RETURN(impl->journal, JournalImpl::Open(impl->db, options));
  return std::unique_ptr<StateStore>(new StateStore(std::move(impl)));
}

Journal& StateStore::journal() { return *impl_->journal; }

Status StateStore::Refresh() {
  if (!impl_->db->read_only()) return Status::Ok();
  TS_RETURN_IF_ERROR(impl_->db->CatchUp());
  return impl_->journal->Reload();
}

bool StateStore::read_only() const { return impl_->db->read_only(); }

Status StateStore::PutMeta(const std::string& key, const std::string& value, bool sync) {
  rocksdb::WriteBatch b;
  b.Put(impl_->db->cf(internal::kCfMeta), AsSlice(key), AsSlice(value));
  return impl_->db->Write(&b, sync, "writing meta " + key);
}

StatusOr<std::optional<std::string>> StateStore::GetMeta(const std::string& key) const {
  return impl_->db->Get(internal::kCfMeta, key, "reading meta " + key);
}

Status StateStore::DeleteMeta(const std::string& key, bool sync) {
  rocksdb::WriteBatch b;
  b.Delete(impl_->db->cf(internal::kCfMeta), AsSlice(key));
  return impl_->db->Write(&b, sync, "deleting meta " + key);
}

StatusOr<std::vector<std::pair<std::string, std::string>>> StateStore::ScanMeta(
    const std::string& prefix) const {
  std::vector<std::pair<std::string, std::string>> out;
  auto it = impl_->db->NewIterator(internal::kCfMeta);
  for (it->Seek(AsSlice(prefix)); it->Valid() && it->key().starts_with(AsSlice(prefix));
       it->Next()) {
    out.emplace_back(it->key().ToString(), it->value().ToString());
  }
  TS_RETURN_IF_ERROR(
      internal::FromRocks(it->status(), impl_->db->dir(), "scanning meta " + prefix));
  return out;
}

Status StateStore::AddDeadLetter(DeadLetter letter) {
  if (impl_->db->read_only()) {
    return FailedPrecondition("state directory " + impl_->db->dir() + " is open read-only");
  }
  std::lock_guard<std::mutex> lock(impl_->dead_letter_mu);
  letter.id = impl_->next_dead_letter_id;
  letter.time_us = NowUs();
  rocksdb::WriteBatch b;
  b.Put(impl_->db->cf(internal::kCfDeadLetters), AsSlice(internal::Key64(letter.id)),
        AsSlice(internal::EncodeDeadLetter(letter)));
  TS_RETURN_IF_ERROR(impl_->db->Write(&b, /*sync=*/true, "storing a dead letter"));
  ++impl_->next_dead_letter_id;
  return Status::Ok();
}

StatusOr<std::vector<DeadLetter>> StateStore::DeadLetters() const {
  return DeadLetters(0, std::numeric_limits<size_t>::max());
}

StatusOr<std::vector<DeadLetter>> StateStore::DeadLetters(uint64_t after_id, size_t limit) const {
  std::vector<DeadLetter> out;
  auto it = impl_->db->NewIterator(internal::kCfDeadLetters);
  std::string from = internal::Key64(after_id + 1);
  for (it->Seek(AsSlice(from)); it->Valid() && out.size() < limit; it->Next()) {
    DeadLetter d;
    TS_RETURN_IF_ERROR(
        internal::DecodeDeadLetter(std::string_view(it->key().data(), it->key().size()),
                                   std::string_view(it->value().data(), it->value().size()), &d));
    out.push_back(std::move(d));
  }
  TS_RETURN_IF_ERROR(internal::FromRocks(it->status(), impl_->db->dir(), "reading dead letters"));
  return out;
}

StatusOr<uint64_t> StateStore::DeadLetterCount() const {
  // Ids are dense from 1 and dead letters are never deleted, so the newest id is the count.
  return impl_->LastDeadLetterId();
}

const std::string& StateStore::dir() const { return impl_->db->dir(); }

uint64_t StateStore::DiskBytes() const {
  namespace fs = std::filesystem;
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(impl_->db->dir(), ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      uint64_t size = it->file_size(size_ec);
      if (!size_ec) total += size;
    }
  }
  return total;
}

}  // namespace tenantsync::state
