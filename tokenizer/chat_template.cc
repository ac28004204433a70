#include "tokenizer/chat_template.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace tessera::tokenizer {
namespace {

using nlohmann::ordered_json;

// A special token as tokenizer_config.json writes it: a string or {"content": ...}.
std::string TokenText(const ordered_json& config, const char* key) {
  if (!config.contains(key)) return "";
  const ordered_json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromSource(std::string_view source, std::string bos_token,
                                                      std::string eos_token) {
  ASSIGN_OR_RETURN(JinjaTemplate engine, JinjaTemplate::Parse(source));
  return ChatTemplate(std::move(engine), std::move(bos_token), std::move(eos_token));
}

absl::StatusOr<ChatTemplate> ChatTemplate::Load(const std::string& model_dir) {
  const std::string path = model_dir + "/tokenizer_config.json";
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no ", path, ": the model has no chat template"));
  const ordered_json config = ordered_json::parse(in, nullptr, false);
  if (config.is_discarded() || !config.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, " is not a JSON object"));
  std::string source;
  const ordered_json* chat = config.contains("chat_template") ? &config["chat_template"] : nullptr;
  if (chat != nullptr && chat->is_string()) {
    source = chat->get<std::string>();
  } else if (chat != nullptr && chat->is_array()) {
    for (const ordered_json& named : *chat) {
      if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
          named["template"].is_string()) {
        source = named["template"].get<std::string>();
      }
    }
  }
  if (source.empty()) return absl::NotFoundError(absl::StrCat(path, " has no chat_template"));
  return FromSource(source, TokenText(config, "bos_token"), TokenText(config, "eos_token"));
}

absl::StatusOr<std::string> ChatTemplate::Apply(const ordered_json& messages, bool add_generation_prompt,
                                                const ordered_json& extra) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a list");
  ordered_json flat = ordered_json::array();
  for (const ordered_json& m : messages) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return absl::InvalidArgumentError("each message needs a string role");
    }
    ordered_json message = m;
    if (m.contains("content") && m["content"].is_array()) {  // text parts
      std::vector<std::string> texts;
      for (const ordered_json& part : m["content"]) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
          return absl::InvalidArgumentError("message content parts must be {\"type\": \"text\", \"text\": ...}");
        }
        texts.push_back(part["text"].get<std::string>());
      }
      message["content"] = absl::StrJoin(texts, "\n");
    }
    // An assistant turn that only called tools has null content: templates read it as
    // a string. Its calls' arguments are JSON text in OpenAI's form; templates that
    // print them with tojson want the object. (vLLM hands templates the same.)
    if (m.contains("content") && m["content"].is_null()) message["content"] = "";
    if (message.contains("tool_calls") && message["tool_calls"].is_array()) {
      for (ordered_json& call : message["tool_calls"]) {
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object()) continue;
        ordered_json& arguments = call["function"]["arguments"];
        if (!arguments.is_string()) continue;
        ordered_json parsed = ordered_json::parse(arguments.get<std::string>(), nullptr, /*allow_exceptions=*/false);
        if (parsed.is_object()) arguments = std::move(parsed);
      }
    }
    flat.push_back(std::move(message));
  }
  ordered_json context = extra.is_object() ? extra : ordered_json::object();
  context["messages"] = std::move(flat);
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_;
  context["eos_token"] = eos_;
  return engine_.Render(context);
}

}  // namespace tessera::tokenizer
