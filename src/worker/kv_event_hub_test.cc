#include "worker/kv_event_hub.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::worker {
namespace {

using nlohmann::json;

// Records what the hub sends.
class RecordingStream : public net::SseStream {
 public:
  bool Send(std::string_view data, std::string_view event) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    events_.push_back({std::string(event), json::parse(data)});
    return true;
  }
  bool SendComment(std::string_view) override { return !closed(); }
  void Close() override {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  bool closed() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }
  size_t buffered_bytes() const override { return 0; }
  void OnClose(std::function<void(absl::Status)>) override {}

  std::vector<std::pair<std::string, json>> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  // Waits until `count` events arrived (or 5 s passed).
  std::vector<std::pair<std::string, json>> WaitFor(size_t count) const {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (events().size() < count && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    return events();
  }

 private:
  mutable std::mutex mu_;
  bool closed_ = false;
  std::vector<std::pair<std::string, json>> events_;
};

std::unique_ptr<engine::BlockPool> SmallPool(int64_t event_history = 1 << 16) {
  auto pool = engine::BlockPool::Create(
      {.layout = {.num_layers = 1, .num_kv_heads = 1, .head_dim = 4, .block_size = 4},
       .budget_bytes = 64 * 128,
       .event_history = event_history});
  EXPECT_TRUE(pool.ok()) << pool.status();
  return std::move(pool).value();
}

// Commits one block under a fresh hash and releases it (it stays cached).
void StoreBlock(engine::BlockPool& pool, uint64_t hash) {
  auto blocks = pool.Allocate(1);
  ASSERT_TRUE(blocks.ok());
  pool.Commit((*blocks)[0], engine::kRootBlockHash, hash);
  pool.Release(*blocks);
}

TEST(KvEventHubTest, StreamsEventsFromWhereTheConsumerResumes) {
  auto pool = SmallPool();
  StoreBlock(*pool, 0x11);
  StoreBlock(*pool, 0x22);
  KvEventHub hub(pool.get(), /*epoch=*/0xabc, absl::Milliseconds(1));
  auto all = std::make_shared<RecordingStream>();
  auto resumed = std::make_shared<RecordingStream>();
  hub.Subscribe(all, 0, std::nullopt);
  hub.Subscribe(resumed, 1, 0xabc);
  StoreBlock(*pool, 0x33);  // a live event reaches both

  auto got = all->WaitFor(3);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].first, "") << "a plain event";
    EXPECT_EQ(got[i].second["event_id"], i + 1);
    EXPECT_EQ(got[i].second["type"], "stored");
    EXPECT_EQ(got[i].second["epoch"], "0000000000000abc");
  }
  EXPECT_EQ(got[2].second["blocks"], json::array({"0000000000000033"}));
  auto later = resumed->WaitFor(2);
  ASSERT_EQ(later.size(), 2u);
  EXPECT_EQ(later[0].second["event_id"], 2);
  EXPECT_EQ(later[1].second["event_id"], 3);
  EXPECT_EQ(hub.subscribers(), 2u);
  all->Close();
  resumed->Close();
  StoreBlock(*pool, 0x44);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (hub.subscribers() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(hub.subscribers(), 0u) << "ended streams are dropped";
}

// A stream whose Send waits until the test opens the gate.
class GatedStream : public RecordingStream {
 public:
  bool Send(std::string_view data, std::string_view event) override {
    {
      std::unique_lock<std::mutex> lock(gate_mu_);
      in_send_ = true;
      gate_cv_.notify_all();
      gate_cv_.wait(lock, [&] { return open_; });
    }
    return RecordingStream::Send(data, event);
  }
  bool WaitInSend() {
    std::unique_lock<std::mutex> lock(gate_mu_);
    return gate_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return in_send_; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(gate_mu_);
    open_ = true;
    gate_cv_.notify_all();
  }

 private:
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool in_send_ = false;
  bool open_ = false;
};

TEST(KvEventHubTest, CountsASubscriberWhileEventsAreForwardedToIt) {
  auto pool = SmallPool();
  KvEventHub hub(pool.get(), 1, absl::Milliseconds(1));
  auto gated = std::make_shared<GatedStream>();
  hub.Subscribe(gated, 0, 1);
  StoreBlock(*pool, 0x11);
  ASSERT_TRUE(gated->WaitInSend());
  EXPECT_EQ(hub.subscribers(), 1u) << "the poll thread is sending to it";
  gated->Open();
  EXPECT_EQ(gated->WaitFor(1).size(), 1u);
  EXPECT_EQ(hub.subscribers(), 1u);
}

TEST(KvEventHubTest, AnotherEpochOrALostHistoryStartsWithASnapshot) {
  auto pool = SmallPool(/*event_history=*/2);
  for (uint64_t hash : {0x1, 0x2, 0x3, 0x4}) StoreBlock(*pool, hash);
  KvEventHub hub(pool.get(), 7, absl::Milliseconds(1));

  auto other_epoch = std::make_shared<RecordingStream>();
  hub.Subscribe(other_epoch, 4, /*consumer_epoch=*/8);
  auto got = other_epoch->WaitFor(1);
  ASSERT_GE(got.size(), 1u);
  EXPECT_EQ(got[0].first, "snapshot");
  EXPECT_EQ(got[0].second["event_id"], 4);
  EXPECT_EQ(got[0].second["blocks"].size(), 4u);

  // Events 1 and 2 are no longer kept: resuming after 0 needs a snapshot too.
  auto behind = std::make_shared<RecordingStream>();
  hub.Subscribe(behind, 0, std::nullopt);
  got = behind->WaitFor(1);
  ASSERT_GE(got.size(), 1u);
  EXPECT_EQ(got[0].first, "snapshot");
  StoreBlock(*pool, 0x5);
  got = behind->WaitFor(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].second["event_id"], 5);
  hub.Stop();
  EXPECT_TRUE(behind->closed());
}

}  // namespace
}  // namespace tandem::worker
