#include "coordinator/config.h"

#include <filesystem>
#include <iostream>

#include "common/flags.h"

namespace tessera::coordinator {
namespace {

// Values the flags give in other units than the options hold; the defaults are the
// options' own.
struct Scratch {
  explicit Scratch(const CoordinatorConfig& c)
      : kv_memory_mb(static_cast<int>(c.cluster.group.kv_memory_bytes >> 20)),
        heartbeat_ms(static_cast<int>(c.cluster.heartbeat_interval.count())),
        heartbeat_timeout_ms(static_cast<int>(c.cluster.heartbeat_timeout.count())),
        http_max_body_mb(static_cast<int>(c.http.max_body_bytes >> 20)),
        embedding_pooling(models::PoolingName(c.frontend.embedding_pooling)) {}
  int kv_memory_mb;
  int heartbeat_ms;
  int heartbeat_timeout_ms;
  int http_max_body_mb;
  std::string embedding_pooling;
  std::string tool_call_parser = "none";
  std::string chat_context_overflow = "error";
  std::string kv_policy = "full";
  int sink_tokens = models::kDefaultSinkTokens;
  int window = 0;
};

constexpr char kProgram[] = "tessera-coordinator";
constexpr char kDescription[] = "tessera-coordinator: takes client requests over gRPC and drives the workers.";

// The one table: flag, field, unit, help, range.
void AddFlags(FlagTable& t, CoordinatorConfig* c, Scratch* s) {
  GroupOptions& g = c->cluster.group;
  t.String("model", &c->model_dir, "DIR", "HuggingFace model folder (the workers load the same path)");
  t.RequireLast();
  t.String("model-name", &c->frontend.model_name, "NAME", "name clients use (default: the folder's name)");
  t.String("listen", &c->listen, "HOST:PORT",
           "the client API, and the workers' unless --internal-listen is given (port 0 picks one)");
  t.String("port-file", &c->port_file, "FILE", "write the port actually bound to FILE");
  t.String("internal-listen", &c->internal_listen, "HOST:PORT",
           "the workers' API (registration, heartbeats, rendezvous) on its own port, kept off the client "
           "port (docs/serving.md); empty: on --listen");
  t.String("internal-port-file", &c->internal_port_file, "FILE", "write the internal port actually bound to FILE");
  t.String("http-listen", &c->http.listen, "HOST:PORT",
           "the OpenAI-compatible HTTP API, with /health and /ready (docs/http-api.md); empty: off");
  t.String("http-port-file", &c->http_port_file, "FILE", "write the HTTP port actually bound to FILE");
  t.Int("http-max-body-mb", &s->http_max_body_mb, "N", "larger HTTP request bodies get 413", 1, 1024);
  t.String("api-key-file", &c->api_key_file, "FILE",
           "client API keys, one \"KEY [TENANT [WEIGHT]]\" per line (WEIGHT: the tenant's fair share of a busy "
           "group, default 1): HTTP Authorization: Bearer KEY, gRPC authorization metadata; a tenant's requests get "
           "their own prefix cache (docs/http-api.md)");
  t.String("admin-key-file", &c->admin_key_file, "FILE",
           "admin API keys (the Admin service: Drain), one \"KEY [NAME]\" per line; with --api-key-file and "
           "without this, the admin API is closed (docs/security.md)");
  t.String("tls-cert", &c->client_tls.cert, "FILE",
           "TLS on the client API and the HTTP API: this certificate chain (PEM; docs/security.md)");
  t.String("tls-key", &c->client_tls.key, "FILE", "the private key of --tls-cert (PEM)");
  tls::AddInternalFlags(t, &c->internal_tls);
  t.Choice("log-format", &c->log_format, {"text", "json"}, "log lines as text or as JSON objects (for log collectors)");
  t.Int("log-stats-interval-s", &c->log_stats_interval_s, "N",
        "log throughput, queues, KV usage and prefix hits this often while busy (0: never)", 0);
  t.Int("block-size", &g.block_size, "N", "KV cache tokens per block", 1, 1 << 16);
  t.Int("kv-memory-mb", &s->kv_memory_mb, "N", "KV cache per worker, MiB", 1);
  t.Choice("kv-cache-dtype", &g.kv_cache_dtype, {"auto", "f32", "bf16", "f16", "int8", "fp8_e4m3"},
           "the KV cache's element type: auto (the model's dtype, config.json torch_dtype, on CPU workers; f32 on "
           "GPU workers), f32, bf16, f16, int8 (a scale per token) or fp8_e4m3 (a scale per block): 4x the blocks "
           "of f32 (docs/kv-blocks.md)");
  t.Int("kv-blocks", &g.num_kv_blocks, "N", "KV cache blocks per worker (overrides --kv-memory-mb; 0: from it)", 0);
  t.Int("max-step-tokens", &g.max_step_tokens, "N", "tokens computed per step, the chunked prefill budget", 1);
  t.Int("max-running", &g.max_running, "N", "sequences per batch", 1);
  t.Int("max-queue", &c->frontend.max_queue, "N", "waiting requests before RESOURCE_EXHAUSTED", 1);
  t.Int("max-streams-per-tenant", &c->frontend.max_streams_per_tenant, "N",
        "requests one API key's tenant (everyone, without keys) may have running or queued at once; more are "
        "RESOURCE_EXHAUSTED / HTTP 429 (0: no limit)",
        0);
  t.Int("heartbeat-ms", &s->heartbeat_ms, "N", "worker heartbeat interval", 10);
  t.Int("heartbeat-timeout-ms", &s->heartbeat_timeout_ms, "N", "drop a worker silent this long", 50);
  t.Int("tp", &g.tp, "N", "tensor parallelism: workers per replica group", 1, 4096);
  t.Int("ep", &g.ep, "M", "expert parallelism (MoE models): groups of tp x ep workers", 1, 4096);
  t.Int("collective-timeout-ms", &g.collective_timeout_ms, "N", "a rank's collectives give up after this", 100);
  t.Bool("prefix-caching", &g.prefix_caching, "reuse cached KV blocks of equal prefixes");
  t.Bool("batch-invariant", &g.batch_invariant,
           "every request's tokens independent of the batch it runs in: exact fp32-activation matmuls "
           "for every batch size");
  t.Choice("tool-call-parser", &s->tool_call_parser, {"none", "hermes", "llama3_json"},
           "how the model writes tool calls, for chat requests with tools (docs/http-api.md): hermes "
           "(<tool_call>{json}</tool_call>: Qwen2/2.5/3, Hermes), llama3_json (a JSON object, Llama 3.1/3.2), or none "
           "(requests with tools are refused)");
  t.Choice("chat-context-overflow", &s->chat_context_overflow, {"error", "truncate", "summarize"},
           "a chat conversation too long for the context beside max_tokens: refused (error), its oldest turns "
           "dropped (truncate), or summarised by the model (summarize); the system prompt is kept; requests may "
           "choose with context_overflow (docs/http-api.md)");
  t.Choice("embedding-pooling", &s->embedding_pooling, {"last", "mean"},
           "how Embed and POST /v1/embeddings read an embedding off the final hidden states: the last token's "
           "(decoder embedding models such as e5-mistral or gte-Qwen2) or the mean over the tokens");
  t.Choice("kv-policy", &s->kv_policy, {"full", "window", "sink-window"},
           "what a request's sequence keeps of its KV cache unless it names its own (kv_policy): every token "
           "(full), the last --window tokens (window), or those and its first --sink-tokens (sink-window: "
           "StreamingLLM's attention sinks); a bounded policy runs past the model's context in fixed memory "
           "(rotary-position models on CPU workers; docs/serving.md)");
  t.Int("sink-tokens", &s->sink_tokens, "N", "sink-window: the first tokens kept as attention sinks", 1);
  t.Int("window", &s->window, "N", "window and sink-window: the last tokens kept, a token's own included", 0);
  t.Int("host-kv-blocks", &g.num_host_kv_blocks, "N",
        "host tier per worker: full blocks are written through to it, so evicted prefixes survive and other "
        "groups (other nodes) can fetch them over the KV data plane (0: none)",
        0);
}

}  // namespace

std::optional<int> ParseCoordinatorConfig(int argc, const char* const* argv, CoordinatorConfig* config) {
  *config = CoordinatorConfig{};
  Scratch scratch(*config);
  FlagTable table(kProgram, kDescription);
  AddFlags(table, config, &scratch);
  if (std::optional<int> exit = table.Parse(argc, argv)) return exit;

  GroupOptions& group = config->cluster.group;
  config->model_dir = std::filesystem::absolute(config->model_dir).string();
  group.model_dir = config->model_dir;
  group.kv_memory_bytes = static_cast<int64_t>(scratch.kv_memory_mb) << 20;
  config->cluster.heartbeat_interval = std::chrono::milliseconds(scratch.heartbeat_ms);
  config->cluster.heartbeat_timeout = std::chrono::milliseconds(scratch.heartbeat_timeout_ms);
  config->http.max_body_bytes = static_cast<size_t>(scratch.http_max_body_mb) << 20;
  if (config->frontend.model_name.empty()) {
    config->frontend.model_name = std::filesystem::path(config->model_dir).filename().string();
  }
  config->frontend.tensor_parallel = group.tp;
  config->frontend.expert_parallel = group.ep;
  config->frontend.batch_invariant = group.batch_invariant;
  config->frontend.embedding_pooling = *models::ParsePooling(scratch.embedding_pooling);  // one of Choice's
  absl::StatusOr<models::KvRetention> retention = models::ParseKvPolicy(
      scratch.kv_policy, scratch.kv_policy == "sink-window" ? scratch.sink_tokens : 0, scratch.window);
  if (!retention.ok()) {
    std::cerr << kProgram << ": --kv-policy: " << retention.status().message() << "\n";
    return kUsageExit;
  }
  config->frontend.kv_retention = *retention;
  config->tool_calls = *ParseToolCallFormat(scratch.tool_call_parser);
  config->chat_overflow = *ParseContextOverflow(scratch.chat_context_overflow);
  return std::nullopt;
}

std::string CoordinatorHelp() {
  CoordinatorConfig config;
  Scratch scratch(config);
  FlagTable table(kProgram, kDescription);
  AddFlags(table, &config, &scratch);
  return table.Help();
}

}  // namespace tessera::coordinator
