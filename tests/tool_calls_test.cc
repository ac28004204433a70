// Tool calls read off a chat answer's text (coordinator/tool_calls.h): whole, and the
// same text fed a byte at a time as a stream delivers it; what is not a call stays
// content.
#include "coordinator/tool_calls.h"

#include <gtest/gtest.h>

namespace tessera::coordinator {
namespace {

struct Read {
  std::string content;
  std::vector<std::pair<std::string, std::string>> calls;  // name, arguments
};

// The answer `text` given to a stream in pieces of `piece` bytes (0: whole).
Read ReadAnswer(ToolCallFormat format, const std::string& text, size_t piece) {
  ToolCallStream stream(format);
  Read read;
  auto take = [&](ToolCallStream::Output out) {
    read.content += out.content;
    for (const ToolCall& c : out.calls) read.calls.emplace_back(c.name, c.arguments);
  };
  for (size_t i = 0; i < text.size(); i += piece == 0 ? text.size() : piece) {
    take(stream.Add(std::string_view(text).substr(i, piece == 0 ? text.size() : piece)));
  }
  take(stream.Finish());
  return read;
}

void ExpectRead(ToolCallFormat format, const std::string& text, const std::string& content,
                const std::vector<std::pair<std::string, std::string>>& calls) {
  for (size_t piece : {0, 1, 3}) {
    const Read read = ReadAnswer(format, text, piece);
    EXPECT_EQ(read.content, content) << text << " in pieces of " << piece;
    EXPECT_EQ(read.calls, calls) << text << " in pieces of " << piece;
  }
}

TEST(ToolCallsTest, HermesCallsAfterContent) {
  ExpectRead(ToolCallFormat::kHermes,
             "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
             "<tool_call>{\"name\": \"get_time\", \"arguments\": \"{\\\"tz\\\": \\\"CET\\\"}\"}</tool_call>",
             "Let me look.\n\n", {{"get_weather", R"({"city":"Paris"})"}, {"get_time", R"({"tz":"CET"})"}});
  // Text that only looks like the start of a call is content once it is not.
  ExpectRead(ToolCallFormat::kHermes, "a <tool and <tool_c> b <", "a <tool and <tool_c> b <", {});
}

TEST(ToolCallsTest, HermesMalformedCallsStayContent) {
  ExpectRead(ToolCallFormat::kHermes, "<tool_call>{\"name\": 3}</tool_call>", "<tool_call>{\"name\": 3}</tool_call>", {});
  ExpectRead(ToolCallFormat::kHermes, "<tool_call>not json</tool_call>x", "<tool_call>not json</tool_call>x", {});
  // An answer that ends inside a call: parsed as far as it goes.
  ExpectRead(ToolCallFormat::kHermes, "<tool_call>{\"name\": \"f\", \"arguments\": {}}", "", {{"f", "{}"}});
  ExpectRead(ToolCallFormat::kHermes, "<tool_call>{\"name\": \"f\"", "<tool_call>{\"name\": \"f\"", {});
}

TEST(ToolCallsTest, Llama3JsonCalls) {
  ExpectRead(ToolCallFormat::kLlama3Json, " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"a;b\"}}", "",
             {{"get_weather", R"({"city":"a;b"})"}});
  ExpectRead(ToolCallFormat::kLlama3Json,
             "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", \"arguments\": {\"x\": [1, 2]}}", "",
             {{"f", "{}"}, {"g", R"({"x":[1,2]})"}});
  // Not all calls, or no JSON at all: content as written.
  ExpectRead(ToolCallFormat::kLlama3Json, "{\"name\": \"f\", \"parameters\": {}}; oops",
             "{\"name\": \"f\", \"parameters\": {}}; oops", {});
  ExpectRead(ToolCallFormat::kLlama3Json, "The weather is fine.", "The weather is fine.", {});
  ExpectRead(ToolCallFormat::kNone, "<tool_call>{\"name\": \"f\"}</tool_call>",
             "<tool_call>{\"name\": \"f\"}</tool_call>", {});
}

TEST(ToolCallsTest, FormatNames) {
  EXPECT_EQ(*ParseToolCallFormat("hermes"), ToolCallFormat::kHermes);
  EXPECT_EQ(*ParseToolCallFormat("llama3_json"), ToolCallFormat::kLlama3Json);
  EXPECT_EQ(*ParseToolCallFormat("none"), ToolCallFormat::kNone);
  EXPECT_FALSE(ParseToolCallFormat("mistral").ok());
}

}  // namespace
}  // namespace tessera::coordinator
