#include "worker/decisions.h"

#include <ostream>

#include "gtest/gtest.h"

namespace tandem::worker {

void PrintTo(const LayerPushTracker::Step& s, std::ostream* os) {
  *os << "{result " << static_cast<int>(s.result) << ", first " << s.first << ", count " << s.count
      << "}";
}

namespace {

using Result = LayerPushTracker::Result;

LayerPushTracker::Step Push(int64_t first, int64_t count) {
  return {.result = Result::kPush, .first = first, .count = count};
}

TEST(LayerPushTrackerTest, EachChunkPushesTheBlocksItMadeFinalLayerByLayer) {
  // 40 tokens in blocks of 8 (5 blocks, the last one full); the decode worker caches block 0, so
  // the window is blocks 1..4. Positions 0..15 came from the prefill worker's prefix cache; two
  // chunks compute 16..29 and 30..39.
  LayerPushTracker tracker(2, 40, 8, 1, 4);
  EXPECT_EQ(tracker.OnLayer(0, 16, 14), Push(0, 2));  // blocks 1, 2 (cached 1 + computed 2)
  EXPECT_EQ(tracker.OnLayer(1, 16, 14), Push(0, 2));
  EXPECT_FALSE(tracker.AllComplete());
  EXPECT_EQ(tracker.OnLayer(0, 30, 10), Push(2, 2));  // block 3 (half from each chunk) and 4
  EXPECT_FALSE(tracker.AllComplete());
  EXPECT_EQ(tracker.OnLayer(1, 30, 10), Push(2, 2));
  EXPECT_TRUE(tracker.AllComplete());
  EXPECT_EQ(tracker.computed_tokens(), 24);
}

TEST(LayerPushTrackerTest, ThePartialLastBlockGoesWhenTheLayerReachesThePromptEnd) {
  LayerPushTracker tracker(1, 20, 8, 0, 3);
  EXPECT_EQ(tracker.OnLayer(0, 0, 6), LayerPushTracker::Step{});  // no block final yet
  EXPECT_EQ(tracker.OnLayer(0, 6, 12), Push(0, 2));               // 18 tokens: blocks 0, 1
  EXPECT_FALSE(tracker.AllComplete());
  EXPECT_EQ(tracker.OnLayer(0, 18, 2), Push(2, 1));  // the prompt's end: block 2 (4 tokens)
  EXPECT_TRUE(tracker.AllComplete());
}

TEST(LayerPushTrackerTest, RecomputedPositionsStopThePush) {
  LayerPushTracker tracker(1, 40, 16, 0, 3);
  EXPECT_EQ(tracker.OnLayer(0, 0, 16), Push(0, 1));
  EXPECT_EQ(tracker.OnLayer(0, 0, 16).result, Result::kRestarted);
}

TEST(LayerPushTrackerTest, OutOfRangeLayersAndEmptyChunksAreIgnored) {
  LayerPushTracker tracker(1, 4, 16, 0, 1);
  EXPECT_EQ(tracker.OnLayer(3, 0, 4).result, Result::kNothing);
  EXPECT_EQ(tracker.OnLayer(-1, 0, 4).result, Result::kNothing);
  EXPECT_EQ(tracker.OnLayer(0, 0, 0).result, Result::kNothing);
  EXPECT_EQ(tracker.OnLayer(0, 0, 4), Push(0, 1));
  EXPECT_TRUE(tracker.AllComplete());
  EXPECT_EQ(tracker.OnLayer(0, 4, 1).result, Result::kNothing);  // a decode step after the prompt
}

TEST(DecideRemoteStepTest, JoinsOnlyWhenTheBlocksArrivedAndTheCallAnswered) {
  RemotePrefillState s;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kWait);
  s.kv_done = s.kv_ok = true;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kWait);
  s.call_done = s.call_ok = true;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kJoin);
  s.call_ok = false;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kFallBack);
}

TEST(DecideRemoteStepTest, AFailedCallAbortsTheReservationBeforeFallingBack) {
  RemotePrefillState s;
  s.call_done = true;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kAbortKv);
  s.kv_cancel_sent = true;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kWait);  // the sender may still be writing
  s.kv_done = true;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kFallBack);
}

TEST(DecideRemoteStepTest, AFailedTransferFallsBackAtOnce) {
  RemotePrefillState s;
  s.kv_done = true;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kFallBack);
}

TEST(DecideRemoteStepTest, CancellationAbortsThenAbandons) {
  RemotePrefillState s;
  s.cancelled = true;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kAbortKv);
  s.kv_cancel_sent = true;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kWait);
  s.kv_done = s.kv_ok = true;
  s.call_done = s.call_ok = true;
  EXPECT_EQ(DecideRemoteStep(s), RemoteStep::kAbandon);
}

TEST(FallbackReasonTest, NamesTheFirstFailure) {
  const absl::Status ok;
  EXPECT_EQ(FallbackReasonFor(ok, absl::UnavailableError("x"), 409), "refused");
  EXPECT_EQ(FallbackReasonFor(ok, absl::UnavailableError("x"), 503), "overloaded");
  EXPECT_EQ(FallbackReasonFor(ok, absl::UnavailableError("x"), 0), "unreachable");
  EXPECT_EQ(FallbackReasonFor(ok, absl::DeadlineExceededError("x"), 0), "timeout");
  EXPECT_EQ(FallbackReasonFor(ok, absl::UnavailableError("x"), 500), "prefill_error");
  EXPECT_EQ(FallbackReasonFor(absl::DeadlineExceededError("lease"), ok, 0), "lease_expired");
  EXPECT_EQ(FallbackReasonFor(absl::DataLossError("sum"), ok, 200), "corrupt");
  EXPECT_EQ(FallbackReasonFor(absl::UnavailableError("gone"), ok, 0), "transfer_failed");
}

TEST(KvEventStreamTest, ResumesOrStartsWithASnapshot) {
  // Resume within this epoch.
  KvStreamStart s = StartKvEventStream(5, std::nullopt, 7, 0, 9);
  EXPECT_FALSE(s.snapshot);
  EXPECT_EQ(s.resume_after, 5u);
  EXPECT_FALSE(StartKvEventStream(5, 7, 7, 0, 9).snapshot);
  // Another epoch, ids never issued, or dropped history: snapshot.
  EXPECT_TRUE(StartKvEventStream(5, 8, 7, 0, 9).snapshot);
  EXPECT_TRUE(StartKvEventStream(12, std::nullopt, 7, 0, 9).snapshot);
  EXPECT_TRUE(StartKvEventStream(2, std::nullopt, 7, 5, 9).snapshot);
  EXPECT_FALSE(StartKvEventStream(4, std::nullopt, 7, 5, 9).snapshot);
  EXPECT_FALSE(StartKvEventStream(0, std::nullopt, 7, 0, 0).snapshot);
}

TEST(RetryBackoffTest, DoublesUpToTheCapAndResets) {
  RetryBackoff backoff(absl::Seconds(1), absl::Seconds(5));
  EXPECT_EQ(backoff.Next(), absl::Seconds(1));
  EXPECT_EQ(backoff.Next(), absl::Seconds(2));
  EXPECT_EQ(backoff.Next(), absl::Seconds(4));
  EXPECT_EQ(backoff.Next(), absl::Seconds(5));
  EXPECT_EQ(backoff.Next(), absl::Seconds(5));
  backoff.Reset();
  EXPECT_EQ(backoff.Next(), absl::Seconds(1));
}

}  // namespace
}  // namespace tandem::worker
