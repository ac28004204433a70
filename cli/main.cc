// tessera: the command-line entry point.
//
//   tessera logits     --model DIR --ids 1,2,3 --out FILE
//   tessera perplexity --model DIR --text FILE [--context N] [--stride N]
//   tessera generate   --model DIR (--ids 1,2,3 | --prompt TEXT) --max-new-tokens N
//   tessera tokenize   --model DIR [--add-special-tokens] --text TEXT
//   tessera detokenize --model DIR --ids 1,2,3
//   tessera fetch-model --source SOURCE --dest DIR
//
// These shapes are stable (other tools and checks rely on them). Bad arguments, ids
// outside the vocabulary or a bad model folder print one message on stderr and exit 2.
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/cpu_kernels_flag.h"
#include "cli/model_fetch.h"
#include "common/cpu_limit.h"
#include "common/log.h"
#include "common/progress.h"
#include "kernels/cpu_isa.h"
#include "kvstore/kv_layout.h"
#include "models/generate.h"
#include "models/model.h"
#include "nlohmann/json.hpp"
#include "parallel/communicator.h"
#include "parallel/replica.h"
#include "tokenizer/incremental_decoder.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tessera::cli {
namespace {

constexpr char kUsage[] = R"(usage: tessera <command> [flags]

commands:
  logits      --model DIR --ids 1,2,3 --out FILE [--tp N]
              Writes the logits of every position as float32 little-endian,
              row-major [n_ids, vocab], to FILE.
  perplexity  --model DIR --text FILE [--context N] [--stride N] [--tp N]
              [--reference-kv-cache-dtype D]
              The model's perplexity on FILE's text (tokenized with the special
              tokens, e.g. BOS), by sliding windows of N tokens (default: the
              model's context) that start --stride tokens apart (default: half
              the context), each scoring the tokens the ones before it did not.
              With --kv-policy window or sink-window instead: streaming, the
              text as one sequence that keeps only its window (and sinks), every
              token scored from that cache, however long the text.
              Prints one JSON line: perplexity, nll_per_token, tokens, windows,
              context, stride, kv_cache_dtype, kv_policy, cpu_isa (the kernel
              level that ran), seconds.
              With --reference-kv-cache-dtype D: each window is computed again
              with a D cache and the line gets "reference": D's perplexity, the
              mean KL divergence of the next-token distributions from D's
              (mean_kld, nats), the share of tokens whose top prediction is D's
              (same_top), and where it is not, D's logit margin between the two
              (changed_top_margin_median, _max): what the cache dtype costs.
  embed       --model DIR (--prompt TEXT | --ids 1,2,3) [--pooling last|mean]
              The embedding the server's Embed answers: the final hidden
              states pooled (default: the last token's) and L2-normalised.
              Prints one JSON line: embedding, tokens, pooling.
  generate    --model DIR --ids 1,2,3 --max-new-tokens N
              Greedy decoding; prints the N new ids comma-separated on one line.
              With --kv-policy window or sink-window: past the model's context,
              in the blocks of the window (and sinks).
  generate    --model DIR --prompt TEXT --max-new-tokens N
              Tokenizes TEXT (with the tokenizer's special tokens, e.g. BOS),
              decodes greedily and streams the new text to stdout; stops at the
              model's EOS token.
  tokenize    --model DIR [--add-special-tokens] --text TEXT
              Prints the ids of TEXT comma-separated on one line.
  detokenize  --model DIR --ids 1,2,3
              Prints the text of the ids (special tokens included).

  chat-template --model DIR --messages FILE [--tools FILE] [--no-generation-prompt]
              Prints the model's chat template applied to FILE (OpenAI's
              messages JSON array; - reads stdin), exactly, with FILE's
              tools (OpenAI's list) as its `tools`; DIR needs only
              tokenizer_config.json.

  serve       --model DIR [--workers N] [--listen HOST:PORT] [--threads-per-worker N]
              [--http-listen HOST:PORT|off] [--tp N] [--ep M] [--cpu-isa LEVEL]
              [--kv-memory-mb N] [--kv-cache-dtype D] [--batch-invariant]
              [--embedding-pooling last|mean] [--tool-call-parser P]
              [--chat-context-overflow error|truncate|summarize]
              [--kv-policy full|window|sink-window --sink-tokens S --window W] [--quiet]
              [--weight-cache DIR]
              Runs a coordinator and N workers (child processes) until Ctrl-C;
              every tp x ep workers form one replica group. gRPC on --listen
              (127.0.0.1:50051), the OpenAI-compatible HTTP API on --http-listen
              (127.0.0.1:8000; docs/http-api.md). --embedding-pooling,
              --tool-call-parser (none, hermes, llama3_json),
              --chat-context-overflow and the KV policy (the server's default;
              requests may name their own) go to the coordinator (its --help).
  client      [--address HOST:PORT] [--tls-ca FILE] (--prompt TEXT | --ids 1,2,3)
              [--max-tokens N] [--temperature T] [--seed S] [--wait-ready SECONDS]
              One streamed generation against a running server (text, or
              the generated ids for --ids).
  info        [--address HOST:PORT] [--tls-ca FILE]
              The server's state as JSON: replica groups, their queues, KV
              pools and cache counters, and the cluster-wide KV block index.
              client and info: --tls-ca verifies a TLS server's certificate;
              the API key, if the server wants one, is read from TESSERA_API_KEY.

  fetch-model --source SOURCE --dest DIR [--hf-endpoint URL] [--s3-endpoint URL]
              [--s3-region R] [--ca-file FILE] [--include GLOB,...] [--quiet]
              Copies or downloads a model folder into DIR, every file checked
              against its checksum before it takes its name there; files
              already in DIR with the right checksum are kept. SOURCE:
              hf://ORG/NAME[@REV] (a HuggingFace Hub or mirror: --hf-endpoint,
              default $HF_ENDPOINT or https://huggingface.co; token from
              $HF_TOKEN; checksums from the Hub; --include picks the files,
              default *.json,*.safetensors,tokenizer.model,*.txt,*.jinja),
              https://HOST/PATH/ or s3://BUCKET/PREFIX (--s3-endpoint; SigV4
              with $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY) or a local DIR:
              each lists its files and checksums in a SHA256SUMS file
              (`sha256sum * > SHA256SUMS`). Exit 1 when a file cannot be
              fetched or does not match (docs/deploy.md, "Getting weights in").

DIR is a HuggingFace model folder (config.json, *.safetensors, tokenizer.json);
tokenize and detokenize need only tokenizer.json.

common flags:
  --threads N      kernel threads (default: every core this process may use,
                   within its cgroup's CPU limit, e.g. a container's)
  --block-size N   tokens per KV cache block (default 16)
  --kv-cache-dtype D  logits/generate/perplexity/embed/serve: the KV cache's element
                   type: auto (the model's dtype), f32, bf16, f16, int8 (a scale
                   per token), fp8_e4m3 (a scale per block; docs/kv-blocks.md)
  --kv-policy P    generate/perplexity: what the sequence keeps of its KV cache:
                   full (default), window (the last --window W tokens) or
                   sink-window (those and the first --sink-tokens S, default 4:
                   StreamingLLM's attention sinks); rotary-position models
                   (docs/serving.md, "Bounded long context")
  --tp N           logits/generate/perplexity/embed: tensor parallelism over N local processes
                   (Gloo collectives; default 1)
  --ep M           the same, MoE models: expert parallelism; runs N x M
                   processes (default 1)
  --cpu-isa LEVEL  logits/generate/perplexity/embed/serve: the CPU kernels' instruction set: auto
                   (default, the best this CPU runs), avx512-bf16, avx512, avx2,
                   portable
  --quiet          logits/generate/perplexity/embed/serve: nothing about loading the weights (else
                   a progress bar on a terminal, lines otherwise, and a closing
                   line with the size, time and rate)
  --weight-cache DIR  logits/generate/perplexity/embed/serve: keep the weights as
                   packed for this CPU in DIR (a file per model and shard) and read
                   them from there on later runs instead of packing the checkpoint
                   again; a stale or damaged file is rebuilt (docs/weight-cache.md)
  --help           this text

Exit status: 0 on success, 2 on bad arguments, ids, text or model folder.
)";

int Fail(const std::string& message) {
  std::cerr << "tessera: " << message << "\n";
  return kUsageExit;
}

int Fail(const absl::Status& status) { return Fail(std::string(status.message())); }

bool Require(const Args& args, const std::vector<std::string>& names, std::string* error) {
  for (const std::string& n : names) {
    if (!args.Has(n)) {
      *error = absl::StrCat("'", args.command, "' needs --", n);
      return false;
    }
  }
  return true;
}

bool IdsFlag(const Args& args, std::vector<int32_t>* ids, std::string* error) {
  if (!ParseIds(args.flags.at("ids"), ids)) {
    *error = absl::StrCat("--ids must be comma-separated integers, got '", args.flags.at("ids"), "'");
    return false;
  }
  return true;
}

// A parsed logits / generate / perplexity invocation.
struct ModelJob {
  enum class Kind { kLogits, kGenerate, kPerplexity, kEmbed } kind = Kind::kGenerate;
  std::string model_dir;
  std::vector<int32_t> ids;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // set when generating from --prompt
  int threads = 0, block_size = kvstore::kDefaultBlockSize, max_new = 0, tp = 1, ep = 1;
  std::string kv_cache_dtype = "auto";  // resolved against the model's config
  std::string reference_kv_cache_dtype;  // perplexity: the dtype compared with; empty: none
  std::string out;
  models::PerplexityOptions perplexity;
  models::Pooling pooling = models::Pooling::kLast;  // embed
  models::KvRetention retention;                     // generate, perplexity
  bool quiet = false;  // no loading progress
  std::string weight_cache_dir;  // the packed-weight cache; empty: none
};

// Prints perplexity's JSON line.
void PrintPerplexity(const models::PerplexityResult& r, KvDtype kv_dtype, const models::KvRetention& retention,
                     double seconds) {
  const double tokens = static_cast<double>(r.tokens);
  nlohmann::json line{{"perplexity", r.perplexity()},
                      {"nll_per_token", r.nll / tokens},
                      {"tokens", r.tokens},
                      {"windows", r.windows},
                      {"context", r.context},
                      {"stride", r.stride},
                      {"kv_cache_dtype", KvDtypeName(kv_dtype)},
                      {"kv_policy", models::KvPolicyName(retention)},
                      {"sink_tokens", retention.sink_tokens},
                      {"window", retention.window},
                      {"cpu_isa", kernels::CpuIsaName(kernels::ActiveCpuIsa())},
                      {"seconds", seconds}};
  if (r.reference) {
    std::vector<float> margins = r.reference->changed_top_margins;
    std::sort(margins.begin(), margins.end());
    line["reference"] = {{"kv_cache_dtype", KvDtypeName(r.reference->kv_dtype)},
                         {"perplexity", std::exp(r.reference->nll / tokens)},
                         {"mean_kld", r.reference->kld / tokens},
                         {"same_top", static_cast<double>(r.reference->same_top) / tokens},
                         {"changed_top_margin_median", margins.empty() ? 0.0f : margins[margins.size() / 2]},
                         {"changed_top_margin_max", margins.empty() ? 0.0f : margins.back()}};
  }
  std::cout << line.dump() << "\n";
}

// Loads the model (this rank's shard) and runs the job. Only the primary rank prints
// or writes anything; every rank runs the same steps so the collectives match.
int RunModelJob(const ModelJob& job, models::ModelOptions options, bool primary) {
  auto fail = [&](const auto& what) { return primary ? Fail(what) : kUsageExit; };
  // The ids are checked against the config before gigabytes of weights load.
  auto spec = models::LoadModelSpec(job.model_dir);
  if (!spec.ok()) return fail(spec.status());
  for (int32_t id : job.ids) {
    if (id < 0 || id >= spec->vocab_size) {
      return fail(absl::StrCat("token id ", id, " is outside the vocabulary [0, ", spec->vocab_size, ")"));
    }
  }
  const absl::StatusOr<KvDtype> kv_dtype = models::ResolveKvDtype(job.kv_cache_dtype, *spec);
  if (!kv_dtype.ok()) return fail(kv_dtype.status());
  models::PerplexityOptions perplexity = job.perplexity;
  perplexity.kv_dtype = *kv_dtype;
  if (!job.reference_kv_cache_dtype.empty()) {
    const absl::StatusOr<KvDtype> reference = models::ResolveKvDtype(job.reference_kv_cache_dtype, *spec);
    if (!reference.ok()) return fail(reference.status());
    perplexity.reference_kv_dtype = *reference;
  }
  if (job.kind == ModelJob::Kind::kPerplexity) {
    if (auto options = models::ResolvePerplexityOptions(*spec, job.ids, perplexity); !options.ok()) {
      return fail(options.status());
    }
  }
  ByteProgress progress("loading weights", job.quiet || !primary ? ByteProgress::Style::kQuiet : ByteProgress::Style::kAuto);
  options.on_load_progress = [&](int64_t done, int64_t total) { progress.Update(done, total); };
  options.weight_cache_dir = job.weight_cache_dir;
  options.on_weight_cache_written = [loud = primary && !job.quiet](const models::WeightCacheUse& use) {
    if (loud && use.outcome == models::WeightCacheUse::Outcome::kWritten) log::Info() << use.Describe();
  };
  auto model = models::Model::Load(job.model_dir, options);
  if (!model.ok()) return fail(model.status());
  progress.Finish();
  if (primary && !job.quiet && (*model)->weight_cache().outcome != models::WeightCacheUse::Outcome::kOff) {
    std::cerr << "tessera: " << (*model)->weight_cache().Describe() << "\n";
  }
  if (job.kind == ModelJob::Kind::kPerplexity) {
    const auto start = std::chrono::steady_clock::now();
    auto result = models::Perplexity(**model, job.ids, perplexity);
    if (!result.ok()) return fail(result.status());
    if (primary) PrintPerplexity(*result, *kv_dtype, job.retention, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return 0;
  }
  if (job.kind == ModelJob::Kind::kEmbed) {
    auto embedding = models::Embed(**model, job.ids, job.pooling, job.block_size, *kv_dtype);
    if (!embedding.ok()) return fail(embedding.status());
    if (primary) {
      std::cout << nlohmann::json{{"embedding", *embedding},
                                  {"tokens", job.ids.size()},
                                  {"pooling", models::PoolingName(job.pooling)}}
                       .dump()
                << "\n";
    }
    return 0;
  }
  if (job.kind == ModelJob::Kind::kLogits) {
    auto logits = models::PromptLogits(**model, job.ids, job.block_size, *kv_dtype);
    if (!logits.ok()) return fail(logits.status());
    if (!primary) return 0;
    std::ofstream out(job.out, std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits->data()), static_cast<std::streamsize>(logits->size() * sizeof(float)));
    if (!out) return Fail(absl::StrCat("cannot write ", job.out));
    return 0;
  }
  models::GreedyOptions greedy;
  greedy.max_new_tokens = job.max_new;
  greedy.block_size = job.block_size;
  greedy.kv_dtype = *kv_dtype;
  greedy.retention = job.retention;
  if (!job.tokenizer) {
    auto tokens = models::GenerateGreedy(**model, job.ids, greedy);
    if (!tokens.ok()) return fail(tokens.status());
    if (primary) std::cout << absl::StrJoin(*tokens, ",") << "\n";
    return 0;
  }
  // Text mode: stream text as it completes; stop at EOS (every rank sees the same
  // logits, so every rank stops at the same step).
  tokenizer::IncrementalDecoder stream(*job.tokenizer, /*skip_special_tokens=*/true);
  const std::vector<int>& eos = (*model)->spec().eos_token_ids;
  absl::Status stream_status;
  greedy.on_token = [&](int32_t id) {
    if (std::find(eos.begin(), eos.end(), id) != eos.end()) return false;
    auto piece = stream.Add(id);
    if (!piece.ok()) {
      stream_status = piece.status();
      return false;
    }
    if (primary) std::cout << *piece << std::flush;
    return true;
  };
  auto tokens = models::GenerateGreedy(**model, job.ids, greedy);
  if (!tokens.ok()) return fail(tokens.status());
  if (!stream_status.ok()) return fail(stream_status);
  auto rest = stream.Finish();
  if (primary) std::cout << (rest.ok() ? *rest : "") << "\n";
  return 0;
}

// --tp N --ep M: N x M local processes, one shard each, joined by Gloo through a
// rendezvous directory: rank r is tensor-parallel rank r % N of expert-parallel
// group r / N. Returns the primary rank's exit status.
int RunParallel(const ModelJob& job) {
  const std::string dir = (std::filesystem::temp_directory_path() / absl::StrCat("tessera-tp-", getpid())).string();
  std::filesystem::create_directories(dir);
  std::vector<pid_t> ranks;
  const int world = job.tp * job.ep;
  for (int rank = 0; rank < world; ++rank) {
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      parallel::FileRendezvousStore store(dir);
      const int tp_rank = rank % job.tp, ep_rank = rank / job.tp;
      // Spin on small all-reduces when every rank has a core of its own.
      const bool busy_poll = world <= UsableCpus();
      models::ModelOptions options;
      options.num_threads = job.threads;
      options.tp = {tp_rank, job.tp};
      options.ep = {ep_rank, job.ep};
      auto comms = parallel::ConnectReplica(
          {tp_rank, job.tp, ep_rank, job.ep}, "", [&](int r, int n, const std::string& prefix) {
            parallel::GlooOptions o;
            o.prefix = prefix;
            o.busy_poll = busy_poll;
            return parallel::CreateGlooCommunicator(r, n, store, o);
          });
      if (!comms.ok()) _exit(rank == 0 ? Fail(comms.status()) : kUsageExit);
      options.communicator = comms->tp.get();
      options.moe_communicator = comms->all.get();
      const int code = RunModelJob(job, options, /*primary=*/rank == 0);
      std::cout.flush();
      _exit(code);
    }
    ranks.push_back(pid);
  }
  int primary = kUsageExit;
  for (size_t i = 0; i < ranks.size(); ++i) {
    int status = 0;
    waitpid(ranks[i], &status, 0);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : kUsageExit;
    if (i == 0) primary = code;
  }
  std::filesystem::remove_all(dir);
  return primary;
}

int RunModelCommand(const Args& args) {
  ModelJob job;
  job.kind = args.command == "logits"       ? ModelJob::Kind::kLogits
             : args.command == "perplexity" ? ModelJob::Kind::kPerplexity
             : args.command == "embed"      ? ModelJob::Kind::kEmbed
                                            : ModelJob::Kind::kGenerate;
  const std::set<std::string> common = {"model", "threads", "block-size", "kv-cache-dtype", "tp", "ep", "cpu-isa", "quiet",
                                        "weight-cache"};
  std::set<std::string> allowed = job.kind == ModelJob::Kind::kLogits       ? std::set<std::string>{"ids", "out"}
                                  : job.kind == ModelJob::Kind::kPerplexity ? std::set<std::string>{"text", "context", "stride", "kv-policy", "sink-tokens", "window", "reference-kv-cache-dtype"}
                                  : job.kind == ModelJob::Kind::kEmbed      ? std::set<std::string>{"ids", "prompt", "pooling"}
                                                                            : std::set<std::string>{"ids", "prompt", "max-new-tokens", "kv-policy", "sink-tokens", "window"};
  allowed.insert(common.begin(), common.end());
  std::string error;
  if (!CheckFlags(args, allowed, &error)) return Fail(error);
  if (absl::Status isa = SelectCpuKernels(args, /*announce=*/false); !isa.ok()) return Fail(isa);
  if (!Require(args, {"model"}, &error) || !IntFlag(args, "threads", 0, 0, &job.threads, &error) ||
      !IntFlag(args, "block-size", kvstore::kDefaultBlockSize, 1, &job.block_size, &error) ||
      !IntFlag(args, "tp", 1, 1, &job.tp, &error) || !IntFlag(args, "ep", 1, 1, &job.ep, &error)) {
    return Fail(error);
  }
  job.model_dir = args.flags.at("model");
  job.quiet = args.Has("quiet");
  if (args.Has("weight-cache")) job.weight_cache_dir = args.flags.at("weight-cache");
  if (args.Has("kv-cache-dtype")) job.kv_cache_dtype = args.flags.at("kv-cache-dtype");
  job.perplexity.block_size = job.block_size;
  if (args.Has("kv-policy") || args.Has("sink-tokens") || args.Has("window")) {
    const std::string policy = args.Has("kv-policy") ? args.flags.at("kv-policy") : "full";
    int sinks = 0, window = 0;
    if (!IntFlag(args, "sink-tokens", policy == "sink-window" ? models::kDefaultSinkTokens : 0, 0, &sinks, &error) ||
        !IntFlag(args, "window", 0, 0, &window, &error)) {
      return Fail(error);
    }
    auto retention = models::ParseKvPolicy(policy, sinks, window);
    if (!retention.ok()) return Fail(retention.status());
    job.retention = job.perplexity.retention = *retention;
  }
  switch (job.kind) {
    case ModelJob::Kind::kLogits:
      if (!Require(args, {"ids"}, &error) || !IdsFlag(args, &job.ids, &error) || !Require(args, {"out"}, &error)) {
        return Fail(error);
      }
      job.out = args.flags.at("out");
      break;
    case ModelJob::Kind::kEmbed:
    case ModelJob::Kind::kGenerate:
      if (args.Has("prompt") == args.Has("ids")) {
        return Fail(absl::StrCat("'", args.command, "' needs exactly one of --ids and --prompt"));
      }
      if (args.Has("ids") && !IdsFlag(args, &job.ids, &error)) return Fail(error);
      if (job.kind == ModelJob::Kind::kEmbed) {
        if (args.Has("pooling")) {
          auto pooling = models::ParsePooling(args.flags.at("pooling"));
          if (!pooling.ok()) return Fail(pooling.status());
          job.pooling = *pooling;
        }
      } else if (!Require(args, {"max-new-tokens"}, &error) ||
                 !IntFlag(args, "max-new-tokens", 0, 0, &job.max_new, &error)) {
        return Fail(error);
      }
      if (args.Has("prompt")) {
        auto loaded = tokenizer::Tokenizer::Load(job.model_dir);
        if (!loaded.ok()) return Fail(loaded.status());
        job.tokenizer = std::move(*loaded);
        auto encoded = job.tokenizer->Encode(args.flags.at("prompt"), /*add_special_tokens=*/true);
        if (!encoded.ok()) return Fail(encoded.status());
        job.ids = std::move(*encoded);
        if (job.ids.empty()) return Fail("--prompt encodes to no tokens");
      }
      break;
    case ModelJob::Kind::kPerplexity: {
      if (!Require(args, {"text"}, &error) || !IntFlag(args, "context", 0, 2, &job.perplexity.context, &error) ||
          !IntFlag(args, "stride", 0, 1, &job.perplexity.stride, &error)) {
        return Fail(error);
      }
      if (args.Has("reference-kv-cache-dtype")) job.reference_kv_cache_dtype = args.flags.at("reference-kv-cache-dtype");
      std::ifstream file(args.flags.at("text"), std::ios::binary);
      if (!file) return Fail("cannot read " + args.flags.at("text"));
      const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
      auto tok = tokenizer::Tokenizer::Load(job.model_dir);
      if (!tok.ok()) return Fail(tok.status());
      auto encoded = (*tok)->Encode(text, /*add_special_tokens=*/true);
      if (!encoded.ok()) return Fail(encoded.status());
      job.ids = std::move(*encoded);
      break;
    }
  }
  if (job.tp * job.ep > 1) {
    // Check the split before starting processes, so the message comes once.
    auto spec = models::LoadModelSpec(job.model_dir);
    if (!spec.ok()) return Fail(spec.status());
    if (auto shard = models::ShardLayout::For(*spec, {0, job.tp}, {0, job.ep}); !shard.ok()) return Fail(shard.status());
    if (job.threads == 0) {
      job.threads = std::max(1, UsableCpus() / (job.tp * job.ep));
    }
    return RunParallel(job);
  }
  models::ModelOptions options;
  options.num_threads = job.threads;
  return RunModelJob(job, options, /*primary=*/true);
}

int RunTokenizerCommand(const Args& args) {
  const bool encode = args.command == "tokenize";
  std::string error;
  if (!CheckFlags(args, encode ? std::set<std::string>{"model", "text", "add-special-tokens"}
                               : std::set<std::string>{"model", "ids"},
                  &error) ||
      !Require(args, {"model", encode ? "text" : "ids"}, &error)) {
    return Fail(error);
  }
  auto tok = tokenizer::Tokenizer::Load(args.flags.at("model"));
  if (!tok.ok()) return Fail(tok.status());
  if (encode) {
    auto ids = (*tok)->Encode(args.flags.at("text"), args.Has("add-special-tokens"));
    if (!ids.ok()) return Fail(ids.status());
    std::cout << absl::StrJoin(*ids, ",") << "\n";
    return 0;
  }
  std::vector<int32_t> ids;
  if (!IdsFlag(args, &ids, &error)) return Fail(error);
  auto text = (*tok)->Decode(ids, /*skip_special_tokens=*/false);
  if (!text.ok()) return Fail(text.status());
  std::cout << *text << "\n";
  return 0;
}

// tessera chat-template: the model's chat template applied to a messages file, printed
// exactly (no newline added), so it can be compared with transformers' rendering.
int RunFetchModel(const Args& args) {
  std::string error;
  if (!CheckFlags(args, {"source", "dest", "hf-endpoint", "s3-endpoint", "s3-region", "ca-file", "include", "quiet"},
                  &error)) {
    return Fail(error);
  }
  if (!args.Has("source") || !args.Has("dest")) return Fail("fetch-model needs --source and --dest");
  FetchOptions options;
  options.source = args.flags.at("source");
  options.dest = args.flags.at("dest");
  if (const char* endpoint = std::getenv("HF_ENDPOINT")) options.hf_endpoint = endpoint;
  auto flag = [&](const std::string& name, std::string* out) {
    if (args.Has(name)) *out = args.flags.at(name);
  };
  flag("hf-endpoint", &options.hf_endpoint);
  flag("s3-endpoint", &options.s3_endpoint);
  flag("s3-region", &options.s3_region);
  flag("ca-file", &options.ca_file);
  if (args.Has("include")) options.include = absl::StrSplit(args.flags.at("include"), ',', absl::SkipEmpty());
  options.quiet = args.Has("quiet");
  const absl::Status status = FetchModel(options);
  if (status.ok()) return 0;
  std::cerr << "tessera: fetch-model: " << status.message() << "\n";
  return 1;
}

int RunChatTemplate(const Args& args) {
  std::string error;
  if (!CheckFlags(args, {"model", "messages", "tools", "no-generation-prompt"}, &error) ||
      !Require(args, {"model", "messages"}, &error)) {
    return Fail(error);
  }
  const std::string& path = args.flags.at("messages");
  std::ifstream file;
  if (path != "-") {
    file.open(path);
    if (!file) return Fail("cannot read " + path);
  }
  const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(path == "-" ? std::cin : file, nullptr, false);
  if (messages.is_discarded()) return Fail(path + " is not JSON");
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();
  if (args.Has("tools")) {
    std::ifstream tools_file(args.flags.at("tools"));
    if (!tools_file) return Fail("cannot read " + args.flags.at("tools"));
    variables["tools"] = nlohmann::ordered_json::parse(tools_file, nullptr, false);
    if (variables["tools"].is_discarded()) return Fail(args.flags.at("tools") + " is not JSON");
  }
  auto chat = tokenizer::ChatTemplate::Load(args.flags.at("model"));
  if (!chat.ok()) return Fail(chat.status());
  auto prompt = chat->Apply(messages, /*add_generation_prompt=*/!args.Has("no-generation-prompt"), variables);
  if (!prompt.ok()) return Fail(prompt.status());
  std::cout << *prompt;
  return 0;
}

int Main(int argc, char** argv) {
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "help")) {
    std::cout << kUsage;
    return 0;
  }
  Args args;
  std::string error;
  if (!ParseArgs(argc, argv, {"help", "add-special-tokens", "batch-invariant", "no-generation-prompt", "quiet"}, &args,
                 &error)) {
    return Fail(error);
  }
  if (args.Has("help")) {
    std::cout << kUsage;
    return 0;
  }
  if (args.command == "logits" || args.command == "generate" || args.command == "perplexity" ||
      args.command == "embed") {
    return RunModelCommand(args);
  }
  if (args.command == "tokenize" || args.command == "detokenize") return RunTokenizerCommand(args);
  if (args.command == "chat-template") return RunChatTemplate(args);
  if (args.command == "serve") return RunServe(args, argv[0]);
  if (args.command == "client") return RunClient(args);
  if (args.command == "info") return RunInfo(args);
  if (args.command == "fetch-model") return RunFetchModel(args);
  return Fail(absl::StrCat("unknown command '", args.command, "' (try --help)"));
}

}  // namespace
}  // namespace tessera::cli

int main(int argc, char** argv) { return tessera::cli::Main(argc, argv); }
