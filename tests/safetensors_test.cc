// safetensors validation: every kind of corruption is a clear INVALID_ARGUMENT, and
// sharded checkpoints load like single files.
#include <filesystem>
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "common/bf16.h"
#include "models/generate.h"
#include "models/model.h"
#include "models/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/golden_fixture.h"
#include "tests/safetensors_writer.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using models::SafetensorsFile;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir("safetensors"); }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // Opens a file made from a header text; returns the error message ("" when OK).
  std::string OpenRaw(const std::string& header, size_t data_bytes) {
    WriteRawSafetensors(Path("raw.safetensors"), header, data_bytes);
    auto file = SafetensorsFile::Open(Path("raw.safetensors"));
    if (file.ok()) return "";
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
    return std::string(file.status().message());
  }
  static void WriteRawSafetensors(const std::string& path, const std::string& header, size_t n) {
    testing::WriteRawSafetensors(path, header, n);
  }
  std::string dir_;
};

TEST_F(SafetensorsTest, ValidFileLoads) {
  testing::WriteSafetensors(Path("ok.safetensors"),
                            {{"a", "F32", {2, 2}, std::vector<uint8_t>(16, 0)}, {"b", "BF16", {3}, std::vector<uint8_t>(6, 0)}});
  auto file = SafetensorsFile::Open(Path("ok.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 2u);
  EXPECT_EQ((*file)->tensors().at("a").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ((*file)->tensors().at("b").nbytes, 6u);
}

TEST_F(SafetensorsTest, RejectsTooShortFile) {
  std::ofstream(Path("short.safetensors")) << "abc";
  auto file = SafetensorsFile::Open(Path("short.safetensors"));
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("shorter than"), std::string::npos);
}

TEST_F(SafetensorsTest, RejectsHeaderLengthBeyondFile) {
  std::ofstream out(Path("big.safetensors"), std::ios::binary);
  const uint64_t n = 1ull << 40;
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << "{}";
  out.close();
  auto file = SafetensorsFile::Open(Path("big.safetensors"));
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("header length"), std::string::npos);
}

TEST_F(SafetensorsTest, RejectsMalformedHeaders) {
  EXPECT_NE(OpenRaw("{not json", 0).find("not a JSON object"), std::string::npos);
  EXPECT_NE(OpenRaw("[1,2]", 0).find("not a JSON object"), std::string::npos);
  EXPECT_NE(OpenRaw(R"({"a": {"dtype": "F32", "shape": [2]}})", 8).find("data_offsets"), std::string::npos);
  EXPECT_NE(OpenRaw(R"({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}})", 8).find("unknown dtype"),
            std::string::npos);
  EXPECT_NE(OpenRaw(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8).find("shape"),
            std::string::npos);
  EXPECT_NE(OpenRaw(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8).find("outside"),
            std::string::npos);
}

// A reproducer from fuzzing: a dimension past int64 was read as -1 and accepted.
TEST_F(SafetensorsTest, RejectsDimensionsPastInt64) {
  auto file = SafetensorsFile::Open(testing::TestDataDir() + "/repro/safetensors_negative_dim.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(file.status().message().find("shape"), std::string::npos) << file.status();
  EXPECT_NE(OpenRaw(R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4).find("shape"),
            std::string::npos);
}

TEST_F(SafetensorsTest, RejectsTruncatedData) {
  // Claims 64 bytes, the file holds 16.
  EXPECT_NE(OpenRaw(R"({"a": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]}})", 16).find("truncated"),
            std::string::npos);
}

TEST_F(SafetensorsTest, RejectsByteLengthThatDisagreesWithShape) {
  EXPECT_NE(OpenRaw(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8).find("needs 12"),
            std::string::npos);
}

TEST_F(SafetensorsTest, RejectsHugeShapeWithoutOverflow) {
  EXPECT_NE(OpenRaw(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 8]}})", 8)
                .find("larger than the file"),
            std::string::npos);
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  EXPECT_NE(OpenRaw(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                    16)
                .find("overlap"),
            std::string::npos);
}

// Copies the golden LLaMA folder, then lets `mutate` edit its tensor list.
std::string CopyModel(const std::string& dir, const std::function<void(std::vector<testing::TensorBytes>&)>& mutate) {
  const std::string src = testing::GoldenModelDir("llama");
  fs::copy_file(src + "/config.json", dir + "/config.json", fs::copy_options::overwrite_existing);
  auto tensors = testing::ReadSafetensors(src + "/model.safetensors");
  mutate(tensors);
  testing::WriteSafetensors(dir + "/model.safetensors", tensors);
  return dir;
}

TEST_F(SafetensorsTest, MissingTensorIsNamed) {
  CopyModel(dir_, [](auto& tensors) {
    std::erase_if(tensors, [](const auto& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  auto model = models::Model::Load(dir_);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(model.status().message().find("missing tensor model.layers.1.mlp.up_proj.weight"), std::string::npos);
}

TEST_F(SafetensorsTest, WrongShapeIsNamed) {
  CopyModel(dir_, [](auto& tensors) {
    for (auto& t : tensors) {
      if (t.name == "model.norm.weight") {
        t.shape = {t.shape[0] / 2};
        t.bytes.resize(t.bytes.size() / 2);
      }
    }
  });
  auto model = models::Model::Load(dir_);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("model.norm.weight has shape [32], expected [64]"), std::string::npos)
      << model.status();
}

TEST_F(SafetensorsTest, NonFloatWeightIsRejected) {
  CopyModel(dir_, [](auto& tensors) {
    for (auto& t : tensors) {
      if (t.name == "model.norm.weight") t.dtype = "I32";
    }
  });
  auto model = models::Model::Load(dir_);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("dtype I32"), std::string::npos) << model.status();
}

TEST_F(SafetensorsTest, TruncatedCheckpointFailsCleanly) {
  CopyModel(dir_, [](auto&) {});
  fs::resize_file(dir_ + "/model.safetensors", fs::file_size(dir_ + "/model.safetensors") - 100);
  auto model = models::Model::Load(dir_);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("truncated"), std::string::npos) << model.status();
}

TEST_F(SafetensorsTest, ShardedCheckpointGivesTheSameLogits) {
  const std::string src = testing::GoldenModelDir("llama");
  fs::copy_file(src + "/config.json", dir_ + "/config.json");
  auto tensors = testing::ReadSafetensors(src + "/model.safetensors");
  std::vector<testing::TensorBytes> first(tensors.begin(), tensors.begin() + tensors.size() / 2);
  std::vector<testing::TensorBytes> second(tensors.begin() + tensors.size() / 2, tensors.end());
  testing::WriteSafetensors(dir_ + "/model-00001-of-00002.safetensors", first);
  testing::WriteSafetensors(dir_ + "/model-00002-of-00002.safetensors", second);
  nlohmann::json index;
  for (const auto& t : first) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : second) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
  std::ofstream(dir_ + "/model.safetensors.index.json") << index.dump();

  auto sharded = models::Model::Load(dir_);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  auto single = models::Model::Load(src);
  ASSERT_TRUE(single.ok());
  const std::vector<int32_t> ids = {1, 2, 3, 4, 5};
  EXPECT_EQ(*models::PromptLogits(**sharded, ids), *models::PromptLogits(**single, ids));
}

// float -> IEEE half, round to nearest even (normal range; the fixture's weights are small).
uint16_t ToHalf(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const int exp = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
  uint32_t mant = bits & 0x7fffffu;
  if (exp <= 0) return static_cast<uint16_t>(sign);  // flush tiny values to zero
  uint32_t h = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(h);
}

// An F16 checkpoint is widened exactly: it gives the logits of an F32 checkpoint
// holding the same (half-rounded) values.
TEST_F(SafetensorsTest, F16WeightsAreWidenedExactly) {
  const std::string f16_dir = dir_ + "/f16", f32_dir = dir_ + "/f32";
  fs::create_directories(f16_dir);
  fs::create_directories(f32_dir);
  auto convert = [](std::vector<testing::TensorBytes>& tensors, bool keep_half) {
    for (auto& t : tensors) {
      const size_t n = t.bytes.size() / 4;
      std::vector<uint8_t> out(n * (keep_half ? 2 : 4));
      for (size_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, t.bytes.data() + 4 * i, 4);
        const uint16_t h = ToHalf(v);
        if (keep_half) {
          std::memcpy(out.data() + 2 * i, &h, 2);
        } else {
          const float w = F16ToFloat(h);
          std::memcpy(out.data() + 4 * i, &w, 4);
        }
      }
      t.bytes = std::move(out);
      t.dtype = keep_half ? "F16" : "F32";
    }
  };
  CopyModel(f16_dir, [&](auto& tensors) { convert(tensors, true); });
  CopyModel(f32_dir, [&](auto& tensors) { convert(tensors, false); });
  auto f16 = models::Model::Load(f16_dir);
  ASSERT_TRUE(f16.ok()) << f16.status();
  auto f32 = models::Model::Load(f32_dir);
  ASSERT_TRUE(f32.ok()) << f32.status();
  const std::vector<int32_t> ids = {5, 17, 42, 7};
  EXPECT_EQ(*models::PromptLogits(**f16, ids), *models::PromptLogits(**f32, ids));
}

TEST_F(SafetensorsTest, MissingShardIsAnError) {
  fs::copy_file(testing::GoldenModelDir("llama") + "/config.json", dir_ + "/config.json");
  std::ofstream(dir_ + "/model.safetensors.index.json") << R"({"weight_map": {"a": "gone.safetensors"}})";
  auto model = models::Model::Load(dir_);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("gone.safetensors"), std::string::npos);
}

TEST_F(SafetensorsTest, FolderWithoutWeightsIsNotFound) {
  fs::copy_file(testing::GoldenModelDir("llama") + "/config.json", dir_ + "/config.json");
  auto model = models::Model::Load(dir_);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera
