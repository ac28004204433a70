// tessera fetch-model (the chart's weights initContainer) against sources on loopback:
// a folder with SHA256SUMS over HTTP, HTTPS and as a local directory, and a HuggingFace Hub
// mirror's layout (its API's file list, LFS SHA-256 and git blob SHA-1), each served
// by Python's http.server. Checksums in the fixtures come from sha256sum and git, not
// from the code under test. A fetched model answers like the original; a tampered
// file is refused and never left under its name.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

#include "cli/model_fetch.h"
#include "models/generate.h"
#include "models/model.h"
#include "nlohmann/json.hpp"
#include "tests/golden_fixture.h"  // TestDataDir
#include "tests/local_cluster.h"
#include "tests/run_cli.h"
#include "tests/safetensors_writer.h"
#include "tests/test_certificates.h"

namespace tessera::testing {
namespace {

namespace fs = std::filesystem;
using cli::ParseSha256Sums;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The first word of `cmd`'s output.
std::string FirstWordOf(const std::string& cmd) {
  std::string word;
  if (FILE* out = popen(cmd.c_str(), "r")) {
    char buffer[256] = "";
    if (std::fgets(buffer, sizeof buffer, out) != nullptr) word = buffer;
    pclose(out);
  }
  return word.substr(0, word.find_first_of(" \n"));
}

// The bundled tiny model: a whole HuggingFace folder (weights, config, tokenizer).
fs::path Bundled() { return fs::path(TestDataDir()) / "../../assets/models/tessera-tiny-llama"; }
std::vector<std::string> ModelFiles() {
  return {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
}

std::string GreedyOf(const std::string& model_dir) {
  auto model = models::Model::Load(model_dir);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return "";
  models::GreedyOptions greedy;
  greedy.max_new_tokens = 8;
  const std::vector<int32_t> prompt = {3, 14, 15, 92, 65};
  const auto ids = models::GenerateGreedy(**model, prompt, greedy);
  std::string text;
  for (int32_t id : *ids) text += std::to_string(id) + ",";
  return text;
}

class ModelFetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("fetch");
    served_ = root_ + "/served";
    fs::create_directories(served_);
    // A static server on an ephemeral loopback port, written to a file once bound.
    // With a certificate and key after them, over HTTPS.
    std::ofstream(root_ + "/serve.py") << "import functools, http.server, os, ssl, sys\n"
                                          "handler = functools.partial(http.server.SimpleHTTPRequestHandler, "
                                          "directory=sys.argv[1])\n"
                                          "server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)\n"
                                          "if len(sys.argv) > 3:\n"
                                          "  tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
                                          "  tls.load_cert_chain(sys.argv[3], sys.argv[4])\n"
                                          "  server.socket = tls.wrap_socket(server.socket, server_side=True)\n"
                                          "open(sys.argv[2] + '.tmp', 'w').write(str(server.server_address[1]))\n"
                                          "os.rename(sys.argv[2] + '.tmp', sys.argv[2])\n"
                                          "server.serve_forever()\n";
    port_ = Serve({}, "port");
    ASSERT_FALSE(port_.empty()) << "python3's http.server did not start: " << Slurp(root_ + "/server.log");
  }
  void TearDown() override {
    for (pid_t p : servers_) kill(p, SIGKILL);
    for (pid_t p : servers_) waitpid(p, nullptr, 0);
    if (!HasFailure()) fs::remove_all(root_);
  }

  // Starts a server of served_ (`tls`: its certificate and key); its port.
  std::string Serve(const std::vector<std::string>& tls, const std::string& port_file) {
    std::vector<std::string> argv = {"/usr/bin/python3", root_ + "/serve.py", served_, root_ + "/" + port_file};
    argv.insert(argv.end(), tls.begin(), tls.end());
    servers_.push_back(SpawnProcess(argv, root_ + "/server.log"));
    return WaitForPortFile(root_ + "/" + port_file);
  }

  std::string Url(const std::string& path) const { return "http://127.0.0.1:" + port_ + "/" + path; }

  // The bundled model under served_/DIR with a SHA256SUMS made by sha256sum.
  std::string ServeFolder(const std::string& dir) {
    const fs::path folder = fs::path(served_) / dir;
    fs::create_directories(folder);
    for (const std::string& f : ModelFiles()) fs::copy_file(Bundled() / f, folder / f);
    EXPECT_EQ(std::system(("cd " + folder.string() + " && sha256sum * > SHA256SUMS").c_str()), 0);
    return folder.string();
  }

  std::string root_, served_, port_;
  std::vector<pid_t> servers_;
};

TEST_F(ModelFetchTest, FetchesAFolderOverHttpAndTheModelAnswersTheSame) {
  ServeFolder("models/llama");
  const std::string dest = root_ + "/dest";
  const CliResult r = RunCli("fetch-model --source " + Url("models/llama") + " --dest " + dest);
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  for (const std::string& f : ModelFiles()) {
    EXPECT_EQ(Slurp(fs::path(dest) / f), Slurp(Bundled() / f)) << f;
  }
  EXPECT_NE(r.stderr_text.find("every file verified"), std::string::npos) << r.stderr_text;
  EXPECT_EQ(GreedyOf(dest), GreedyOf(Bundled().string()));

  // A restarted initContainer keeps what is there and verified.
  const CliResult again = RunCli("fetch-model --quiet --source " + Url("models/llama") + " --dest " + dest);
  ASSERT_EQ(again.exit_code, 0) << again.stderr_text;
  EXPECT_NE(again.stderr_text.find("model.safetensors already there, checksum matches"), std::string::npos)
      << again.stderr_text;
}

TEST_F(ModelFetchTest, ATamperedFileIsRefusedAndNotLeftUnderItsName) {
  const std::string folder = ServeFolder("tampered");
  std::fstream weights(folder + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
  weights.seekp(-1, std::ios::end);
  weights.put('\x7f');  // the last byte of a weight
  weights.close();
  const std::string dest = root_ + "/dest";
  const CliResult r = RunCli("fetch-model --source " + Url("tampered/") + " --dest " + dest);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("model.safetensors: checksum mismatch"), std::string::npos) << r.stderr_text;
  EXPECT_FALSE(fs::exists(dest + "/model.safetensors"));
  for (const auto& entry : fs::directory_iterator(dest)) {
    EXPECT_EQ(entry.path().filename().string().find(".partial"), std::string::npos) << entry.path();
  }
}

TEST_F(ModelFetchTest, MissingSourcesAndBadManifestsSayWhat) {
  const std::string dest = root_ + "/dest";
  CliResult r = RunCli("fetch-model --source " + Url("nothing-here/") + " --dest " + dest);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("nothing-here/SHA256SUMS: HTTP 404"), std::string::npos) << r.stderr_text;
  r = RunCli("fetch-model --source ftp://example.invalid/x --dest " + dest);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("unknown source"), std::string::npos) << r.stderr_text;
  r = RunCli("fetch-model --source hf://not-a-repo --dest " + dest);
  EXPECT_NE(r.stderr_text.find("is not hf://ORG/NAME[@REVISION]"), std::string::npos) << r.stderr_text;
  r = RunCli("fetch-model --dest " + dest);
  EXPECT_EQ(r.exit_code, 2);

  const std::string digest(64, 'a');
  EXPECT_FALSE(ParseSha256Sums(digest + "  ../../etc/passwd\n").ok());
  EXPECT_FALSE(ParseSha256Sums(digest + "  /etc/passwd\n").ok());
  EXPECT_FALSE(ParseSha256Sums("abc  config.json\n").ok());
  const auto files = ParseSha256Sums(digest + " *sub/model.safetensors\r\n" + digest + "  ./config.json\n");
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ((*files)[0].path, "sub/model.safetensors");
  EXPECT_EQ((*files)[1].path, "config.json");
}

// A private mirror over HTTPS: its CA named with --ca-file; unknown to the system's CAs
// otherwise, so refused without it.
TEST_F(ModelFetchTest, AnHttpsMirrorIsTrustedThroughItsCaFile) {
  ServeFolder("private");
  const std::string certs = TestCertificates();
  const std::string https = Serve({certs + "/server.pem", certs + "/server.key"}, "https_port");
  ASSERT_FALSE(https.empty()) << Slurp(root_ + "/server.log");
  const std::string source = "https://127.0.0.1:" + https + "/private/";
  const CliResult trusted = RunCli("fetch-model --quiet --source " + source + " --ca-file " + certs + "/ca.pem --dest " +
                                   root_ + "/dest");
  ASSERT_EQ(trusted.exit_code, 0) << trusted.stderr_text;
  EXPECT_EQ(Slurp(root_ + "/dest/model.safetensors"), Slurp(Bundled() / "model.safetensors"));
  const CliResult unknown = RunCli("fetch-model --quiet --source " + source + " --dest " + root_ + "/dest2");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.stderr_text.find("certificate"), std::string::npos) << unknown.stderr_text;
  EXPECT_FALSE(fs::exists(root_ + "/dest2/model.safetensors"));
}

TEST_F(ModelFetchTest, ALocalFolderIsCopiedAndVerified) {
  const std::string folder = ServeFolder("local");
  // A name a URL must escape, in a subfolder.
  fs::create_directories(folder + "/sub dir");
  std::ofstream(folder + "/sub dir/notes #1.txt") << "kept as is\n";
  ASSERT_EQ(std::system(("cd " + folder + " && sha256sum 'sub dir/notes #1.txt' >> SHA256SUMS").c_str()), 0);
  const std::string dest = root_ + "/dest";
  const CliResult r = RunCli("fetch-model --quiet --source " + folder + " --dest " + dest);
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(Slurp(dest + "/model.safetensors"), Slurp(folder + "/model.safetensors"));
  EXPECT_EQ(Slurp(dest + "/sub dir/notes #1.txt"), "kept as is\n");
}

// A Hub mirror as http.server sees it: the API's answer as a file at its path (the
// query string is not part of the file's name), the files under resolve/COMMIT/.
TEST_F(ModelFetchTest, FetchesFromAHubMirrorWithTheHubsChecksums) {
  const std::string commit = "0123456789abcdef0123456789abcdef01234567";
  const fs::path files = fs::path(served_) / "org/tiny/resolve" / commit;
  fs::create_directories(files);
  nlohmann::json siblings = nlohmann::json::array();
  for (const std::string& f : ModelFiles()) {
    const fs::path source = Bundled() / f;
    fs::copy_file(source, files / f);
    nlohmann::json sibling = {{"rfilename", f}, {"size", fs::file_size(source)}};
    if (f == "model.safetensors") {  // in LFS: its SHA-256
      sibling["blobId"] = std::string(40, 'f');
      sibling["lfs"] = {{"sha256", FirstWordOf("sha256sum " + source.string())}, {"size", fs::file_size(source)}};
    } else {  // in git: its blob id
      sibling["blobId"] = FirstWordOf("git hash-object " + source.string());
    }
    siblings.push_back(sibling);
  }
  siblings.push_back({{"rfilename", "pytorch_model.bin"}, {"size", 1}, {"blobId", std::string(40, 'e')}});
  siblings.push_back({{"rfilename", "README.md"}, {"size", 1}, {"blobId", std::string(40, 'e')}});
  const fs::path api = fs::path(served_) / "api/models/org/tiny/revision";
  fs::create_directories(api);
  std::ofstream(api / "main") << nlohmann::json{{"id", "org/tiny"}, {"sha", commit}, {"siblings", siblings}}.dump();

  const std::string dest = root_ + "/dest";
  const CliResult r = RunCli("fetch-model --source hf://org/tiny --hf-endpoint " + Url("") + " --dest " + dest);
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("org/tiny at " + commit + ", 5 files"), std::string::npos) << r.stderr_text;
  EXPECT_FALSE(fs::exists(dest + "/pytorch_model.bin"));  // not in the default --include
  EXPECT_EQ(GreedyOf(dest), GreedyOf(Bundled().string()));

  // A config.json that is not the one the Hub listed (git blob SHA-1) is refused.
  std::ofstream(files / "config.json", std::ios::app) << " ";
  const CliResult tampered =
      RunCli("fetch-model --source hf://org/tiny@main --hf-endpoint " + Url("") + " --dest " + root_ + "/dest2");
  EXPECT_EQ(tampered.exit_code, 1);
  EXPECT_NE(tampered.stderr_text.find("config.json: checksum mismatch"), std::string::npos) << tampered.stderr_text;
}

}  // namespace
}  // namespace tessera::testing
