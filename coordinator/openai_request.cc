#include "coordinator/openai_request.h"

#include <climits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/json_int.h"
#include "common/status.h"
#include "coordinator/frontend.h"
#include "nlohmann/json.hpp"

namespace tessera::coordinator {
namespace {

using nlohmann::json;

constexpr size_t kMaxPrompts = 64;             // a batch in one completions request
constexpr size_t kMaxEmbeddingInputs = 2048;    // OpenAI's limit for one embeddings request

// A request body: a JSON object whose fields are read with their type checked. A
// field that is absent or null is left as it was (the API's default).
class Body {
 public:
  static absl::StatusOr<Body> Parse(const std::string& text) {
    json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) return FieldError("", "the request body is not valid JSON");
    if (!value.is_object()) return FieldError("", "the request body must be a JSON object");
    return Body(std::move(value));
  }

  const json* Find(const char* key) const {
    auto it = value_.find(key);
    return it == value_.end() || it->is_null() ? nullptr : &*it;
  }

  absl::Status String(const char* key, std::string* out) const {
    const json* v = Find(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_string()) return FieldError(key, absl::StrCat(key, " must be a string"));
    *out = v->get<std::string>();
    return absl::OkStatus();
  }

  absl::Status Bool(const char* key, bool* out) const {
    const json* v = Find(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return FieldError(key, absl::StrCat(key, " must be true or false"));
    *out = v->get<bool>();
    return absl::OkStatus();
  }

  // An integer in [lo, hi]; nullopt when absent.
  absl::StatusOr<std::optional<int64_t>> Int(const char* key, int64_t lo, int64_t hi) const {
    const json* v = Find(key);
    if (v == nullptr) return std::optional<int64_t>();
    std::optional<int64_t> i = JsonInt(*v, lo, hi);
    if (!i) return FieldError(key, absl::StrCat(key, " must be an integer in [", lo, ", ", hi, "]"));
    return i;
  }

  // Any number; nullopt when absent. Ranges are checked by the frontend.
  absl::StatusOr<std::optional<double>> Number(const char* key) const {
    const json* v = Find(key);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) return FieldError(key, absl::StrCat(key, " must be a number"));
    return std::optional<double>(v->get<double>());
  }

 private:
  explicit Body(json value) : value_(std::move(value)) {}
  json value_;
};

absl::StatusOr<std::vector<int32_t>> TokenIds(const json& list, const char* field) {
  std::vector<int32_t> ids;
  for (const json& v : list) {
    std::optional<int64_t> id = JsonInt(v, 0, INT32_MAX);
    if (!id) return FieldError(field, absl::StrCat(field, ": token ids must be integers >= 0"));
    ids.push_back(static_cast<int32_t>(*id));
  }
  return ids;
}

// `key` ("prompt", or "input" for embeddings): a string, a list of token ids, or a
// list of up to `most` of either (a batch).
absl::StatusOr<std::vector<v1::GenerateRequest>> Prompts(const Body& body, const char* key = "prompt",
                                                         size_t most = kMaxPrompts) {
  const json* prompt = body.Find(key);
  const absl::Status shape =
      FieldError(key, absl::StrCat(key, " must be a string, a list of token ids, or a list of strings or of id lists"));
  if (prompt == nullptr) return FieldError(key, absl::StrCat(key, " is required"));
  std::vector<v1::GenerateRequest> out;
  auto add_text = [&](const json& text) { out.emplace_back().set_text(text.get<std::string>()); };
  auto add_ids = [&](const json& list) -> absl::Status {
    ASSIGN_OR_RETURN(const std::vector<int32_t> ids, TokenIds(list, key));
    out.emplace_back().mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
    return absl::OkStatus();
  };
  if (prompt->is_string()) {
    add_text(*prompt);
  } else if (!prompt->is_array() || prompt->empty()) {
    return shape;
  } else if ((*prompt)[0].is_number()) {
    RETURN_IF_ERROR(add_ids(*prompt));
  } else {
    if (prompt->size() > most) return FieldError(key, absl::StrCat("at most ", most, " ", key, "s"));
    for (const json& p : *prompt) {
      if (p.is_string()) {
        add_text(p);
      } else if (p.is_array() && !p.empty()) {
        RETURN_IF_ERROR(add_ids(p));
      } else {
        return shape;
      }
    }
  }
  return out;
}

// "stop": a string or a list of strings.
absl::Status StopStrings(const Body& body, v1::SamplingParams* sampling) {
  const json* stop = body.Find("stop");
  if (stop == nullptr) return absl::OkStatus();
  if (stop->is_string()) {
    sampling->add_stop(stop->get<std::string>());
    return absl::OkStatus();
  }
  if (!stop->is_array()) return FieldError("stop", "stop must be a string or a list of strings");
  for (const json& s : *stop) {
    if (!s.is_string()) return FieldError("stop", "stop must be a string or a list of strings");
    sampling->add_stop(s.get<std::string>());
  }
  return absl::OkStatus();
}

// Chat's "tools" (OpenAI's function tools), "tool_choice" and "parallel_tool_calls".
// Sets call_tools; the tools themselves are taken in the caller's member order.
absl::Status Tools(const Body& body, ChatRequest* r) {
  const json* tools = body.Find("tools");
  const json* choice = body.Find("tool_choice");
  bool parallel = true;
  RETURN_IF_ERROR(body.Bool("parallel_tool_calls", &parallel));  // accepted: calls are read as written
  if (tools == nullptr) {
    if (choice != nullptr && *choice != "none") return FieldError("tool_choice", "tool_choice needs tools");
    return absl::OkStatus();
  }
  const absl::Status shape = FieldError(
      "tools", "tools must be a non-empty list of {\"type\": \"function\", \"function\": {\"name\": ...}}");
  if (!tools->is_array() || tools->empty()) return shape;
  for (const json& t : *tools) {
    if (!t.is_object() || t.value("type", "") != "function" || !t.contains("function") ||
        !t["function"].is_object() || !t["function"].contains("name") || !t["function"]["name"].is_string()) {
      return shape;
    }
  }
  if (choice == nullptr || *choice == "auto") {
    r->call_tools = true;
  } else if (*choice != "none") {
    // "required" and a named function need constrained decoding to force a call.
    return FieldError("tool_choice", "tool_choice must be \"auto\" or \"none\": forcing a call (\"required\", a "
                                     "named function) is not supported");
  }
  return absl::OkStatus();
}

// The sampling fields the completions and chat APIs share (OpenAI's and vLLM's).
absl::StatusOr<v1::SamplingParams> Sampling(const Body& body) {
  v1::SamplingParams p;
  ASSIGN_OR_RETURN(const auto max_tokens, body.Int("max_tokens", 1, INT32_MAX));
  if (max_tokens) p.set_max_tokens(static_cast<int32_t>(*max_tokens));
  ASSIGN_OR_RETURN(const auto temperature, body.Number("temperature"));
  if (temperature) p.set_temperature(static_cast<float>(*temperature));
  ASSIGN_OR_RETURN(const auto top_p, body.Number("top_p"));
  if (top_p) p.set_top_p(static_cast<float>(*top_p));
  ASSIGN_OR_RETURN(const auto top_k, body.Int("top_k", -1, INT32_MAX));
  if (top_k && *top_k > 0) p.set_top_k(static_cast<int32_t>(*top_k));  // -1 and 0: off (vLLM)
  ASSIGN_OR_RETURN(const auto min_p, body.Number("min_p"));
  if (min_p) p.set_min_p(static_cast<float>(*min_p));
  ASSIGN_OR_RETURN(const auto repetition_penalty, body.Number("repetition_penalty"));
  if (repetition_penalty) p.set_repetition_penalty(static_cast<float>(*repetition_penalty));
  ASSIGN_OR_RETURN(const auto presence_penalty, body.Number("presence_penalty"));
  if (presence_penalty) p.set_presence_penalty(static_cast<float>(*presence_penalty));
  ASSIGN_OR_RETURN(const auto frequency_penalty, body.Number("frequency_penalty"));
  if (frequency_penalty) p.set_frequency_penalty(static_cast<float>(*frequency_penalty));
  ASSIGN_OR_RETURN(const auto seed, body.Int("seed", INT64_MIN, INT64_MAX));
  if (seed) p.set_seed(static_cast<uint64_t>(*seed));
  ASSIGN_OR_RETURN(const auto min_tokens, body.Int("min_tokens", 0, INT32_MAX));
  if (min_tokens) p.set_min_tokens(static_cast<int32_t>(*min_tokens));
  bool ignore_eos = false;
  RETURN_IF_ERROR(body.Bool("ignore_eos", &ignore_eos));
  p.set_ignore_eos(ignore_eos);
  RETURN_IF_ERROR(StopStrings(body, &p));
  if (const json* ids = body.Find("stop_token_ids")) {
    if (!ids->is_array()) return FieldError("stop_token_ids", "stop_token_ids must be a list of token ids");
    ASSIGN_OR_RETURN(const std::vector<int32_t> list, TokenIds(*ids, "stop_token_ids"));
    p.mutable_stop_token_ids()->Add(list.begin(), list.end());
  }
  return p;
}

// stream, stream_options and user, which both APIs take.
absl::Status CommonFields(const Body& body, CompletionRequest* r) {
  RETURN_IF_ERROR(body.Bool("stream", &r->stream));
  if (const json* options = body.Find("stream_options")) {
    if (!options->is_object()) return FieldError("stream_options", "stream_options must be an object");
    auto usage = options->find("include_usage");
    if (usage != options->end() && !usage->is_null()) {
      if (!usage->is_boolean()) return FieldError("stream_options", "include_usage must be true or false");
      r->include_usage = usage->get<bool>();
    }
  }
  ASSIGN_OR_RETURN(const auto priority, body.Int("priority", INT32_MIN, INT32_MAX));
  if (priority) r->priority = static_cast<int32_t>(*priority);
  std::string policy;
  RETURN_IF_ERROR(body.String("kv_policy", &policy));
  ASSIGN_OR_RETURN(const auto sink_tokens, body.Int("sink_tokens", 1, INT32_MAX));
  ASSIGN_OR_RETURN(const auto window, body.Int("window", 1, INT32_MAX));
  if (!policy.empty() || sink_tokens || window) {
    r->kv_policy.emplace();
    r->kv_policy->set_policy(policy);
    if (sink_tokens) r->kv_policy->set_sink_tokens(static_cast<int32_t>(*sink_tokens));
    if (window) r->kv_policy->set_window(static_cast<int32_t>(*window));
  }
  std::string user;  // accepted for compatibility; the API has no use for it here
  return body.String("user", &user);
}

}  // namespace

absl::StatusOr<CompletionRequest> ParseCompletionRequest(const std::string& text) {
  ASSIGN_OR_RETURN(const Body body, Body::Parse(text));
  CompletionRequest r;
  RETURN_IF_ERROR(body.String("model", &r.model));
  ASSIGN_OR_RETURN(v1::SamplingParams sampling, Sampling(body));
  ASSIGN_OR_RETURN(const auto n, body.Int("n", 1, kMaxChoices));
  if (n) r.n = static_cast<int>(*n);
  ASSIGN_OR_RETURN(const auto best_of, body.Int("best_of", 1, kMaxChoices));
  if (best_of && *best_of != r.n) return FieldError("best_of", "best_of other than n is not supported");
  ASSIGN_OR_RETURN(const auto logprobs, body.Int("logprobs", 0, kMaxCompletionLogprobs));
  if (logprobs) {
    r.logprobs = static_cast<int>(*logprobs);
    sampling.set_logprobs(true);
    sampling.set_top_logprobs(r.logprobs);
  }
  RETURN_IF_ERROR(body.Bool("echo", &r.echo));
  if (r.echo && r.logprobs >= 0) {
    return FieldError("echo", "echo with logprobs is not supported (prompt logprobs are not computed)");
  }
  if (body.Find("suffix") != nullptr) return FieldError("suffix", "suffix is not supported");
  RETURN_IF_ERROR(CommonFields(body, &r));
  bool add_special_tokens = true;  // vLLM's extra: false when the text has them already
  RETURN_IF_ERROR(body.Bool("add_special_tokens", &add_special_tokens));
  ASSIGN_OR_RETURN(std::vector<v1::GenerateRequest> prompts, Prompts(body));
  for (v1::GenerateRequest& p : prompts) {
    p.set_add_special_tokens(add_special_tokens);
    p.set_model(r.model);
    *p.mutable_sampling() = sampling;
    p.set_priority(r.priority);
    if (r.kv_policy) *p.mutable_kv_policy() = *r.kv_policy;
  }
  r.prompts = std::move(prompts);
  return r;
}

absl::StatusOr<ChatRequest> ParseChatRequest(const std::string& text) {
  ASSIGN_OR_RETURN(const Body body, Body::Parse(text));
  ChatRequest r;
  CompletionRequest& c = r.completion;
  c.chat = true;
  RETURN_IF_ERROR(body.String("model", &c.model));
  ASSIGN_OR_RETURN(v1::SamplingParams sampling, Sampling(body));
  ASSIGN_OR_RETURN(const auto max_completion_tokens, body.Int("max_completion_tokens", 1, INT32_MAX));
  if (max_completion_tokens) sampling.set_max_tokens(static_cast<int32_t>(*max_completion_tokens));
  ASSIGN_OR_RETURN(const auto n, body.Int("n", 1, kMaxChoices));
  if (n) c.n = static_cast<int>(*n);
  bool logprobs = false;
  RETURN_IF_ERROR(body.Bool("logprobs", &logprobs));
  ASSIGN_OR_RETURN(const auto top_logprobs, body.Int("top_logprobs", 0, kMaxCompletionLogprobs));
  if (top_logprobs && !logprobs) return FieldError("top_logprobs", "top_logprobs needs logprobs: true");
  if (logprobs) {
    c.logprobs = top_logprobs ? static_cast<int>(*top_logprobs) : 0;
    sampling.set_logprobs(true);
    sampling.set_top_logprobs(c.logprobs);
  }
  RETURN_IF_ERROR(CommonFields(body, &c));
  RETURN_IF_ERROR(body.Bool("add_generation_prompt", &r.add_generation_prompt));  // vLLM's extra
  const nlohmann::json* messages = body.Find("messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    return FieldError("messages", "messages must be a non-empty list");
  }
  for (const nlohmann::json& m : *messages) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return FieldError("messages", "each message needs a string role");
    }
    const auto content = m.find("content");
    if (content != m.end() && !content->is_string() && !content->is_array() && !content->is_null()) {
      return FieldError("messages", "a message's content must be a string or a list of text parts");
    }
  }
  RETURN_IF_ERROR(Tools(body, &r));
  std::string overflow;
  RETURN_IF_ERROR(body.String("context_overflow", &overflow));
  if (!overflow.empty()) {
    absl::StatusOr<ContextOverflow> policy = ParseContextOverflow(overflow);
    if (!policy.ok()) return FieldError("context_overflow", std::string(policy.status().message()));
    r.context_overflow = *policy;
  }
  // Again in the caller's member order: a template's tojson prints dicts in it.
  const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(text);
  r.messages = ordered["messages"];
  if (body.Find("tools") != nullptr) r.tools = ordered["tools"];
  v1::GenerateRequest prompt;
  prompt.set_model(c.model);
  prompt.set_add_special_tokens(false);  // the template writes the special tokens
  *prompt.mutable_sampling() = sampling;
  prompt.set_priority(c.priority);
  if (c.kv_policy) *prompt.mutable_kv_policy() = *c.kv_policy;
  c.prompts.push_back(std::move(prompt));
  return r;
}

absl::StatusOr<EmbeddingsRequest> ParseEmbeddingsRequest(const std::string& text) {
  ASSIGN_OR_RETURN(const Body body, Body::Parse(text));
  EmbeddingsRequest r;
  std::string model;
  RETURN_IF_ERROR(body.String("model", &model));
  r.embed.set_model(model);
  ASSIGN_OR_RETURN(const std::vector<v1::GenerateRequest> inputs, Prompts(body, "input", kMaxEmbeddingInputs));
  for (const v1::GenerateRequest& input : inputs) {
    v1::EmbedInput* in = r.embed.add_inputs();
    if (input.has_text()) in->set_text(input.text());
    if (input.has_token_ids()) *in->mutable_token_ids() = input.token_ids();
  }
  std::string format = "float";
  RETURN_IF_ERROR(body.String("encoding_format", &format));
  if (format != "float" && format != "base64") {
    return FieldError("encoding_format", "encoding_format must be \"float\" or \"base64\"");
  }
  r.base64 = format == "base64";
  if (body.Find("dimensions") != nullptr) {
    return FieldError("dimensions", "dimensions is not supported: embeddings have the model's hidden size");
  }
  ASSIGN_OR_RETURN(const auto priority, body.Int("priority", INT32_MIN, INT32_MAX));
  if (priority) r.embed.set_priority(static_cast<int32_t>(*priority));
  return r;
}

absl::StatusOr<TokenizeRequest> ParseTokenizeRequest(const std::string& text) {
  ASSIGN_OR_RETURN(const Body body, Body::Parse(text));
  TokenizeRequest r;
  RETURN_IF_ERROR(body.String("model", &r.model));
  if (body.Find("prompt") == nullptr) return FieldError("prompt", "prompt is required");
  RETURN_IF_ERROR(body.String("prompt", &r.prompt));
  RETURN_IF_ERROR(body.Bool("add_special_tokens", &r.add_special_tokens));
  return r;
}

absl::StatusOr<DetokenizeRequest> ParseDetokenizeRequest(const std::string& text) {
  ASSIGN_OR_RETURN(const Body body, Body::Parse(text));
  DetokenizeRequest r;
  RETURN_IF_ERROR(body.String("model", &r.model));
  const nlohmann::json* tokens = body.Find("tokens");
  if (tokens == nullptr || !tokens->is_array()) return FieldError("tokens", "tokens must be a list of token ids");
  ASSIGN_OR_RETURN(r.tokens, TokenIds(*tokens, "tokens"));
  return r;
}

}  // namespace tessera::coordinator
