// The bad-input matrix: every client RPC and HTTP endpoint given bad values (empty,
// huge, negative, NaN, invalid UTF-8, unknown ids, 10 MB prompts, a million stop
// strings, a cancelled stream, a truncated body, slow-loris connections). Each gets
// its status code while a gRPC stream and an HTTP stream run through all of it and end
// exactly as they do alone; afterwards the processes are alive, nothing is running and
// the KV pool is whole again.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <future>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "tests/local_cluster.h"
#include "tests/serving_client.h"
#include "tests/golden_fixture.h"

namespace tessera {
namespace {

using grpc::StatusCode;
using nlohmann::json;
using testing::Generate;
using testing::GreedyIds;

std::string Bundled() { return testing::TestDataDir() + "/../../assets/models/tessera-tiny-llama"; }

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int kContext = 512;  // the bundled model's max_position_embeddings

// A TCP connection to the HTTP port for writing raw bytes (slow or truncated requests).
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConnection() { close(fd_); }
  bool connected() const { return connected_; }
  bool Send(const std::string& bytes) {
    return send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }

 private:
  int fd_;
  bool connected_ = false;
};

v1::GenerateRequest Text(const std::string& text, int max_tokens = 4) {
  v1::GenerateRequest r;
  r.set_text(text);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  return r;
}

// GreedyIds({1, 2, 3}, 4) with one change.
v1::GenerateRequest Bad(const std::function<void(v1::GenerateRequest&)>& change) {
  v1::GenerateRequest r = GreedyIds({1, 2, 3}, 4);
  change(r);
  return r;
}

TEST(BadInputTest, EveryBadValueGetsItsCodeAndNothingElseIsLost) {
  testing::LocalClusterOptions options{Bundled(), 1, {"--batch-invariant", "1"}, {"--step-delay-ms", "30"}};
  options.http = true;
  options.internal_port = true;  // the client port then has the client's message limit
  testing::LocalCluster cluster(options);
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto stub = cluster.Stub();
  const int port = cluster.http_port();
  const int total_blocks = cluster.Info().groups(0).total_kv_blocks();

  // The good streams, alone first (batch-invariant: in any company they must repeat).
  v1::GenerateRequest good = GreedyIds({1, 2, 3, 4, 5}, 480);
  good.set_request_id("the-good-one");
  const json good_http = {{"prompt", "In the beginning"}, {"max_tokens", 480}, {"temperature", 0},
                          {"ignore_eos", true}, {"stream", true}};
  auto read_http = [&] {
    std::string text;
    SseStream stream("127.0.0.1", port, "/v1/completions", good_http);
    EXPECT_EQ(stream.status(), 200) << stream.error();
    while (std::optional<std::string> data = stream.Next()) {
      if (*data == "[DONE]") break;
      const json chunk = json::parse(*data);
      for (const json& c : chunk["choices"]) text += c["text"].get<std::string>();
    }
    return text;
  };
  auto alone_grpc = std::async(std::launch::async, [&] { return Generate(*cluster.Stub(), good); });
  const std::string alone_http = read_http();
  const testing::Outcome alone = alone_grpc.get();
  ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
  ASSERT_FALSE(alone_http.empty());
  // Through the matrix: the good streams (~15 s at 30 ms a step), and a huge max_tokens,
  // which is no error: generation ends at the context, with LENGTH.
  auto grpc_stream = std::async(std::launch::async, [&] { return Generate(*cluster.Stub(), good); });
  auto http_stream = std::async(std::launch::async, read_http);
  auto to_the_end = std::async(std::launch::async, [&] {
    return Generate(*cluster.Stub(), Bad([](auto& r) {
      r.mutable_sampling()->set_max_tokens(std::numeric_limits<int32_t>::max());
    }));
  });
  for (int i = 0; i < 500 && cluster.Info().groups(0).running_requests() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Generate(*stub, Bad([](auto& r) { r.set_request_id("the-good-one"); })).status.error_code(),
            StatusCode::ALREADY_EXISTS);

  // Slow-loris clients: headers a byte at a time, never finished, held open throughout.
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < 64; ++i) {
    slow.push_back(std::make_unique<RawConnection>(port));
    ASSERT_TRUE(slow.back()->connected());
    slow.back()->Send("POST /v1/completions HTTP/1.1\r\nHost: x\r\n");
  }
  std::atomic<bool> matrix_done{false};
  std::thread trickle([&] {
    while (!matrix_done) {
      for (auto& c : slow) c->Send("X");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  // gRPC: Generate.
  const std::string ten_mb(10 << 20, 'a');
  const std::vector<std::pair<std::string, v1::GenerateRequest>> generate_cases = {
      {"no prompt", Bad([](auto& r) { r.clear_token_ids(); })},
      {"empty ids", GreedyIds({}, 4)},
      {"empty text without BOS", Bad([](auto& r) { r.set_text(""); r.set_add_special_tokens(false); })},
      {"negative id", GreedyIds({1, -1}, 4)},
      {"huge id", GreedyIds({1, std::numeric_limits<int32_t>::max()}, 4)},
      {"prompt of the whole context", GreedyIds(std::vector<int32_t>(kContext, 7), 4)},
      {"10 MB text", Text(ten_mb)},
      {"NaN temperature", Bad([](auto& r) { r.mutable_sampling()->set_temperature(kNaN); })},
      {"infinite temperature", Bad([](auto& r) { r.mutable_sampling()->set_temperature(kInf); })},
      {"negative temperature", Bad([](auto& r) { r.mutable_sampling()->set_temperature(-1); })},
      {"NaN top_p", Bad([](auto& r) { r.mutable_sampling()->set_top_p(kNaN); })},
      {"zero top_p", Bad([](auto& r) { r.mutable_sampling()->set_top_p(0); })},
      {"negative top_k", Bad([](auto& r) { r.mutable_sampling()->set_top_k(-1); })},
      {"NaN min_p", Bad([](auto& r) { r.mutable_sampling()->set_min_p(kNaN); })},
      {"NaN repetition_penalty", Bad([](auto& r) { r.mutable_sampling()->set_repetition_penalty(kNaN); })},
      {"zero repetition_penalty", Bad([](auto& r) { r.mutable_sampling()->set_repetition_penalty(0); })},
      {"NaN presence_penalty", Bad([](auto& r) { r.mutable_sampling()->set_presence_penalty(kNaN); })},
      {"huge frequency_penalty", Bad([](auto& r) { r.mutable_sampling()->set_frequency_penalty(1e30f); })},
      {"zero max_tokens", Bad([](auto& r) { r.mutable_sampling()->set_max_tokens(0); })},
      {"negative max_tokens", Bad([](auto& r) { r.mutable_sampling()->set_max_tokens(-5); })},
      {"negative min_tokens", Bad([](auto& r) { r.mutable_sampling()->set_min_tokens(-1); })},
      {"min_tokens over max_tokens", Bad([](auto& r) { r.mutable_sampling()->set_min_tokens(5); })},
      {"a million stop strings", Bad([](auto& r) {
         for (int i = 0; i < 1000000; ++i) r.mutable_sampling()->add_stop("ab");
       })},
      {"a 1 MB stop string", Bad([](auto& r) { r.mutable_sampling()->add_stop(std::string(1 << 20, 's')); })},
      {"an empty stop string", Bad([](auto& r) { r.mutable_sampling()->add_stop(""); })},
      {"stop token outside the vocabulary", Bad([](auto& r) { r.mutable_sampling()->add_stop_token_ids(1 << 30); })},
      {"negative top_logprobs", Bad([](auto& r) { r.mutable_sampling()->set_top_logprobs(-1); })},
      {"21 top_logprobs", Bad([](auto& r) { r.mutable_sampling()->set_top_logprobs(21); })},
  };
  for (const auto& [name, request] : generate_cases) {
    EXPECT_EQ(Generate(*stub, request).status.error_code(), StatusCode::INVALID_ARGUMENT) << name;
  }
  EXPECT_EQ(Generate(*stub, Bad([](auto& r) { r.set_model("no-such-model"); })).status.error_code(),
            StatusCode::NOT_FOUND);
  // Invalid UTF-8 in a string field never reaches the server's code: protobuf will not
  // parse it, and gRPC answers a request it cannot parse with INTERNAL.
  EXPECT_EQ(Generate(*stub, Text("abc\xff\xfe")).status.error_code(), StatusCode::INTERNAL);
  // Over the 16 MB message limit: refused before it is parsed.
  EXPECT_EQ(Generate(*stub, Text(std::string(17 << 20, 'a'))).status.error_code(), StatusCode::RESOURCE_EXHAUSTED);

  // A stream the client cancels after its first message, and one past its deadline.
  {
    grpc::ClientContext ctx;
    auto reader = stub->Generate(&ctx, GreedyIds({1, 2, 3}, 400));
    v1::GenerateResponse first;
    ASSERT_TRUE(reader->Read(&first));
    ctx.TryCancel();
    while (reader->Read(&first)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), StatusCode::CANCELLED);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    EXPECT_EQ(Generate(*stub, GreedyIds({1, 2, 3}, 400), &ctx).status.error_code(), StatusCode::DEADLINE_EXCEEDED);
  }

  // gRPC: the other RPCs.
  auto call = [&](auto method, const auto& request, auto* response) {
    grpc::ClientContext ctx;
    return ((*stub).*method)(&ctx, request, response).error_code();
  };
  v1::AbortRequest abort;
  v1::AbortResponse aborted;
  abort.set_request_id("nobody-has-this-id");
  EXPECT_EQ(call(&v1::TesseraService::Stub::Abort, abort, &aborted), StatusCode::NOT_FOUND);
  abort.set_request_id("");
  EXPECT_EQ(call(&v1::TesseraService::Stub::Abort, abort, &aborted), StatusCode::NOT_FOUND);
  v1::TokenizeRequest tokenize;
  v1::TokenizeResponse tokens;
  tokenize.set_text("fine");
  tokenize.set_model("no-such-model");
  EXPECT_EQ(call(&v1::TesseraService::Stub::Tokenize, tokenize, &tokens), StatusCode::NOT_FOUND);
  v1::DetokenizeRequest detokenize;
  v1::DetokenizeResponse text;
  detokenize.add_ids(-3);
  EXPECT_EQ(call(&v1::TesseraService::Stub::Detokenize, detokenize, &text), StatusCode::INVALID_ARGUMENT);
  v1::GetModelInfoRequest model_info;
  v1::ModelInfo info;
  model_info.set_model("no-such-model");
  EXPECT_EQ(call(&v1::TesseraService::Stub::GetModelInfo, model_info, &info), StatusCode::NOT_FOUND);

  // HTTP.
  auto status_of = [&](const std::string& method, const std::string& path, const std::string& body) {
    return HttpFetch(port, method, path, body).status;
  };
  auto completion = [&](json fields) {
    json body = {{"prompt", "In the beginning"}, {"max_tokens", 4}};
    body.update(fields);
    return status_of("POST", "/v1/completions", body.dump());
  };
  json million_stops = json::array();
  for (int i = 0; i < 1000000; ++i) million_stops.push_back("a");
  const std::vector<std::pair<std::string, int>> http_cases = {
      {"not JSON", status_of("POST", "/v1/completions", "{\"prompt\": ")},
      {"a JSON array", status_of("POST", "/v1/completions", "[1, 2]")},
      {"empty body", status_of("POST", "/v1/completions", "")},
      {"invalid UTF-8", status_of("POST", "/v1/completions", "{\"prompt\": \"a\xff\"}")},
      {"NaN literal", status_of("POST", "/v1/completions", "{\"prompt\": \"a\", \"temperature\": NaN}")},
      {"temperature as text", completion({{"temperature", "hot"}})},
      {"negative temperature", completion({{"temperature", -0.5}})},
      {"negative max_tokens", completion({{"max_tokens", -1}})},
      {"max_tokens past int32", completion({{"max_tokens", 1e12}})},
      {"prompt ids past the vocabulary", completion({{"prompt", json::array({1, 1 << 30})}})},
      {"prompt of the whole context", completion({{"prompt", json(std::vector<int>(kContext, 7))}})},
      {"a million stop strings", completion({{"stop", million_stops}})},
      {"logprobs 100", completion({{"logprobs", 100}})},
      {"n = 0", completion({{"n", 0}})},
      {"n = 100000", completion({{"n", 100000}})},
      {"priority as text", completion({{"priority", "high"}})},
      {"chat without messages", status_of("POST", "/v1/chat/completions", json{{"max_tokens", 4}}.dump())},
      {"chat messages not a list", status_of("POST", "/v1/chat/completions", json{{"messages", "hi"}}.dump())},
      {"chat message without a role",
       status_of("POST", "/v1/chat/completions", json{{"messages", {{{"content", "hi"}}}}}.dump())},
      {"chat content a number",
       status_of("POST", "/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", 5}}}}}.dump())},
      {"detokenize ids past the vocabulary",
       status_of("POST", "/detokenize", json{{"tokens", json::array({1 << 30})}}.dump())},
  };
  for (const auto& [name, status] : http_cases) EXPECT_EQ(status, 400) << name;
  EXPECT_EQ(completion({{"model", "no-such-model"}}), 404);
  EXPECT_EQ(status_of("GET", "/v1/no-such-path", ""), 404);
  EXPECT_EQ(status_of("DELETE", "/v1/completions", ""), 405);
  EXPECT_EQ(completion({{"prompt", ten_mb}}), 413);  // over the 8 MB body limit

  // A body cut short: the client promises 1000 bytes, sends 10 and leaves.
  {
    RawConnection truncated(port);
    ASSERT_TRUE(truncated.connected());
    truncated.Send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: 1000\r\n\r\n{\"prompt\":");
  }

  // Still serving, with every slow-loris connection open; the good streams have run
  // through the whole matrix.
  EXPECT_EQ(completion({{"max_tokens", 2}}), 200);
  EXPECT_EQ(grpc_stream.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the matrix outlasted the good stream: make it longer";
  matrix_done = true;
  trickle.join();
  slow.clear();

  const testing::Outcome ended = to_the_end.get();
  EXPECT_TRUE(ended.status.ok()) << ended.status.error_message();
  EXPECT_EQ(ended.reason, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(ended.tokens.size(), size_t{kContext - 3});

  const testing::Outcome together = grpc_stream.get();
  ASSERT_TRUE(together.status.ok()) << together.status.error_message();
  EXPECT_EQ(together.tokens, alone.tokens);
  EXPECT_EQ(http_stream.get(), alone_http);

  // Nothing running, every KV block back, both processes alive.
  v1::ServerInfo after;
  for (int i = 0; i < 300; ++i) {
    after = cluster.Info();
    if (after.groups(0).running_requests() == 0 && after.groups(0).free_kv_blocks() == total_blocks) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(after.groups(0).running_requests(), 0);
  EXPECT_EQ(after.queued_requests(), 0);
  EXPECT_EQ(after.groups(0).free_kv_blocks(), total_blocks);
  EXPECT_EQ(kill(cluster.coordinator_pid(), 0), 0);
  EXPECT_EQ(kill(cluster.workers()[0], 0), 0);
}

}  // namespace
}  // namespace tessera
