#include "worker/decisions.h"

#include "gtest/gtest.h"

namespace tandem::worker {
namespace {

using Result = LayerPushTracker::Result;

TEST(LayerPushTrackerTest, ALayerIsCompleteWhenItsLastChunkReachesThePromptEnd) {
  LayerPushTracker tracker(2, 40);
  // Positions 0..15 came from the prefix cache; two chunks compute 16..31 and 32..39.
  EXPECT_EQ(tracker.OnLayer(0, 16, 16), Result::kPending);
  EXPECT_EQ(tracker.OnLayer(1, 16, 16), Result::kPending);
  EXPECT_EQ(tracker.OnLayer(0, 32, 8), Result::kComplete);
  EXPECT_FALSE(tracker.AllComplete());
  EXPECT_EQ(tracker.OnLayer(1, 32, 8), Result::kComplete);
  EXPECT_TRUE(tracker.AllComplete());
  EXPECT_EQ(tracker.computed_tokens(), 24);
}

TEST(LayerPushTrackerTest, RecomputedPositionsStopThePush) {
  LayerPushTracker tracker(1, 40);
  EXPECT_EQ(tracker.OnLayer(0, 0, 16), Result::kPending);
  EXPECT_EQ(tracker.OnLayer(0, 0, 16), Result::kRestarted);
}

TEST(LayerPushTrackerTest, OutOfRangeLayersAndEmptyChunksAreIgnored) {
  LayerPushTracker tracker(1, 4);
  EXPECT_EQ(tracker.OnLayer(3, 0, 4), Result::kPending);
  EXPECT_EQ(tracker.OnLayer(-1, 0, 4), Result::kPending);
  EXPECT_EQ(tracker.OnLayer(0, 0, 0), Result::kPending);
  EXPECT_EQ(tracker.OnLayer(0, 0, 4), Result::kComplete);
  EXPECT_EQ(tracker.OnLayer(0, 4, 1), Result::kPending);  // a decode step after the prompt
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
