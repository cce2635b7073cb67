#include "cdc/internal/stream_spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/pg_text.h"

namespace tenantsync::cdc::internal {

namespace {

// Record: Int8 kind (0 change, 1 schema)  Int32 subxid  Int32 length  length bytes.
constexpr size_t kHeader = 9;
constexpr uint8_t kChange = 0;
constexpr uint8_t kSchema = 1;
constexpr char kSuffix[] = ".spool";

uint32_t GetU32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

StatusOr<std::unique_ptr<StreamSpool>> StreamSpool::Open(std::string dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Fatal("creating the stream spool directory " + dir + ": " + ec.message() +
                 "; check that the state directory is writable");
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == kSuffix) std::filesystem::remove(entry.path(), ec);
  }
  if (ec) return Fatal("emptying the stream spool directory " + dir + ": " + ec.message());
  return std::unique_ptr<StreamSpool>(new StreamSpool(std::move(dir)));
}

StreamSpool::~StreamSpool() { DiscardAll(); }

Status StreamSpool::IoError(const std::string& what, const Txn& t, int err) const {
  std::string m = what + " " + t.path + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) {
    return ResourceExhausted(m + "; free space on the state directory's disk, then restart "
                                 "(the source streams the transaction again)");
  }
  return Fatal(m);
}

Status StreamSpool::Start(uint32_t xid, bool first_segment) {
  auto it = txns_.find(xid);
  if (it != txns_.end() && !first_segment) return Status::Ok();
  if (it == txns_.end() && !first_segment) {
    return Corruption("stream block of transaction " + std::to_string(xid) +
                      " continues a transaction whose first block was not received");
  }
  Discard(xid);
  Txn t;
  t.path = dir_ + "/" + std::to_string(xid) + kSuffix;
  t.fd = ::open(t.path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (t.fd < 0) return IoError("creating", t, errno);
  txns_.emplace(xid, std::move(t));
  return Status::Ok();
}

Status StreamSpool::Append(uint32_t xid, uint32_t subxid, bool schema,
                           std::span<const uint8_t> message) {
  auto it = txns_.find(xid);
  if (it == txns_.end()) {
    return Corruption("change of streamed transaction " + std::to_string(xid) +
                      " outside its blocks");
  }
  Txn& t = it->second;
  if (!schema) {
    if ((t.first_record.empty() || t.first_record.back().first != subxid) &&
        t.known.insert(subxid).second) {
      t.first_record.emplace_back(subxid, t.size + t.buffer.size());
    }
    ++t.changes;
  }
  t.buffer.push_back(static_cast<char>(schema ? kSchema : kChange));
  AppendBigEndian32(subxid, &t.buffer);
  AppendBigEndian32(static_cast<uint32_t>(message.size()), &t.buffer);
  t.buffer.append(reinterpret_cast<const char*>(message.data()), message.size());
  if (t.buffer.size() >= kBufferBytes) return Flush(t);
  return Status::Ok();
}

Status StreamSpool::Flush(Txn& t) {
  size_t done = 0;
  while (done < t.buffer.size()) {
    ssize_t n = ::pwrite(t.fd, t.buffer.data() + done, t.buffer.size() - done,
                         static_cast<off_t>(t.size + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("writing", t, errno);
    }
    done += static_cast<size_t>(n);
  }
  t.size += t.buffer.size();
  t.buffer.clear();
  return Status::Ok();
}

Status StreamSpool::ReadFrom(
    Txn& t, uint64_t offset,
    const std::function<Status(uint8_t, uint32_t, std::span<const uint8_t>)>& fn) {
  TS_RETURN_IF_ERROR(Flush(t));
  std::vector<uint8_t> buf(1 << 20);
  size_t have = 0;   // bytes in buf
  size_t pos = 0;    // parse position in buf
  uint64_t file_pos = offset;
  auto fill = [&]() -> StatusOr<bool> {  // false at the end of the file
    if (pos > 0) {
      std::memmove(buf.data(), buf.data() + pos, have - pos);
      have -= pos;
      pos = 0;
    }
    if (have == buf.size()) buf.resize(buf.size() * 2);
    while (true) {
      ssize_t n = ::pread(t.fd, buf.data() + have, buf.size() - have,
                          static_cast<off_t>(file_pos));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return IoError("reading", t, errno);
      have += static_cast<size_t>(n);
      file_pos += static_cast<uint64_t>(n);
      return n > 0;
    }
  };
  while (true) {
    if (have - pos < kHeader) {
      TS_ASSIGN_OR_RETURN(bool more, fill());
      if (!more) break;
      continue;
    }
    uint32_t len = GetU32(buf.data() + pos + 5);
    if (have - pos < kHeader + len) {
      TS_ASSIGN_OR_RETURN(bool more, fill());
      if (!more) break;
      continue;
    }
    uint8_t kind = buf[pos];
    uint32_t subxid = GetU32(buf.data() + pos + 1);
    TS_RETURN_IF_ERROR(fn(kind, subxid, std::span<const uint8_t>(buf.data() + pos + kHeader, len)));
    pos += kHeader + len;
  }
  if (have != pos) {
    return Corruption("stream spool " + t.path + " ends inside a record (" +
                      std::to_string(have - pos) + " bytes left)");
  }
  return Status::Ok();
}

StatusOr<bool> StreamSpool::AbortSubtransaction(uint32_t xid, uint32_t subxid) {
  if (subxid == xid) {
    bool held = Holds(xid);
    Discard(xid);
    return held;
  }
  auto it = txns_.find(xid);
  if (it == txns_.end()) return false;
  Txn& t = it->second;
  size_t i = 0;
  while (i < t.first_record.size() && t.first_record[i].first != subxid) ++i;
  if (i == t.first_record.size()) return false;
  const uint64_t cut = t.first_record[i].second;
  // Schema records after the cut stay: read them, cut, append them again.
  std::vector<std::pair<uint32_t, std::vector<uint8_t>>> schema;
  uint64_t cut_changes = 0;
  TS_RETURN_IF_ERROR(ReadFrom(t, cut, [&](uint8_t kind, uint32_t sub, std::span<const uint8_t> m) {
    if (kind == kSchema) {
      schema.emplace_back(sub, std::vector<uint8_t>(m.begin(), m.end()));
    } else {
      ++cut_changes;
    }
    return Status::Ok();
  }));
  if (::ftruncate(t.fd, static_cast<off_t>(cut)) != 0) return IoError("truncating", t, errno);
  t.size = cut;
  t.changes -= cut_changes;
  for (size_t k = i; k < t.first_record.size(); ++k) t.known.erase(t.first_record[k].first);
  t.first_record.resize(i);
  for (const auto& [sub, m] : schema) TS_RETURN_IF_ERROR(Append(xid, sub, /*schema=*/true, m));
  return true;
}

Status StreamSpool::Replay(uint32_t xid,
                           const std::function<Status(std::span<const uint8_t>)>& fn) {
  auto it = txns_.find(xid);
  if (it == txns_.end()) {
    return Corruption("commit of streamed transaction " + std::to_string(xid) +
                      " that was never started");
  }
  return ReadFrom(it->second, 0,
                  [&](uint8_t, uint32_t, std::span<const uint8_t> m) { return fn(m); });
}

uint64_t StreamSpool::Changes(uint32_t xid) const {
  auto it = txns_.find(xid);
  return it == txns_.end() ? 0 : it->second.changes;
}

void StreamSpool::Discard(uint32_t xid) {
  auto it = txns_.find(xid);
  if (it == txns_.end()) return;
  ::close(it->second.fd);
  ::unlink(it->second.path.c_str());
  txns_.erase(it);
}

void StreamSpool::DiscardAll() {
  while (!txns_.empty()) Discard(txns_.begin()->first);
}

}  // namespace tenantsync::cdc::internal
