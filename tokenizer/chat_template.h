// ChatTemplate: a model's chat template (tokenizer_config.json's chat_template) applied
// to OpenAI-style messages, as transformers' apply_chat_template renders it
// (tokenizer/jinja.h is the engine).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenizer/jinja.h"

namespace tessera::tokenizer {

class ChatTemplate {
 public:
  // From `model_dir`/tokenizer_config.json: chat_template (a string, or a list of
  // {"name", "template"} of which "default" is taken), bos_token and eos_token (strings
  // or {"content": ...}). NOT_FOUND when there is no template; INVALID_ARGUMENT when
  // the template uses what the engine does not support (named).
  static absl::StatusOr<ChatTemplate> Load(const std::string& model_dir);
  static absl::StatusOr<ChatTemplate> FromSource(std::string_view source, std::string bos_token,
                                                 std::string eos_token);

  // `messages`: OpenAI's list of {"role", "content"}, content a string or a list of
  // {"type": "text", "text"} parts (joined with "\n", as vLLM does), or null (""); an
  // assistant's tool_calls have their JSON-text arguments parsed into objects. `extra`
  // members are passed to the template as variables too (e.g. `tools`).
  absl::StatusOr<std::string> Apply(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                    const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

 private:
  ChatTemplate(JinjaTemplate engine, std::string bos, std::string eos)
      : engine_(std::move(engine)), bos_(std::move(bos)), eos_(std::move(eos)) {}
  JinjaTemplate engine_;
  std::string bos_, eos_;
};

}  // namespace tessera::tokenizer
