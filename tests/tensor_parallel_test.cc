// Tensor and expert parallelism with real processes: `tessera logits/generate --tp N
// --ep M` runs N x M ranks joined by Gloo; for every golden fixture and every TP degree
// its head counts allow (and Mixtral with EP 2, 4 and TP x EP 2 x 2), logits equal
// one rank's within 1e-4 and greedy output is identical.
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "absl/strings/str_join.h"
#include "models/generate.h"
#include "models/model.h"
#include "tests/golden_fixture.h"
#include "tests/safetensors_writer.h"

namespace tessera {
namespace {

struct Param {
  std::string model;
  int tp;
  int ep = 1;
};

void PrintTo(const Param& p, std::ostream* os) { *os << p.model << " tp " << p.tp << " ep " << p.ep; }

std::vector<Param> Params() {
  std::vector<Param> out;
  for (const std::string& m : testing::GoldenModels()) {
    auto spec = models::LoadModelSpec(testing::GoldenModelDir(m));
    for (int tp : {2, 4}) {
      if (spec.ok() && models::ShardLayout::For(*spec, {0, tp}).ok()) out.push_back({m, tp});
    }
  }
  for (const Param& p : {Param{"mixtral", 1, 2}, Param{"mixtral", 1, 4}, Param{"mixtral", 2, 2}}) out.push_back(p);
  return out;
}

int RunCommand(const std::string& cmd, std::string* out) {
  const std::string file = testing::MakeTempDir("tp_cli") + "/out";
  const int status = std::system((cmd + " > " + file + " 2>&1").c_str());
  std::ifstream in(file);
  *out = std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove_all(std::filesystem::path(file).parent_path());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class TensorParallelTest : public ::testing::TestWithParam<Param> {};

TEST_P(TensorParallelTest, ShardedLogitsAndGreedyMatchOneRank) {
  const auto [name, tp, ep] = GetParam();
  const std::string parallel = " --tp " + std::to_string(tp) + " --ep " + std::to_string(ep);
  const std::string dir = testing::GoldenModelDir(name);
  const testing::Golden golden = testing::LoadGolden(name);
  const auto& c = golden.cases[1];
  auto model = models::Model::Load(dir);
  ASSERT_TRUE(model.ok());
  // The CLI keeps the model's dtype in its cache (--kv-cache-dtype auto): bf16 for llama_bf16.
  const KvDtype kv_dtype = (*model)->spec().dtype;
  const std::vector<float> reference = *models::PromptLogits(**model, c.input_ids, kvstore::kDefaultBlockSize, kv_dtype);

  const std::string tmp = testing::MakeTempDir("tp_logits");
  const std::string ids = absl::StrJoin(c.input_ids, ",");
  std::string output;
  ASSERT_EQ(RunCommand(std::string(TESSERA_CLI_PATH) + " logits --model " + dir + " --ids " + ids + parallel +
                           " --out " + tmp + "/logits.bin",
                &output),
            0)
      << output;
  std::vector<float> sharded(reference.size());
  std::ifstream in(tmp + "/logits.bin", std::ios::binary);
  in.read(reinterpret_cast<char*>(sharded.data()), static_cast<std::streamsize>(sharded.size() * sizeof(float)));
  ASSERT_TRUE(in);
  EXPECT_LE(testing::MaxAbsDiff(sharded.data(), reference.data(), reference.size()), 1e-4f);

  models::GreedyOptions greedy;
  greedy.max_new_tokens = 16;
  greedy.kv_dtype = kv_dtype;
  const std::vector<int32_t> expected = *models::GenerateGreedy(**model, c.input_ids, greedy);
  ASSERT_EQ(RunCommand(std::string(TESSERA_CLI_PATH) + " generate --quiet --model " + dir + " --ids " + ids +
                           " --max-new-tokens 16" + parallel,
                &output),
            0)
      << output;
  EXPECT_EQ(output, absl::StrJoin(expected, ",") + "\n");
  std::filesystem::remove_all(tmp);
}

INSTANTIATE_TEST_SUITE_P(GoldenFixtures, TensorParallelTest, ::testing::ValuesIn(Params()),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return info.param.model + "_tp" + std::to_string(info.param.tp) + "_ep" +
                                  std::to_string(info.param.ep);
                         });

TEST(TensorParallelErrors, DegreeThatDoesNotSplitTheHeadsIsRefused) {
  std::string output;
  // The golden LLaMA has 4 query heads: 3 ranks cannot split them.
  EXPECT_EQ(RunCommand(std::string(TESSERA_CLI_PATH) + " generate --model " + testing::GoldenModelDir("llama") +
                    " --ids 1,2 --max-new-tokens 2 --tp 3",
                &output),
            2);
  EXPECT_NE(output.find("does not fit this model: 4 query heads"), std::string::npos) << output;
}

TEST(TensorParallelErrors, ExpertParallelismNeedsExperts) {
  std::string output;
  EXPECT_EQ(RunCommand(std::string(TESSERA_CLI_PATH) + " generate --model " + testing::GoldenModelDir("llama") +
                           " --ids 1,2 --max-new-tokens 2 --ep 2",
                       &output),
            2);
  EXPECT_NE(output.find("needs a mixture-of-experts model"), std::string::npos) << output;
}

}  // namespace
}  // namespace tessera
