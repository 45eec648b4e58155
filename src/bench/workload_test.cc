#include "bench/workload.h"

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "gtest/gtest.h"

namespace tandem::bench {
namespace {

TEST(LengthSpecTest, ParsesEveryFormAndRefusesBadOnes) {
  EXPECT_EQ(ParseLengthSpec("128")->kind, LengthSpec::Kind::kFixed);
  EXPECT_EQ(ParseLengthSpec("uniform:10,20")->kind, LengthSpec::Kind::kUniform);
  EXPECT_EQ(ParseLengthSpec("normal:100,10")->kind, LengthSpec::Kind::kNormal);
  EXPECT_EQ(ParseLengthSpec("lognormal:1024,0.5")->kind, LengthSpec::Kind::kLogNormal);
  for (const char* bad :
       {"", "abc", "uniform:20,10", "normal:1", "zipf:1,2", "0", "normal:5,-1", "uniform:a,b"}) {
    EXPECT_FALSE(ParseLengthSpec(bad).ok()) << bad;
  }
  Random rng(1);
  LengthSpec uniform = *ParseLengthSpec("uniform:10,20");
  for (int i = 0; i < 1000; ++i) {
    int64_t v = uniform.Sample(rng);
    ASSERT_GE(v, 10);
    ASSERT_LE(v, 20);
  }
  LengthSpec normal = *ParseLengthSpec("normal:5,100");  // clamped at min 1
  for (int i = 0; i < 1000; ++i) ASSERT_GE(normal.Sample(rng), 1);
}

TEST(WorkloadGeneratorTest, PoissonRateAndDeterminism) {
  WorkloadSpec spec;
  spec.arrivals.rate = 50;
  spec.num_requests = 20000;
  spec.input = *ParseLengthSpec("lognormal:1000,0.5");
  WorkloadGenerator a(spec, 3), b(spec, 3);
  double last = 0;
  uint64_t count = 0;
  double input_sum = 0;
  while (auto r = a.Next()) {
    auto r2 = b.Next();
    ASSERT_TRUE(r2.has_value());
    ASSERT_EQ(r->arrival_s, r2->arrival_s);
    ASSERT_EQ(r->input_tokens, r2->input_tokens);
    ASSERT_GE(r->arrival_s, last);
    last = r->arrival_s;
    input_sum += r->input_tokens;
    ++count;
  }
  EXPECT_EQ(count, 20000u);
  EXPECT_NEAR(count / last, 50, 2);  // observed rate
  EXPECT_NEAR(input_sum / count, 1000 * std::exp(0.125), 20);
}

TEST(WorkloadGeneratorTest, RateCurveShapesArrivals) {
  WorkloadSpec spec;
  spec.arrivals.rate = 100;
  spec.arrivals.curve = *ParseRateCurve("burst:10,10,4");
  spec.num_requests = 0;
  spec.duration_s = 30;
  WorkloadGenerator generator(spec, 5);
  int before = 0, during = 0;
  while (auto r = generator.Next()) {
    if (r->arrival_s < 10) ++before;
    if (r->arrival_s >= 10 && r->arrival_s < 20) ++during;
  }
  EXPECT_NEAR(static_cast<double>(during) / before, 4.0, 0.4);
  EXPECT_FALSE(ParseRateCurve("burst:1,0,2").ok());
  EXPECT_FALSE(ParseRateCurve("weekly:1,2,3").ok());
  EXPECT_TRUE(ParseRateCurve("diurnal:86400,0.2,1;ramp:0,100,1,2").ok());
}

TEST(WorkloadGeneratorTest, SharedPrefixGroups) {
  WorkloadSpec spec;
  spec.num_requests = 100;
  spec.prefix_groups = 4;
  spec.prefix_tokens = 2048;
  spec.input = *ParseLengthSpec("1024");
  WorkloadGenerator generator(spec, 1);
  while (auto r = generator.Next()) {
    ASSERT_GE(r->prefix_group, 0);
    ASSERT_LT(r->prefix_group, 4);
    ASSERT_EQ(r->prefix_tokens, 1024);  // capped at the input length
  }
}

TEST(TraceTest, ParsesAzureFormatAndRefusesBadLines) {
  auto trace = ParseTrace(
      "arrived_at,num_prefill_tokens,num_decode_tokens\n"
      "10.0,374,44\n10.5,396,109\n",
      "t.csv", 2.0);
  ASSERT_TRUE(trace.ok()) << trace.status();
  ASSERT_EQ(trace->size(), 2u);
  EXPECT_DOUBLE_EQ((*trace)[0].arrival_s, 0);
  EXPECT_DOUBLE_EQ((*trace)[1].arrival_s, 1.0);  // slowed down twice
  EXPECT_EQ((*trace)[1].output_tokens, 109);
  auto missing = ParseTrace("a,b,c\n1,2,3\n", "t.csv");
  EXPECT_NE(missing.status().message().find("t.csv:1"), std::string::npos);
  auto bad = ParseTrace("timestamp,input_tokens,output_tokens\n1,2,3\n0.5,2,3\n", "t.csv");
  EXPECT_NE(bad.status().message().find("t.csv:3"), std::string::npos) << bad.status();
  EXPECT_FALSE(ParseTrace("timestamp,input_tokens,output_tokens\n1,x,3\n", "t").ok());
  EXPECT_FALSE(ParseTrace("timestamp,input_tokens,output_tokens\n1,2\n", "t").ok());
  EXPECT_FALSE(ParseTrace("timestamp,input_tokens,output_tokens\n", "t").ok());
  EXPECT_FALSE(LoadTrace("/nonexistent/trace.csv").ok());
}

TEST(TraceTest, RealAzureTracesLoad) {
  const char* root = std::getenv("TANDEM_SOURCE_DIR");
  ASSERT_NE(root, nullptr);
  for (const char* name : {"azure_conv_2023.csv", "azure_code_2023.csv"}) {
    std::string path = std::string(root) + "/../shared/data/traces/" + name;
    if (!std::ifstream(path)) continue;  // reference data lives beside the checkout
    auto trace = LoadTrace(path);
    ASSERT_TRUE(trace.ok()) << trace.status();
    EXPECT_GT(trace->size(), 1000u);
  }
}

TEST(WorkloadTest, ValidationMessages) {
  WorkloadSpec spec;
  spec.arrivals.rate = -1;
  EXPECT_NE(ValidateWorkload(spec).message().find("negative"), std::string::npos);
  spec.arrivals.rate = 1;
  spec.num_requests = 0;
  EXPECT_FALSE(ValidateWorkload(spec).ok());
}

}  // namespace
}  // namespace tandem::bench
