#include "router/kv_event_wire.h"

#include <random>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

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

// Events as workers write them take a one-pass fast path; any other spelling of the same
// object (whitespace, key order, unknown fields) goes through the general JSON parser. Both
// must decode the same event, and refuse the same malformed input.
TEST(KvEventWireTest, FastPathAgreesWithTheGeneralParser) {
  std::mt19937_64 rng(99);
  for (int i = 0; i < 500; ++i) {
    KvEvent event;
    event.type = static_cast<KvEvent::Type>(rng() % 3);
    event.epoch = rng();
    event.event_id = rng() >> (rng() % 64);
    event.parent_hash = event.type == KvEvent::Type::kStored ? rng() : kRootParentHash;
    if (event.type != KvEvent::Type::kCleared) {
      for (int b = 0, n = static_cast<int>(rng() % 5); b < n; ++b) {
        event.block_hashes.push_back(rng() >> (rng() % 64));
      }
    }
    const std::string compact = KvEventToJson(event);
    nlohmann::json spelled = nlohmann::json::parse(compact);
    spelled["unknown_field"] = i;  // not a worker's spelling: the general parser
    for (const std::string& text : {compact, spelled.dump(2)}) {
      SCOPED_TRACE(text);
      absl::StatusOr<KvEvent> decoded = KvEventFromJson(text);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_EQ(decoded->type, event.type);
      EXPECT_EQ(decoded->epoch, event.epoch);
      EXPECT_EQ(decoded->event_id, event.event_id);
      EXPECT_EQ(decoded->parent_hash, event.parent_hash);
      EXPECT_EQ(decoded->block_hashes, event.block_hashes);
    }
  }
  for (const char* bad : {
           R"({"epoch":"1","event_id":-1,"type":"stored","blocks":[]})",
           R"({"epoch":"1","event_id":1.5,"type":"stored","blocks":[]})",
           R"({"epoch":"1","event_id":01,"type":"stored","blocks":[]})",
           R"({"epoch":"1","event_id":18446744073709551616,"type":"stored","blocks":[]})",
           R"({"epoch":"xyz","event_id":1,"type":"stored","blocks":[]})",
           R"({"epoch":"1","event_id":1,"type":"stored","blocks":["12345678901234567"]})",
           R"({"epoch":"1","event_id":1,"type":"stored"})",
           R"({"epoch":"1","event_id":1,"type":"moved","blocks":[]})",
           R"({"epoch":"1","event_id":1,"type":"stored","blocks":[]} trailing)",
           R"({"epoch":"1","event_id":1,"type":"stored","blocks":["a",]})",
           R"({"epoch":"1","type":"stored","blocks":[]})",
       }) {
    EXPECT_FALSE(KvEventFromJson(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace tandem::router
