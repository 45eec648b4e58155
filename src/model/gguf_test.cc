#include "model/gguf.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::model {
namespace {

using ::testing::HasSubstr;

// Builds GGUF bytes field by field, independently of GgufWriter, so tests can forge any header.
class RawGguf {
 public:
  RawGguf& U32(uint32_t v) { return Pod(v); }
  RawGguf& U64(uint64_t v) { return Pod(v); }
  RawGguf& Str(const std::string& s) {
    U64(s.size());
    bytes_ += s;
    return *this;
  }
  RawGguf& Raw(const std::string& s) {
    bytes_ += s;
    return *this;
  }
  template <typename T>
  RawGguf& Pod(T v) {
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  RawGguf& Header(uint32_t version, uint64_t tensors, uint64_t kvs) {
    return Raw("GGUF").U32(version).U64(tensors).U64(kvs);
  }
  RawGguf& Tensor(const std::string& name, std::vector<uint64_t> shape, uint32_t type,
                  uint64_t offset) {
    Str(name).U32(static_cast<uint32_t>(shape.size()));
    for (uint64_t extent : shape) U64(extent);
    return U32(type).U64(offset);
  }
  RawGguf& Pad(size_t alignment = 32) {
    while (bytes_.size() % alignment != 0) bytes_ += '\0';
    return *this;
  }
  RawGguf& Zeros(size_t n) {
    bytes_.append(n, '\0');
    return *this;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

absl::StatusOr<GgufFile> Parse(const std::string& bytes) {
  return ParseGguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.gguf");
}

TEST(GgufTest, ParsesEveryValueTypeIncludingNestedArrays) {
  RawGguf g;
  g.Header(3, 1, 14);
  g.Str("u8").U32(0).Pod<uint8_t>(200);
  g.Str("i8").U32(1).Pod<int8_t>(-5);
  g.Str("u16").U32(2).Pod<uint16_t>(60000);
  g.Str("i16").U32(3).Pod<int16_t>(-30000);
  g.Str("u32").U32(4).Pod<uint32_t>(4000000000u);
  g.Str("i32").U32(5).Pod<int32_t>(-2000000000);
  g.Str("f32").U32(6).Pod<float>(1e-5f);
  g.Str("bool").U32(7).Pod<uint8_t>(1);
  g.Str("str").U32(8).Str("héllo");
  g.Str("u64").U32(10).U64(~0ull);
  g.Str("i64").U32(11).Pod<int64_t>(-(int64_t{1} << 40));
  g.Str("f64").U32(12).Pod<double>(2.5);
  g.Str("arr").U32(9).U32(8).U64(2).Str("a").Str("bc");
  // An array of two arrays of int32.
  g.Str("nested")
      .U32(9)
      .U32(9)
      .U64(2)
      .U32(5)
      .U64(2)
      .Pod<int32_t>(1)
      .Pod<int32_t>(2)
      .U32(5)
      .U64(1)
      .Pod<int32_t>(3);
  g.Tensor("t", {4, 2}, 0, 0).Pad().Zeros(32);
  absl::StatusOr<GgufFile> file = Parse(g.bytes());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->version, 3u);
  EXPECT_EQ(file->Find("u8")->integer, 200);
  EXPECT_EQ(file->Find("i8")->integer, -5);
  EXPECT_EQ(file->Find("u16")->integer, 60000);
  EXPECT_EQ(file->Find("i16")->integer, -30000);
  EXPECT_EQ(file->Find("u32")->integer, 4000000000ll);
  EXPECT_EQ(file->Find("i32")->integer, -2000000000);
  EXPECT_EQ(file->Find("f32")->number, 1e-5);  // shortest decimal form of the float
  EXPECT_TRUE(file->Find("bool")->boolean);
  EXPECT_EQ(file->Find("str")->string, "héllo");
  EXPECT_EQ(static_cast<uint64_t>(file->Find("u64")->integer), ~0ull);
  EXPECT_EQ(file->Find("i64")->integer, -(int64_t{1} << 40));
  EXPECT_EQ(file->Find("f64")->number, 2.5);
  EXPECT_EQ(file->Find("arr")->array[1].string, "bc");
  const GgufValue* nested = file->Find("nested");
  ASSERT_EQ(nested->array.size(), 2u);
  EXPECT_EQ(nested->array[0].array[1].integer, 2);
  EXPECT_EQ(nested->array[1].array[0].integer, 3);
  EXPECT_EQ(nested->DebugString(), "[2 x array: [2 x int32: 1, 2], [1 x int32: 3]]");
  ASSERT_EQ(file->tensors.size(), 1u);
  EXPECT_EQ(file->tensors[0].size_bytes, 32u);
  EXPECT_EQ(file->data_offset % 32, 0u);
}

TEST(GgufTest, WriterRoundTripWithCustomAlignment) {
  const std::string path = testing::TempDir() + "/writer_roundtrip.gguf";
  GgufWriter writer(/*alignment=*/64);
  writer.SetString("general.architecture", "llama");
  writer.Set("list", GgufValue::Array(GgufType::kArray,
                                      {GgufValue::Array(GgufType::kUint32, {GgufValue::Uint32(7)}),
                                       GgufValue::Array(GgufType::kString, {})}));
  ASSERT_TRUE(writer.AddTensor("a", DType::kF32, {3}).ok());
  ASSERT_TRUE(writer.AddTensor("b", DType::kQ8_0, {32, 2}).ok());
  ASSERT_TRUE(writer.Open(path).ok());
  const float a[3] = {1, 2, 3};
  ASSERT_TRUE(writer.Append(a, sizeof(a)).ok());
  std::string b(68, '\x11');
  ASSERT_TRUE(writer.Append(b.data(), 10).ok());  // in pieces
  ASSERT_TRUE(writer.Append(b.data() + 10, 58).ok());
  ASSERT_TRUE(writer.Finish().ok());
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  absl::StatusOr<GgufFile> file = Parse(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->alignment, 64u);
  EXPECT_EQ(file->data_offset % 64, 0u);
  EXPECT_EQ(file->Find("list")->array[0].array[0].integer, 7);
  const GgufTensorInfo* tb = file->FindTensor("b");
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(tb->offset, 64u);
  EXPECT_EQ(tb->size_bytes, 68u);
  float read_a[3];
  std::memcpy(read_a, bytes.data() + file->data_offset, sizeof(read_a));
  EXPECT_EQ(read_a[2], 3.0f);
  EXPECT_EQ(bytes[file->data_offset + tb->offset + 67], '\x11');
}

TEST(GgufTest, WriterRefusesShortData) {
  const std::string path = testing::TempDir() + "/short.gguf";
  GgufWriter writer;
  ASSERT_TRUE(writer.AddTensor("a", DType::kF32, {4}).ok());
  ASSERT_TRUE(writer.Open(path).ok());
  ASSERT_TRUE(writer.Append("abcd", 4).ok());
  absl::Status status = writer.Finish();
  EXPECT_THAT(status.message(), HasSubstr("tensor 'a' was not written in full"));
  EXPECT_FALSE(writer.AddTensor("bad", DType::kQ5_1, {32}).ok());
}

struct BadCase {
  const char* name;
  std::string bytes;
  std::vector<std::string> expected;  // substrings of the error
};

TEST(GgufTest, BadInputTable) {
  std::vector<BadCase> cases;
  cases.push_back({"empty", "", {"test.gguf", "expected magic \"GGUF\""}});
  cases.push_back({"wrong magic", "GGML\x03\0\0\0", {"test.gguf", "not a GGUF file", "GGML"}});
  cases.push_back(
      {"version 1", RawGguf().Header(1, 0, 0).bytes(), {"version 1", "expected 2 or 3"}});
  cases.push_back(
      {"big endian", RawGguf().Raw("GGUF").U32(0x03000000).U64(0).U64(0).bytes(), {"big-endian"}});
  cases.push_back(
      {"truncated header", std::string("GGUF\x03\0\0\0\0\0", 10), {"test.gguf", "truncated"}});
  cases.push_back({"huge kv count",
                   RawGguf().Header(3, 0, 1ull << 60).bytes(),
                   {"metadata count", "cannot fit"}});
  cases.push_back({"huge tensor count",
                   RawGguf().Header(3, 1ull << 40, 0).bytes(),
                   {"tensor count", "cannot fit"}});
  cases.push_back({"truncated string",
                   RawGguf().Header(3, 0, 1).U64(100).Raw("abcdefghijklmnop").bytes(),
                   {"metadata entry 0", "truncated"}});
  cases.push_back({"bad value type",
                   RawGguf().Header(3, 0, 1).Str("k").U32(13).bytes(),
                   {"metadata key 'k'", "value type 13"}});
  cases.push_back({"bad bool",
                   RawGguf().Header(3, 0, 1).Str("k").U32(7).Pod<uint8_t>(2).bytes(),
                   {"metadata key 'k'", "bool value 2"}});
  cases.push_back({"forged array count",
                   RawGguf().Header(3, 0, 1).Str("k").U32(9).U32(8).U64(1ull << 25).bytes(),
                   {"metadata key 'k'", "truncated"}});
  {
    RawGguf g;
    g.Header(3, 0, 1).Str("k").U32(9);
    for (int i = 0; i < 10; ++i) g.U32(9).U64(1);
    cases.push_back({"nesting too deep", g.bytes(), {"metadata key 'k'", "nested deeper"}});
  }
  cases.push_back({"duplicate key",
                   RawGguf().Header(3, 0, 2).Str("k").U32(4).U32(1).Str("k").U32(4).U32(2).bytes(),
                   {"metadata key 'k'", "twice"}});
  cases.push_back({"bad alignment",
                   RawGguf().Header(3, 0, 1).Str("general.alignment").U32(4).U32(48).bytes(),
                   {"general.alignment", "power of two"}});
  cases.push_back(
      {"too many dims",
       RawGguf().Header(3, 1, 0).Tensor("t", {1, 1, 1, 1, 1}, 0, 0).Pad().Zeros(32).bytes(),
       {"tensor 't'", "5 dimensions"}});
  cases.push_back({"zero dim",
                   RawGguf().Header(3, 1, 0).Tensor("t", {0}, 0, 0).Pad().bytes(),
                   {"tensor 't'", "dimension 0 = 0"}});
  cases.push_back(
      {"unsupported type",
       RawGguf().Header(3, 1, 0).Tensor("blk.0.attn_q.weight", {32}, 7, 0).Pad().Zeros(32).bytes(),
       {"tensor 'blk.0.attn_q.weight'", "Q5_1", "supported: F32, F16, BF16, Q8_0, Q4_K, Q6_K"}});
  cases.push_back({"unknown type",
                   RawGguf().Header(3, 1, 0).Tensor("t", {32}, 99, 0).Pad().Zeros(32).bytes(),
                   {"tensor 't'", "type 99"}});
  cases.push_back({"partial block",
                   RawGguf().Header(3, 1, 0).Tensor("t", {48}, 8, 0).Pad().Zeros(64).bytes(),
                   {"tensor 't'", "48", "Q8_0 block size 32"}});
  cases.push_back({"unaligned offset",
                   RawGguf().Header(3, 1, 0).Tensor("t", {4}, 0, 8).Pad().Zeros(64).bytes(),
                   {"tensor 't'", "offset 8", "alignment 32"}});
  cases.push_back(
      {"offset past end",
       RawGguf().Header(3, 1, 0).Tensor("t", {4}, 0, 1ull << 62).Pad().Zeros(16).bytes(),
       {"tensor 't'", "past the end"}});
  cases.push_back({"data truncated",
                   RawGguf().Header(3, 1, 0).Tensor("t", {64}, 0, 0).Pad().Zeros(100).bytes(),
                   {"tensor 't'", "256 bytes", "past the end", "truncated"}});
  cases.push_back({"overlapping tensors",
                   RawGguf()
                       .Header(3, 2, 0)
                       .Tensor("a", {16}, 0, 0)
                       .Tensor("b", {8}, 0, 32)
                       .Pad()
                       .Zeros(64)
                       .bytes(),
                   {"tensors 'a'", "'b'", "overlap"}});
  cases.push_back({"duplicate tensor",
                   RawGguf()
                       .Header(3, 2, 0)
                       .Tensor("a", {8}, 0, 0)
                       .Tensor("a", {8}, 0, 32)
                       .Pad()
                       .Zeros(64)
                       .bytes(),
                   {"tensor 'a'", "twice"}});
  cases.push_back({"wrong element size",  // F16 tensor needing 128 bytes, only 64 present
                   RawGguf().Header(3, 1, 0).Tensor("w", {64}, 1, 0).Pad().Zeros(64).bytes(),
                   {"tensor 'w'", "F16", "128 bytes", "past the end"}});
  for (const BadCase& c : cases) {
    absl::StatusOr<GgufFile> file = Parse(c.bytes);
    ASSERT_FALSE(file.ok()) << c.name;
    for (const std::string& expected : c.expected) {
      EXPECT_THAT(std::string(file.status().message()), HasSubstr(expected)) << c.name;
    }
  }
}

TEST(GgufTest, EveryTruncationOfAValidFileFails) {
  RawGguf g;
  g.Header(3, 2, 2).Str("general.architecture").U32(8).Str("llama");
  g.Str("arr").U32(9).U32(6).U64(3).Pod<float>(1).Pod<float>(2).Pod<float>(3);
  g.Tensor("a", {8}, 0, 0).Tensor("b", {32}, 8, 32).Pad().Zeros(32 + 34);
  ASSERT_TRUE(Parse(g.bytes()).ok());
  for (size_t n = 0; n < g.bytes().size(); ++n) {
    absl::StatusOr<GgufFile> file = Parse(g.bytes().substr(0, n));
    ASSERT_FALSE(file.ok()) << "prefix of " << n << " bytes parsed";
  }
}

}  // namespace
}  // namespace tandem::model
