// SafetensorsFile, SafetensorsCheckpoint and the writers: bit-exact round trips for every dtype
// (single file and sharded), zero-copy and copy paths, a file from an independent Python writer,
// and the checkpoint index checks. Malformed headers are covered by safetensors_header_test.cpp.
#include "model/safetensors.h"

#include "core/config.h"
#include "tests/model/safetensors_test_util.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

namespace llamarl {
namespace {

namespace fs = std::filesystem;
using testing::ErrorMessage;
using testing::SameBytes;
using testing::RawSafetensors;
using testing::WriteBytes;

// A tensor of the given type whose bytes are random (any bit pattern, NaN payloads included; BOOL
// gets 0/1): a bit-exact round trip then covers every byte of the encoding.
at::Tensor RandomBytes(at::ScalarType type, at::IntArrayRef shape, uint32_t seed) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(type));
  std::mt19937 rng(seed);
  auto* bytes = static_cast<uint8_t*>(t.data_ptr());
  for (size_t i = 0; i < t.nbytes(); ++i) bytes[i] = uint8_t(type == at::kBool ? rng() & 1 : rng());
  return t;
}

// One tensor of every dtype, in an order that interleaves element sizes so the writer must reorder
// the data section; shapes include a scalar and an empty tensor.
NamedTensors EveryDtype() {
  const std::vector<std::pair<at::ScalarType, std::vector<int64_t>>> specs = {
      {at::kByte, {3, 5}}, {at::kDouble, {2, 3}}, {at::kBool, {7}},    {at::kBFloat16, {4, 3}}, {at::kChar, {}},
      {at::kFloat, {2, 0, 3}}, {at::kShort, {5}},  {at::kLong, {2, 2}}, {at::kHalf, {9}},       {at::kInt, {1, 3}},
      {at::kFloat, {3, 2}}};
  NamedTensors tensors;
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string name = "layers." + std::to_string(i) + "." + c10::toString(specs[i].first);
    tensors.emplace_back(name, RandomBytes(specs[i].first, specs[i].second, uint32_t(i + 1)));
  }
  return tensors;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(SafetensorsTest, RoundTripEveryDtypeBitExact) {
  const std::string path = testing::MakeTempDir("st_roundtrip") + "/all.safetensors";
  const NamedTensors tensors = EveryDtype();
  SaveSafetensors(path, tensors, {{"step", "12"}, {"format", "pt"}});
  auto file = SafetensorsFile::Open(path);
  std::vector<std::string> names;
  for (const auto& t : tensors) names.push_back(t.first);
  EXPECT_EQ(file->Names(), names);  // header order is the given order
  for (const auto& [name, tensor] : tensors) {
    at::Tensor read = file->Get(name);
    EXPECT_TRUE(SameBytes(read, tensor)) << name;
    EXPECT_EQ(file->Dtype(name), ScalarTypeToSafetensorsDtype(tensor.scalar_type()));
    EXPECT_EQ(file->Shape(name), tensor.sizes().vec());
    // The writer orders data by element size, so everything is aligned and nothing was copied.
    if (tensor.numel() > 0) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(read.data_ptr()) % read.element_size(), 0u) << name;
      EXPECT_GE(static_cast<const uint8_t*>(read.data_ptr()), file->mapped_data()) << name;
    }
  }
  EXPECT_EQ(file->Metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"step", "12"}}));
}

TEST(SafetensorsTest, WriterLayoutIsPaddedAndDeterministic) {
  const std::string dir = testing::MakeTempDir("st_layout");
  const NamedTensors tensors = EveryDtype();
  SaveSafetensors(dir + "/a.safetensors", tensors);
  SaveSafetensors(dir + "/b.safetensors", tensors);
  const std::string a = ReadAll(dir + "/a.safetensors");
  EXPECT_EQ(a, ReadAll(dir + "/b.safetensors"));
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | uint8_t(a[i]);
  EXPECT_EQ(header_length % 8, 0u);
  const std::string header = a.substr(8, header_length);
  const size_t close = header.rfind('}');
  EXPECT_LT(header.size() - close - 1, 8u);  // at most 7 bytes of padding, all spaces
  EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos);
  const Json parsed = Json::parse(header);  // trailing spaces are valid JSON whitespace
  EXPECT_FALSE(parsed.contains("__metadata__"));  // no metadata given, none written
  // layers.1 is F64: it comes first in the data section even though the header lists it second.
  EXPECT_EQ(parsed["layers.1.Double"]["data_offsets"], Json::array({0, 48}));
  for (const auto& entry : fs::directory_iterator(dir)) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << "temporary file left: " << entry.path();
  }
}

TEST(SafetensorsTest, ZeroCopyTensorsAliasTheMappingAndOutliveTheFile) {
  const std::string path = testing::MakeTempDir("st_zerocopy") + "/w.safetensors";
  at::Tensor original = at::arange(12, at::kFloat).reshape({3, 4});
  SaveSafetensors(path, {{"w", original}});
  auto file = SafetensorsFile::Open(path);
  at::Tensor w = file->Get("w");
  const auto* begin = file->mapped_data();
  const auto* data = static_cast<const uint8_t*>(w.data_ptr());
  EXPECT_TRUE(data >= begin && data + w.nbytes() <= begin + file->mapped_size());
  EXPECT_EQ(file->Get("w").data_ptr(), w.data_ptr());
  file.reset();  // the tensor's deleter keeps the mapping alive
  EXPECT_TRUE(at::equal(w, original));
  // Writing into a zero-copy tensor touches private copy-on-write pages, never the file.
  w.add_(100);
  EXPECT_TRUE(at::equal(w, original + 100));
  EXPECT_TRUE(at::equal(SafetensorsFile::Open(path)->Get("w"), original));
}

TEST(SafetensorsTest, MisalignedTensorIsCopied) {
  // U8[3] first puts the F32 tensor at data offset 3: not 4-byte aligned, so Get must copy.
  const std::string header = "{\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                             "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]}}";
  const std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  const float values[2] = {1.5f, -7.25f};
  std::string data = "\x01\x02\x03";
  data.append(reinterpret_cast<const char*>(values), sizeof(values));
  const std::string path = testing::MakeTempDir("st_misaligned") + "/m.safetensors";
  WriteBytes(path, RawSafetensors(padded, data));
  auto file = SafetensorsFile::Open(path);
  at::Tensor f = file->Get("f");
  const auto* ptr = static_cast<const uint8_t*>(f.data_ptr());
  EXPECT_TRUE(ptr < file->mapped_data() || ptr >= file->mapped_data() + file->mapped_size());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ptr) % 4, 0u);
  EXPECT_EQ(f[0].item<float>(), 1.5f);
  EXPECT_EQ(f[1].item<float>(), -7.25f);
  EXPECT_EQ(file->Get("b")[2].item<uint8_t>(), 3);  // U8 is always aligned: zero-copy
}

TEST(SafetensorsTest, ReadsFileFromIndependentPythonWriter) {
  const std::string dir = testing::FixturePath("safetensors");
  const Json expected = ReadJsonFile(dir + "/python_writer.json");
  auto file = SafetensorsFile::Open(dir + "/python_writer.safetensors");
  EXPECT_EQ(Json(file->Metadata()), expected["metadata"]);
  EXPECT_EQ(file->Names().size(), expected["tensors"].size());
  for (const auto& [name, spec] : expected["tensors"].items()) {
    SCOPED_TRACE(name);
    EXPECT_EQ(file->Dtype(name), spec["dtype"].get<std::string>());
    EXPECT_EQ(file->Shape(name), spec["shape"].get<std::vector<int64_t>>());
    at::Tensor t = file->Get(name).reshape({-1});
    ASSERT_EQ(t.numel(), int64_t(spec["values"].size()));
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (t.is_floating_point()) {
        EXPECT_EQ(t[i].item<double>(), spec["values"][i].get<double>()) << "index " << i;
      } else {
        EXPECT_EQ(t[i].item<int64_t>(), spec["values"][i].get<int64_t>()) << "index " << i;
      }
    }
  }
}

TEST(SafetensorsTest, WritesNonContiguousTensorsByValue) {
  const std::string path = testing::MakeTempDir("st_strided") + "/t.safetensors";
  at::Tensor base = at::arange(24, at::kLong).reshape({4, 6});
  at::Tensor transposed = base.t();
  at::Tensor strided = base.slice(1, 0, 6, 2);
  SaveSafetensors(path, {{"t", transposed}, {"s", strided}});
  auto file = SafetensorsFile::Open(path);
  EXPECT_TRUE(at::equal(file->Get("t"), transposed));
  EXPECT_TRUE(at::equal(file->Get("s"), strided));
}

TEST(SafetensorsTest, GetOfMissingNameSuggestsNeighbours) {
  const std::string path = testing::MakeTempDir("st_missing") + "/m.safetensors";
  SaveSafetensors(path, {{"model.layers.0.mlp.weight", at::zeros({1})}, {"lm_head.weight", at::zeros({1})}});
  auto file = SafetensorsFile::Open(path);
  EXPECT_FALSE(file->Has("model.layers.1.mlp.weight"));
  const std::string message = ErrorMessage([&] { file->Get("model.layers.1.mlp.weight"); });
  EXPECT_NE(message.find("no tensor named 'model.layers.1.mlp.weight'"), std::string::npos) << message;
  EXPECT_NE(message.find("such as: model.layers.0.mlp.weight, lm_head.weight"), std::string::npos) << message;
}

TEST(SafetensorsTest, DtypeWithoutLibTorchTypeFailsAtGet) {
  const std::string header = "{\"u\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
  const std::string path = testing::MakeTempDir("st_u16") + "/u.safetensors";
  WriteBytes(path, RawSafetensors(header, "abcd"));
  auto file = SafetensorsFile::Open(path);  // valid file; only the conversion is impossible
  EXPECT_EQ(file->Dtype("u"), "U16");
  const std::string message = ErrorMessage([&] { file->Get("u"); });
  EXPECT_NE(message.find("tensor 'u': safetensors dtype 'U16' has no LibTorch"), std::string::npos) << message;
  EXPECT_NE(message.find("supported: F64, F32"), std::string::npos) << message;
}

TEST(SafetensorsTest, Float8NeedsLibTorchWithFloat8) {
  const std::string header = "{\"q\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}";
  const std::string path = testing::MakeTempDir("st_f8") + "/q.safetensors";
  WriteBytes(path, RawSafetensors(header, "\x38\xc0"));  // e4m3fn: 1.0, -2.0
  auto file = SafetensorsFile::Open(path);
  bool has_float8 = true;
  try {
    SafetensorsDtypeToScalarType("F8_E4M3");
  } catch (const std::exception&) {
    has_float8 = false;
  }
  if (has_float8) {
    EXPECT_TRUE(at::equal(file->Get("q").to(at::kFloat), at::tensor({1.0f, -2.0f})));
  } else {
    const std::string message = ErrorMessage([&] { file->Get("q"); });
    EXPECT_NE(message.find("tensor 'q': safetensors dtype 'F8_E4M3' has no LibTorch"), std::string::npos) << message;
  }
}

TEST(SafetensorsTest, ConcurrentGetsAgree) {
  const std::string path = testing::MakeTempDir("st_threads") + "/all.safetensors";
  const NamedTensors tensors = EveryDtype();
  SaveSafetensors(path, tensors);
  auto file = SafetensorsFile::Open(path);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < 50; ++round) {
        for (const auto& [name, tensor] : tensors) mismatches += SameBytes(file->Get(name), tensor) ? 0 : 1;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(SafetensorsTest, OpenReportsUnreadableAndTruncatedFiles) {
  const std::string dir = testing::MakeTempDir("st_open");
  EXPECT_NE(ErrorMessage([&] { SafetensorsFile::Open(dir + "/absent.safetensors"); }).find("cannot open"),
            std::string::npos);
  EXPECT_NE(ErrorMessage([&] { SafetensorsFile::Open(dir); }).find("is not a regular file"), std::string::npos);
  const std::string path = dir + "/t.safetensors";
  SaveSafetensors(path, {{"w", at::ones({64})}});
  fs::resize_file(path, fs::file_size(path) - 10);
  const std::string message = ErrorMessage([&] { SafetensorsFile::Open(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("tensor 'w'"), std::string::npos) << message;
  EXPECT_NE(message.find("run past the end of the data section"), std::string::npos) << message;
}

TEST(SafetensorsTest, WriterRejectsBadInput) {
  const std::string path = testing::MakeTempDir("st_bad_write") + "/w.safetensors";
  auto save = [&](const NamedTensors& tensors) { return ErrorMessage([&] { SaveSafetensors(path, tensors); }); };
  EXPECT_NE(save({{"a", at::zeros({1})}, {"a", at::zeros({2})}}).find("'a' appears twice"), std::string::npos);
  EXPECT_NE(save({{"", at::zeros({1})}}).find("is reserved"), std::string::npos);
  EXPECT_NE(save({{"__metadata__", at::zeros({1})}}).find("is reserved"), std::string::npos);
  EXPECT_NE(save({{"u", at::Tensor()}}).find("'u' is undefined"), std::string::npos);
  const std::string complex = save({{"c", at::zeros({1}, at::kComplexFloat)}});
  EXPECT_NE(complex.find("cannot be stored in safetensors"), std::string::npos) << complex;
  EXPECT_NE(save({{"bad\xff", at::zeros({1})}}).find("tensor name 'bad\xff' is not valid UTF-8"), std::string::npos);
  const std::string metadata = ErrorMessage([&] { SaveSafetensors(path, {{"w", at::zeros({1})}}, {{"k", "\xc3"}}); });
  EXPECT_NE(metadata.find("metadata value '\xc3' is not valid UTF-8"), std::string::npos) << metadata;
  EXPECT_FALSE(fs::exists(path));  // nothing written, no temporary left
  EXPECT_TRUE(fs::is_empty(fs::path(path).parent_path()));
}

}  // namespace
}  // namespace llamarl
