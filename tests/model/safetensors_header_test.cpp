// ParseSafetensorsHeader on valid and malformed bytes: one test per kind of corruption, each
// checking that the error is an llamarl::Error naming the file, the tensor and the problem.
#include "model/safetensors_header.h"

#include "core/check.h"
#include "tests/model/safetensors_test_util.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace llamarl {
namespace {

using testing::RawSafetensors;

constexpr const char* kFile = "corrupt.safetensors";

SafetensorsHeader Parse(const std::string& bytes) {
  return ParseSafetensorsHeader(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), kFile);
}

// Parsing must throw llamarl::Error whose message names the file and contains every fragment.
void ExpectError(const std::string& bytes, const std::vector<std::string>& fragments) {
  try {
    Parse(bytes);
    ADD_FAILURE() << "no error for a header expected to fail with: " << fragments.front();
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(kFile), std::string::npos) << message;
    for (const auto& f : fragments) EXPECT_NE(message.find(f), std::string::npos) << "missing '" << f << "' in: " << message;
  }
}

std::string Entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

TEST(SafetensorsHeaderTest, ParsesEntriesInHeaderOrderWithMetadata) {
  const std::string header = "{\"zeta\":" + Entry("F32", "[2]", "[4,12]") + ",\"__metadata__\":{\"format\":\"pt\"}," +
                             "\"alpha\":" + Entry("I16", "[1,2]", "[0,4]") + ",\"none\":" + Entry("BF16", "[0,5]", "[12,12]") + "}";
  const std::string bytes = RawSafetensors(header, std::string(12, 'x'));
  SafetensorsHeader h = Parse(bytes);
  ASSERT_EQ(h.entries.size(), 3u);
  EXPECT_EQ(h.entries[0].name, "zeta");
  EXPECT_EQ(h.entries[1].name, "alpha");
  EXPECT_EQ(h.entries[2].name, "none");
  EXPECT_EQ(h.entries[0].dtype, "F32");
  EXPECT_EQ(h.entries[0].begin, 4u);
  EXPECT_EQ(h.entries[0].end, 12u);
  EXPECT_EQ(h.entries[1].shape, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(h.entries[2].shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(h.data_offset, 8 + header.size());
  EXPECT_EQ(h.data_size, 12u);
  EXPECT_EQ(h.metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
}

TEST(SafetensorsHeaderTest, AcceptsEmptyHeaderAndSpacePadding) {
  SafetensorsHeader h = Parse(RawSafetensors("{}      "));
  EXPECT_TRUE(h.entries.empty());
  EXPECT_EQ(h.data_offset, 16u);
  EXPECT_EQ(h.data_size, 0u);
}

TEST(SafetensorsHeaderTest, DtypeSizes) {
  EXPECT_EQ(SafetensorsDtypeSize("F64"), 8u);
  EXPECT_EQ(SafetensorsDtypeSize("BF16"), 2u);
  EXPECT_EQ(SafetensorsDtypeSize("BOOL"), 1u);
  EXPECT_EQ(SafetensorsDtypeSize("F8_E4M3"), 1u);
  EXPECT_EQ(SafetensorsDtypes().size(), 15u);
  EXPECT_THROW(SafetensorsDtypeSize("float32"), Error);
}

TEST(SafetensorsHeaderTest, FileShorterThanLengthField) {
  ExpectError(std::string(5, '\0'), {"is 5 bytes", "8-byte header length"});
  ExpectError("", {"is 0 bytes"});
}

TEST(SafetensorsHeaderTest, HeaderLengthPastEndOfFile) {
  std::string bytes = RawSafetensors("{}");
  bytes[0] = 100;  // claims 100 header bytes; 2 follow
  ExpectError(bytes, {"header length 100 runs past the end of the file (10 bytes"});
}

TEST(SafetensorsHeaderTest, AbsurdHeaderLength) {
  std::string bytes = RawSafetensors("{}");
  bytes[5] = 1;  // 2^40 + 2
  ExpectError(bytes, {"header length 1099511627778 is absurdly large"});
}

TEST(SafetensorsHeaderTest, InvalidJson) {
  ExpectError(RawSafetensors("{\"a\":"), {"header is not valid JSON", "parse error"});
  ExpectError(RawSafetensors("{\"a\":\"\xff\"}"), {"header is not valid JSON"});  // invalid UTF-8
}

TEST(SafetensorsHeaderTest, HeaderNotAnObject) {
  ExpectError(RawSafetensors("[1,2]"), {"header must be a JSON object", "got array [1,2]"});
}

TEST(SafetensorsHeaderTest, EntryNotAnObject) {
  ExpectError(RawSafetensors("{\"w\":5}"), {"tensor 'w'", "entry must be an object", "got 5"});
}

TEST(SafetensorsHeaderTest, EntryMissingField) {
  ExpectError(RawSafetensors("{\"w\":{\"shape\":[],\"data_offsets\":[0,4]}}", "xxxx"), {"tensor 'w'", "missing \"dtype\""});
  ExpectError(RawSafetensors("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "xxxx"), {"missing \"shape\""});
  ExpectError(RawSafetensors("{\"w\":{\"dtype\":\"F32\",\"shape\":[]}}", "xxxx"), {"missing \"data_offsets\""});
}

TEST(SafetensorsHeaderTest, EntryFieldsOfWrongType) {
  auto one = [](const std::string& entry) { return RawSafetensors("{\"w\":" + entry + "}", "xxxx"); };
  ExpectError(one("{\"dtype\":4,\"shape\":[],\"data_offsets\":[0,4]}"), {"tensor 'w'", "dtype must be a string", "got 4"});
  ExpectError(one("{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}"), {"shape must be a list of integers"});
  ExpectError(one(Entry("F32", "[1.5]", "[0,4]")), {"every shape dim must be a non-negative integer", "got 1.5"});
  ExpectError(one(Entry("F32", "[[1]]", "[0,4]")), {"every shape dim must be", "got array [1]"});
  ExpectError(one(Entry("F32", "[1]", "{\"b\":0}")), {"data_offsets must be [begin, end]"});
  ExpectError(one(Entry("F32", "[1]", "[4]")), {"data_offsets must be [begin, end]", "got array [4]"});
  ExpectError(one(Entry("F32", "[1]", "[0,\"4\"]")), {"data_offsets end must be a non-negative integer"});
  ExpectError(one(Entry("F32", "[1]", "[-1,4]")), {"data_offsets begin must be a non-negative integer", "got -1"});
}

TEST(SafetensorsHeaderTest, EntryWithUnknownKey) {
  ExpectError(RawSafetensors("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"scale\":2}}", "xxxx"),
              {"tensor 'w'", "unknown key 'scale'"});
}

TEST(SafetensorsHeaderTest, UnknownDtype) {
  ExpectError(RawSafetensors("{\"w\":" + Entry("F33", "[1]", "[0,4]") + "}", "xxxx"),
              {"tensor 'w'", "unknown dtype 'F33'", "known: BOOL, U8"});
}

TEST(SafetensorsHeaderTest, NegativeShape) {
  ExpectError(RawSafetensors("{\"w\":" + Entry("F32", "[2,-1]", "[0,4]") + "}", "xxxx"),
              {"tensor 'w'", "every shape dim must be a non-negative integer", "got -1"});
}

TEST(SafetensorsHeaderTest, OverflowingShapeProduct) {
  ExpectError(RawSafetensors("{\"w\":" + Entry("F32", "[4294967296,4294967296]", "[0,4]") + "}", "xxxx"),
              {"tensor 'w'", "overflows 2^63 bytes"});
  ExpectError(RawSafetensors("{\"w\":" + Entry("U8", "[18446744073709551615]", "[0,4]") + "}", "xxxx"),
              {"below 2^63", "got 18446744073709551615"});
  // The dims' product fits, times the element size does not.
  ExpectError(RawSafetensors("{\"w\":" + Entry("F64", "[2305843009213693952]", "[0,4]") + "}", "xxxx"),
              {"overflows 2^63 bytes"});
}

TEST(SafetensorsHeaderTest, OffsetsBeginAfterEnd) {
  ExpectError(RawSafetensors("{\"w\":" + Entry("F32", "[1]", "[8,4]") + "}", std::string(8, 'x')),
              {"tensor 'w'", "data_offsets [8, 4] has begin > end"});
}

TEST(SafetensorsHeaderTest, ByteSizeDisagreesWithShape) {
  ExpectError(RawSafetensors("{\"w\":" + Entry("F32", "[2]", "[0,4]") + "}", "xxxx"),
              {"tensor 'w'", "span 4 bytes but shape [2] of F32 needs 8 bytes"});
}

TEST(SafetensorsHeaderTest, OffsetsPastDataSection) {
  ExpectError(RawSafetensors("{\"w\":" + Entry("F32", "[2]", "[0,8]") + "}", "xxxx"),
              {"tensor 'w'", "run past the end of the data section (4 bytes)"});
}

TEST(SafetensorsHeaderTest, OverlappingTensors) {
  ExpectError(RawSafetensors("{\"a\":" + Entry("F32", "[2]", "[0,8]") + ",\"b\":" + Entry("F32", "[2]", "[4,12]") + "}",
                             std::string(12, 'x')),
              {"tensor 'b'", "overlap tensor 'a', which ends at 8"});
}

TEST(SafetensorsHeaderTest, HoleBetweenTensors) {
  ExpectError(RawSafetensors("{\"a\":" + Entry("F32", "[1]", "[0,4]") + ",\"b\":" + Entry("F32", "[1]", "[8,12]") + "}",
                             std::string(12, 'x')),
              {"tensor 'b'", "hole of 4 bytes at [4, 8)"});
  // A hole before the first tensor counts too.
  ExpectError(RawSafetensors("{\"a\":" + Entry("U8", "[1]", "[3,4]") + "}", "xxxx"), {"hole of 3 bytes at [0, 3)"});
}

TEST(SafetensorsHeaderTest, TrailingBytesAfterLastTensor) {
  ExpectError(RawSafetensors("{\"a\":" + Entry("F32", "[1]", "[0,4]") + "}", std::string(8, 'x')),
              {"the tensors cover 4 bytes of the 8-byte data section", "trailing 4 bytes"});
}

TEST(SafetensorsHeaderTest, DuplicateTensorName) {
  ExpectError(RawSafetensors("{\"a\":" + Entry("F32", "[1]", "[0,4]") + ",\"a\":" + Entry("F32", "[1]", "[4,8]") + "}",
                             std::string(8, 'x')),
              {"repeats the key 'a' at the top level"});
}

TEST(SafetensorsHeaderTest, DuplicateFieldInsideEntry) {
  ExpectError(RawSafetensors("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "xxxx"),
              {"repeats the key 'dtype' inside one object"});
}

TEST(SafetensorsHeaderTest, MetadataValuesMustBeStrings) {
  ExpectError(RawSafetensors("{\"__metadata__\":{\"step\":3}}"), {"__metadata__ value of 'step' must be a string", "got 3"});
  ExpectError(RawSafetensors("{\"__metadata__\":[\"pt\"]}"), {"__metadata__ must be an object of strings"});
}

TEST(SafetensorsHeaderTest, DeepNestingStopsEarly) {
  const std::string deep = "{\"w\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  ExpectError(RawSafetensors(deep), {"nests containers more than 4 deep"});
}

}  // namespace
}  // namespace llamarl
