#include "router/admission.h"

#include "gtest/gtest.h"

namespace tandem::router {
namespace {

TEST(AdmissionTest, BoundsInFlightAndRecovers) {
  AdmissionController admission({.max_in_flight = 2});
  auto a = admission.Admit(0);
  auto b = admission.Admit(0);
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = admission.Admit(0);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(admission.rejected(), 1);
  EXPECT_EQ(admission.RetryAfterSeconds(0), 1);  // no completions seen yet
  admission.Release(*a, 1'000'000);
  EXPECT_TRUE(admission.Admit(1'000'000).ok());
  EXPECT_EQ(admission.in_flight(), 2);
}

TEST(AdmissionTest, RetryAfterFollowsDrainTime) {
  AdmissionController admission({.max_in_flight = 1000, .max_retry_after_seconds = 30});
  std::vector<AdmissionController::Ticket> tickets;
  for (int i = 0; i < 1000; ++i) tickets.push_back(*admission.Admit(0));
  // Ten completions per second for a minute.
  int64_t now = 0;
  for (int i = 0; i < 600; ++i) {
    now += 100'000;
    admission.Release(tickets.back(), now);
    tickets.pop_back();
    tickets.push_back(*admission.Admit(now));
  }
  // 1000 in flight at ~10/s would take ~100 s: clamped to 30.
  EXPECT_EQ(admission.RetryAfterSeconds(now), 30);
  for (int i = 0; i < 950; ++i) {
    admission.Release(tickets.back(), now);
    tickets.pop_back();
  }
  EXPECT_LE(admission.RetryAfterSeconds(now), 30);
  EXPECT_GE(admission.RetryAfterSeconds(now), 1);
}

}  // namespace
}  // namespace tandem::router
