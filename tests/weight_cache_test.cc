// The packed-weight cache (models/weight_cache.h): a hit gives the logits of a fresh
// load, bit for bit; a file written for another model, shard or kernel level, a
// truncated one and a damaged one are never used but rebuilt; two writers of one file
// never write it at once.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "kernels/cpu_backend.h"
#include "kernels/cpu_isa.h"
#include "models/generate.h"
#include "models/model.h"
#include "models/model_identity.h"
#include "models/packed_weight_file.h"
#include "models/weight_cache.h"
#include "tests/golden_fixture.h"
#include "tests/safetensors_writer.h"

namespace tessera::models {
namespace {

namespace fs = std::filesystem;
using Outcome = WeightCacheUse::Outcome;

// A golden model's config and weights in a folder of the test's own.
std::string CopyModel(const std::string& name, const std::string& copy = "a") {
  const std::string dir = testing::MakeTempDir("weight_cache_model_" + name + "_" + copy);
  for (const fs::directory_entry& entry : fs::directory_iterator(testing::GoldenModelDir(name))) {
    const std::string file = entry.path().filename().string();
    if (file == "config.json" || entry.path().extension() == ".safetensors") {
      fs::copy_file(entry.path(), dir + "/" + file, fs::copy_options::overwrite_existing);
    }
  }
  return dir;
}

struct Loaded {
  std::vector<float> logits;
  WeightCacheUse cache;    // as the load reports it
  WeightCacheUse written;  // as the writing after the load ends (kOff: no writing)
};

// Loads, runs a prompt, and frees the model (which waits for a cache file's writing).
Loaded LoadAndRun(const std::string& model_dir, const std::string& cache_dir) {
  Loaded loaded;
  ModelOptions options;
  options.num_threads = 2;
  options.weight_cache_dir = cache_dir;
  options.on_weight_cache_written = [&](const WeightCacheUse& use) { loaded.written = use; };
  auto model = Model::Load(model_dir, options);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  std::vector<int32_t> prompt(23);
  std::mt19937 rng(7);
  for (auto& t : prompt) t = static_cast<int32_t>(rng() % (*model)->spec().vocab_size);
  auto logits = PromptLogits(**model, prompt);
  EXPECT_TRUE(logits.ok()) << logits.status();
  if (logits.ok()) loaded.logits = *logits;
  loaded.cache = (*model)->weight_cache();
  model->reset();
  return loaded;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

class WeightCacheTest : public ::testing::TestWithParam<std::string> {};

// bf16 panels (llama_bf16), f32 panels with a tied head and a learned position table
// (gpt2), MoE experts and an exact router (mixtral), windowed qwen2.
INSTANTIATE_TEST_SUITE_P(Families, WeightCacheTest, ::testing::Values("llama_bf16", "gpt2", "mixtral", "qwen2"));

TEST_P(WeightCacheTest, AHitGivesTheLogitsOfAFreshLoad) {
  const std::string model = CopyModel(GetParam());
  const std::string cache = testing::MakeTempDir("weight_cache_hit") + "/cache";  // created by the load
  const Loaded fresh = LoadAndRun(model, "");
  EXPECT_EQ(fresh.cache.outcome, Outcome::kOff);

  const Loaded written = LoadAndRun(model, cache);
  EXPECT_EQ(written.cache.outcome, Outcome::kWriting) << written.cache.Describe();
  EXPECT_TRUE(written.cache.detail.empty()) << written.cache.detail;
  EXPECT_EQ(written.written.outcome, Outcome::kWritten) << written.written.Describe();
  EXPECT_EQ(written.written.path, written.cache.path);
  EXPECT_EQ(written.written.bytes, fs::file_size(written.cache.path));
  EXPECT_EQ(written.logits, fresh.logits);

  const Loaded hit = LoadAndRun(model, cache);
  EXPECT_EQ(hit.cache.outcome, Outcome::kHit) << hit.cache.Describe();
  EXPECT_EQ(hit.cache.path, written.cache.path);
  EXPECT_EQ(hit.logits, fresh.logits);  // bit for bit
  EXPECT_EQ(std::distance(fs::directory_iterator(cache), fs::directory_iterator()), 1);  // no temporary left
  fs::remove_all(model);
}

// Plants `from` (another file's bytes) at the path a load of `model_dir` uses, and
// checks that the load does not use it but gives a fresh load's logits and rewrites it.
void ExpectPlantedFileRebuilt(const std::string& model_dir, const std::string& cache, const std::string& planted_bytes,
                              const std::string& path, const std::string& why) {
  const Loaded fresh = LoadAndRun(model_dir, "");
  WriteFile(path, planted_bytes);
  const Loaded rebuilt = LoadAndRun(model_dir, cache);
  EXPECT_EQ(rebuilt.cache.outcome, Outcome::kWriting) << rebuilt.cache.Describe();
  EXPECT_EQ(rebuilt.written.outcome, Outcome::kWritten) << rebuilt.written.Describe();
  EXPECT_EQ(rebuilt.cache.path, path);
  EXPECT_NE(rebuilt.cache.detail.find(why), std::string::npos) << rebuilt.cache.detail;
  EXPECT_EQ(rebuilt.logits, fresh.logits);
  EXPECT_NE(ReadFile(path), planted_bytes);
  EXPECT_EQ(LoadAndRun(model_dir, cache).cache.outcome, Outcome::kHit);
}

TEST(WeightCacheFilesTest, AnotherModelsFileIsNotUsed) {
  const std::string llama = CopyModel("llama"), tuned = CopyModel("llama", "tuned");
  std::ofstream(tuned + "/config.json", std::ios::app) << "\n";  // another identity, the same shapes
  const std::string cache = testing::MakeTempDir("weight_cache_models");
  const Loaded a = LoadAndRun(llama, cache);
  const Loaded b = LoadAndRun(tuned, cache);
  ASSERT_EQ(a.written.outcome, Outcome::kWritten);
  ASSERT_EQ(b.written.outcome, Outcome::kWritten);
  EXPECT_NE(a.cache.path, b.cache.path);
  ExpectPlantedFileRebuilt(tuned, cache, ReadFile(a.cache.path), b.cache.path, "another model, shard or kernel layout");
  fs::remove_all(llama);
  fs::remove_all(tuned);
}

TEST(WeightCacheFilesTest, ARewrittenCheckpointIsAnotherModel) {
  const std::string model = CopyModel("llama");
  const std::string cache = testing::MakeTempDir("weight_cache_rewritten");
  const Loaded before = LoadAndRun(model, cache);
  ASSERT_EQ(before.written.outcome, Outcome::kWritten);
  // The same file written again in place (a new modification time): the key changes.
  fs::last_write_time(model + "/model.safetensors", fs::last_write_time(model + "/model.safetensors") + std::chrono::seconds(5));
  const Loaded after = LoadAndRun(model, cache);
  EXPECT_EQ(after.written.outcome, Outcome::kWritten);
  EXPECT_NE(after.cache.path, before.cache.path);
  EXPECT_EQ(after.logits, before.logits);
  fs::remove_all(model);
}

TEST(WeightCacheFilesTest, AnotherShardsFileIsNotUsed) {
  const std::string model = CopyModel("llama");
  const std::string cache = testing::MakeTempDir("weight_cache_shards");
  auto spec = LoadModelSpec(model);
  auto checkpoint = Checkpoint::Open(model);
  auto identity = ModelIdentity(model);
  ASSERT_TRUE(spec.ok() && checkpoint.ok() && identity.ok());
  std::unique_ptr<kernels::Backend> backend = kernels::MakeCpuBackend(2, {});
  const WeightCacheRequest request{cache, model, *identity, {}};
  // Loads `rank`'s shard through the cache, waiting for a file's writing to end.
  auto load = [&](int rank, WeightCacheUse* use) {
    auto shard = ShardLayout::For(*spec, {rank, 2});
    ASSERT_TRUE(shard.ok()) << shard.status();
    auto weights = LoadWeightsCached(request, *spec, **checkpoint, *shard, *backend, {}, use);
    ASSERT_TRUE(weights.ok()) << weights.status();
    EXPECT_EQ(weights->cache_write != nullptr, use->outcome == Outcome::kWriting);
  };
  WeightCacheUse rank0, rank1;
  load(0, &rank0);
  load(1, &rank1);
  ASSERT_EQ(rank0.outcome, Outcome::kWriting);
  ASSERT_EQ(rank1.outcome, Outcome::kWriting);
  EXPECT_NE(rank0.path, rank1.path);
  const std::string rank1_bytes = ReadFile(rank1.path);
  WriteFile(rank1.path, ReadFile(rank0.path));  // rank 0's weights where rank 1 looks
  load(1, &rank1);
  EXPECT_EQ(rank1.outcome, Outcome::kWriting);
  EXPECT_NE(rank1.detail.find("another model, shard or kernel layout"), std::string::npos) << rank1.detail;
  EXPECT_EQ(ReadFile(rank1.path), rank1_bytes);  // rank 1's own again
  load(1, &rank1);
  EXPECT_EQ(rank1.outcome, Outcome::kHit);
  fs::remove_all(model);
}

TEST(WeightCacheFilesTest, AnotherKernelLevelsFileIsNotUsed) {
  const kernels::CpuIsa best = kernels::BestCpuIsa();
  if (best == kernels::CpuIsa::kPortable) GTEST_SKIP() << "this CPU runs one kernel level only";
  const std::string model = CopyModel("llama_bf16");
  const std::string cache = testing::MakeTempDir("weight_cache_levels");
  ASSERT_TRUE(kernels::SelectCpuIsa(kernels::CpuIsa::kPortable).ok());
  const Loaded portable = LoadAndRun(model, cache);
  ASSERT_TRUE(kernels::SelectCpuIsa(best).ok());  // the other tests run at the best level
  const Loaded native = LoadAndRun(model, cache);
  ASSERT_EQ(portable.written.outcome, Outcome::kWritten);
  ASSERT_EQ(native.written.outcome, Outcome::kWritten);
  EXPECT_NE(portable.cache.path, native.cache.path);
  ExpectPlantedFileRebuilt(model, cache, ReadFile(portable.cache.path), native.cache.path,
                           "another model, shard or kernel layout");
  fs::remove_all(model);
}

TEST(WeightCacheFilesTest, ATruncatedFileIsRebuilt) {
  const std::string model = CopyModel("llama_bf16");
  const std::string cache = testing::MakeTempDir("weight_cache_truncated");
  const Loaded written = LoadAndRun(model, cache);
  const std::string bytes = ReadFile(written.cache.path);
  ExpectPlantedFileRebuilt(model, cache, bytes.substr(0, bytes.size() / 2), written.cache.path, "truncated");
  fs::remove_all(model);
}

TEST(WeightCacheFilesTest, ADamagedWeightIsRebuilt) {
  const std::string model = CopyModel("llama_bf16");
  const std::string cache = testing::MakeTempDir("weight_cache_damaged");
  const Loaded written = LoadAndRun(model, cache);
  std::string bytes = ReadFile(written.cache.path);
  bytes[bytes.size() * 3 / 4] ^= 0x10;  // one bit of a weight late in the file
  ExpectPlantedFileRebuilt(model, cache, bytes, written.cache.path, "does not match its checksum");
  fs::remove_all(model);
}

TEST(WeightCacheFilesTest, AnUnwritableFolderLoadsWithoutTheCache) {
  const std::string model = CopyModel("llama");
  const std::string blocked = testing::MakeTempDir("weight_cache_blocked") + "/file";
  WriteFile(blocked, "not a folder");
  const Loaded fresh = LoadAndRun(model, "");
  const Loaded loaded = LoadAndRun(model, blocked);
  EXPECT_EQ(loaded.cache.outcome, Outcome::kNotWritten);
  EXPECT_FALSE(loaded.cache.detail.empty());
  EXPECT_EQ(loaded.logits, fresh.logits);
  fs::remove_all(model);
}

TEST(WeightCacheFilesTest, OneWriterAtATime) {
  const std::string path = testing::MakeTempDir("weight_cache_writers") + "/w.weights";
  auto first = PackedWeightWriter::Create(path, "key");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = PackedWeightWriter::Create(path, "key");
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  ASSERT_TRUE((*first)->Commit().ok());
  first->reset();
  // The finished file is a complete one of no weights; a new writer may start again.
  auto reader = PackedWeightReader::Open(path, "key");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_TRUE((*reader)->CheckFinished().ok());
  EXPECT_EQ(PackedWeightReader::Open(path, "other key").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(PackedWeightWriter::Create(path, "key").ok());
  EXPECT_EQ(PackedWeightReader::Open(path + ".none", "key").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera::models
