// SaveSafetensorsSharded and SafetensorsCheckpoint: HF's sharded layout, greedy shard filling,
// bit-exact round trips through the index, and every inconsistency the index check must catch.
#include "model/safetensors.h"

#include "core/config.h"
#include "tests/model/safetensors_test_util.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace llamarl {
namespace {

namespace fs = std::filesystem;
using testing::ErrorMessage;
using testing::SameBytes;

// Byte sizes 400, 400, 400, 1600, 200, 0 with a 1000-byte limit. Greedy fill in order:
// {a, b} (800; c would make 1200), {c} (d would make 2000), {d} (alone: bigger than the limit),
// {e, f}. Dtypes vary so the shards also round-trip several encodings.
NamedTensors ShardingCase() {
  return {{"a", at::randn({100})},                                  // F32, 400 B
          {"b", at::randint(-1000, 1000, {50}, at::kLong)},         // I64, 400 B
          {"c", at::randn({200}).to(at::kBFloat16)},                // BF16, 400 B
          {"d", at::randn({200}, at::kDouble)},                     // F64, 1600 B
          {"e", at::randint(0, 2, {200}).to(at::kBool)},            // BOOL, 200 B
          {"f", at::zeros({0, 4}, at::kHalf)}};                     // F16, 0 B
}

std::string Shard(int k) { return "model-0000" + std::to_string(k) + "-of-00004.safetensors"; }

TEST(SafetensorsCheckpointTest, ShardedRoundTripFollowsGreedyFill) {
  const std::string dir = testing::MakeTempDir("st_sharded");
  const NamedTensors tensors = ShardingCase();
  ShardedSaveOptions options;
  options.max_shard_bytes = 1000;
  options.metadata = {{"producer", "test"}};
  const auto written = SaveSafetensorsSharded(dir, tensors, options);
  ASSERT_EQ(written.size(), 5u);
  for (int k = 1; k <= 4; ++k) EXPECT_EQ(written[k - 1], dir + "/" + Shard(k));
  EXPECT_EQ(written[4], dir + "/model.safetensors.index.json");

  const Json index = ReadJsonFile(written[4]);
  EXPECT_EQ(index["metadata"]["total_size"], 3000);
  const Json weight_map = {{"a", Shard(1)}, {"b", Shard(1)}, {"c", Shard(2)},
                           {"d", Shard(3)}, {"e", Shard(4)}, {"f", Shard(4)}};
  EXPECT_EQ(index["weight_map"], weight_map);
  auto shard2 = SafetensorsFile::Open(written[1]);
  EXPECT_EQ(shard2->Names(), std::vector<std::string>{"c"});
  EXPECT_EQ(shard2->Metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"producer", "test"}}));

  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(checkpoint.Names(), (std::vector<std::string>{"a", "b", "c", "d", "e", "f"}));
  for (const auto& [name, tensor] : tensors) {
    EXPECT_TRUE(SameBytes(checkpoint.Get(name), tensor)) << name;
    EXPECT_EQ(checkpoint.Shape(name), tensor.sizes().vec());
    EXPECT_EQ(checkpoint.Dtype(name), ScalarTypeToSafetensorsDtype(tensor.scalar_type()));
  }
}

TEST(SafetensorsCheckpointTest, OneShardIsWrittenAsModelSafetensors) {
  const std::string dir = testing::MakeTempDir("st_single");
  const NamedTensors tensors = ShardingCase();
  ShardedSaveOptions small;
  small.max_shard_bytes = 1000;
  SaveSafetensorsSharded(dir, tensors, small);  // leaves an index that must not shadow the next save
  NamedTensors changed = {{"only", at::arange(5, at::kInt)}};
  const auto written = SaveSafetensorsSharded(dir, changed);
  EXPECT_EQ(written, std::vector<std::string>{dir + "/model.safetensors"});
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_EQ(SafetensorsFile::Open(written[0])->Metadata().at("format"), "pt");
  const SafetensorsCheckpoint from_dir = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(from_dir.Names(), std::vector<std::string>{"only"});
  EXPECT_TRUE(at::equal(from_dir.Get("only"), changed[0].second));
  // A sharded save over it removes the single file in turn.
  SaveSafetensorsSharded(dir, tensors, small);
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  EXPECT_EQ(SafetensorsCheckpoint::Open(dir).Names().size(), tensors.size());
  // A path to one file is a checkpoint too.
  const SafetensorsCheckpoint one = SafetensorsCheckpoint::Open(dir + "/" + Shard(3));
  EXPECT_EQ(one.Names(), std::vector<std::string>{"d"});
}

// A sharded checkpoint of ShardingCase whose index the test then edits.
class BrokenIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("st_index");
    ShardedSaveOptions options;
    options.max_shard_bytes = 1000;
    SaveSafetensorsSharded(dir_, ShardingCase(), options);
    index_ = ReadJsonFile(IndexPath());
  }
  std::string IndexPath() const { return dir_ + "/model.safetensors.index.json"; }
  // Writes the edited index and returns the error message of opening the checkpoint.
  std::string OpenWith(const Json& index) {
    std::ofstream(IndexPath()) << index.dump(2);
    return ErrorMessage([&] { SafetensorsCheckpoint::Open(dir_); });
  }
  std::string dir_;
  Json index_;
};

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "missing '" << (needle) << "' in: " << (haystack)

TEST_F(BrokenIndexTest, MissingWeightMap) {
  index_.erase("weight_map");
  EXPECT_CONTAINS(OpenWith(index_), "missing \"weight_map\"");
  EXPECT_CONTAINS(OpenWith(Json::array()), "expected a JSON object with \"weight_map\"");
  EXPECT_CONTAINS(OpenWith({{"weight_map", {"a"}}}), "\"weight_map\" must be an object");
}

TEST_F(BrokenIndexTest, ShardFileMissing) {
  fs::remove(dir_ + "/" + Shard(3));
  const std::string message = OpenWith(index_);
  EXPECT_CONTAINS(message, "weight_map['d'] names shard '" + Shard(3) + "', which does not exist");
}

TEST_F(BrokenIndexTest, ShardNameOutsideTheDirectory) {
  index_["weight_map"]["d"] = "../elsewhere.safetensors";
  EXPECT_CONTAINS(OpenWith(index_), "weight_map['d'] is '../elsewhere.safetensors'; expected the file name");
  index_["weight_map"]["d"] = 3;
  EXPECT_CONTAINS(OpenWith(index_), "weight_map['d'] must be a shard file name, got 3");
}

TEST_F(BrokenIndexTest, ListedTensorNotInItsShard) {
  index_["weight_map"]["ghost"] = Shard(1);
  EXPECT_CONTAINS(OpenWith(index_), "weight_map puts tensor 'ghost' in shard '" + Shard(1) + "', but no shard holds it");
}

TEST_F(BrokenIndexTest, TensorAssignedToTheWrongShard) {
  index_["weight_map"]["a"] = Shard(2);
  EXPECT_CONTAINS(OpenWith(index_), "weight_map puts tensor 'a' in shard '" + Shard(2) + "', but it is in '" + Shard(1));
}

TEST_F(BrokenIndexTest, TensorInTwoShards) {
  SaveSafetensors(dir_ + "/" + Shard(4), {{"e", at::zeros({1})}, {"a", at::zeros({1})}});
  EXPECT_CONTAINS(OpenWith(index_), "tensor 'a' is stored in two shards, '" + Shard(1) + "' and '" + Shard(4) + "'");
}

TEST_F(BrokenIndexTest, ShardHoldsUnlistedTensor) {
  index_["weight_map"].erase("b");
  EXPECT_CONTAINS(OpenWith(index_), "shard '" + Shard(1) + "' holds tensor 'b', which model.safetensors.index.json does not list");
}

TEST(SafetensorsCheckpointTest, RejectsPathsWithoutWeights) {
  const std::string dir = testing::MakeTempDir("st_empty");
  EXPECT_CONTAINS(ErrorMessage([&] { SafetensorsCheckpoint::Open(dir); }),
                  "has neither model.safetensors nor model.safetensors.index.json");
  EXPECT_CONTAINS(ErrorMessage([&] { SafetensorsCheckpoint::Open(dir + "/nope"); }), "does not exist");
  SaveSafetensors(dir + "/model.safetensors", {{"w", at::zeros({2})}});
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::Open(dir);
  EXPECT_TRUE(checkpoint.Has("w"));
  EXPECT_CONTAINS(ErrorMessage([&] { checkpoint.Get("v"); }), "has no tensor named 'v'; it holds 1 tensors, such as: w");
}

TEST(SafetensorsCheckpointTest, ShardedWriterRejectsBadOptions) {
  const std::string dir = testing::MakeTempDir("st_bad_options");
  ShardedSaveOptions options;
  options.max_shard_bytes = 0;
  EXPECT_CONTAINS(ErrorMessage([&] { SaveSafetensorsSharded(dir, ShardingCase(), options); }),
                  "max_shard_bytes must be positive, got 0");
  // A bad tensor late in the list fails before any shard is written.
  NamedTensors tensors = ShardingCase();
  tensors.emplace_back("z", at::zeros({2}, at::kComplexDouble));
  options.max_shard_bytes = 1000;
  EXPECT_CONTAINS(ErrorMessage([&] { SaveSafetensorsSharded(dir, tensors, options); }), "cannot be stored in safetensors");
  EXPECT_TRUE(fs::is_empty(dir));
}

}  // namespace
}  // namespace llamarl
