#include "kv/reservation.h"

#include "gtest/gtest.h"

namespace tandem::kv {
namespace {

struct Outcome {
  int calls = 0;
  absl::Status status;
  int32_t first_token = -2;
};

ReservationSpec Spec(Outcome* outcome, int64_t deadline) {
  ReservationSpec spec;
  spec.num_layers = 2;
  spec.num_blocks = 3;
  spec.layer_block_bytes = 64;
  spec.lease_deadline_micros = deadline;
  spec.on_done = [outcome](absl::Status status, int32_t first) {
    ++outcome->calls;
    outcome->status = status;
    outcome->first_token = first;
  };
  return spec;
}

BeginMessage BeginFor(uint64_t id, uint64_t epoch) { return BeginMessage{id, epoch, 2, 3, 64, 0}; }

TEST(ReservationTableTest, ClaimChecksEpochShapeLeaseAndOwnership) {
  ReservationTable table(7);
  Outcome outcome;
  uint64_t id = table.Add(Spec(&outcome, 1000));
  RefusalCode code;
  EXPECT_EQ(table.Claim(BeginFor(id, 8), 1, 0, &code).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(code, RefusalCode::kStaleEpoch);
  EXPECT_FALSE(table.Claim(BeginFor(id + 1, 7), 1, 0, &code).ok());
  EXPECT_EQ(code, RefusalCode::kUnknownReservation);
  BeginMessage wrong_shape = BeginFor(id, 7);
  wrong_shape.num_blocks = 4;
  EXPECT_FALSE(table.Claim(wrong_shape, 1, 0, &code).ok());
  EXPECT_EQ(code, RefusalCode::kShapeMismatch);
  EXPECT_FALSE(table.Claim(BeginFor(id, 7), 1, 1000, &code).ok());
  EXPECT_EQ(code, RefusalCode::kLeaseExpired);
  ASSERT_TRUE(table.Claim(BeginFor(id, 7), 1, 999, &code).ok());
  EXPECT_FALSE(table.Claim(BeginFor(id, 7), 2, 999, &code).ok());  // already claimed
  EXPECT_EQ(outcome.calls, 0);
  EXPECT_TRUE(table.Complete(id, 42));
  EXPECT_EQ(outcome.calls, 1);
  EXPECT_TRUE(outcome.status.ok());
  EXPECT_EQ(outcome.first_token, 42);
  EXPECT_FALSE(table.Complete(id, 42));  // ends exactly once
  EXPECT_EQ(outcome.calls, 1);
  EXPECT_EQ(table.Stats().active, 0u);
}

TEST(ReservationTableTest, UnclaimedLeasesExpireClaimedOnesAreReported) {
  ReservationTable table(1);
  Outcome a, b;
  uint64_t id_a = table.Add(Spec(&a, 100));
  uint64_t id_b = table.Add(Spec(&b, 100));
  RefusalCode code;
  ASSERT_TRUE(table.Claim(BeginFor(id_b, 1), 9, 50, &code).ok());
  EXPECT_EQ(table.NextDeadline(), 100);
  EXPECT_TRUE(table.ExpireDue(99).empty());
  int unclaimed = 0;
  auto claimed = table.ExpireDue(100, &unclaimed);
  EXPECT_EQ(unclaimed, 1);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.status.code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0], std::make_pair(id_b, uint64_t{9}));
  EXPECT_EQ(b.calls, 0);
  (void)id_a;
}

TEST(ReservationTableTest, AbortingKeepsBlocksUntilSenderStops) {
  ReservationTable table(1);
  Outcome outcome;
  uint64_t id = table.Add(Spec(&outcome, 100));
  RefusalCode code;
  ASSERT_TRUE(table.Claim(BeginFor(id, 1), 3, 0, &code).ok());
  EXPECT_TRUE(table.Fail(id, absl::DeadlineExceededError("late"), /*wait_for_sender=*/true));
  EXPECT_EQ(outcome.calls, 0);  // the sender may still be writing
  EXPECT_FALSE(table.Fail(id, absl::InternalError("again")));
  EXPECT_EQ(table.Stats().active, 1u);
  table.ReleaseAborted(id);
  EXPECT_EQ(outcome.calls, 1);
  EXPECT_EQ(outcome.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(table.Stats().expired, 1u);
  EXPECT_EQ(table.Stats().active, 0u);
}

TEST(ReservationTableTest, CancelAndConnectionLoss) {
  ReservationTable table(1);
  Outcome idle, busy;
  uint64_t idle_id = table.Add(Spec(&idle, 100));
  uint64_t busy_id = table.Add(Spec(&busy, 100));
  RefusalCode code;
  ASSERT_TRUE(table.Claim(BeginFor(busy_id, 1), 5, 0, &code).ok());
  uint64_t connection = 99;
  EXPECT_TRUE(table.Cancel(idle_id, &connection));
  EXPECT_EQ(connection, 0u);
  EXPECT_EQ(idle.status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(table.Cancel(busy_id, &connection));
  EXPECT_EQ(connection, 5u);  // the receiver must abort that connection's transfer
  EXPECT_EQ(busy.calls, 0);
  table.FailConnection(5, absl::UnavailableError("closed"));
  EXPECT_EQ(busy.calls, 1);
  EXPECT_EQ(busy.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(table.Cancel(12345, &connection));
  EXPECT_EQ(table.Stats().active, 0u);
}

TEST(ReservationTest, TracksEveryLayerOfEveryBlock) {
  Outcome outcome;
  Reservation reservation(1, Spec(&outcome, 0));
  reservation.MarkReceived(0, 0, 3);
  EXPECT_FALSE(reservation.AllReceived());
  reservation.MarkReceived(1, 0, 2);
  EXPECT_FALSE(reservation.AllReceived());
  reservation.MarkReceived(1, 2, 1);
  EXPECT_TRUE(reservation.AllReceived());
  EXPECT_EQ(reservation.received_bytes(), 6u * 64);
}

}  // namespace
}  // namespace tandem::kv
