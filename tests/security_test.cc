// The security flags against real processes on loopback (docs/security.md): TLS on the
// client plane (gRPC and HTTPS), mutual TLS on the internal plane (a worker without a
// certificate of the internal CA never joins), the reasons a bad TLS flag stops a
// server, and the admin API behind its own key.
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "tessera/v1/admin.grpc.pb.h"
#include "tests/golden_fixture.h"
#include "tests/local_cluster.h"
#include "tests/safetensors_writer.h"
#include "tests/serving_client.h"
#include "tests/test_certificates.h"

namespace tessera {
namespace {

using testing::LocalCluster;
using testing::LocalClusterOptions;

std::string Bundled() { return testing::TestDataDir() + "/../../assets/models/tessera-tiny-llama"; }
std::string Cert(const std::string& file) { return testing::TestCertificates() + "/" + file; }

// The internal plane's flags for a process holding certificate `name` (node or rogue).
std::vector<std::string> InternalTls(const std::string& name, const std::string& ca = "ca") {
  return {"--internal-tls-ca", Cert(ca + ".pem"), "--internal-tls-cert", Cert(name + ".pem"), "--internal-tls-key",
          Cert(name + ".key")};
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs `command` (a shell line) and returns its stdout.
std::string Shell(const std::string& command) {
  std::string out;
  if (FILE* p = popen(command.c_str(), "r")) {
    char buffer[4096];
    while (size_t n = fread(buffer, 1, sizeof(buffer), p)) out.append(buffer, n);
    pclose(p);
  }
  return out;
}

// Everything on: the client API and HTTPS with the server certificate, the workers' API
// on its own port with mutual TLS, the workers with internal certificates.
TEST(SecurityTest, EveryPlaneHasTlsAndOnlyTheCasWorkersJoin) {
  const std::string dir = testing::MakeTempDir("security");
  LocalClusterOptions options{Bundled(), 0};
  options.internal_port = true;
  options.client_ca = Cert("ca.pem");
  options.coordinator_flags = {"--tls-cert", Cert("server.pem"), "--tls-key", Cert("server.key"), "--http-listen",
                               "127.0.0.1:0", "--http-port-file", dir + "/http.port"};
  const std::vector<std::string> internal = InternalTls("node");
  options.coordinator_flags.insert(options.coordinator_flags.end(), internal.begin(), internal.end());
  options.worker_flags = internal;
  LocalCluster cluster(options);
  cluster.AddWorker();
  ASSERT_TRUE(cluster.WaitForReadyGroups(1)) << cluster.log_dir();

  // gRPC over TLS, verified against the CA.
  const testing::Outcome o = testing::Generate(*cluster.Stub(), testing::GreedyIds({1, 2, 3}, 4));
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.tokens.size(), 4u);
  // Plaintext to the TLS port gets nowhere.
  auto plain = v1::TesseraService::NewStub(grpc::CreateChannel(cluster.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  v1::ModelInfo info;
  EXPECT_EQ(plain->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).error_code(), grpc::StatusCode::UNAVAILABLE);

  // HTTPS, as curl checks it; plain HTTP to the same port gets no answer.
  const std::string http = testing::WaitForPortFile(dir + "/http.port");
  ASSERT_FALSE(http.empty());
  const std::string https = Shell("curl -s --cacert " + Cert("ca.pem") + " https://127.0.0.1:" + http + "/v1/models");
  EXPECT_NE(https.find("tessera-tiny-llama"), std::string::npos) << https;
  const std::string completion = Shell("curl -s --cacert " + Cert("ca.pem") + " https://127.0.0.1:" + http +
                                     "/v1/completions -H 'Content-Type: application/json' "
                                     "-d '{\"prompt\": \"Hello\", \"max_tokens\": 3}'");
  EXPECT_NE(completion.find("\"completion_tokens\":3"), std::string::npos) << completion;
  EXPECT_EQ(Shell("curl -s http://127.0.0.1:" + http + "/v1/models"), "");

  // Workers with a certificate of another CA, or none, never register: the group stays
  // the one worker. The coordinator's own internal port refuses them at the handshake.
  cluster.AddWorker(InternalTls("rogue", "rogue-ca"));
  pid_t plaintext = testing::SpawnProcess({testing::BinaryPath("tessera-worker"), "--coordinator",
                                           cluster.internal_address(), "--threads", "1"},
                                          cluster.log_dir() + "/plaintext-worker.log");
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(cluster.Info().registered_workers(), 1);
  kill(plaintext, SIGKILL);
  waitpid(plaintext, nullptr, 0);
}

// A TLS flag that cannot work stops the server at once, saying why (exit status 2).
TEST(SecurityTest, BadTlsFlagsStopTheServerWithTheReason) {
  const std::string dir = testing::MakeTempDir("bad_tls");
  struct Case {
    std::vector<std::string> flags;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {{"--tls-cert", Cert("server.pem")}, "needs --tls-cert and --tls-key"},
      {{"--tls-cert", Cert("server.pem"), "--tls-key", Cert("node.key")}, "is not the key of the certificate"},
      {{"--tls-cert", Cert("server.key"), "--tls-key", Cert("server.key")}, "no PEM certificate"},
      {{"--tls-cert", dir + "/missing.pem", "--tls-key", Cert("server.key")}, "cannot read"},
      {InternalTls("node"), "needs --internal-listen"},
      {{"--internal-listen", "127.0.0.1:0", "--internal-tls-cert", Cert("node.pem"), "--internal-tls-key",
        Cert("node.key")},
       "needs --internal-tls-ca"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<std::string> argv = {testing::BinaryPath("tessera-coordinator"), "--model", Bundled(), "--listen",
                                     "127.0.0.1:0"};
    argv.insert(argv.end(), cases[i].flags.begin(), cases[i].flags.end());
    const std::string log = dir + "/" + std::to_string(i) + ".log";
    const pid_t pid = testing::SpawnProcess(argv, log);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << i;
    EXPECT_NE(ReadAll(log).find(cases[i].reason), std::string::npos) << ReadAll(log);
  }
  // The worker checks its internal flags the same way.
  std::vector<std::string> argv = {testing::BinaryPath("tessera-worker"), "--coordinator", "127.0.0.1:1",
                                   "--internal-tls-ca", Cert("ca.pem"), "--internal-tls-cert", Cert("node.pem"),
                                   "--internal-tls-key", Cert("server.key")};
  const pid_t pid = testing::SpawnProcess(argv, dir + "/worker.log");
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2);
  EXPECT_NE(ReadAll(dir + "/worker.log").find("is not the key of the certificate"), std::string::npos);
}

grpc::StatusCode DrainAs(LocalCluster& cluster, const std::string& key, const std::string& worker) {
  auto admin = v1::AdminService::NewStub(cluster.Channel());
  grpc::ClientContext ctx;
  if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
  v1::DrainRequest request;
  request.set_worker_id(worker);
  v1::DrainResponse response;
  return admin->Drain(&ctx, request, &response).error_code();
}

// The admin API takes admin keys only: none or a wrong one is UNAUTHENTICATED, a
// client's key PERMISSION_DENIED; with client keys and no admin keys it is closed.
TEST(SecurityTest, DrainNeedsAnAdminKey) {
  const std::string dir = testing::MakeTempDir("admin");
  std::ofstream(dir + "/keys") << "client-key tenant-a\n";
  std::ofstream(dir + "/admin-keys") << "admin-key operator\n";
  LocalClusterOptions options{Bundled(), 1};
  options.coordinator_flags = {"--api-key-file", dir + "/keys", "--admin-key-file", dir + "/admin-keys"};
  options.api_key = "client-key";
  LocalCluster cluster(options);
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  EXPECT_EQ(DrainAs(cluster, "", "worker-1"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(DrainAs(cluster, "not-a-key", "worker-1"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(DrainAs(cluster, "client-key", "worker-1"), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(DrainAs(cluster, "admin-key", "worker-9"), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(cluster.Info().groups_size(), 1);  // nothing above drained anything
  EXPECT_EQ(DrainAs(cluster, "admin-key", "worker-1"), grpc::StatusCode::OK);
  EXPECT_EQ(cluster.WaitForAnyWorkerExit(std::chrono::seconds(30)), 0);

  LocalClusterOptions closed{Bundled(), 0};
  closed.coordinator_flags = {"--api-key-file", dir + "/keys"};
  LocalCluster without_admin_keys(closed);
  EXPECT_EQ(DrainAs(without_admin_keys, "client-key", "worker-1"), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(DrainAs(without_admin_keys, "admin-key", "worker-1"), grpc::StatusCode::PERMISSION_DENIED);
}

}  // namespace
}  // namespace tessera
