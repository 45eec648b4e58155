#include "core/status.h"

#include "gtest/gtest.h"

namespace tandem {
namespace {

absl::StatusOr<int> Half(int value) {
  if (value % 2 != 0) return absl::InvalidArgumentError("odd");
  return value / 2;
}

absl::StatusOr<int> Quarter(int value) {
  TANDEM_ASSIGN_OR_RETURN(int half, Half(value));
  TANDEM_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int value) {
  TANDEM_RETURN_IF_ERROR(Half(value).status());
  return absl::OkStatus();
}

TEST(StatusTest, AssignOrReturnPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckEven(2).ok());
  EXPECT_FALSE(CheckEven(3).ok());
}

TEST(StatusTest, AnnotatePrependsContext) {
  absl::Status status = Annotate(absl::NotFoundError("no such tensor"), "model 'x.gguf'");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "model 'x.gguf': no such tensor");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "ignored").ok());
}

TEST(StatusTest, CodeNames) {
  EXPECT_EQ(StatusCodeName(absl::StatusCode::kResourceExhausted), "resource_exhausted");
  EXPECT_EQ(StatusCodeName(absl::StatusCode::kOk), "ok");
}

}  // namespace
}  // namespace tandem
