// The tessera CLI as users and other checks run it: a real process, real files.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/args.h"
#include "kernels/cpu_isa.h"
#include "models/generate.h"
#include "models/model.h"
#include "nlohmann/json.hpp"
#include "tests/golden_fixture.h"
#include "common/http_client.h"
#include "tests/run_cli.h"
#include "tests/safetensors_writer.h"
#include "tessera/v1/internal/worker.grpc.pb.h"

namespace tessera {
namespace {

using testing::RunCli;
using Result = testing::CliResult;

std::string Bundled() { return testing::TestDataDir() + "/../../assets/models/tessera-tiny-llama"; }

std::string Readme() { return testing::TestDataDir() + "/../../README.md"; }

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
  EXPECT_NE(r.stdout_text.find("tokenize    --model DIR"), std::string::npos) << r.stdout_text;
}

// Every bad invocation: exit 2, one line on stderr, nothing on stdout.
// Loading says how much it loaded, how fast (stderr: a closing line when it is not a
// terminal, as here); --quiet says nothing.
TEST(CliTest, LoadingReportsItsRateUnlessQuiet) {
  const std::string args = "generate --model " + Bundled() + " --ids 1,2,3 --max-new-tokens 2";
  Result loud = RunCli(args);
  ASSERT_EQ(loud.exit_code, 0) << loud.stderr_text;
  EXPECT_NE(loud.stderr_text.find("tessera: loading weights: "), std::string::npos) << loud.stderr_text;
  EXPECT_NE(loud.stderr_text.find(" GB/s)"), std::string::npos) << loud.stderr_text;
  Result quiet = RunCli(args + " --quiet");
  ASSERT_EQ(quiet.exit_code, 0) << quiet.stderr_text;
  EXPECT_EQ(quiet.stderr_text, "");
  EXPECT_EQ(quiet.stdout_text, loud.stdout_text);
}

// --weight-cache: the first run packs and writes the cache (after the load; it is
// complete before the process exits), the next reads it, each saying so (not with
// --quiet); the answer is the same every time.
TEST(CliTest, WeightCacheSaysWhatItDid) {
  const std::string cache = testing::MakeTempDir("cli_weight_cache");
  const std::string args = "generate --model " + Bundled() + " --ids 1,2,3 --max-new-tokens 4 --weight-cache " + cache;
  Result plain = RunCli("generate --model " + Bundled() + " --ids 1,2,3 --max-new-tokens 4 --quiet");
  ASSERT_EQ(plain.exit_code, 0) << plain.stderr_text;
  Result first = RunCli(args);
  ASSERT_EQ(first.exit_code, 0) << first.stderr_text;
  EXPECT_NE(first.stderr_text.find("tessera: weights packed from the checkpoint; writing them to the cache " + cache +
                                    "/"),
            std::string::npos)
      << first.stderr_text;
  EXPECT_NE(first.stderr_text.find("tessera: weights cached in " + cache + "/"), std::string::npos) << first.stderr_text;
  Result second = RunCli(args);
  ASSERT_EQ(second.exit_code, 0) << second.stderr_text;
  EXPECT_NE(second.stderr_text.find("tessera: weights read from the cache " + cache + "/"), std::string::npos)
      << second.stderr_text;
  Result quiet = RunCli(args + " --quiet");
  ASSERT_EQ(quiet.exit_code, 0) << quiet.stderr_text;
  EXPECT_EQ(quiet.stderr_text, "");
  EXPECT_EQ(first.stdout_text, plain.stdout_text);
  EXPECT_EQ(second.stdout_text, plain.stdout_text);
  EXPECT_EQ(quiet.stdout_text, plain.stdout_text);
}

TEST(CliTest, BadInvocationsExitTwoWithOneMessage) {
  const std::string llama = testing::GoldenModelDir("llama");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "missing command"},
      {"frobnicate", "unknown command"},
      {"generate --model " + llama + " --max-new-tokens 2", "exactly one of --ids and --prompt"},
      {"generate --model " + llama + " --ids 1 --prompt hi --max-new-tokens 2", "exactly one of --ids and --prompt"},
      {"logits --model " + llama + " --out x", "needs --ids"},
      {"tokenize --model " + Bundled(), "needs --text"},
      {"tokenize --model " + Bundled() + " --text $'\\xff'", "not valid UTF-8"},
      {"detokenize --model " + Bundled() + " --ids 1,99999", "outside the vocabulary"},
      {"tokenize --model " + llama + " --text hi", "tokenizer.json"},
      {"generate --model " + llama + " --ids 1,x --max-new-tokens 2", "comma-separated integers"},
      {"generate --model " + llama + " --ids 1,2", "needs --max-new-tokens"},
      {"generate --model " + llama + " --ids 1,2 --max-new-tokens -1", "--max-new-tokens must be"},
      {"generate --model " + llama + " --ids 1,320 --max-new-tokens 2", "outside the vocabulary"},
      {"generate --model " + llama + " --ids 1 --max-new-tokens 2 --bogus 1", "unknown flag --bogus"},
      {"generate --model /nonexistent --ids 1 --max-new-tokens 2", "/nonexistent"},
      {"logits --model " + llama + " --ids 1,2", "needs --out"},
      {"logits --model " + llama + " --ids 1 --out", "needs a value"},
      {"perplexity --model " + Bundled(), "needs --text"},
      {"perplexity --model " + Bundled() + " --text /nonexistent", "cannot read /nonexistent"},
      {"perplexity --model " + Bundled() + " --text " + Readme() + " --context 513", "context must be 2..512"},
      {"perplexity --model " + Bundled() + " --text " + Readme() + " --stride 0", "--stride must be"},
      {"perplexity --model " + Bundled() + " --text " + Readme() + " --ids 1", "unknown flag --ids"},
      {"perplexity --model " + Bundled() + " --text " + Readme() + " --reference-kv-cache-dtype int4",
       "unknown KV cache dtype 'int4'"},
      {"generate --model " + llama + " --ids 1 --max-new-tokens 2 --reference-kv-cache-dtype f32",
       "unknown flag --reference-kv-cache-dtype"},
      {"embed --model " + llama, "exactly one of --ids and --prompt"},
      {"embed --model " + llama + " --ids 1,2 --pooling max", "unknown pooling 'max' (last or mean)"},
      {"embed --model " + llama + " --ids 1,320", "outside the vocabulary"},
      {"embed --model " + llama + " --ids 1 --max-new-tokens 2", "unknown flag --max-new-tokens"},
  };
  for (const auto& [args, message] : cases) {
    Result r = RunCli(args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_NE(r.stderr_text.find(message), std::string::npos) << args << " -> " << r.stderr_text;
    EXPECT_EQ(std::count(r.stderr_text.begin(), r.stderr_text.end(), '\n'), 1) << args;
    EXPECT_TRUE(r.stdout_text.empty()) << args;
  }
}

TEST(CliTest, TokenizeDetokenizeAndGenerateFromText) {
  Result ids = RunCli("tokenize --model " + Bundled() + " --add-special-tokens --text 'In the beginning'");
  ASSERT_EQ(ids.exit_code, 0) << ids.stderr_text;
  EXPECT_EQ(ids.stdout_text.rfind("2046,", 0), 0u) << ids.stdout_text;  // <|bos|> first
  const std::string id_list = ids.stdout_text.substr(0, ids.stdout_text.size() - 1);
  Result text = RunCli("detokenize --model " + Bundled() + " --ids " + id_list);
  ASSERT_EQ(text.exit_code, 0) << text.stderr_text;
  EXPECT_EQ(text.stdout_text, "<|bos|>In the beginning\n");

  // --prompt streams the text of what --ids generates, up to EOS.
  Result by_ids = RunCli("generate --model " + Bundled() + " --ids " + id_list + " --max-new-tokens 24");
  ASSERT_EQ(by_ids.exit_code, 0) << by_ids.stderr_text;
  std::vector<int32_t> generated;
  for (absl::string_view part : absl::StrSplit(absl::StripTrailingAsciiWhitespace(by_ids.stdout_text), ',')) {
    int32_t id;
    ASSERT_TRUE(absl::SimpleAtoi(part, &id));
    if (id == 2047) break;  // <|eos|>
    generated.push_back(id);
  }
  Result expected = RunCli("detokenize --model " + Bundled() + " --ids " + absl::StrJoin(generated, ","));
  Result by_prompt = RunCli("generate --model " + Bundled() + " --prompt 'In the beginning' --max-new-tokens 24");
  ASSERT_EQ(by_prompt.exit_code, 0) << by_prompt.stderr_text;
  EXPECT_EQ(by_prompt.stdout_text, expected.stdout_text);
}

// perplexity prints one JSON line with what models::Perplexity computes for the
// text's tokens (as `tessera tokenize` gives them, BOS first), also over --tp 2.
TEST(CliTest, PerplexityPrintsTheLibrarysFigures) {
  const std::string text = "And God said, Let there be light: and there was light. And God saw the light, "
                           "that it was good: and God divided the light from the darkness.";
  const std::string dir = testing::MakeTempDir("perplexity");
  std::ofstream(dir + "/text.txt") << text;
  Result ids = RunCli("tokenize --model " + Bundled() + " --add-special-tokens --text '" + text + "'");
  ASSERT_EQ(ids.exit_code, 0) << ids.stderr_text;
  std::vector<int32_t> tokens;
  for (absl::string_view part : absl::StrSplit(absl::StripTrailingAsciiWhitespace(ids.stdout_text), ',')) {
    ASSERT_TRUE(absl::SimpleAtoi(part, &tokens.emplace_back()));
  }
  auto model = models::Model::Load(Bundled());
  ASSERT_TRUE(model.ok()) << model.status();
  // The CLI's cache keeps the model's dtype (--kv-cache-dtype auto: bf16 here).
  auto expected = models::Perplexity(**model, tokens, {.context = 16, .stride = 8, .kv_dtype = (*model)->spec().dtype});
  ASSERT_TRUE(expected.ok()) << expected.status();

  for (const std::string tp : {"1", "2"}) {
    Result r = RunCli("perplexity --model " + Bundled() + " --text " + dir + "/text.txt --context 16 --stride 8 --quiet --tp " + tp);
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    const nlohmann::json got = nlohmann::json::parse(r.stdout_text);
    EXPECT_EQ(got["tokens"], static_cast<int64_t>(tokens.size()) - 1);
    EXPECT_EQ(got["windows"], expected->windows);
    EXPECT_EQ(got["context"], 16);
    EXPECT_EQ(got["stride"], 8);
    EXPECT_EQ(got["kv_cache_dtype"], "bf16");
    EXPECT_EQ(got["cpu_isa"], kernels::CpuIsaName(kernels::BestCpuIsa()));
    // bf16 weights: a tensor-parallel split sums in another order.
    EXPECT_NEAR(got["perplexity"].get<double>(), expected->perplexity(), (tp == "1" ? 1e-9 : 1e-3) * expected->perplexity());
    EXPECT_GT(got["seconds"].get<double>(), 0);
    EXPECT_FALSE(got.contains("reference"));
  }
  // An int8 cache against the model's own dtype (auto: bf16), as the library compares them.
  auto compared = models::Perplexity(
      **model, tokens, {.context = 16, .stride = 8, .kv_dtype = KvDtype::kInt8, .reference_kv_dtype = (*model)->spec().dtype});
  ASSERT_TRUE(compared.ok()) << compared.status();
  Result r = RunCli("perplexity --model " + Bundled() + " --text " + dir +
                    "/text.txt --context 16 --stride 8 --quiet --kv-cache-dtype int8 --reference-kv-cache-dtype auto");
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  const nlohmann::json reference = nlohmann::json::parse(r.stdout_text)["reference"];
  const double scored = static_cast<double>(compared->tokens);
  EXPECT_EQ(reference["kv_cache_dtype"], "bf16");
  EXPECT_NEAR(reference["perplexity"].get<double>(), expected->perplexity(), 1e-9 * expected->perplexity());
  EXPECT_NEAR(reference["mean_kld"].get<double>(), compared->reference->kld / scored, 1e-12);
  EXPECT_NEAR(reference["same_top"].get<double>(), compared->reference->same_top / scored, 1e-12);
  EXPECT_TRUE(reference.contains("changed_top_margin_median") && reference.contains("changed_top_margin_max"));
  std::filesystem::remove_all(dir);
}

// Reproducers from fuzzing: model folders that aborted the CLI get one message and 2.
TEST(CliTest, FuzzedModelFoldersExitTwoWithAMessage) {
  const std::string repro = testing::TestDataDir() + "/repro/";
  const std::string dir = testing::MakeTempDir("cli_fuzzed");
  std::filesystem::copy_file(repro + "config_negative_layers.json", dir + "/config.json");
  Result logits = RunCli("logits --model " + dir + " --ids 1 --out " + dir + "/out.bin");
  EXPECT_EQ(logits.exit_code, 2);
  EXPECT_NE(logits.stderr_text.find("num_hidden_layers"), std::string::npos) << logits.stderr_text;
  for (const char* bad : {"tokenizer_strip_float.json", "tokenizer_template_float_id.json"}) {
    std::filesystem::copy_file(repro + bad, dir + "/tokenizer.json", std::filesystem::copy_options::overwrite_existing);
    Result r = RunCli("tokenize --model " + dir + " --text ab");
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_NE(r.stderr_text.find("tokenizer.json"), std::string::npos) << r.stderr_text;
  }
  // A marker right after one character is a valid vocabulary, not a crash.
  std::filesystem::copy_file(repro + "tokenizer_json_abort.json", dir + "/tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing);
  Result ok = RunCli("tokenize --model " + dir + " --text '<\u2581'");
  EXPECT_EQ(ok.exit_code, 0) << ok.stderr_text;
  std::filesystem::remove_all(dir);
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

namespace tessera {
namespace {

// `tessera serve` (the README's main job) end to end: it starts a coordinator and a
// worker, a `tessera client` streams text from it, and Ctrl-C stops everything.
TEST(CliServeTest, ServeAnswersAClientAndStopsOnInterrupt) {
  const std::string dir = testing::MakeTempDir("cli_serve");
  const std::string log = dir + "/serve.log";
  const pid_t serve = fork();
  if (serve == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the test
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    execl(TESSERA_CLI_PATH, TESSERA_CLI_PATH, "serve", "--model", Bundled().c_str(), "--workers", "1", "--listen",
          "127.0.0.1:0", "--http-listen", "127.0.0.1:0", static_cast<char*>(nullptr));
    _exit(127);
  }
  // "tessera: serving DIR on HOST:PORT with ..." names the gRPC address, the next line
  // the HTTP API's ("... on http://HOST:PORT/v1").
  std::string address, http_port;
  for (int i = 0; i < 400 && http_port.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    std::ifstream in(log);
    for (std::string line; std::getline(in, line);) {
      const size_t on = line.find(" on 127.0.0.1:");
      if (line.rfind("tessera: serving", 0) == 0 && on != std::string::npos) {
        address = line.substr(on + 4, line.find(' ', on + 4) - (on + 4));
      }
      const size_t http = line.find("http://127.0.0.1:");
      if (http != std::string::npos) http_port = line.substr(http + 17, line.find('/', http + 17) - (http + 17));
    }
  }
  ASSERT_FALSE(address.empty()) << "serve did not start";
  ASSERT_FALSE(http_port.empty()) << "serve named no HTTP address";
  EXPECT_EQ(HttpFetch(std::stoi(http_port), "GET", "/health").status, 200);
  // Greedy: sampled at the server's default temperature the model may end at once
  // (EOS after a token or two), and this checks that text arrives, not sampling.
  Result r = RunCli("client --address " + address +
                    " --prompt 'And God said' --max-tokens 12 --temperature 0 --wait-ready 60");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_GT(r.stdout_text.size(), 5u);
  EXPECT_NE(r.stderr_text.find("completion tokens"), std::string::npos) << r.stderr_text;
  // The client port serves clients only: the workers' API (registering a worker, the
  // rendezvous store) is on a port of its own.
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::ClientContext register_context;
  v1::internal::RegisterRequest fake_worker;
  fake_worker.set_address("127.0.0.1:1");
  v1::internal::RegisterResponse registered;
  EXPECT_EQ(v1::internal::Coordinator::NewStub(channel)->Register(&register_context, fake_worker, &registered).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  grpc::ClientContext set_context;
  v1::internal::StoreSetRequest store;
  v1::internal::StoreSetResponse stored;
  EXPECT_EQ(v1::internal::Rendezvous::NewStub(channel)->Set(&set_context, store, &stored).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  kill(serve, SIGINT);
  int status = 0;
  waitpid(serve, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera
