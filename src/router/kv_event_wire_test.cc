#include "router/kv_event_wire.h"

#include "gtest/gtest.h"

namespace tandem::router {
namespace {

TEST(KvEventWireTest, RoundTripsEveryTypeWithFull64BitValues) {
  KvEvent stored{KvEvent::Type::kStored,
                 0xfedcba9876543210ull,
                 17,
                 0x8000000000000001ull,
                 {1, 0xffffffffffffffffull}};
  auto back = KvEventFromJson(KvEventToJson(stored));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->epoch, stored.epoch);
  EXPECT_EQ(back->event_id, 17u);
  EXPECT_EQ(back->parent_hash, stored.parent_hash);
  EXPECT_EQ(back->block_hashes, stored.block_hashes);
  KvEvent removed{KvEvent::Type::kRemoved, 1, 18, 0, {5}};
  EXPECT_EQ(KvEventFromJson(KvEventToJson(removed))->type, KvEvent::Type::kRemoved);
  KvEvent cleared{KvEvent::Type::kCleared, 1, 19, 0, {}};
  EXPECT_EQ(KvEventFromJson(KvEventToJson(cleared))->type, KvEvent::Type::kCleared);
  KvSnapshot snapshot{3, 99, {7, 8, 9}};
  auto snap = KvSnapshotFromJson(KvSnapshotToJson(snapshot));
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->block_hashes, snapshot.block_hashes);
  EXPECT_EQ(snap->event_id, 99u);
}

TEST(KvEventWireTest, MalformedInputIsRefused) {
  for (const char* bad :
       {"", "[]", "{}", R"({"epoch":"1","event_id":-1,"type":"stored"})",
        R"({"epoch":1,"event_id":1,"type":"stored","blocks":[]})",
        R"({"epoch":"zz","event_id":1,"type":"stored","blocks":[]})",
        R"({"epoch":"1","event_id":1,"type":"moved","blocks":[]})",
        R"({"epoch":"1","event_id":1,"type":"stored"})",
        R"({"epoch":"1","event_id":1,"type":"stored","blocks":[5]})",
        R"({"epoch":"1","event_id":1,"type":"stored","blocks":["12345678901234567"]})"}) {
    EXPECT_FALSE(KvEventFromJson(bad).ok()) << bad;
  }
  EXPECT_FALSE(KvSnapshotFromJson(R"({"epoch":"1","event_id":1})").ok());
}

}  // namespace
}  // namespace tandem::router
