// The tessera CLI as users and other checks run it: a real process, real files.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "absl/strings/str_join.h"
#include "tests/golden_fixture.h"
#include "tests/safetensors_writer.h"

namespace tessera {
namespace {

struct Result {
  int exit_code;
  std::string stdout_text;
  std::string stderr_text;
};

Result RunCli(const std::string& args) {
  const std::string dir = testing::MakeTempDir("cli");
  const std::string cmd = std::string(TESSERA_CLI_PATH) + " " + args + " >" + dir + "/out 2>" + dir + "/err";
  const int status = std::system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  Result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir + "/out"), slurp(dir + "/err")};
  std::filesystem::remove_all(dir);
  return r;
}

TEST(CliTest, GenerateMatchesGolden) {
  const testing::Golden golden = testing::LoadGolden("mixtral");
  const auto& c = golden.cases[1];
  Result r = RunCli("generate --model " + testing::GoldenModelDir("mixtral") + " --ids " +
                    absl::StrJoin(c.input_ids, ",") + " --max-new-tokens 16");
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(r.stdout_text, absl::StrJoin(c.new_tokens, ",") + "\n");
}

TEST(CliTest, LogitsWritesFloat32RowMajor) {
  const testing::Golden golden = testing::LoadGolden("gpt2");
  const auto& c = golden.cases[0];
  const std::string dir = testing::MakeTempDir("cli_logits");
  Result r = RunCli("logits --model " + testing::GoldenModelDir("gpt2") + " --ids " + absl::StrJoin(c.input_ids, ",") +
                    " --out " + dir + "/logits.bin");
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  std::ifstream in(dir + "/logits.bin", std::ios::binary);
  std::vector<float> got(c.logits.size());
  in.read(reinterpret_cast<char*>(got.data()), static_cast<std::streamsize>(got.size() * sizeof(float)));
  ASSERT_TRUE(in);
  EXPECT_EQ(in.peek(), EOF) << "file longer than [n_ids, vocab]";
  EXPECT_LE(testing::MaxAbsDiff(got.data(), c.logits.data(), got.size()), 1e-3f);
  std::filesystem::remove_all(dir);
}

TEST(CliTest, HelpExitsZero) {
  Result r = RunCli("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.stdout_text.find("logits    --model DIR"), std::string::npos) << r.stdout_text;
}

// Every bad invocation: exit 2, one line on stderr, nothing on stdout.
TEST(CliTest, BadInvocationsExitTwoWithOneMessage) {
  const std::string llama = testing::GoldenModelDir("llama");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "missing command"},
      {"frobnicate", "unknown command"},
      {"generate --model " + llama + " --max-new-tokens 2", "needs --ids"},
      {"generate --model " + llama + " --ids 1,x --max-new-tokens 2", "comma-separated integers"},
      {"generate --model " + llama + " --ids 1,2", "needs --max-new-tokens"},
      {"generate --model " + llama + " --ids 1,2 --max-new-tokens -1", "--max-new-tokens must be"},
      {"generate --model " + llama + " --ids 1,320 --max-new-tokens 2", "outside the vocabulary"},
      {"generate --model " + llama + " --ids 1 --max-new-tokens 2 --bogus 1", "unknown flag --bogus"},
      {"generate --model /nonexistent --ids 1 --max-new-tokens 2", "/nonexistent"},
      {"logits --model " + llama + " --ids 1,2", "needs --out"},
      {"logits --model " + llama + " --ids 1 --out", "needs a value"},
  };
  for (const auto& [args, message] : cases) {
    Result r = RunCli(args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.stderr_text.find(message), std::string::npos) << args << " -> " << r.stderr_text;
    EXPECT_EQ(std::count(r.stderr_text.begin(), r.stderr_text.end(), '\n'), 1) << args;
    EXPECT_TRUE(r.stdout_text.empty()) << args;
  }
}

TEST(CliTest, CorruptCheckpointExitsTwo) {
  const std::string dir = testing::MakeTempDir("cli_corrupt");
  std::filesystem::copy_file(testing::GoldenModelDir("llama") + "/config.json", dir + "/config.json");
  testing::WriteRawSafetensors(dir + "/model.safetensors", "{\"a\": 1}", 0);
  Result r = RunCli("generate --model " + dir + " --ids 1 --max-new-tokens 1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.stderr_text.find("corrupt safetensors"), std::string::npos) << r.stderr_text;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera
