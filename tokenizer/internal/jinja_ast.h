// The parsed form of a Jinja template (tokenizer/jinja.h): expressions and statements
// of the subset chat templates use. Built by jinja_parse.cc, run by jinja_render.cc.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tessera::tokenizer::jinja {

using Value = nlohmann::ordered_json;  // Python's insertion-ordered dicts

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // literal
    kName,     // name
    kList,     // args: the items
    kDict,     // args: key, value, key, value, ...
    kAttr,     // args[0].name
    kIndex,    // args[0][args[1]]
    kSlice,    // args[0][args[1]:args[2]:args[3]] (null ExprPtr: omitted)
    kCall,     // args[0](args[1..], kwargs)
    kFilter,   // args[0] | name(args[1..], kwargs)
    kTest,     // args[0] is [not] name(args[1..])
    kUnary,    // name ("not", "-", "+") args[0]
    kBinary,   // args[0] name args[1]: or and == != < <= > >= in + - ~ * / // % **
    kCondition,  // args[1] if args[0] else args[2] (args[2] null: undefined)
  };
  Kind kind;
  Value literal;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negate = false;  // "is not", "not in"
};

struct Node;
using Body = std::vector<Node>;

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kBreak, kContinue };
  Kind kind;
  std::string text;                                // kText
  ExprPtr expr;                                    // kOutput, kSet (the value), kFor (the iterable)
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf: (condition, body), in order
  Body body, else_body;                            // kIf's else, kFor's body and else
  std::vector<std::string> targets;                // kFor's loop names, kSet's name
  std::string attribute;                           // kSet of name.attribute (a namespace)
  ExprPtr filter;                                  // kFor ... if filter
};

// The template's statements (jinja_parse.cc); INVALID_ARGUMENT naming what it cannot
// read or does not support.
absl::StatusOr<Body> ParseTemplate(std::string_view source);

}  // namespace tessera::tokenizer::jinja
