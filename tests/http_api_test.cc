// The OpenAI-compatible HTTP API against a real coordinator and workers on loopback:
// answers equal the gRPC API's, the SSE framing, readiness, every error status, a
// disconnected client's blocks coming back, and a thousand open streams served by
// the coordinator's fixed I/O threads.
#include <sys/resource.h>

#include <fstream>
#include <sstream>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_join.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/golden_fixture.h"
#include "common/http_client.h"
#include "tests/local_cluster.h"
#include "tests/safetensors_writer.h"
#include "tests/serving_client.h"

namespace tessera {
namespace {

using nlohmann::json;

std::string Bundled() { return testing::TestDataDir() + "/../../assets/models/tessera-tiny-llama"; }

// A cluster of the bundled model (or `model`) whose coordinator also serves HTTP.
struct HttpCluster {
  explicit HttpCluster(int workers, std::vector<std::string> coordinator_flags = {},
                       std::vector<std::string> worker_flags = {}, const std::string& model = Bundled())
      : dir(testing::MakeTempDir("http_api")) {
    testing::LocalClusterOptions options{model, workers, coordinator_flags, worker_flags};
    options.http = true;
    cluster = std::make_unique<testing::LocalCluster>(options);
    port = cluster->http_port();
    if (workers > 0 && !cluster->WaitForReadyGroups(1)) throw std::runtime_error("no group became ready");
  }
  std::string dir;
  std::unique_ptr<testing::LocalCluster> cluster;
  int port = 0;
};

// Every event of a stream: the JSON chunks, and whether [DONE] ended it.
struct Streamed {
  std::vector<json> chunks;
  bool done = false;
  std::string text;  // the choices' text, concatenated
};

Streamed ReadStream(int port, const json& body) {
  SseStream stream(port, "/v1/completions", body);
  Streamed out;
  while (std::optional<std::string> data = stream.Next()) {
    if (*data == "[DONE]") {
      out.done = true;
      break;
    }
    json chunk = json::parse(*data);
    for (const json& c : chunk["choices"]) out.text += c["text"].get<std::string>();
    out.chunks.push_back(std::move(chunk));
  }
  return out;
}

// The first prompt's gRPC answer for the same sampling.
testing::Outcome ViaGrpc(testing::LocalCluster& cluster, const std::string& prompt, int max_tokens, uint64_t seed) {
  v1::GenerateRequest r;
  r.set_text(prompt);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  r.mutable_sampling()->set_seed(seed);
  r.mutable_sampling()->set_ignore_eos(true);
  auto stub = cluster.Stub();
  return testing::Generate(*stub, r);
}

int FreeBlocks(const v1::ServerInfo& info) { return info.groups(0).free_kv_blocks(); }

// The gRPC health status of `service` ("" for the process).
grpc::health::v1::HealthCheckResponse::ServingStatus GrpcHealth(const testing::LocalCluster& cluster,
                                                                const std::string& service) {
  auto health =
      grpc::health::v1::Health::NewStub(grpc::CreateChannel(cluster.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  if (!health->Check(&ctx, request, &response).ok()) return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  return response.status();
}

// Readiness, over HTTP and in the gRPC health service (the client API's service name;
// "" is the process, SERVING from the start).
TEST(HttpApiTest, ReadyOnlyOnceAGroupIsReadyAndHealthAlways) {
  using Status = grpc::health::v1::HealthCheckResponse;
  HttpCluster c(0);
  EXPECT_EQ(HttpFetch(c.port, "GET", "/health").status, 200);
  EXPECT_EQ(GrpcHealth(*c.cluster, ""), Status::SERVING);
  EXPECT_EQ(GrpcHealth(*c.cluster, "tessera.v1.TesseraService"), Status::NOT_SERVING);
  const HttpResult not_ready = HttpFetch(c.port, "GET", "/ready");
  EXPECT_EQ(not_ready.status, 503);
  EXPECT_EQ(not_ready.Json()["error"]["code"], 503);
  // No group: a completion is refused the same way.
  EXPECT_EQ(HttpPost(c.port, "/v1/completions", {{"prompt", "In the beginning"}}).status, 503);
  c.cluster->AddWorker();
  ASSERT_TRUE(c.cluster->WaitForReadyGroups(1));
  EXPECT_EQ(HttpFetch(c.port, "GET", "/ready").status, 200);
  Status::ServingStatus client_api = Status::UNKNOWN;
  for (int i = 0; i < 100 && client_api != Status::SERVING; ++i) {  // polled every 100 ms
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    client_api = GrpcHealth(*c.cluster, "tessera.v1.TesseraService");
  }
  EXPECT_EQ(client_api, Status::SERVING);
}

TEST(HttpApiTest, CompletionsEqualTheGrpcAnswerWholeAndStreamed) {
  HttpCluster c(1);
  const std::string prompt = "And God said, Let there be light";
  const testing::Outcome grpc = ViaGrpc(*c.cluster, prompt, 24, 11);
  ASSERT_TRUE(grpc.status.ok()) << grpc.status.error_message();
  const json body = {{"model", "tessera-tiny-llama"}, {"prompt", prompt}, {"max_tokens", 24},
                     {"seed", 11},                     {"ignore_eos", true}};

  const HttpResult whole = HttpPost(c.port, "/v1/completions", body);
  ASSERT_EQ(whole.status, 200) << whole.body;
  const json answer = whole.Json();
  EXPECT_EQ(answer["object"], "text_completion");
  EXPECT_EQ(answer["model"], "tessera-tiny-llama");
  EXPECT_EQ(answer["id"].get<std::string>().size(), 5u + 32u);  // cmpl- and 128 random bits
  ASSERT_EQ(answer["choices"].size(), 1u);
  EXPECT_EQ(answer["choices"][0]["text"], grpc.text);
  EXPECT_EQ(answer["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(answer["usage"]["completion_tokens"], 24);
  EXPECT_EQ(answer["usage"]["prompt_tokens"], grpc.usage.prompt_tokens());
  EXPECT_EQ(answer["usage"]["total_tokens"], grpc.usage.prompt_tokens() + 24);

  json stream_body = body;
  stream_body["stream"] = true;
  stream_body["stream_options"] = {{"include_usage", true}};
  const Streamed streamed = ReadStream(c.port, stream_body);
  EXPECT_TRUE(streamed.done);
  EXPECT_EQ(streamed.text, grpc.text);
  ASSERT_GE(streamed.chunks.size(), 2u);
  const json& usage_chunk = streamed.chunks.back();
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"]["completion_tokens"], 24);
  const json& last = streamed.chunks[streamed.chunks.size() - 2];
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  for (size_t i = 0; i + 2 < streamed.chunks.size(); ++i) {
    EXPECT_TRUE(streamed.chunks[i]["choices"][0]["finish_reason"].is_null());
    EXPECT_EQ(streamed.chunks[i]["id"], usage_chunk["id"]);
  }
}

// Batch-invariant, so each request's tokens do not depend on what it was batched with.
TEST(HttpApiTest, ThirtyTwoConcurrentStreamsEqualTheirGrpcAnswers) {
  HttpCluster c(2, {"--batch-invariant", "1"});
  constexpr int kStreams = 32;
  std::vector<std::future<Streamed>> http;
  for (int i = 0; i < kStreams; ++i) {
    http.push_back(std::async(std::launch::async, [&c, i] {
      return ReadStream(c.port, {{"prompt", "In the beginning " + std::to_string(i)},
                                 {"max_tokens", 16},
                                 {"seed", i},
                                 {"ignore_eos", true},
                                 {"stream", true}});
    }));
  }
  for (int i = 0; i < kStreams; ++i) {
    const Streamed s = http[i].get();
    EXPECT_TRUE(s.done) << i;
    const testing::Outcome grpc = ViaGrpc(*c.cluster, "In the beginning " + std::to_string(i), 16, i);
    ASSERT_TRUE(grpc.status.ok()) << grpc.status.error_message();
    EXPECT_EQ(s.text, grpc.text) << i;
  }
}

// Batch-invariant: choice 1 of the batch is compared with the same seed run alone.
TEST(HttpApiTest, BatchesChoicesLogprobsStopEchoAndCachedTokens) {
  HttpCluster c(1, {"--batch-invariant", "1"});
  // Two prompts (text and ids) x n = 2; choice j samples with seed + j.
  const json batch = {{"prompt", json::array({"In the beginning", json::array({2046, 448, 340})})},
                      {"n", 2}, {"seed", 5}, {"max_tokens", 6}, {"ignore_eos", true}, {"logprobs", 3}};
  const HttpResult r = HttpPost(c.port, "/v1/completions", batch);
  ASSERT_EQ(r.status, 200) << r.body;
  const json answer = r.Json();
  ASSERT_EQ(answer["choices"].size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const json& choice = answer["choices"][i];
    EXPECT_EQ(choice["index"], i);
    ASSERT_EQ(choice["logprobs"]["tokens"].size(), 6u);
    EXPECT_EQ(choice["logprobs"]["top_logprobs"][0].size(), 3u);
    std::string joined;
    for (const json& t : choice["logprobs"]["tokens"]) joined += t.get<std::string>();
    EXPECT_EQ(joined, choice["text"]);
  }
  const json second = HttpPost(c.port, "/v1/completions",
                               {{"prompt", "In the beginning"}, {"seed", 6}, {"max_tokens", 6}, {"ignore_eos", true}})
                          .Json();
  EXPECT_EQ(second["choices"][0]["text"], answer["choices"][1]["text"]);  // seed 5 + 1
  EXPECT_EQ(answer["usage"]["completion_tokens"], 24);

  const json echo = HttpPost(c.port, "/v1/completions",
                             {{"prompt", "In the beginning"}, {"echo", true}, {"max_tokens", 3}, {"temperature", 0}})
                        .Json();
  EXPECT_EQ(echo["choices"][0]["text"].get<std::string>().rfind("In the beginning", 0), 0u);

  const json stopped = HttpPost(c.port, "/v1/completions",
                                {{"prompt", "And God said"}, {"stop", ","}, {"max_tokens", 64}, {"temperature", 0}})
                           .Json();
  EXPECT_EQ(stopped["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(stopped["choices"][0]["text"].get<std::string>().find(','), std::string::npos);

  // A repeated 40-token prompt finds its two full blocks in the prefix cache.
  std::vector<int> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(100 + i);
  const json repeat = {{"prompt", ids}, {"max_tokens", 2}};
  EXPECT_EQ(HttpPost(c.port, "/v1/completions", repeat).Json()["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(HttpPost(c.port, "/v1/completions", repeat).Json()["usage"]["prompt_tokens_details"]["cached_tokens"], 32);
}

TEST(HttpApiTest, BadRequestsGetTheirStatusAndTheServerKeepsServing) {
  HttpCluster c(1, {"--http-max-body-mb", "1", "--max-queue", "1", "--max-running", "1"}, {"--step-delay-ms", "30"});
  auto expect_error = [&](const HttpResult& r, int status, const std::string& param) {
    EXPECT_EQ(r.status, status) << r.body;
    const json error = r.Json()["error"];
    EXPECT_EQ(error["code"], status);
    EXPECT_FALSE(error["message"].get<std::string>().empty());
    EXPECT_EQ(error["param"], param.empty() ? json(nullptr) : json(param)) << r.body;
  };
  expect_error(HttpPost(c.port, "/v1/completions", {{"prompt", "x"}, {"top_p", 7}}), 400, "top_p");
  expect_error(HttpPost(c.port, "/v1/completions", {{"prompt", "x"}, {"max_tokens", "ten"}}), 400, "max_tokens");
  expect_error(HttpPost(c.port, "/v1/completions", {{"prompt", json::array({-1})}}), 400, "prompt");
  expect_error(HttpPost(c.port, "/v1/completions", {{"max_tokens", 3}}), 400, "prompt");
  expect_error(HttpFetch(c.port, "POST", "/v1/completions", "{not json"), 400, "");
  expect_error(HttpPost(c.port, "/v1/completions", {{"prompt", "x"}, {"model", "gpt-4"}}), 404, "");
  expect_error(HttpFetch(c.port, "GET", "/v1/nothing"), 404, "");
  expect_error(HttpFetch(c.port, "GET", "/v1/completions"), 405, "");
  expect_error(HttpFetch(c.port, "POST", "/v1/completions", std::string(2 << 20, ' ')), 413, "");

  // One request runs (max-running 1), one waits (max-queue 1): the third is turned away.
  const json slow = {{"prompt", "x"}, {"max_tokens", 1000}, {"ignore_eos", true}, {"stream", true}};
  SseStream running(c.port, "/v1/completions", slow);
  ASSERT_TRUE(running.Next().has_value());
  SseStream waiting(c.port, "/v1/completions", slow);
  for (int i = 0; i < 500 && c.cluster->Info().queued_requests() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(c.cluster->Info().queued_requests(), 1);
  expect_error(HttpPost(c.port, "/v1/completions", {{"prompt", "x"}}), 429, "");
  running.Close();
  waiting.Close();  // both end as aborted at the group's next step
  for (int i = 0; i < 500 && c.cluster->Info().queued_requests() + c.cluster->Info().groups(0).running_requests() > 0;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  const HttpResult fine = HttpPost(c.port, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 2}});
  EXPECT_EQ(fine.status, 200) << fine.body;
}

TEST(HttpApiTest, AClientThatGoesAwayAbortsItsRequestAndFreesItsBlocks) {
  HttpCluster c(1, {}, {"--step-delay-ms", "20"});
  const int total = c.cluster->Info().groups(0).total_kv_blocks();
  SseStream stream(c.port, "/v1/completions",
                   {{"prompt", "In the beginning"}, {"max_tokens", 400}, {"ignore_eos", true}, {"stream", true}});
  ASSERT_EQ(stream.status(), 200);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(stream.Next().has_value());
  EXPECT_LT(FreeBlocks(c.cluster->Info()), total);
  stream.Close();
  v1::ServerInfo info;
  for (int i = 0; i < 300; ++i) {
    info = c.cluster->Info();
    if (info.groups(0).running_requests() == 0 && FreeBlocks(info) == total) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(info.groups(0).running_requests(), 0);
  EXPECT_EQ(FreeBlocks(info), total);
}

int ThreadsOf(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

// A thousand streams held open at once (their tokens come slowly): the coordinator
// keeps its threads, still answers, and takes every request back when they close.
TEST(HttpApiTest, AThousandOpenStreamsCostNoThreads) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < 2200) GTEST_SKIP() << "needs 2200 descriptors, the limit is " << limit.rlim_cur;

  HttpCluster c(1, {"--max-queue", "2000"}, {"--step-delay-ms", "500"});
  const int threads_before = ThreadsOf(c.cluster->coordinator_pid());
  const int total = c.cluster->Info().groups(0).total_kv_blocks();
  constexpr int kStreams = 1000;
  std::vector<std::unique_ptr<SseStream>> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<SseStream>(
        c.port, "/v1/completions", json{{"prompt", "x"}, {"max_tokens", 1000}, {"ignore_eos", true}, {"stream", true}}));
    ASSERT_EQ(streams.back()->status(), 200) << "stream " << i << ": " << streams.back()->error();
  }
  const v1::ServerInfo busy = c.cluster->Info();
  EXPECT_EQ(busy.groups(0).running_requests() + busy.groups(0).waiting_requests(), kStreams);
  EXPECT_EQ(HttpFetch(c.port, "GET", "/health").status, 200);
  EXPECT_LE(ThreadsOf(c.cluster->coordinator_pid()), threads_before + 8);  // gRPC pollers vary a little

  for (auto& s : streams) s->Close();
  v1::ServerInfo info;
  for (int i = 0; i < 600; ++i) {
    info = c.cluster->Info();
    if (info.groups(0).running_requests() + info.groups(0).waiting_requests() == 0 && FreeBlocks(info) == total) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(info.groups(0).running_requests() + info.groups(0).waiting_requests(), 0);
  EXPECT_EQ(FreeBlocks(info), total);
}

TEST(HttpApiTest, ModelsTokenizeAndDetokenize) {
  HttpCluster c(1);
  const json models = HttpFetch(c.port, "GET", "/v1/models").Json();
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "tessera-tiny-llama");
  EXPECT_EQ(models["data"][0]["owned_by"], "tessera");
  EXPECT_GT(models["data"][0]["max_model_len"].get<int>(), 0);
  EXPECT_TRUE(models["data"][0]["created"].is_number_integer());

  const json tokens = HttpPost(c.port, "/tokenize", {{"prompt", "The LORD is my shepherd"}}).Json();
  ASSERT_GT(tokens["count"].get<int>(), 0);
  EXPECT_EQ(tokens["tokens"].size(), tokens["count"].get<size_t>());
  const json text = HttpPost(c.port, "/detokenize", {{"tokens", tokens["tokens"]}}).Json();
  EXPECT_NE(text["prompt"].get<std::string>().find("The LORD is my shepherd"), std::string::npos);
  EXPECT_EQ(HttpPost(c.port, "/detokenize", {{"tokens", {1 << 30}}}).status, 400);
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// The value of the sample whose line starts with `series` (name and labels), or -1.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

// Five known requests in: the counters and histograms say five, with their tokens.
TEST(HttpApiTest, MetricsCountAKnownWorkload) {
  HttpCluster c(1);
  const std::string model = "{model_name=\"tessera-tiny-llama\"";
  constexpr int kRequests = 5, kMaxTokens = 7;
  int prompt_tokens = 0;
  for (int i = 0; i < kRequests; ++i) {
    const json r = HttpPost(c.port, "/v1/completions",
                            {{"prompt", "In the beginning " + std::to_string(i)}, {"max_tokens", kMaxTokens},
                             {"ignore_eos", true}})
                       .Json();
    prompt_tokens += r["usage"]["prompt_tokens"].get<int>();
  }
  // The last answer can reach the client a moment before its group has freed it.
  HttpResult scraped;
  for (int i = 0; i < 100; ++i) {
    scraped = HttpFetch(c.port, "GET", "/metrics");
    if (Sample(scraped.body, "tessera:num_requests_running" + model + "}") == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(scraped.status, 200);
  const std::string& m = scraped.body;
  EXPECT_EQ(Sample(m, "tessera:request_success_total" + model + ",finished_reason=\"length\"}"), kRequests) << m;
  EXPECT_EQ(Sample(m, "tessera:generation_tokens_total" + model + "}"), kRequests * kMaxTokens);
  EXPECT_EQ(Sample(m, "tessera:prompt_tokens_total" + model + "}"), prompt_tokens);
  EXPECT_EQ(Sample(m, "tessera:time_to_first_token_seconds_count" + model + "}"), kRequests);
  EXPECT_EQ(Sample(m, "tessera:inter_token_latency_seconds_count" + model + "}"), kRequests * (kMaxTokens - 1));
  EXPECT_EQ(Sample(m, "tessera:e2e_request_latency_seconds_count" + model + "}"), kRequests);
  EXPECT_EQ(Sample(m, "tessera:request_queue_time_seconds_count" + model + "}"), kRequests);
  EXPECT_EQ(Sample(m, "tessera:num_requests_running" + model + "}"), 0);
  EXPECT_EQ(Sample(m, "tessera:workers_registered" + model + "}"), 1);
  EXPECT_EQ(Sample(m, "tessera:group_ready" + model + ",group=\"group-1\"}"), 1);
  EXPECT_EQ(Sample(m, "tessera:kv_cache_usage_perc" + model + "}"), 0);
  // The bundled model is bf16, so is its cache by default (--kv-cache-dtype auto).
  EXPECT_GT(Sample(m, "tessera:group_kv_block_bytes" + model + ",group=\"group-1\",dtype=\"bf16\"}"), 0) << m;
  EXPECT_EQ(Sample(m, "tessera:num_preemptions_total" + model + "}"), 0);
  EXPECT_GE(Sample(m, "tessera:group_steps_total" + model + ",group=\"group-1\"}"), kRequests * kMaxTokens);
  EXPECT_GT(Sample(m, "tessera:group_step_seconds_total" + model + ",group=\"group-1\"}"), 0);
  EXPECT_GT(Sample(m, "tessera:model_load_seconds" + model + ",group=\"group-1\"}"), 0);
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// --log-format json: one JSON line per finished request with its numbers, and stats
// lines while there is traffic.
TEST(HttpApiTest, RequestAndStatsLogLinesAsJson) {
  HttpCluster c(1, {"--log-format", "json", "--log-stats-interval-s", "1"});
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(HttpPost(c.port, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 6}, {"ignore_eos", true}}).status,
              200);
  }
  std::vector<json> finished, stats;
  for (int i = 0; i < 50 && stats.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    finished.clear();
    std::ifstream log(c.cluster->log_dir() + "/coordinator.log");
    for (std::string line; std::getline(log, line);) {
      const json j = json::parse(line, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << "not a JSON line: " << line;
      EXPECT_EQ(j["program"], "tessera-coordinator");
      EXPECT_TRUE(j["time"].is_string());
      if (j["msg"] == "request finished") finished.push_back(j);
      if (j["msg"] == "stats") stats.push_back(j);
    }
  }
  ASSERT_EQ(finished.size(), 2u);
  for (const json& f : finished) {
    EXPECT_EQ(f["finish"], "length");
    EXPECT_EQ(f["completion_tokens"], 6);
    EXPECT_EQ(f["prompt_tokens"], 2);
    EXPECT_GE(f["ttft_s"].get<double>(), 0.0);
    EXPECT_GE(f["duration_s"].get<double>(), f["ttft_s"].get<double>());
    EXPECT_TRUE(f["id"].is_string());
  }
  ASSERT_FALSE(stats.empty());
  EXPECT_TRUE(stats[0]["generation_tok_per_s"].is_number());
  EXPECT_TRUE(stats[0]["kv_usage_pct"].is_number());
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// tessera-bench drives the HTTP API as it would any OpenAI-compatible server.
TEST(HttpApiTest, TesseraBenchDrivesTheHttpApi) {
  HttpCluster c(1);
  const std::string out = c.dir + "/bench.txt";
  const std::string cmd = testing::BinaryPath("tessera-bench") + " serve --http http://127.0.0.1:" +
                          std::to_string(c.port) + "/v1 --num-prompts 8 --concurrency 4 --input-len 16 --output-len 8 > " +
                          out + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(out);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("successful requests    8 (failed 0)"), std::string::npos) << text;
  EXPECT_NE(text.find("output token throughput"), std::string::npos) << text;
  // Every request produced its 8 tokens: the server's counter agrees.
  EXPECT_NE(HttpFetch(c.port, "GET", "/metrics")
                .body.find("tessera:generation_tokens_total{model_name=\"tessera-tiny-llama\"} 64"),
            std::string::npos);
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

HttpResult WithKey(int port, const std::string& path, const json& body, const std::string& key) {
  return HttpFetchWithHeaders("127.0.0.1", port, "POST", path, body.dump(), {{"Authorization", "Bearer " + key}});
}

// Waits for /ready (with keys on, GetServerInfo needs one: probes do not).
void WaitReady(int port) {
  for (int i = 0; i < 600 && HttpFetch(port, "GET", "/ready").status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// A long gRPC generation by the tenant of `key`, running: its first token has come.
struct LongStream {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
};
std::unique_ptr<LongStream> StartLongStream(v1::TesseraService::Stub& stub, const std::string& key, const std::string& id) {
  auto stream = std::make_unique<LongStream>();
  stream->ctx.AddMetadata("authorization", "Bearer " + key);
  v1::GenerateRequest request = testing::GreedyIds({1, 2, 3}, 500);
  request.set_request_id(id);
  stream->reader = stub.Generate(&stream->ctx, request);
  v1::GenerateResponse first;
  EXPECT_TRUE(stream->reader->Read(&first));
  return stream;
}

// --api-key-file: the client APIs need a key (probes and scrapers do not), a tenant's
// prefix cache is its own, and only the tenant that started a request may abort it.
TEST(HttpApiTest, ApiKeysGuardTheClientApisAndSeparateTenants) {
  const std::string dir = testing::MakeTempDir("api_keys");
  std::ofstream(dir + "/keys") << "# tenants\nkey-of-a tenant-a\nkey-of-b tenant-b\n";
  HttpCluster c(0, {"--api-key-file", dir + "/keys"}, {"--step-delay-ms", "20"});
  c.cluster->AddWorker();
  WaitReady(c.port);
  const json small = {{"prompt", "x"}, {"max_tokens", 2}};

  const HttpResult none = HttpPost(c.port, "/v1/completions", small);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.Json()["error"]["type"], "authentication_error");
  EXPECT_EQ(WithKey(c.port, "/v1/completions", small, "key-of-c").status, 401);
  EXPECT_EQ(WithKey(c.port, "/v1/completions", small, "key-of-a").status, 200);
  EXPECT_EQ(HttpFetch(c.port, "GET", "/v1/models").status, 401);
  for (const char* open : {"/health", "/ready", "/metrics"}) EXPECT_EQ(HttpFetch(c.port, "GET", open).status, 200);

  // A's prompt is cached for A, not for B.
  std::vector<int> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(300 + i);
  const json repeat = {{"prompt", ids}, {"max_tokens", 1}};
  auto cached = [&](const std::string& key) {
    return WithKey(c.port, "/v1/completions", repeat, key).Json()["usage"]["prompt_tokens_details"]["cached_tokens"];
  };
  EXPECT_EQ(cached("key-of-a"), 0);
  EXPECT_EQ(cached("key-of-a"), 32);
  EXPECT_EQ(cached("key-of-b"), 0);

  // gRPC: the same keys as `authorization` metadata.
  auto stub = c.cluster->Stub();
  auto call = [&](const std::string& key, auto rpc) {
    grpc::ClientContext ctx;
    if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
    return rpc(ctx);
  };
  v1::ModelInfo info;
  EXPECT_EQ(call("", [&](grpc::ClientContext& ctx) { return stub->GetModelInfo(&ctx, {}, &info); }).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(call("key-of-b", [&](grpc::ClientContext& ctx) { return stub->GetModelInfo(&ctx, {}, &info); }).ok());

  // A long request of tenant A: B cannot abort it (it does not exist for B), A can.
  const std::unique_ptr<LongStream> long_stream = StartLongStream(*stub, "key-of-a", "a-long-one");
  auto& reader = long_stream->reader;
  v1::AbortRequest abort;
  abort.set_request_id("a-long-one");
  v1::AbortResponse aborted;
  EXPECT_EQ(call("key-of-b", [&](grpc::ClientContext& ctx) { return stub->Abort(&ctx, abort, &aborted); }).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(call("key-of-a", [&](grpc::ClientContext& ctx) { return stub->Abort(&ctx, abort, &aborted); }).ok());
  v1::GenerateResponse msg;
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&msg)) reason = msg.finish_reason() ? msg.finish_reason() : reason;
  EXPECT_EQ(reason, v1::FINISH_REASON_ABORT);
  EXPECT_TRUE(reader->Finish().ok());
}

// --max-streams-per-tenant: a tenant at its limit gets 429 / RESOURCE_EXHAUSTED, the
// other tenant is served meanwhile, and the slot comes back when the stream ends.
TEST(HttpApiTest, EachTenantHasItsOwnStreamLimit) {
  const std::string dir = testing::MakeTempDir("stream_limit");
  std::ofstream(dir + "/keys") << "key-of-a tenant-a\nkey-of-b tenant-b\n";
  HttpCluster c(0, {"--api-key-file", dir + "/keys", "--max-streams-per-tenant", "1"}, {"--step-delay-ms", "20"});
  c.cluster->AddWorker();
  WaitReady(c.port);
  auto stub = c.cluster->Stub();
  const std::unique_ptr<LongStream> long_stream = StartLongStream(*stub, "key-of-a", "a-long-one");
  auto& reader = long_stream->reader;

  const json small = {{"prompt", "x"}, {"max_tokens", 2}};
  const HttpResult refused = WithKey(c.port, "/v1/completions", small, "key-of-a");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_NE(refused.body.find("--max-streams-per-tenant"), std::string::npos) << refused.body;
  grpc::ClientContext second_ctx;
  second_ctx.AddMetadata("authorization", "Bearer key-of-a");
  EXPECT_EQ(testing::Generate(*stub, testing::GreedyIds({1, 2}, 2), &second_ctx).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(WithKey(c.port, "/v1/completions", small, "key-of-b").status, 200);

  grpc::ClientContext abort_ctx;
  abort_ctx.AddMetadata("authorization", "Bearer key-of-a");
  v1::AbortRequest abort;
  abort.set_request_id("a-long-one");
  v1::AbortResponse aborted;
  EXPECT_TRUE(stub->Abort(&abort_ctx, abort, &aborted).ok());
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
  // The aborted request leaves its group at the next step; then A is served again.
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    status = WithKey(c.port, "/v1/completions", small, "key-of-a").status;
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(status, 200);
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// Chat: the bundled model's template renders the messages; the answer equals a
// completion of that rendering, whole and streamed (the role in the first delta).
TEST(HttpApiTest, ChatCompletionsRenderTheTemplateAndAnswerInChatShapes) {
  HttpCluster c(1);
  const json messages = json::array({{{"role", "system"}, {"content", "Psalms."}},
                                      {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "The LORD is"}}}}}});
  const json chat = {{"messages", messages}, {"max_tokens", 10}, {"seed", 4}, {"ignore_eos", true}};
  const HttpResult r = HttpPost(c.port, "/v1/chat/completions", chat);
  ASSERT_EQ(r.status, 200) << r.body;
  const json answer = r.Json();
  EXPECT_EQ(answer["object"], "chat.completion");
  EXPECT_EQ(answer["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(answer["choices"][0]["message"]["role"], "assistant");
  // The template: bos, then each turn trimmed on its own line.
  const json completion = HttpPost(c.port, "/v1/completions",
                                   {{"prompt", "<|bos|>Psalms.\nThe LORD is"}, {"max_tokens", 10}, {"seed", 4},
                                    {"ignore_eos", true}, {"add_special_tokens", false}})
                              .Json();
  EXPECT_EQ(answer["usage"]["prompt_tokens"], completion["usage"]["prompt_tokens"]);

  json streamed_request = chat;
  streamed_request["stream"] = true;
  SseStream stream(c.port, "/v1/chat/completions", streamed_request);
  std::string text, role;
  while (std::optional<std::string> data = stream.Next()) {
    if (*data == "[DONE]") break;
    const json delta = json::parse(*data)["choices"][0]["delta"];
    if (delta.contains("role")) role = delta["role"];
    if (delta.contains("content")) text += delta["content"].get<std::string>();
  }
  EXPECT_EQ(role, "assistant");
  EXPECT_EQ(text, answer["choices"][0]["message"]["content"]);

  const HttpResult bad = HttpPost(c.port, "/v1/chat/completions", {{"messages", json::array()}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.Json()["error"]["param"], "messages");
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// n = 3 computes the prompt once: the later choices find its full blocks cached.
TEST(HttpApiTest, ChoicesShareThePromptsKvBlocks) {
  HttpCluster c(1);
  std::vector<int> prompt;
  for (int i = 0; i < 64; ++i) prompt.push_back(500 + i);
  const json r = HttpPost(c.port, "/v1/completions",
                          {{"prompt", prompt}, {"n", 3}, {"max_tokens", 4}, {"seed", 1}, {"ignore_eos", true}})
                     .Json();
  ASSERT_EQ(r["choices"].size(), 3u) << r.dump();
  EXPECT_EQ(r["usage"]["prompt_tokens"], 64);
  EXPECT_EQ(r["usage"]["completion_tokens"], 12);
  EXPECT_EQ(r["usage"]["prompt_tokens_details"]["cached_tokens"], 48);  // 3 of its 4 blocks: the last is recomputed
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// `tessera embed`'s embedding (the CLI computes the whole input in one forward pass).
std::vector<float> CliEmbedding(const std::string& model, const std::vector<int>& ids, const std::string& pooling) {
  const std::string list = absl::StrJoin(ids, ",");
  const std::string out = testing::MakeTempDir("embed") + "/out.json";
  const std::string cmd = std::string(TESSERA_CLI_PATH) + " embed --quiet --model " + model + " --ids " + list +
                          " --pooling " + pooling + " > " + out;
  if (std::system(cmd.c_str()) != 0) return {};
  std::ifstream in(out);
  return json::parse(in)["embedding"].get<std::vector<float>>();
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float most = 0;
  for (size_t i = 0; i < a.size(); ++i) most = std::max(most, std::abs(a[i] - b[i]));
  return most;
}

// Mean pooling on a TP=2 group, over prefill chunks of 8 tokens batched with each
// other: each input's embedding is the CLI's for it alone, in input order.
TEST(HttpApiTest, EmbeddingsEqualTheClisOnATp2GroupInChunks) {
  const std::string model = testing::GoldenModelDir("llama");
  HttpCluster c(2, {"--tp", "2", "--embedding-pooling", "mean", "--max-step-tokens", "8"}, {}, model);
  const std::vector<std::vector<int>> inputs = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19},
                                                {40, 41},
                                                {7, 300, 12, 99, 5, 6, 8, 250, 3, 3, 3}};
  const HttpResult r = HttpPost(c.port, "/v1/embeddings", {{"input", inputs}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json answer = r.Json();
  EXPECT_EQ(answer["object"], "list");
  EXPECT_EQ(answer["usage"]["prompt_tokens"], 19 + 2 + 11);
  ASSERT_EQ(answer["data"].size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(answer["data"][i]["index"], i);
    const std::vector<float> cli = CliEmbedding(model, inputs[i], "mean");
    ASSERT_FALSE(cli.empty());
    EXPECT_LE(MaxAbsDiff(answer["data"][i]["embedding"].get<std::vector<float>>(), cli), 1e-5f) << i;
  }
  // base64: the same floats' little-endian bytes.
  const json encoded =
      HttpPost(c.port, "/v1/embeddings", {{"input", inputs[1]}, {"encoding_format", "base64"}}).Json();
  std::string bytes;
  ASSERT_TRUE(absl::Base64Unescape(encoded["data"][0]["embedding"].get<std::string>(), &bytes));
  std::vector<float> decoded(bytes.size() / sizeof(float));
  std::memcpy(decoded.data(), bytes.data(), bytes.size());
  EXPECT_EQ(decoded, answer["data"][1]["embedding"].get<std::vector<float>>());
}

// Last-token pooling on the bundled model, over gRPC and HTTP alike; bad inputs get
// their status, nothing else is lost, and every block comes back.
TEST(HttpApiTest, EmbedOverGrpcAndHttpAndBadInputs) {
  HttpCluster c(1, {"--batch-invariant", "1"});
  const std::vector<std::string> texts = {"In the beginning", "And God said, Let there be light"};
  v1::EmbedRequest request;
  for (const std::string& t : texts) request.add_inputs()->set_text(t);
  v1::EmbedResponse grpc_answer;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(c.cluster->Stub()->Embed(&ctx, request, &grpc_answer).ok());
  }
  ASSERT_EQ(grpc_answer.embeddings_size(), 2);
  const json http = HttpPost(c.port, "/v1/embeddings", {{"input", texts}}).Json();
  for (int i = 0; i < 2; ++i) {
    const auto& values = grpc_answer.embeddings(i).values();
    EXPECT_EQ(std::vector<float>(values.begin(), values.end()), http["data"][i]["embedding"].get<std::vector<float>>());
    double norm = 0;
    for (float v : values) norm += static_cast<double>(v) * v;
    EXPECT_NEAR(norm, 1.0, 1e-5);
    EXPECT_EQ(values.size(), 256);
  }
  EXPECT_EQ(grpc_answer.prompt_tokens(), http["usage"]["prompt_tokens"]);

  for (const auto& [body, param] : std::vector<std::pair<json, std::string>>{
           {{{"input", json::array()}}, "input"},
           {{{"input", {{1, 2}, {3, 999999}}}}, "input"},
           {{{"input", "x"}, {"dimensions", 8}}, "dimensions"},
           {{{"input", "x"}, {"encoding_format", "int8"}}, "encoding_format"},
           {{{"model", "other"}, {"input", "x"}}, ""}}) {
    const HttpResult bad = HttpPost(c.port, "/v1/embeddings", body);
    EXPECT_EQ(bad.status, param.empty() ? 404 : 400) << body.dump();
    if (!param.empty()) {
      EXPECT_EQ(bad.Json()["error"]["param"], param) << bad.body;
    }
  }
  grpc::ClientContext ctx;
  v1::EmbedRequest empty;
  v1::EmbedResponse none;
  EXPECT_EQ(c.cluster->Stub()->Embed(&ctx, empty, &none).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // Still serving, and every block is free or cached again.
  EXPECT_EQ(HttpPost(c.port, "/v1/embeddings", {{"input", texts[0]}}).Json()["data"][0]["embedding"],
            http["data"][0]["embedding"]);
  const v1::ServerInfo info = c.cluster->Info();
  EXPECT_EQ(FreeBlocks(info), info.groups(0).total_kv_blocks());
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// A model that always answers with one tool call, so the server's tool calling is
// tested on what a model computes: the bundled tokenizer plus three added tokens,
// "<tool_call>", the call's JSON and "</tool_call>", and a one-layer llama whose
// attention and MLP weights are zero, so that each next token depends only on the
// current one: any token -> <tool_call> -> the JSON -> </tool_call> -> <|eos|>. Its
// chat template is Qwen's (tests/data/chat_templates/qwen.jinja), which renders tools.
std::string MakeToolCallingModel() {
  const std::string dir = testing::MakeTempDir("tool_model");
  constexpr int kOpen = 2048, kCall = 2049, kClose = 2050, kEos = 2047, kVocab = 2051, kHidden = 8;
  json tokenizer = json::parse(std::ifstream(Bundled() + "/tokenizer.json"));
  for (const auto& [id, text] : std::vector<std::pair<int, std::string>>{
           {kOpen, "<tool_call>"},
           {kCall, R"({"name": "get_weather", "arguments": {"city": "Paris"}})"},
           {kClose, "</tool_call>"}}) {
    tokenizer["added_tokens"].push_back({{"id", id}, {"content", text}, {"single_word", false}, {"lstrip", false},
                                         {"rstrip", false}, {"normalized", false}, {"special", false}});
  }
  std::ofstream(dir + "/tokenizer.json") << tokenizer.dump();
  std::ifstream qwen(testing::TestDataDir() + "/chat_templates/qwen.jinja");
  const std::string chat_template((std::istreambuf_iterator<char>(qwen)), std::istreambuf_iterator<char>());
  std::ofstream(dir + "/tokenizer_config.json")
      << json{{"chat_template", chat_template}, {"bos_token", "<|bos|>"}, {"eos_token", "<|eos|>"}}.dump();
  std::ofstream(dir + "/config.json") << json{{"architectures", {"LlamaForCausalLM"}},
                                              {"model_type", "llama"},
                                              {"hidden_size", kHidden},
                                              {"intermediate_size", kHidden},
                                              {"num_hidden_layers", 1},
                                              {"num_attention_heads", 2},
                                              {"num_key_value_heads", 2},
                                              {"max_position_embeddings", 512},
                                              {"rms_norm_eps", 1e-5},
                                              {"vocab_size", kVocab},
                                              {"bos_token_id", 2046},
                                              {"eos_token_id", kEos},
                                              {"tie_word_embeddings", false},
                                              {"torch_dtype", "float32"}}
                                                 .dump();
  // Token t's state is the unit vector e[state(t)]; the LM head's row of the token to
  // come next reads that component (scaled: a certain choice at any temperature).
  auto state = [](int token) { return token == kOpen ? 1 : token == kCall ? 2 : token == kClose ? 3 : 0; };
  std::vector<float> embed(kVocab * kHidden, 0.0f), head(kVocab * kHidden, 0.0f);
  for (int t = 0; t < kVocab; ++t) embed[t * kHidden + state(t)] = 1.0f;
  for (const auto& [next, from] : std::vector<std::pair<int, int>>{{kOpen, 0}, {kCall, 1}, {kClose, 2}, {kEos, 3}}) {
    head[next * kHidden + from] = 100.0f;
  }
  auto tensor = [](const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values) {
    std::vector<uint8_t> bytes(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return testing::TensorBytes{name, "F32", std::move(shape), std::move(bytes)};
  };
  const std::vector<float> ones(kHidden, 1.0f), zeros(kHidden * kHidden, 0.0f);
  std::vector<testing::TensorBytes> tensors = {tensor("model.embed_tokens.weight", {kVocab, kHidden}, embed),
                                               tensor("lm_head.weight", {kVocab, kHidden}, head),
                                               tensor("model.norm.weight", {kHidden}, ones),
                                               tensor("model.layers.0.input_layernorm.weight", {kHidden}, ones),
                                               tensor("model.layers.0.post_attention_layernorm.weight", {kHidden}, ones)};
  for (const char* w : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                        "mlp.up_proj", "mlp.down_proj"}) {
    tensors.push_back(tensor(std::string("model.layers.0.") + w + ".weight", {kHidden, kHidden}, zeros));
  }
  testing::WriteSafetensors(dir + "/model.safetensors", tensors);
  return dir;
}

const json kWeatherTool = {
    {"type", "function"},
    {"function",
     {{"name", "get_weather"},
      {"description", "The weather in a city"},
      {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}, {"required", {"city"}}}}}}};

// A chat request with tools gets the model's call as OpenAI's tool_calls, whole and
// streamed; tool_choice "none" gets the text as written; the call and its result go
// back into the conversation.
TEST(HttpApiTest, ToolCallsComeBackAsOpenAiToolCalls) {
  HttpCluster c(1, {"--tool-call-parser", "hermes"}, {}, MakeToolCallingModel());
  const json messages = json::array({{{"role", "user"}, {"content", "What is the weather in Paris?"}}});
  const json request = {{"messages", messages}, {"tools", {kWeatherTool}}, {"max_tokens", 8}};
  const HttpResult r = HttpPost(c.port, "/v1/chat/completions", request);
  ASSERT_EQ(r.status, 200) << r.body;
  const json choice = r.Json()["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_TRUE(choice["message"]["content"].is_null()) << choice.dump();
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << choice.dump();
  const json call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));

  json streamed_request = request;
  streamed_request["stream"] = true;
  SseStream stream(c.port, "/v1/chat/completions", streamed_request);
  std::string content, finish;
  json calls = json::array();
  while (std::optional<std::string> data = stream.Next()) {
    if (*data == "[DONE]") break;
    const json chunk = json::parse(*data)["choices"][0];
    if (chunk["delta"].contains("content")) content += chunk["delta"]["content"].get<std::string>();
    if (chunk["delta"].contains("tool_calls")) {
      for (const json& d : chunk["delta"]["tool_calls"]) calls.push_back(d);
    }
    if (!chunk["finish_reason"].is_null()) finish = chunk["finish_reason"];
  }
  EXPECT_EQ(content, "");  // the markup never shows
  EXPECT_EQ(finish, "tool_calls");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[0]["function"], call["function"]);

  json none = request;
  none["tool_choice"] = "none";
  const json plain = HttpPost(c.port, "/v1/chat/completions", none).Json()["choices"][0];
  EXPECT_EQ(plain["message"]["content"],
            R"(<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>)");
  EXPECT_FALSE(plain["message"].contains("tool_calls"));
  EXPECT_EQ(plain["finish_reason"], "stop");

  // The call and the tool's answer go back into the conversation.
  json turn = request;
  turn["messages"].push_back({{"role", "assistant"}, {"content", nullptr}, {"tool_calls", {call}}});
  turn["messages"].push_back({{"role", "tool"}, {"tool_call_id", call["id"]}, {"content", "21 C, sunny"}});
  const HttpResult second = HttpPost(c.port, "/v1/chat/completions", turn);
  EXPECT_EQ(second.status, 200) << second.body;
  EXPECT_GT(second.Json()["usage"]["prompt_tokens"].get<int>(), r.Json()["usage"]["prompt_tokens"].get<int>());

  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{
           {"tool_choice", "required"},
           {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}},
           {"tools", json::array({{{"type", "function"}}})},
           {"tools", "get_weather"}}) {
    json bad = request;
    bad[field] = value;
    const HttpResult refused = HttpPost(c.port, "/v1/chat/completions", bad);
    EXPECT_EQ(refused.status, 400) << field << " " << value.dump();
    EXPECT_EQ(refused.Json()["error"]["param"], field) << refused.body;
  }
}

// Without --tool-call-parser, a request that would need its calls read is refused.
TEST(HttpApiTest, ToolsNeedAToolCallParser) {
  HttpCluster c(1, {}, {}, MakeToolCallingModel());
  const json request = {{"messages", json::array({{{"role", "user"}, {"content", "Weather?"}}})},
                        {"tools", {kWeatherTool}}};
  const HttpResult refused = HttpPost(c.port, "/v1/chat/completions", request);
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(refused.Json()["error"]["param"], "tools");
  json none = request;
  none["tool_choice"] = "none";
  EXPECT_EQ(HttpPost(c.port, "/v1/chat/completions", none).status, 200);
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// The bundled model's chat template applied to `messages` by `tessera chat-template`.
std::string RenderChat(const json& messages) {
  const std::string dir = testing::MakeTempDir("render");
  std::ofstream(dir + "/messages.json") << messages.dump();
  const std::string cmd = std::string(TESSERA_CLI_PATH) + " chat-template --model " + Bundled() + " --messages " +
                          dir + "/messages.json > " + dir + "/out";
  if (std::system(cmd.c_str()) != 0) return "";
  std::ifstream in(dir + "/out");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

int PromptTokens(int port, const json& messages) {
  return HttpPost(port, "/tokenize", {{"prompt", RenderChat(messages)}, {"add_special_tokens", false}})
      .Json()["count"]
      .get<int>();
}

// A conversation too long for the bundled model's 512 tokens: a system prompt, twelve
// exchanges, a last question.
json LongConversation() {
  const std::string verse =
      "And God said, Let there be light: and there was light, and the evening and the morning were the first day.";
  json messages = json::array({{{"role", "system"}, {"content", "The book of Genesis."}}});
  for (int i = 0; i < 12; ++i) {
    messages.push_back({{"role", "user"}, {"content", "Turn " + std::to_string(i) + ". " + verse}});
    messages.push_back({{"role", "assistant"}, {"content", verse}});
  }
  messages.push_back({{"role", "user"}, {"content", "And the LORD said"}});
  return messages;
}

// The conversation without its first `turns` exchanges, `summary` added to the system
// prompt as the server adds it.
json Shortened(const json& messages, int turns, const std::string& summary = "") {
  json kept = json::array({messages[0]});
  if (!summary.empty()) {
    kept[0]["content"] = kept[0]["content"].get<std::string>() + "\n\nSummary of the earlier conversation: " + summary;
  }
  for (size_t i = 1 + 2 * turns; i < messages.size(); ++i) kept.push_back(messages[i]);
  return kept;
}

// truncate drops the fewest oldest turns that make room, summarize puts the model's
// summary of them in the system prompt; the answer says which; error refuses.
TEST(HttpApiTest, ConversationsThatOutgrowTheContextAreTruncatedOrSummarized) {
  HttpCluster c(1, {"--chat-context-overflow", "truncate"});
  const json messages = LongConversation();
  constexpr int kMaxTokens = 32, kContext = 512;
  ASSERT_GT(PromptTokens(c.port, messages), kContext);

  const HttpResult truncated = HttpPost(c.port, "/v1/chat/completions", {{"messages", messages}, {"max_tokens", kMaxTokens}});
  ASSERT_EQ(truncated.status, 200) << truncated.body;
  const json note = truncated.Json()["context_overflow"];
  EXPECT_EQ(note["policy"], "truncate");
  const int removed = note["turns_removed"].get<int>();
  ASSERT_GT(removed, 0);
  const int prompt_tokens = truncated.Json()["usage"]["prompt_tokens"].get<int>();
  EXPECT_EQ(prompt_tokens, PromptTokens(c.port, Shortened(messages, removed)));
  EXPECT_LE(prompt_tokens + kMaxTokens, kContext);
  EXPECT_GT(PromptTokens(c.port, Shortened(messages, removed - 1)) + kMaxTokens, kContext);  // the fewest

  const HttpResult summarized = HttpPost(
      c.port, "/v1/chat/completions",
      {{"messages", messages}, {"max_tokens", kMaxTokens}, {"context_overflow", "summarize"}, {"temperature", 0}});
  ASSERT_EQ(summarized.status, 200) << summarized.body;
  const json summary = summarized.Json()["context_overflow"];
  EXPECT_EQ(summary["policy"], "summarize");
  EXPECT_FALSE(summary["summary"].get<std::string>().empty());
  const json fitted = Shortened(messages, summary["turns_removed"].get<int>(), summary["summary"].get<std::string>());
  EXPECT_EQ(summarized.Json()["usage"]["prompt_tokens"].get<int>(), PromptTokens(c.port, fitted));

  json streamed = {{"messages", messages}, {"max_tokens", kMaxTokens}, {"stream", true}};
  SseStream stream(c.port, "/v1/chat/completions", streamed);
  std::optional<std::string> first = stream.Next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(json::parse(*first)["context_overflow"], note);

  const HttpResult refused =
      HttpPost(c.port, "/v1/chat/completions", {{"messages", messages}, {"context_overflow", "error"}});
  EXPECT_EQ(refused.status, 400);
  const HttpResult bad =
      HttpPost(c.port, "/v1/chat/completions", {{"messages", messages}, {"context_overflow", "forget"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.Json()["error"]["param"], "context_overflow");
  // A conversation that fits is left alone and says nothing.
  const json short_chat = HttpPost(c.port, "/v1/chat/completions", {{"messages", Shortened(messages, 11)}}).Json();
  EXPECT_FALSE(short_chat.contains("context_overflow"));

  // Under a bounded KV policy nothing overflows: the whole conversation goes in, and
  // a completion runs past the context (docs/serving.md, "Bounded long context").
  const HttpResult streaming = HttpPost(
      c.port, "/v1/chat/completions",
      {{"messages", messages}, {"max_tokens", kMaxTokens}, {"kv_policy", "sink-window"}, {"window", 256}});
  ASSERT_EQ(streaming.status, 200) << streaming.body;
  EXPECT_FALSE(streaming.Json().contains("context_overflow"));
  EXPECT_EQ(streaming.Json()["usage"]["prompt_tokens"].get<int>(), PromptTokens(c.port, messages));
  const HttpResult past = HttpPost(c.port, "/v1/completions",
                                   {{"prompt", "Once"}, {"max_tokens", 2 * kContext}, {"ignore_eos", true},
                                    {"kv_policy", "window"}, {"window", 64}});
  ASSERT_EQ(past.status, 200) << past.body;
  EXPECT_EQ(past.Json()["usage"]["completion_tokens"], 2 * kContext);
  EXPECT_EQ(past.Json()["choices"][0]["finish_reason"], "length");
  for (const json& policy : {json{{"kv_policy", "sink-window"}}, json{{"kv_policy", "all"}, {"window", 8}},
                             json{{"window", 0}}, json{{"sink_tokens", "four"}}}) {
    json body = {{"prompt", "Once"}};
    body.update(policy);
    const HttpResult refused_policy = HttpPost(c.port, "/v1/completions", body);
    EXPECT_EQ(refused_policy.status, 400) << policy.dump();
    const std::string param = refused_policy.Json()["error"]["param"];
    EXPECT_TRUE(param == "kv_policy" || param == "window" || param == "sink_tokens") << refused_policy.body;
  }
}

}  // namespace
}  // namespace tessera
