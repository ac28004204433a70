// A Jinja engine for chat templates: the subset HuggingFace chat templates use,
// rendered as transformers' apply_chat_template renders them (trim_blocks,
// lstrip_blocks, loop controls, raise_exception, tojson, strftime_now). No C++ Jinja
// engine is in Debian; tests/chat_template_test.sh compares renderings byte for byte
// with python3-jinja2, the reference implementation.
//
// Supported: text, {{ }}, {% if/elif/else %}, {% for a[, b] in x [if c] %} with loop.*
// and {% else %}, {% set x = ... %} and {% set ns.x = ... %}, {% break/continue %},
// {# #}, whitespace control ({%- -%} {{- -}} {%+); literals (strings, numbers, lists,
// dicts, true/false/none), attribute and index access, slices, calls, filters, tests,
// not/and/or, comparisons, in, + - * / // % ~, conditional expressions. Anything else
// (macros, {% raw %}, unknown filters or tests) fails at parse time with the construct
// named, so a model whose template uses it is refused at load, not at its first chat.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tessera::tokenizer {

namespace jinja {
struct Node;
}

class JinjaTemplate {
 public:
  static absl::StatusOr<JinjaTemplate> Parse(std::string_view source);
  JinjaTemplate(JinjaTemplate&&) noexcept;
  JinjaTemplate& operator=(JinjaTemplate&&) noexcept;
  ~JinjaTemplate();

  // Renders with `context`'s members as the template's variables. Errors: a
  // raise_exception call (its message), or an operation on values that do not support
  // it (INVALID_ARGUMENT, naming it).
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context) const;

 private:
  JinjaTemplate();
  std::unique_ptr<std::vector<jinja::Node>> body_;
};

}  // namespace tessera::tokenizer
