// tessera-bench: load generation against a running server, in the spirit of
// `vllm bench serve`, and a synthetic checkpoint maker.
//
//   tessera-bench serve (--address HOST:PORT [--tls-ca FILE] | --http http://HOST:PORT
//                       [--model NAME] [--vocab-size N]) [--num-prompts 64] [--concurrency 8 |
//                       --request-rate R] [--input-len 128] [--output-len 64]
//                       [--range-ratio 0.0] [--prefix-len 0] [--seed 0]
//                       [--wait-ready SECONDS]
//   tessera-bench make-model --out DIR      (TinyLlama-1.1B shape, random bf16)
//
// `serve` sends token-id prompts of random ids (lengths uniform in
// [len*(1-ratio), len*(1+ratio)]), greedy with ignore_eos so every request produces
// exactly its output length, and reports TTFT, TPOT, ITL and end-to-end latency
// (mean, median, p99), output tokens/s and requests/s. With --prefix-len N every
// prompt starts with the same N tokens (a shared system prompt): the first request
// computes them, the others find them in the prefix cache, and the first request's
// TTFT is reported next to the others'.
//
// --http drives any OpenAI-compatible server (Tessera's HTTP API, llama-server,
// vLLM) with the same workload through POST /v1/completions, streamed (one SSE chunk
// is one inter-token gap; the output tokens are the final usage chunk's), so their
// figures stand side by side. Its prompts are random ids below --vocab-size (the
// server's vocabulary is not asked for over HTTP).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "bench/synthetic_model.h"
#include "common/http_client.h"
#include "cli/args.h"
#include "cli/wait_ready.h"
#include "tessera/v1/tessera.grpc.pb.h"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  bool ok = false;
  std::string error;
  double ttft_ms = 0, e2e_ms = 0;
  std::vector<double> itl_ms;
  int output_tokens = 0;
};

Sample RunOne(const cli::ServerConnection& server, const v1::GenerateRequest& request) {
  Sample s;
  grpc::ClientContext ctx;
  server.Prepare(&ctx, std::chrono::minutes(30));
  const auto start = Clock::now();
  auto last = start;
  auto reader = server.stub().Generate(&ctx, request);
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    if (msg.token_ids_size() == 0) continue;
    const auto now = Clock::now();
    const double gap = std::chrono::duration<double, std::milli>(now - last).count();
    if (s.output_tokens == 0) {
      s.ttft_ms = gap;
    } else {
      s.itl_ms.push_back(gap);
    }
    s.output_tokens += msg.token_ids_size();
    last = now;
  }
  const grpc::Status status = reader->Finish();
  s.ok = status.ok();
  s.error = status.error_message();
  s.e2e_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return s;
}

// One request through an OpenAI-compatible /v1/completions, streamed.
Sample RunOneHttp(const std::string& host, int port, const std::string& model, const v1::GenerateRequest& request) {
  Sample s;
  const nlohmann::json body = {{"model", model},
                               {"prompt", std::vector<int32_t>(request.token_ids().ids().begin(),
                                                               request.token_ids().ids().end())},
                               {"max_tokens", request.sampling().max_tokens()},
                               {"temperature", 0},
                               {"ignore_eos", true},
                               {"stream", true},
                               {"stream_options", {{"include_usage", true}}}};
  const auto start = Clock::now();
  auto last = start;
  SseStream stream(host, port, "/v1/completions", body);
  if (stream.status() != 200) {
    s.error = stream.status() == 0 ? "connection failed: " + stream.error()
                                   : "HTTP " + std::to_string(stream.status()) + ": " + stream.Next().value_or("");
    return s;
  }
  int chunks = 0;
  while (std::optional<std::string> data = stream.Next()) {
    if (*data == "[DONE]") {
      s.ok = true;
      break;
    }
    const nlohmann::json chunk = nlohmann::json::parse(*data, nullptr, false);
    if (chunk.is_discarded()) continue;
    if (chunk.contains("usage") && chunk["usage"].is_object()) {
      s.output_tokens = chunk["usage"].value("completion_tokens", 0);
    }
    if (!chunk.contains("choices") || chunk["choices"].empty()) continue;
    const auto now = Clock::now();
    const double gap = std::chrono::duration<double, std::milli>(now - last).count();
    if (chunks++ == 0) {
      s.ttft_ms = gap;
    } else {
      s.itl_ms.push_back(gap);
    }
    last = now;
  }
  if (!s.ok) s.error = "the stream ended without [DONE]";
  if (s.output_tokens == 0) s.output_tokens = chunks;  // a server without usage in streams
  s.e2e_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return s;
}

// "http://HOST:PORT" (a trailing "/v1" or "/" allowed) as host and port.
bool ParseHttpUrl(std::string url, std::string* host, int* port) {
  if (url.rfind("http://", 0) != 0) return false;
  url = url.substr(7);
  if (const size_t slash = url.find('/'); slash != std::string::npos) url.resize(slash);
  const size_t colon = url.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(url.substr(colon + 1), port)) return false;
  *host = url.substr(0, colon);
  if (*host == "localhost") *host = "127.0.0.1";
  return !host->empty();
}

struct Stats {
  double mean = 0, median = 0, p99 = 0;
};

Stats Summarize(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / v.size();
  s.median = v[v.size() / 2];
  s.p99 = v[std::min(v.size() - 1, static_cast<size_t>(v.size() * 0.99))];
  return s;
}

int Fail(const std::string& m) {
  std::fprintf(stderr, "tessera-bench: %s\n", m.c_str());
  return kUsageExit;
}

int Serve(const cli::Args& args) {
  std::string error;
  if (!cli::CheckFlags(args, {"address", "tls-ca", "http", "model", "vocab-size", "num-prompts", "concurrency", "request-rate",
                              "input-len", "output-len", "range-ratio", "prefix-len", "seed", "wait-ready"},
                       &error)) {
    return Fail(error);
  }
  int num_prompts, concurrency, input_len, output_len, prefix_len, seed, wait_ready, vocab_size;
  if (!cli::IntFlag(args, "num-prompts", 64, 1, &num_prompts, &error) ||
      !cli::IntFlag(args, "concurrency", 8, 1, &concurrency, &error) ||
      !cli::IntFlag(args, "input-len", 128, 1, &input_len, &error) ||
      !cli::IntFlag(args, "output-len", 64, 1, &output_len, &error) ||
      !cli::IntFlag(args, "prefix-len", 0, 0, &prefix_len, &error) ||
      !cli::IntFlag(args, "wait-ready", 0, 0, &wait_ready, &error) ||
      !cli::IntFlag(args, "seed", 0, 0, &seed, &error) || !cli::IntFlag(args, "vocab-size", 1000, 1, &vocab_size, &error)) {
    return Fail(error);
  }
  double rate = 0, ratio = 0;
  if (args.Has("request-rate") && !absl::SimpleAtod(args.flags.at("request-rate"), &rate)) return Fail("bad --request-rate");
  if (args.Has("range-ratio") && !absl::SimpleAtod(args.flags.at("range-ratio"), &ratio)) return Fail("bad --range-ratio");
  const bool http = args.Has("http");
  if (http && args.Has("address")) return Fail("give --address (gRPC) or --http (an OpenAI-compatible URL), not both");
  std::string host;
  int port = 0;
  if (http && !ParseHttpUrl(args.flags.at("http"), &host, &port)) return Fail("--http must be http://HOST:PORT");
  absl::StatusOr<cli::ServerConnection> server = cli::ServerConnection::FromArgs(args);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  const std::string& address = server->address();

  // The model: asked over gRPC; over HTTP its name is --model or /v1/models' first.
  v1::ModelInfo info;
  if (http) {
    for (int waited = 0; waited <= wait_ready && HttpFetch(host, port, "GET", "/v1/models").status != 200; ++waited) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    const HttpResult models = HttpFetch(host, port, "GET", "/v1/models");
    const nlohmann::json list = models.Json();
    if (models.status != 200 || !list.contains("data") || list["data"].empty()) {
      return Fail("cannot list the models of " + args.flags.at("http") + " (HTTP " + std::to_string(models.status) + ")");
    }
    info.set_name(args.Has("model") ? args.flags.at("model") : list["data"][0].value("id", ""));
    info.set_vocab_size(vocab_size);
  } else {
    // A cluster that is still starting (a Kubernetes Job next to a fresh release).
    cli::WaitForReadyGroup(*server, std::chrono::seconds(wait_ready));
    grpc::ClientContext info_ctx;
    server->Prepare(&info_ctx);
    if (grpc::Status s = server->stub().GetModelInfo(&info_ctx, v1::GetModelInfoRequest(), &info); !s.ok()) {
      return Fail("cannot reach " + address + ": " + s.error_message());
    }
  }
  auto run_one = [&](const v1::GenerateRequest& r) {
    return http ? RunOneHttp(host, port, info.name(), r) : RunOne(*server, r);
  };
  std::mt19937 rng(seed);
  auto length = [&](int base) {
    const int lo = std::max(1, static_cast<int>(base * (1 - ratio))), hi = std::max(lo, static_cast<int>(base * (1 + ratio)));
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  std::vector<int32_t> prefix(prefix_len);
  for (auto& t : prefix) t = static_cast<int32_t>(rng() % info.vocab_size());
  std::vector<v1::GenerateRequest> requests(num_prompts);
  for (auto& r : requests) {
    r.mutable_token_ids()->mutable_ids()->Add(prefix.begin(), prefix.end());
    const int n = length(input_len);
    for (int i = 0; i < n; ++i) r.mutable_token_ids()->add_ids(static_cast<int32_t>(rng() % info.vocab_size()));
    r.mutable_sampling()->set_temperature(0);
    r.mutable_sampling()->set_ignore_eos(true);
    r.mutable_sampling()->set_max_tokens(length(output_len));
  }

  std::vector<Sample> samples(num_prompts);
  const auto start = Clock::now();
  if (rate > 0) {
    // Open loop: Poisson arrivals at `rate` requests/s, each request on its own thread.
    std::exponential_distribution<double> gap(rate);
    std::vector<std::thread> threads;
    auto next = start;
    for (int i = 0; i < num_prompts; ++i) {
      std::this_thread::sleep_until(next);
      threads.emplace_back([&, i] { samples[i] = run_one(requests[i]); });
      next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
    }
    for (auto& t : threads) t.join();
  } else {
    // Closed loop: `concurrency` clients, each sending its next request when one ends.
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (int c = 0; c < concurrency; ++c) {
      threads.emplace_back([&] {
        for (int i = next++; i < num_prompts; i = next++) samples[i] = run_one(requests[i]);
      });
    }
    for (auto& t : threads) t.join();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<double> ttft, tpot, itl, e2e;
  int failed = 0;
  long output_tokens = 0;
  for (const Sample& s : samples) {
    if (!s.ok) {
      ++failed;
      continue;
    }
    ttft.push_back(s.ttft_ms);
    e2e.push_back(s.e2e_ms);
    if (s.output_tokens > 1) tpot.push_back((s.e2e_ms - s.ttft_ms) / (s.output_tokens - 1));
    itl.insert(itl.end(), s.itl_ms.begin(), s.itl_ms.end());
    output_tokens += s.output_tokens;
  }
  std::printf("%s, model %s, %d prompts, %s, input %d, output %d, shared prefix %d\n",
              http ? ("HTTP " + args.flags.at("http")).c_str() : ("gRPC " + address).c_str(), info.name().c_str(),
              num_prompts,
              rate > 0 ? ("rate " + std::to_string(rate) + " req/s").c_str()
                       : ("concurrency " + std::to_string(concurrency)).c_str(),
              input_len, output_len, prefix_len);
  std::printf("successful requests    %d (failed %d)\n", num_prompts - failed, failed);
  for (const Sample& s : samples) {
    if (!s.ok) {
      std::printf("first failure          %s\n", s.error.c_str());
      break;
    }
  }
  std::printf("duration               %.2f s\n", seconds);
  std::printf("request throughput     %.2f req/s\n", (num_prompts - failed) / seconds);
  std::printf("output token throughput %.1f tok/s\n", output_tokens / seconds);
  auto row = [](const char* name, const Stats& s) {
    std::printf("%-8s ms  mean %8.1f  median %8.1f  p99 %8.1f\n", name, s.mean, s.median, s.p99);
  };
  row("TTFT", Summarize(ttft));
  row("TPOT", Summarize(tpot));
  row("ITL", Summarize(itl));
  row("E2E", Summarize(e2e));
  if (prefix_len > 0 && samples.size() > 1 && samples[0].ok) {
    std::vector<double> rest;
    for (size_t i = 1; i < samples.size(); ++i) {
      if (samples[i].ok) rest.push_back(samples[i].ttft_ms);
    }
    const double hit = Summarize(rest).median;
    std::printf("TTFT first request (computes the prefix) %.1f ms; the others (prefix cached) median %.1f ms: "
                "%.1fx lower\n",
                samples[0].ttft_ms, hit, hit > 0 ? samples[0].ttft_ms / hit : 0.0);
  }
  return failed == 0 ? 0 : 1;
}

int MakeModel(const cli::Args& args) {
  std::string error;
  if (!cli::CheckFlags(args, {"out"}, &error)) return Fail(error);
  if (!args.Has("out")) return Fail("make-model needs --out DIR");
  const models::ModelSpec spec = TinyLlamaSpec();
  std::printf("writing a TinyLlama-1.1B-shaped checkpoint with random bf16 weights to %s ...\n",
              args.flags.at("out").c_str());
  SyntheticLlama source(spec);
  absl::Status s = source.WriteCheckpoint(spec, args.flags.at("out"));
  if (!s.ok()) return Fail(std::string(s.message()));
  return 0;
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) {
  tessera::cli::Args args;
  std::string error;
  if (!tessera::cli::ParseArgs(argc, argv, {"help"}, &args, &error) || args.Has("help")) {
    std::fprintf(stderr, "usage: tessera-bench serve (--address HOST:PORT [--tls-ca FILE] | --http http://HOST:PORT [--model NAME] "
                         "[--vocab-size N]) [--num-prompts N] [--concurrency C | "
                         "--request-rate R] [--input-len L] [--output-len O] [--range-ratio X] [--prefix-len P] [--seed S] [--wait-ready SECONDS]\n"
                         "       tessera-bench make-model --out DIR\n");
    return args.Has("help") ? 0 : 2;
  }
  if (args.command == "serve") return tessera::bench::Serve(args);
  if (args.command == "make-model") return tessera::bench::MakeModel(args);
  std::fprintf(stderr, "tessera-bench: unknown command '%s'\n", args.command.c_str());
  return 2;
}
