#include "cdc/internal/stream_spool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace tenantsync::cdc::internal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class StreamSpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("tenantsync-spool-test-" + std::to_string(getpid())))
               .string();
    std::filesystem::remove_all(dir_);
    auto s = StreamSpool::Open(dir_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    spool_ = std::move(s).value();
  }
  void TearDown() override {
    spool_.reset();
    std::filesystem::remove_all(dir_);
  }

  Status Add(uint32_t xid, uint32_t sub, const std::string& m, bool schema = false) {
    return spool_->Append(xid, sub, schema,
                          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(m.data()),
                                                   m.size()));
  }
  std::vector<std::string> Messages(uint32_t xid) {
    std::vector<std::string> out;
    Status s = spool_->Replay(xid, [&](std::span<const uint8_t> m) {
      out.emplace_back(reinterpret_cast<const char*>(m.data()), m.size());
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  size_t FilesInDir() const {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) n += e.is_regular_file();
    return n;
  }

  std::string dir_;
  std::unique_ptr<StreamSpool> spool_;
};

TEST_F(StreamSpoolTest, InterleavedTransactionsReplayInTheirOwnOrder) {
  ASSERT_TRUE(spool_->Start(10, true).ok());
  ASSERT_TRUE(Add(10, 10, "R-a", true).ok());
  ASSERT_TRUE(Add(10, 10, "a1").ok());
  ASSERT_TRUE(spool_->Start(20, true).ok());
  ASSERT_TRUE(Add(20, 20, "b1").ok());
  ASSERT_TRUE(spool_->Start(10, false).ok());  // a later block of 10
  ASSERT_TRUE(Add(10, 11, "a2").ok());
  EXPECT_EQ(spool_->Count(), 2u);
  EXPECT_EQ(spool_->Changes(10), 2u);  // schema records are not changes
  EXPECT_THAT(Messages(10), ElementsAre("R-a", "a1", "a2"));
  EXPECT_THAT(Messages(20), ElementsAre("b1"));
  spool_->Discard(10);
  EXPECT_FALSE(spool_->Holds(10));
  EXPECT_EQ(FilesInDir(), 1u);
  spool_->DiscardAll();
  EXPECT_EQ(FilesInDir(), 0u);
}

TEST_F(StreamSpoolTest, SubtransactionAbortCutsItAndItsChildrenButKeepsSchemaRecords) {
  ASSERT_TRUE(spool_->Start(10, true).ok());
  ASSERT_TRUE(Add(10, 10, "top1").ok());
  ASSERT_TRUE(Add(10, 11, "sub11-a").ok());
  ASSERT_TRUE(Add(10, 12, "R-new", true).ok());  // a relation first sent inside subxact 12
  ASSERT_TRUE(Add(10, 12, "sub12-a").ok());       // 12 begun inside 11
  ASSERT_TRUE(Add(10, 11, "sub11-b").ok());
  EXPECT_EQ(spool_->Changes(10), 4u);
  auto none = spool_->AbortSubtransaction(10, 99);  // no record: nothing to cut
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
  auto cut = spool_->AbortSubtransaction(10, 11);
  ASSERT_TRUE(cut.ok()) << cut.status().ToString();
  EXPECT_TRUE(*cut);
  EXPECT_EQ(spool_->Changes(10), 1u);
  EXPECT_THAT(Messages(10), ElementsAre("top1", "R-new"));
  // 12 went with 11: its abort now cuts nothing; later records append after the cut.
  auto again = spool_->AbortSubtransaction(10, 12);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  ASSERT_TRUE(Add(10, 13, "sub13").ok());
  ASSERT_TRUE(Add(10, 10, "top2").ok());
  EXPECT_THAT(Messages(10), ElementsAre("top1", "R-new", "sub13", "top2"));
  // The whole transaction rolled back: gone.
  auto whole = spool_->AbortSubtransaction(10, 10);
  ASSERT_TRUE(whole.ok());
  EXPECT_TRUE(*whole);
  EXPECT_FALSE(spool_->Holds(10));
  EXPECT_EQ(FilesInDir(), 0u);
}

TEST_F(StreamSpoolTest, CutsAcrossWhatWasAlreadyWrittenToTheFile) {
  ASSERT_TRUE(spool_->Start(7, true).ok());
  const std::string big(1000, 'x');
  for (int i = 0; i < 600; ++i) ASSERT_TRUE(Add(7, 7, "t" + std::to_string(i) + big).ok());
  for (int i = 0; i < 600; ++i) ASSERT_TRUE(Add(7, 8, "s" + std::to_string(i) + big).ok());
  ASSERT_GT(std::filesystem::file_size(dir_ + "/7.spool"), 2 * StreamSpool::kBufferBytes);
  auto cut = spool_->AbortSubtransaction(7, 8);
  ASSERT_TRUE(cut.ok()) << cut.status().ToString();
  ASSERT_TRUE(Add(7, 7, "last").ok());
  auto m = Messages(7);
  ASSERT_EQ(m.size(), 601u);
  EXPECT_EQ(m[0], "t0" + big);
  EXPECT_EQ(m[599], "t599" + big);
  EXPECT_EQ(m[600], "last");
  EXPECT_EQ(spool_->Changes(7), 601u);
}

TEST_F(StreamSpoolTest, FirstSegmentStartsOverAndAnUnknownLaterBlockIsCorruption) {
  ASSERT_TRUE(spool_->Start(5, true).ok());
  ASSERT_TRUE(Add(5, 5, "old").ok());
  ASSERT_TRUE(spool_->Start(5, true).ok());  // the server streams it again from the start
  ASSERT_TRUE(Add(5, 5, "new").ok());
  EXPECT_THAT(Messages(5), ElementsAre("new"));
  Status s = spool_->Start(6, false);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_THAT(s.message(), HasSubstr("first block was not received"));
  EXPECT_EQ(Add(6, 6, "x").code(), StatusCode::kCorruption);
  Status r = spool_->Replay(6, [](std::span<const uint8_t>) { return Status::Ok(); });
  EXPECT_THAT(r.message(), HasSubstr("never started"));
}

TEST_F(StreamSpoolTest, OpenRemovesSpoolFilesOfAnEarlierProcess) {
  ASSERT_TRUE(spool_->Start(5, true).ok());
  ASSERT_TRUE(Add(5, 5, "x").ok());
  std::ofstream(dir_ + "/99.spool") << "left by a crash";
  std::ofstream(dir_ + "/keep.txt") << "not ours";
  auto second = StreamSpool::Open(dir_);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/99.spool"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/keep.txt"));
  EXPECT_FALSE((*second)->Holds(5));
}

}  // namespace
}  // namespace tenantsync::cdc::internal
