#include "coordinator/tool_calls.h"

#include <cctype>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tessera::coordinator {
namespace {

using nlohmann::json;

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";

// One call's JSON: {"name": "...", "arguments" or "parameters": {...}}; nullopt for
// anything else.
std::optional<ToolCall> ParseCall(std::string_view text) {
  const json call = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!call.is_object() || !call.contains("name") || !call["name"].is_string()) return std::nullopt;
  json arguments = json::object();
  for (const char* key : {"arguments", "parameters"}) {
    if (call.contains(key)) arguments = call[key];
  }
  if (arguments.is_string()) {  // already a JSON text, as OpenAI's own form has it
    arguments = json::parse(arguments.get<std::string>(), nullptr, false);
  }
  if (!arguments.is_object()) return std::nullopt;
  return ToolCall{call["name"].get<std::string>(), arguments.dump()};
}

std::string_view TrimLeft(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  return s;
}

std::string_view Trim(std::string_view s) {
  s = TrimLeft(s);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The length of the longest end of `text` that `marker` starts with (and is shorter
// than it): text that may become the marker once more arrives.
size_t PartialMarker(std::string_view text, std::string_view marker) {
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

// `text` cut at the ';' that are outside strings, objects and arrays.
std::vector<std::string_view> SplitTopLevel(std::string_view text) {
  std::vector<std::string_view> parts;
  int depth = 0;
  bool in_string = false, escaped = false;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == ';' && depth == 0) {
      parts.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(text.substr(start));
  return parts;
}

}  // namespace

absl::StatusOr<ToolCallFormat> ParseToolCallFormat(std::string_view name) {
  if (name == "none") return ToolCallFormat::kNone;
  if (name == "hermes") return ToolCallFormat::kHermes;
  if (name == "llama3_json") return ToolCallFormat::kLlama3Json;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tool call format '", std::string(name), "' (none, hermes or llama3_json)"));
}

ToolCallStream::Output ToolCallStream::Add(std::string_view text) {
  held_.append(text);
  switch (format_) {
    case ToolCallFormat::kHermes:
      return AddHermes(/*final=*/false);
    case ToolCallFormat::kLlama3Json: {
      if (json_answer_ < 0) {
        // Decided by the answer's first characters: a JSON object, or the tag before one.
        const std::string_view start = TrimLeft(held_);
        if (start.empty() || (start.size() < kPythonTag.size() && kPythonTag.substr(0, start.size()) == start)) {
          return {};
        }
        json_answer_ = start.front() == '{' || start.substr(0, kPythonTag.size()) == kPythonTag ? 1 : 0;
      }
      if (json_answer_ == 1) return {};  // parsed whole at the end
      return {std::exchange(held_, {}), {}};
    }
    case ToolCallFormat::kNone:
      break;
  }
  return {std::exchange(held_, {}), {}};
}

ToolCallStream::Output ToolCallStream::Finish() {
  switch (format_) {
    case ToolCallFormat::kHermes:
      return AddHermes(/*final=*/true);
    case ToolCallFormat::kLlama3Json:
      return FinishLlama3Json();
    case ToolCallFormat::kNone:
      break;
  }
  return {std::exchange(held_, {}), {}};
}

ToolCallStream::Output ToolCallStream::AddHermes(bool final) {
  Output out;
  while (true) {
    if (!in_call_) {
      const size_t open = held_.find(kOpen);
      if (open == std::string::npos) {
        const size_t keep = final ? 0 : PartialMarker(held_, kOpen);
        out.content += held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return out;
      }
      out.content += held_.substr(0, open);
      held_.erase(0, open + kOpen.size());
      in_call_ = true;
    }
    const size_t close = held_.find(kClose);
    if (close == std::string::npos && !final) return out;
    // A call the answer ended inside is parsed as far as it goes.
    const size_t end = close == std::string::npos ? held_.size() : close;
    const std::string body = held_.substr(0, end);
    held_.erase(0, close == std::string::npos ? end : end + kClose.size());
    in_call_ = false;
    if (std::optional<ToolCall> call = ParseCall(body)) {
      out.calls.push_back(std::move(*call));
    } else {
      out.content.append(kOpen).append(body).append(close == std::string::npos ? "" : kClose);
    }
  }
}

ToolCallStream::Output ToolCallStream::FinishLlama3Json() {
  std::string text = std::exchange(held_, {});
  if (json_answer_ != 1) return {std::move(text), {}};
  std::string_view body = Trim(text);
  if (body.substr(0, kPythonTag.size()) == kPythonTag) body.remove_prefix(kPythonTag.size());
  Output out;
  for (std::string_view part : SplitTopLevel(body)) {
    std::optional<ToolCall> call = ParseCall(Trim(part));
    if (!call) return {std::move(text), {}};  // not all calls: the answer is content
    out.calls.push_back(std::move(*call));
  }
  return out;
}

}  // namespace tessera::coordinator
