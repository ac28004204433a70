// The KV hash root names the model, not its folder: the same checkpoint at two paths
// is one model; an edited config or changed weights make another.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "models/model_identity.h"
#include "tests/golden_fixture.h"
#include "tests/safetensors_writer.h"

namespace tessera::models {
namespace {

namespace fs = std::filesystem;

std::string Copy(const std::string& name) {
  const std::string dir = testing::MakeTempDir(name);
  for (const char* file : {"config.json", "model.safetensors"}) {
    fs::copy_file(testing::GoldenModelDir("llama") + "/" + file, dir + "/" + file, fs::copy_options::overwrite_existing);
  }
  return dir;
}

TEST(ModelIdentityTest, FollowsTheModelNotItsPath) {
  const auto original = ModelIdentity(testing::GoldenModelDir("llama"));
  ASSERT_TRUE(original.ok()) << original.status();
  EXPECT_TRUE(original->starts_with("sha256:")) << *original;
  EXPECT_EQ(original->size(), 7u + 64u);

  const std::string moved = Copy("identity_moved");
  EXPECT_EQ(*ModelIdentity(moved), *original);

  // One weight changed at the middle of the largest tensor (a fine-tune changes them all).
  const std::string tuned = Copy("identity_tuned");
  std::vector<testing::TensorBytes> tensors = testing::ReadSafetensors(tuned + "/model.safetensors");
  auto largest = std::max_element(tensors.begin(), tensors.end(),
                                  [](const auto& a, const auto& b) { return a.bytes.size() < b.bytes.size(); });
  largest->bytes[largest->bytes.size() / 2] ^= 0x40;
  testing::WriteSafetensors(tuned + "/model.safetensors", tensors);
  EXPECT_NE(*ModelIdentity(tuned), *original);

  const std::string edited = Copy("identity_config");
  std::ofstream(edited + "/config.json", std::ios::app) << "\n";
  EXPECT_NE(*ModelIdentity(edited), *original);

  EXPECT_EQ(ModelIdentity(testing::MakeTempDir("identity_empty")).status().code(), absl::StatusCode::kNotFound);
  for (const std::string& dir : {moved, tuned, edited}) fs::remove_all(dir);
}

}  // namespace
}  // namespace tessera::models
