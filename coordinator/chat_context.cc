#include "coordinator/chat_context.h"

#include "absl/strings/str_cat.h"

namespace tessera::coordinator {
namespace {

using nlohmann::ordered_json;

constexpr char kSummaryLabel[] = "Summary of the earlier conversation: ";

// A message's content as text: a string, text parts joined, or what it called.
std::string ContentText(const ordered_json& message) {
  const auto content = message.find("content");
  std::string text;
  if (content != message.end() && content->is_string()) text = content->get<std::string>();
  if (content != message.end() && content->is_array()) {
    for (const ordered_json& part : *content) {
      if (part.is_object() && part.contains("text") && part["text"].is_string()) {
        absl::StrAppend(&text, text.empty() ? "" : "\n", part["text"].get<std::string>());
      }
    }
  }
  if (message.contains("tool_calls") && message["tool_calls"].is_array()) {
    for (const ordered_json& call : message["tool_calls"]) {
      if (call.contains("function") && call["function"].is_object()) {
        absl::StrAppend(&text, text.empty() ? "" : " ", "[called ", call["function"].value("name", "?"), "(",
                        call["function"].value("arguments", ""), ")]");
      }
    }
  }
  return text;
}

// `text` added to a message's content, before or after what it has.
void AddToContent(ordered_json& message, const std::string& text, bool before) {
  ordered_json& content = message["content"];
  if (content.is_array()) {
    ordered_json part = {{"type", "text"}, {"text", text}};
    content.insert(before ? content.begin() : content.end(), std::move(part));
    return;
  }
  const std::string old = content.is_string() ? content.get<std::string>() : "";
  content = old.empty() ? text : before ? text + "\n\n" + old : old + "\n\n" + text;
}

}  // namespace

absl::StatusOr<ContextOverflow> ParseContextOverflow(std::string_view name) {
  if (name == "error") return ContextOverflow::kError;
  if (name == "truncate") return ContextOverflow::kTruncate;
  if (name == "summarize") return ContextOverflow::kSummarize;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown context overflow policy '", std::string(name), "' (error, truncate or summarize)"));
}

Conversation::Conversation(ordered_json messages) : messages_(std::move(messages)) {
  const size_t n = messages_.size();
  while (system_end_ < n && messages_[system_end_].value("role", "") == "system") ++system_end_;
  for (size_t i = system_end_; i < n; ++i) {
    if (i == system_end_ || messages_[i].value("role", "") == "user") turn_starts_.push_back(i);
  }
}

ordered_json Conversation::Without(size_t drop, const std::string& summary) const {
  ordered_json kept = ordered_json::array();
  for (size_t i = 0; i < system_end_; ++i) kept.push_back(messages_[i]);
  const size_t from = drop < turn_starts_.size() ? turn_starts_[drop] : messages_.size();
  for (size_t i = from; i < messages_.size(); ++i) kept.push_back(messages_[i]);
  if (summary.empty()) return kept;
  if (system_end_ > 0) {
    AddToContent(kept[system_end_ - 1], kSummaryLabel + summary, /*before=*/false);
  } else if (!kept.empty()) {
    AddToContent(kept[0], kSummaryLabel + summary, /*before=*/true);
  }
  return kept;
}

std::string Conversation::Transcript(size_t turns) const {
  std::string text;
  const size_t end = turns < turn_starts_.size() ? turn_starts_[turns] : messages_.size();
  for (size_t i = system_end_; i < end; ++i) {
    std::string role = messages_[i].value("role", "?");
    if (!role.empty()) role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
    absl::StrAppend(&text, role, ": ", ContentText(messages_[i]), "\n");
  }
  return text;
}

ordered_json SummaryRequestMessages(const std::string& transcript) {
  return ordered_json::array(
      {{{"role", "user"},
        {"content", "Summarize the conversation below in a few sentences, keeping what is needed to continue it.\n\n" +
                        transcript}}});
}

}  // namespace tessera::coordinator
