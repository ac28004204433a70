// Template text -> jinja::Node tree: the tags are found and whitespace is trimmed as
// HuggingFace's environment has it (trim_blocks, lstrip_blocks, and - / + markers),
// then each tag's expression is parsed by recursive descent in Jinja's precedence.
#include <cctype>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "tokenizer/internal/jinja_ast.h"
#include "tokenizer/jinja.h"

namespace tessera::tokenizer {
namespace jinja {
namespace {

const std::set<std::string> kFilters = {"trim",  "length", "count",    "tojson", "string",  "upper",
                                        "lower", "title",  "capitalize", "replace", "join", "first",
                                        "last",  "default", "d",       "list",   "items",   "abs",
                                        "int",   "float",  "safe",     "reverse", "selectattr", "rejectattr",
                                        "map",   "unique", "indent",   "e",      "escape",  "wordcount"};
const std::set<std::string> kTests = {"defined", "undefined", "none",     "string",  "number", "integer", "float",
                                      "boolean", "mapping",   "iterable", "sequence", "true",  "false",   "odd",
                                      "even",    "equalto",   "eq",       "sameas",  "in",     "divisibleby"};

absl::Status Unsupported(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("chat template: unsupported Jinja construct ", what));
}

// ---- Tags and text -------------------------------------------------------------

struct Segment {
  enum class Kind { kText, kOutput, kBlock, kComment } kind;
  std::string content;
  bool strip_before = false, strip_after = false, keep_indent = false;
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

absl::StatusOr<std::vector<Segment>> Split(std::string_view s) {
  std::vector<Segment> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t open = s.find('{', pos);
    while (open != std::string_view::npos && open + 1 < s.size() && s[open + 1] != '{' && s[open + 1] != '%' &&
           s[open + 1] != '#') {
      open = s.find('{', open + 1);
    }
    if (open == std::string_view::npos || open + 1 >= s.size()) {
      out.push_back({Segment::Kind::kText, std::string(s.substr(pos))});
      break;
    }
    if (open > pos) out.push_back({Segment::Kind::kText, std::string(s.substr(pos, open - pos))});
    const char type = s[open + 1];
    Segment tag{type == '{' ? Segment::Kind::kOutput : type == '%' ? Segment::Kind::kBlock : Segment::Kind::kComment};
    size_t i = open + 2;
    if (i < s.size() && s[i] == '-') tag.strip_before = true, ++i;
    else if (i < s.size() && s[i] == '+') tag.keep_indent = true, ++i;
    const std::string close = type == '{' ? "}}" : type == '%' ? "%}" : "#}";
    size_t end = std::string_view::npos;
    for (size_t j = i; j + 1 < s.size(); ++j) {
      if (type != '#' && (s[j] == '\'' || s[j] == '"')) {  // a quoted string may hold the closer
        const char quote = s[j];
        for (++j; j < s.size() && s[j] != quote; ++j) {
          if (s[j] == '\\') ++j;
        }
        continue;
      }
      if (s.compare(j, 2, close) == 0) {
        end = j;
        break;
      }
    }
    if (end == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("chat template: unclosed tag at byte ", open));
    }
    size_t content_end = end;
    if (content_end > i && s[content_end - 1] == '-') tag.strip_after = true, --content_end;
    tag.content = std::string(s.substr(i, content_end - i));
    out.push_back(std::move(tag));
    pos = end + 2;
  }
  // Whitespace around tags: the - markers, lstrip_blocks (a block tag's indentation,
  // when only spaces stand before it on its line in the source) and trim_blocks (the
  // newline after a block tag). Indentation is judged on the source text, before the
  // previous tag trimmed it.
  std::vector<size_t> indentation(out.size(), std::string::npos);  // bytes to cut from the text before tag k
  for (size_t k = 1; k < out.size(); ++k) {
    if (out[k].kind == Segment::Kind::kText || out[k - 1].kind != Segment::Kind::kText) continue;
    const std::string& before = out[k - 1].content;
    size_t n = before.size();
    while (n > 0 && (before[n - 1] == ' ' || before[n - 1] == '\t')) --n;
    if (n == 0 ? k == 1 : before[n - 1] == '\n') indentation[k] = before.size() - n;
  }
  for (size_t k = 0; k < out.size(); ++k) {
    Segment& tag = out[k];
    if (tag.kind == Segment::Kind::kText) continue;
    const bool block = tag.kind != Segment::Kind::kOutput;
    if (k > 0 && out[k - 1].kind == Segment::Kind::kText) {
      std::string& before = out[k - 1].content;
      if (tag.strip_before) {
        while (!before.empty() && IsSpace(before.back())) before.pop_back();
      } else if (block && !tag.keep_indent && indentation[k] != std::string::npos) {
        before.resize(before.size() >= indentation[k] ? before.size() - indentation[k] : 0);
      }
    }
    if (k + 1 < out.size() && out[k + 1].kind == Segment::Kind::kText) {
      std::string& after = out[k + 1].content;
      if (tag.strip_after) {
        size_t n = 0;
        while (n < after.size() && IsSpace(after[n])) ++n;
        after.erase(0, n);
      } else if (block && !after.empty() && after[0] == '\n') {  // trim_blocks
        after.erase(0, 1);
      }
    }
  }
  return out;
}

// ---- Expressions ---------------------------------------------------------------

struct Token {
  enum class Kind { kName, kString, kNumber, kOperator, kEnd } kind;
  std::string text;
  Value number;
};

absl::StatusOr<std::vector<Token>> Lex(const std::string& s) {
  std::vector<Token> tokens;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (IsSpace(c)) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      tokens.push_back({Token::Kind::kName, s.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      bool real = false;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || (s[j] == '.' && !real &&
                                                                                 j + 1 < s.size() &&
                                                                                 std::isdigit(static_cast<unsigned char>(s[j + 1]))))) {
        real |= s[j] == '.';
        ++j;
      }
      const std::string text = s.substr(i, j - i);
      tokens.push_back({Token::Kind::kNumber, text, real ? Value(std::stod(text)) : Value(std::stoll(text))});
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string text;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] != '\\' || j + 1 >= s.size()) {
          text += s[j];
          continue;
        }
        const char e = s[++j];
        text += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
      }
      if (j >= s.size()) return absl::InvalidArgumentError("chat template: unterminated string");
      tokens.push_back({Token::Kind::kString, text});
      i = j + 1;
    } else {
      static const char* kTwo[] = {"==", "!=", "<=", ">=", "//", "**"};
      std::string op(1, c);
      for (const char* two : kTwo) {
        if (s.compare(i, 2, two) == 0) op = two;
      }
      if (std::string("+-*/%~<>()[]{},.:|=!").find(c) == std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("chat template: unexpected character '", std::string(1, c), "'"));
      }
      tokens.push_back({Token::Kind::kOperator, op});
      i += op.size();
    }
  }
  tokens.push_back({Token::Kind::kEnd, ""});
  return tokens;
}

class ExprParser {
 public:
  explicit ExprParser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  bool AtEnd() const { return t_[p_].kind == Token::Kind::kEnd; }
  bool IsName(const char* word) const { return t_[p_].kind == Token::Kind::kName && t_[p_].text == word; }
  bool IsOp(const char* op) const { return t_[p_].kind == Token::Kind::kOperator && t_[p_].text == op; }
  const Token& Next() { return t_[p_++]; }
  absl::Status Expect(const char* op) {
    if (!IsOp(op)) return absl::InvalidArgumentError(absl::StrCat("chat template: expected '", op, "' near '", t_[p_].text, "'"));
    ++p_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Name() {
    if (t_[p_].kind != Token::Kind::kName) {
      return absl::InvalidArgumentError(absl::StrCat("chat template: expected a name near '", t_[p_].text, "'"));
    }
    return Next().text;
  }

  absl::StatusOr<ExprPtr> Expression() {
    ASSIGN_OR_RETURN(ExprPtr value, Or());
    if (!IsName("if")) return value;
    ++p_;
    ASSIGN_OR_RETURN(ExprPtr condition, Or());
    ExprPtr otherwise;
    if (IsName("else")) {
      ++p_;
      ASSIGN_OR_RETURN(otherwise, Expression());
    }
    return Make(Expr::Kind::kCondition, "", std::move(condition), std::move(value), std::move(otherwise));
  }

 private:
  static ExprPtr Make(Expr::Kind kind, std::string name, ExprPtr a = nullptr, ExprPtr b = nullptr,
                      ExprPtr c = nullptr) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->name = std::move(name);
    e->args.push_back(std::move(a));
    if (b || c || kind == Expr::Kind::kCondition || kind == Expr::Kind::kBinary) e->args.push_back(std::move(b));
    if (c || kind == Expr::Kind::kCondition) e->args.push_back(std::move(c));
    return e;
  }

  // One level of left-associative binary operators.
  template <typename Sub>
  absl::StatusOr<ExprPtr> Binary(Sub sub, std::initializer_list<const char*> ops, bool words) {
    ASSIGN_OR_RETURN(ExprPtr left, (this->*sub)());
    while (true) {
      const char* found = nullptr;
      for (const char* op : ops) {
        if (words ? IsName(op) : IsOp(op)) found = op;
      }
      if (found == nullptr) return left;
      ++p_;
      ASSIGN_OR_RETURN(ExprPtr right, (this->*sub)());
      left = Make(Expr::Kind::kBinary, found, std::move(left), std::move(right));
    }
  }

  absl::StatusOr<ExprPtr> Or() { return Binary(&ExprParser::And, {"or"}, true); }
  absl::StatusOr<ExprPtr> And() { return Binary(&ExprParser::Not, {"and"}, true); }
  absl::StatusOr<ExprPtr> Not() {
    if (!IsName("not")) return Compare();
    ++p_;
    ASSIGN_OR_RETURN(ExprPtr operand, Not());
    return Make(Expr::Kind::kUnary, "not", std::move(operand));
  }
  absl::StatusOr<ExprPtr> Compare() {
    ASSIGN_OR_RETURN(ExprPtr left, Add());
    while (true) {
      std::string op;
      bool negate = false;
      for (const char* o : {"==", "!=", "<", "<=", ">", ">="}) {
        if (IsOp(o)) op = o;
      }
      if (op.empty() && IsName("in")) op = "in";
      if (op.empty() && IsName("not") && t_[p_ + 1].kind == Token::Kind::kName && t_[p_ + 1].text == "in") {
        op = "in", negate = true, ++p_;
      }
      if (op.empty()) return left;
      ++p_;
      ASSIGN_OR_RETURN(ExprPtr right, Add());
      left = Make(Expr::Kind::kBinary, op, std::move(left), std::move(right));
      left->negate = negate;
    }
  }
  absl::StatusOr<ExprPtr> Add() { return Binary(&ExprParser::Concat, {"+", "-"}, false); }
  absl::StatusOr<ExprPtr> Concat() { return Binary(&ExprParser::Multiply, {"~"}, false); }
  absl::StatusOr<ExprPtr> Multiply() { return Binary(&ExprParser::Power, {"*", "/", "//", "%"}, false); }
  absl::StatusOr<ExprPtr> Power() { return Binary(&ExprParser::UnaryWithFilters, {"**"}, false); }
  absl::StatusOr<ExprPtr> UnaryWithFilters() { return Unary(true); }

  absl::StatusOr<ExprPtr> Unary(bool with_filters) {
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      const std::string op = Next().text;
      ASSIGN_OR_RETURN(ExprPtr operand, Unary(false));
      node = Make(Expr::Kind::kUnary, op, std::move(operand));
    } else {
      ASSIGN_OR_RETURN(node, Primary());
    }
    ASSIGN_OR_RETURN(node, Postfix(std::move(node)));
    if (!with_filters) return node;
    while (true) {
      if (IsOp("|")) {
        ++p_;
        ASSIGN_OR_RETURN(std::string name, Name());
        if (!kFilters.count(name)) return Unsupported(absl::StrCat("filter '", name, "'"));
        auto filter = Make(Expr::Kind::kFilter, name, std::move(node));
        if (IsOp("(")) RETURN_IF_ERROR(Arguments(filter.get()));
        node = std::move(filter);
      } else if (IsName("is")) {
        ++p_;
        bool negate = false;
        if (IsName("not")) negate = true, ++p_;
        ASSIGN_OR_RETURN(std::string name, Name());
        if (!kTests.count(name)) return Unsupported(absl::StrCat("test '", name, "'"));
        auto test = Make(Expr::Kind::kTest, name, std::move(node));
        test->negate = negate;
        if (IsOp("(")) {
          RETURN_IF_ERROR(Arguments(test.get()));
        } else if (!AtEnd() && (t_[p_].kind == Token::Kind::kString || t_[p_].kind == Token::Kind::kNumber)) {
          ASSIGN_OR_RETURN(ExprPtr argument, Primary());  // `is equalto 3`
          test->args.push_back(std::move(argument));
        }
        node = std::move(test);
      } else {
        return node;
      }
    }
  }

  // (a, b, key=c) after a callee, a filter or a test.
  absl::Status Arguments(Expr* call) {
    RETURN_IF_ERROR(Expect("("));
    while (!IsOp(")")) {
      if (t_[p_].kind == Token::Kind::kName && t_[p_ + 1].kind == Token::Kind::kOperator && t_[p_ + 1].text == "=") {
        const std::string key = Next().text;
        ++p_;
        ASSIGN_OR_RETURN(ExprPtr value, Expression());
        call->kwargs.emplace_back(key, std::move(value));
      } else {
        ASSIGN_OR_RETURN(ExprPtr value, Expression());
        call->args.push_back(std::move(value));
      }
      if (!IsOp(",")) break;
      ++p_;
    }
    return Expect(")");
  }

  absl::StatusOr<ExprPtr> Postfix(ExprPtr node) {
    while (true) {
      if (IsOp(".")) {
        ++p_;
        ASSIGN_OR_RETURN(std::string name, Name());
        node = Make(Expr::Kind::kAttr, name, std::move(node));
      } else if (IsOp("[")) {
        ++p_;
        ExprPtr parts[3];
        int part = 0;
        bool slice = false;
        while (!IsOp("]")) {
          if (IsOp(":")) {
            if (++part > 2) return absl::InvalidArgumentError("chat template: a slice has at most two ':'");
            slice = true;
            ++p_;
            continue;
          }
          ASSIGN_OR_RETURN(parts[part], Expression());
        }
        ++p_;
        if (slice) {
          auto s = Make(Expr::Kind::kSlice, "", std::move(node));
          for (ExprPtr& p : parts) s->args.push_back(std::move(p));
          node = std::move(s);
        } else {
          node = Make(Expr::Kind::kIndex, "", std::move(node), std::move(parts[0]));
        }
      } else if (IsOp("(")) {
        auto call = Make(Expr::Kind::kCall, "", std::move(node));
        RETURN_IF_ERROR(Arguments(call.get()));
        node = std::move(call);
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> Primary() {
    const Token& token = Next();
    auto literal = [](Value v) {
      auto e = std::make_unique<Expr>();
      e->kind = Expr::Kind::kLiteral;
      e->literal = std::move(v);
      return e;
    };
    switch (token.kind) {
      case Token::Kind::kString: {
        std::string text = token.text;
        while (t_[p_].kind == Token::Kind::kString) text += Next().text;  // 'a' 'b' is 'ab'
        return literal(text);
      }
      case Token::Kind::kNumber:
        return literal(token.number);
      case Token::Kind::kName: {
        if (token.text == "true" || token.text == "True") return literal(true);
        if (token.text == "false" || token.text == "False") return literal(false);
        if (token.text == "none" || token.text == "None") return literal(nullptr);
        auto e = std::make_unique<Expr>();
        e->kind = Expr::Kind::kName;
        e->name = token.text;
        return e;
      }
      case Token::Kind::kOperator:
        if (token.text == "(") {
          ASSIGN_OR_RETURN(ExprPtr inner, Expression());
          if (IsOp(",")) return Unsupported("tuple");
          RETURN_IF_ERROR(Expect(")"));
          return inner;
        }
        if (token.text == "[" || token.text == "{") {
          auto e = std::make_unique<Expr>();
          e->kind = token.text == "[" ? Expr::Kind::kList : Expr::Kind::kDict;
          const char* close = token.text == "[" ? "]" : "}";
          while (!IsOp(close)) {
            ASSIGN_OR_RETURN(ExprPtr item, Expression());
            e->args.push_back(std::move(item));
            if (e->kind == Expr::Kind::kDict) {
              RETURN_IF_ERROR(Expect(":"));
              ASSIGN_OR_RETURN(ExprPtr value, Expression());
              e->args.push_back(std::move(value));
            }
            if (!IsOp(",")) break;
            ++p_;
          }
          RETURN_IF_ERROR(Expect(close));
          return e;
        }
        [[fallthrough]];
      default:
        return absl::InvalidArgumentError(absl::StrCat("chat template: unexpected '", token.text, "'"));
    }
  }

  std::vector<Token> t_;
  size_t p_ = 0;
};

absl::StatusOr<ExprPtr> ParseExpression(const std::string& text) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(text));
  ExprParser parser(std::move(tokens));
  ASSIGN_OR_RETURN(ExprPtr e, parser.Expression());
  if (!parser.AtEnd()) return absl::InvalidArgumentError(absl::StrCat("chat template: trailing text in '", text, "'"));
  return e;
}

// ---- Statements ----------------------------------------------------------------

class BodyParser {
 public:
  explicit BodyParser(std::vector<Segment> segments) : s_(std::move(segments)) {}

  // Parses until a block tag whose first word is in `until` (returned in `*ended`),
  // or the end of the template when `until` is empty.
  absl::StatusOr<Body> Parse(const std::set<std::string>& until, std::string* ended, std::string* rest) {
    Body body;
    while (i_ < s_.size()) {
      Segment& seg = s_[i_++];
      if (seg.kind == Segment::Kind::kComment) continue;
      if (seg.kind == Segment::Kind::kText) {
        if (!seg.content.empty()) body.push_back(Node{Node::Kind::kText, seg.content});
        continue;
      }
      if (seg.kind == Segment::Kind::kOutput) {
        Node n{Node::Kind::kOutput};
        ASSIGN_OR_RETURN(n.expr, ParseExpression(seg.content));
        body.push_back(std::move(n));
        continue;
      }
      size_t k = 0;
      while (k < seg.content.size() && IsSpace(seg.content[k])) ++k;
      size_t w = k;
      while (w < seg.content.size() && (std::isalnum(static_cast<unsigned char>(seg.content[w])) || seg.content[w] == '_')) ++w;
      const std::string word = seg.content.substr(k, w - k), args = seg.content.substr(w);
      if (until.count(word)) {
        *ended = word;
        *rest = args;
        return body;
      }
      if (word == "if") {
        ASSIGN_OR_RETURN(Node n, If(args));
        body.push_back(std::move(n));
      } else if (word == "for") {
        ASSIGN_OR_RETURN(Node n, For(args));
        body.push_back(std::move(n));
      } else if (word == "set") {
        ASSIGN_OR_RETURN(Node n, Set(args));
        body.push_back(std::move(n));
      } else if (word == "break" || word == "continue") {
        body.push_back(Node{word == "break" ? Node::Kind::kBreak : Node::Kind::kContinue});
      } else if (word == "generation" || word == "endgeneration") {
        // transformers' marker of assistant text (for training masks): renders nothing.
      } else {
        return Unsupported(absl::StrCat("{% ", word, " %}"));
      }
    }
    if (!until.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("chat template: missing {% ", *until.rbegin(), " %}"));
    }
    return body;
  }

 private:
  absl::StatusOr<Node> If(const std::string& first_condition) {
    Node n{Node::Kind::kIf};
    std::string condition = first_condition, ended, rest;
    while (true) {
      ASSIGN_OR_RETURN(ExprPtr test, ParseExpression(condition));
      ASSIGN_OR_RETURN(Body body, Parse({"elif", "else", "endif"}, &ended, &rest));
      n.branches.emplace_back(std::move(test), std::move(body));
      if (ended == "elif") {
        condition = rest;
        continue;
      }
      if (ended == "else") {
        ASSIGN_OR_RETURN(n.else_body, Parse({"endif"}, &ended, &rest));
      }
      return n;
    }
  }

  absl::StatusOr<Node> For(const std::string& header) {
    Node n{Node::Kind::kFor};
    ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(header));
    size_t p = 0;
    while (tokens[p].kind == Token::Kind::kName && tokens[p].text != "in") {
      n.targets.push_back(tokens[p++].text);
      if (tokens[p].kind == Token::Kind::kOperator && tokens[p].text == ",") ++p;
    }
    if (n.targets.empty() || n.targets.size() > 2 || tokens[p].text != "in") {
      return absl::InvalidArgumentError(absl::StrCat("chat template: cannot read {% for", header, " %}"));
    }
    std::vector<Token> rest(tokens.begin() + static_cast<long>(p) + 1, tokens.end());
    ExprParser parser(std::move(rest));
    ASSIGN_OR_RETURN(n.expr, parser.Expression());  // stops before `if`: that is the filter
    if (parser.IsName("recursive")) return Unsupported("{% for ... recursive %}");
    if (!parser.AtEnd()) {
      return absl::InvalidArgumentError(absl::StrCat("chat template: cannot read {% for", header, " %}"));
    }
    if (n.expr->kind == Expr::Kind::kCondition && n.expr->args[2] == nullptr) {  // `for x in xs if c`
      n.filter = std::move(n.expr->args[0]);
      n.expr = std::move(n.expr->args[1]);
    }
    std::string ended, tail;
    ASSIGN_OR_RETURN(n.body, Parse({"else", "endfor"}, &ended, &tail));
    if (ended == "else") {
      ASSIGN_OR_RETURN(n.else_body, Parse({"endfor"}, &ended, &tail));
    }
    return n;
  }

  absl::StatusOr<Node> Set(const std::string& statement) {
    Node n{Node::Kind::kSet};
    const size_t eq = statement.find('=');
    if (eq == std::string::npos) return Unsupported("{% set %} block (without '=')");
    std::string target = statement.substr(0, eq);
    target.erase(0, target.find_first_not_of(" \t\n"));
    target.erase(target.find_last_not_of(" \t\n") + 1);
    if (const size_t dot = target.find('.'); dot != std::string::npos) {
      n.attribute = target.substr(dot + 1);
      target.resize(dot);
    }
    if (target.empty() || target.find_first_of(" ,") != std::string::npos) {
      return Unsupported(absl::StrCat("{% set", statement, " %}"));
    }
    n.targets.push_back(target);
    ASSIGN_OR_RETURN(n.expr, ParseExpression(statement.substr(eq + 1)));
    return n;
  }

  std::vector<Segment> s_;
  size_t i_ = 0;
};

}  // namespace

absl::StatusOr<Body> ParseTemplate(std::string_view source) {
  ASSIGN_OR_RETURN(std::vector<Segment> segments, Split(source));
  BodyParser parser(std::move(segments));
  std::string ended, rest;
  return parser.Parse({}, &ended, &rest);
}

}  // namespace jinja
}  // namespace tessera::tokenizer
