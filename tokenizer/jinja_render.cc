// jinja::Node tree + variables -> text, with Python's semantics where chat templates
// lean on them: truthiness, + on strings and lists, str() of values, slices, string
// and dict methods, json.dumps for tojson (", " and ": " separators, no ASCII escapes).
#include <cmath>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "tokenizer/internal/jinja_ast.h"
#include "tokenizer/jinja.h"

namespace tessera::tokenizer {
namespace jinja {
namespace {

Value Undefined() { return Value(Value::value_t::discarded); }
bool IsUndefined(const Value& v) { return v.is_discarded(); }

absl::Status Error(const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("chat template: ", message));
}

const char* TypeName(const Value& v) {
  if (IsUndefined(v)) return "undefined";
  switch (v.type()) {
    case Value::value_t::null: return "none";
    case Value::value_t::boolean: return "bool";
    case Value::value_t::string: return "string";
    case Value::value_t::array: return "list";
    case Value::value_t::object: return "dict";
    case Value::value_t::number_float: return "float";
    default: return "int";
  }
}

bool Truthy(const Value& v) {
  if (IsUndefined(v) || v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_float()) return v.get<double>() != 0;
  if (v.is_number()) return v.get<int64_t>() != 0;
  // (nlohmann's empty() is false for every string, "" included.)
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  if (v.is_array() || v.is_object()) return !v.empty();
  return true;
}

// Python's repr of a float: the shortest digits that read back the same, ".0" kept.
std::string FloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buffer[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, d);
    if (std::strtod(buffer, nullptr) == d) break;
  }
  std::string text = buffer;
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return text;
}

std::string Repr(const Value& v);

// Python's str() of a value, as {{ }} prints it.
std::string Str(const Value& v) {
  if (IsUndefined(v)) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_null()) return "None";
  if (v.is_number_float()) return FloatRepr(v.get<double>());
  if (v.is_number()) return std::to_string(v.get<int64_t>());
  return Repr(v);
}

std::string Repr(const Value& v) {
  if (v.is_string()) {
    std::string out = "'";
    for (char c : v.get<std::string>()) {
      if (c == '\'' || c == '\\') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    return out + "'";
  }
  if (v.is_array()) {
    std::vector<std::string> items;
    for (const Value& x : v) items.push_back(Repr(x));
    return "[" + absl::StrJoin(items, ", ") + "]";
  }
  if (v.is_object()) {
    std::vector<std::string> items;
    for (auto it = v.begin(); it != v.end(); ++it) items.push_back(Repr(Value(it.key())) + ": " + Repr(it.value()));
    return "{" + absl::StrJoin(items, ", ") + "}";
  }
  return Str(v);
}

// Python's json.dumps(v, ensure_ascii=False[, indent=N]).
void Json(const Value& v, int indent, int depth, std::string* out) {
  auto newline = [&](int d) {
    if (indent >= 0) *out += "\n" + std::string(static_cast<size_t>(indent * d), ' ');
  };
  if (v.is_string()) {
    *out += '"';
    for (unsigned char c : v.get<std::string>()) {
      switch (c) {
        case '"': *out += "\\\""; break;
        case '\\': *out += "\\\\"; break;
        case '\n': *out += "\\n"; break;
        case '\r': *out += "\\r"; break;
        case '\t': *out += "\\t"; break;
        case '\b': *out += "\\b"; break;
        case '\f': *out += "\\f"; break;
        default:
          if (c < 0x20) {
            char u[8];
            std::snprintf(u, sizeof(u), "\\u%04x", c);
            *out += u;
          } else {
            *out += static_cast<char>(c);
          }
      }
    }
    *out += '"';
  } else if (v.is_array() || v.is_object()) {
    const bool object = v.is_object();
    *out += object ? '{' : '[';
    if (v.empty()) {
      *out += object ? '}' : ']';
      return;
    }
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      *out += first ? "" : (indent >= 0 ? "," : ", ");
      first = false;
      newline(depth + 1);
      if (object) {
        Json(Value(it.key()), indent, depth + 1, out);
        *out += ": ";
      }
      Json(it.value(), indent, depth + 1, out);
    }
    newline(depth);
    *out += object ? '}' : ']';
  } else if (v.is_null() || IsUndefined(v)) {
    *out += "null";
  } else if (v.is_boolean()) {
    *out += v.get<bool>() ? "true" : "false";
  } else {
    *out += Str(v);
  }
}

// Python's index rules: negative from the end; nullopt when out of range.
std::optional<size_t> Position(int64_t i, size_t size) {
  if (i < 0) i += static_cast<int64_t>(size);
  if (i < 0 || i >= static_cast<int64_t>(size)) return std::nullopt;
  return static_cast<size_t>(i);
}

std::string Strip(const std::string& s, const std::string& chars, bool left, bool right) {
  const std::string set = chars.empty() ? std::string(" \t\n\r\f\v") : chars;
  size_t a = 0, b = s.size();
  if (left) a = s.find_first_not_of(set) == std::string::npos ? s.size() : s.find_first_not_of(set);
  if (right) {
    const size_t last = s.find_last_not_of(set);
    b = last == std::string::npos ? a : last + 1;
  }
  return b > a ? s.substr(a, b - a) : "";
}

class Renderer {
 public:
  explicit Renderer(const Value& context) { scopes_.push_back(context.is_object() ? context : Value::object()); }

  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> Run(const Body& body, std::string* out) {
    for (const Node& n : body) {
      switch (n.kind) {
        case Node::Kind::kText:
          *out += n.text;
          break;
        case Node::Kind::kOutput: {
          ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
          *out += Str(v);
          break;
        }
        case Node::Kind::kIf: {
          const Body* chosen = &n.else_body;
          for (const auto& [condition, branch] : n.branches) {
            ASSIGN_OR_RETURN(Value c, Eval(*condition));
            if (Truthy(c)) {
              chosen = &branch;
              break;
            }
          }
          ASSIGN_OR_RETURN(Flow flow, Run(*chosen, out));
          if (flow != Flow::kNormal) return flow;
          break;
        }
        case Node::Kind::kFor:
          RETURN_IF_ERROR(For(n, out));
          break;
        case Node::Kind::kSet: {
          ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
          if (n.attribute.empty()) {
            scopes_.back()[n.targets[0]] = std::move(v);
          } else {
            Value* target = Lookup(n.targets[0]);
            if (target == nullptr || !target->is_object()) {
              return Error(absl::StrCat("cannot set '", n.attribute, "' on '", n.targets[0], "'"));
            }
            (*target)[n.attribute] = std::move(v);
          }
          break;
        }
        case Node::Kind::kBreak:
          return Flow::kBreak;
        case Node::Kind::kContinue:
          return Flow::kContinue;
      }
    }
    return Flow::kNormal;
  }

 private:
  Value* Lookup(const std::string& name) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return &*found;
    }
    return nullptr;
  }

  absl::Status For(const Node& n, std::string* out) {
    ASSIGN_OR_RETURN(Value iterable, Eval(*n.expr));
    std::vector<Value> items;
    if (iterable.is_array()) {
      items.assign(iterable.begin(), iterable.end());
    } else if (iterable.is_object()) {
      for (auto it = iterable.begin(); it != iterable.end(); ++it) items.push_back(it.key());
    } else if (iterable.is_string()) {
      for (char c : iterable.get<std::string>()) items.push_back(std::string(1, c));
    } else if (!IsUndefined(iterable) && !iterable.is_null()) {
      return Error(absl::StrCat("cannot loop over a ", TypeName(iterable)));
    }
    auto bind = [&](const Value& item) -> absl::Status {
      if (n.targets.size() == 1) {
        scopes_.back()[n.targets[0]] = item;
        return absl::OkStatus();
      }
      if (!item.is_array() || item.size() != n.targets.size()) return Error("cannot unpack a loop item");
      for (size_t k = 0; k < n.targets.size(); ++k) scopes_.back()[n.targets[k]] = item[k];
      return absl::OkStatus();
    };
    if (n.filter) {  // `for x in xs if c`: the loop runs over the items that pass
      std::vector<Value> kept;
      for (const Value& item : items) {
        scopes_.push_back(Value::object());
        absl::Status bound = bind(item);
        absl::StatusOr<Value> keep = bound.ok() ? Eval(*n.filter) : absl::StatusOr<Value>(bound);
        scopes_.pop_back();
        if (!keep.ok()) return keep.status();
        if (Truthy(*keep)) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      ASSIGN_OR_RETURN(Flow flow, Run(n.else_body, out));
      (void)flow;
      return absl::OkStatus();
    }
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      scopes_.push_back(Value::object());
      scopes_.back()["loop"] = {{"index", i + 1},          {"index0", i},         {"revindex", length - i},
                                {"revindex0", length - i - 1}, {"first", i == 0}, {"last", i == length - 1},
                                {"length", length}};
      absl::Status bound = bind(items[static_cast<size_t>(i)]);
      absl::StatusOr<Flow> flow = bound.ok() ? Run(n.body, out) : absl::StatusOr<Flow>(bound);
      scopes_.pop_back();
      if (!flow.ok()) return flow.status();
      if (*flow == Flow::kBreak) break;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<Value>> Arguments(const Expr& e, size_t first) {
    std::vector<Value> values;
    for (size_t k = first; k < e.args.size(); ++k) {
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[k]));
      values.push_back(std::move(v));
    }
    return values;
  }

  absl::StatusOr<Value> Keyword(const Expr& e, const std::string& key) {
    for (const auto& [name, value] : e.kwargs) {
      if (name == key) return Eval(*value);
    }
    return Undefined();
  }

  absl::StatusOr<Value> Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kName: {
        const Value* v = Lookup(e.name);
        return v != nullptr ? *v : Undefined();
      }
      case Expr::Kind::kList:
      case Expr::Kind::kDict: {
        ASSIGN_OR_RETURN(std::vector<Value> items, Arguments(e, 0));
        if (e.kind == Expr::Kind::kList) return Value(items);
        Value dict = Value::object();
        for (size_t k = 0; k + 1 < items.size(); k += 2) dict[Str(items[k])] = items[k + 1];
        return dict;
      }
      case Expr::Kind::kAttr: {
        ASSIGN_OR_RETURN(Value object, Eval(*e.args[0]));
        if (object.is_object() && object.contains(e.name)) return object[e.name];
        return Undefined();
      }
      case Expr::Kind::kIndex: {
        ASSIGN_OR_RETURN(Value object, Eval(*e.args[0]));
        ASSIGN_OR_RETURN(Value key, Eval(*e.args[1]));
        if (object.is_object() && key.is_string() && object.contains(key.get<std::string>())) {
          return object[key.get<std::string>()];
        }
        if ((object.is_array() || object.is_string()) && key.is_number_integer()) {
          const size_t size = object.is_array() ? object.size() : object.get<std::string>().size();
          const std::optional<size_t> at = Position(key.get<int64_t>(), size);
          if (!at) return Undefined();
          return object.is_array() ? object[*at] : Value(std::string(1, object.get<std::string>()[*at]));
        }
        return Undefined();
      }
      case Expr::Kind::kSlice:
        return Slice(e);
      case Expr::Kind::kCall:
        return Call(e);
      case Expr::Kind::kFilter:
        return Filter(e);
      case Expr::Kind::kTest: {
        ASSIGN_OR_RETURN(bool result, Test(e));
        return e.negate ? !result : result;
      }
      case Expr::Kind::kUnary: {
        ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        if (e.name == "not") return !Truthy(v);
        if (!v.is_number()) return Error(absl::StrCat("unary ", e.name, " on a ", TypeName(v)));
        if (e.name == "+") return v;
        return v.is_number_float() ? Value(-v.get<double>()) : Value(-v.get<int64_t>());
      }
      case Expr::Kind::kBinary:
        return Binary(e);
      case Expr::Kind::kCondition: {
        ASSIGN_OR_RETURN(Value c, Eval(*e.args[0]));
        if (Truthy(c)) return Eval(*e.args[1]);
        return e.args[2] ? Eval(*e.args[2]) : Undefined();
      }
    }
    return Error("unknown expression");
  }

  absl::StatusOr<Value> Slice(const Expr& e) {
    ASSIGN_OR_RETURN(Value object, Eval(*e.args[0]));
    int64_t bound[3] = {0, 0, 1};
    bool given[3] = {false, false, false};
    for (int k = 0; k < 3; ++k) {
      if (!e.args[k + 1]) continue;
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[k + 1]));
      if (v.is_null()) continue;
      if (!v.is_number_integer()) return Error("slice bounds must be integers");
      bound[k] = v.get<int64_t>();
      given[k] = true;
    }
    const bool text = object.is_string();
    if (!text && !object.is_array()) return Error(absl::StrCat("cannot slice a ", TypeName(object)));
    const int64_t size = static_cast<int64_t>(text ? object.get<std::string>().size() : object.size());
    const int64_t step = bound[2];
    if (step == 0) return Error("slice step cannot be zero");
    auto clamp = [&](int64_t i, bool is_given, int64_t fallback) {
      if (!is_given) return fallback;
      if (i < 0) i += size;
      return step > 0 ? std::clamp<int64_t>(i, 0, size) : std::clamp<int64_t>(i, -1, size - 1);
    };
    const int64_t start = clamp(bound[0], given[0], step > 0 ? 0 : size - 1);
    const int64_t stop = clamp(bound[1], given[1], step > 0 ? size : -1);
    Value out = text ? Value(std::string()) : Value::array();
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (text) {
        out.get_ref<std::string&>() += object.get<std::string>()[static_cast<size_t>(i)];
      } else {
        out.push_back(object[static_cast<size_t>(i)]);
      }
    }
    return out;
  }

  absl::StatusOr<Value> Binary(const Expr& e) {
    ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
    const std::string& op = e.name;
    if (op == "and") return Truthy(a) ? Eval(*e.args[1]) : a;
    if (op == "or") return Truthy(a) ? a : Eval(*e.args[1]);
    ASSIGN_OR_RETURN(Value b, Eval(*e.args[1]));
    if (op == "~") return Str(a) + Str(b);
    if (op == "==") return a == b && IsUndefined(a) == IsUndefined(b);
    if (op == "!=") return !(a == b && IsUndefined(a) == IsUndefined(b));
    if (op == "in") {
      bool found = false;
      if (b.is_string() && a.is_string()) found = b.get<std::string>().find(a.get<std::string>()) != std::string::npos;
      else if (b.is_array()) found = std::find(b.begin(), b.end(), a) != b.end();
      else if (b.is_object() && a.is_string()) found = b.contains(a.get<std::string>());
      else if (!IsUndefined(b) && !b.is_null()) return Error(absl::StrCat("'in' on a ", TypeName(b)));
      return found != e.negate;
    }
    if (op == "<" || op == "<=" || op == ">" || op == ">=") {
      if (!((a.is_number() && b.is_number()) || (a.is_string() && b.is_string()))) {
        return Error(absl::StrCat("cannot compare a ", TypeName(a), " with a ", TypeName(b)));
      }
      const bool less = a < b, greater = b < a;
      if (op == "<") return less;
      if (op == "<=") return !greater;
      if (op == ">") return greater;
      return !less;
    }
    if (op == "+" && a.is_string() && b.is_string()) return a.get<std::string>() + b.get<std::string>();
    if (op == "+" && a.is_array() && b.is_array()) {
      Value joined = a;
      for (const Value& x : b) joined.push_back(x);
      return joined;
    }
    if (op == "*" && a.is_string() && b.is_number_integer()) {
      std::string repeated;
      for (int64_t k = 0; k < b.get<int64_t>(); ++k) repeated += a.get<std::string>();
      return repeated;
    }
    if (!a.is_number() || !b.is_number()) {
      return Error(absl::StrCat("'", op, "' between a ", TypeName(a), " and a ", TypeName(b)));
    }
    const bool integers = a.is_number_integer() && b.is_number_integer();
    const double x = a.get<double>(), y = b.get<double>();
    if (op == "/") {
      if (y == 0) return Error("division by zero");
      return x / y;
    }
    if (integers) {
      const int64_t i = a.get<int64_t>(), j = b.get<int64_t>();
      if (op == "+") return i + j;
      if (op == "-") return i - j;
      if (op == "*") return i * j;
      if (j == 0 && (op == "//" || op == "%")) return Error("division by zero");
      if (op == "//") return static_cast<int64_t>(std::floor(static_cast<double>(i) / static_cast<double>(j)));
      if (op == "%") return ((i % j) + j) % j;
      if (op == "**") return static_cast<int64_t>(std::pow(static_cast<double>(i), static_cast<double>(j)));
    }
    if (op == "+") return x + y;
    if (op == "-") return x - y;
    if (op == "*") return x * y;
    if (op == "//") return std::floor(x / y);
    if (op == "%") return std::fmod(std::fmod(x, y) + y, y);
    return std::pow(x, y);
  }

  absl::StatusOr<Value> Call(const Expr& e) {
    ASSIGN_OR_RETURN(std::vector<Value> args, Arguments(e, 1));
    const Expr& callee = *e.args[0];
    if (callee.kind == Expr::Kind::kAttr) {
      ASSIGN_OR_RETURN(Value object, Eval(*callee.args[0]));
      return Method(object, callee.name, args);
    }
    if (callee.kind != Expr::Kind::kName) return Error("only named functions and methods can be called");
    const std::string& f = callee.name;
    if (f == "raise_exception") return absl::InvalidArgumentError(args.empty() ? "raise_exception" : Str(args[0]));
    if (f == "namespace" || f == "dict") {
      Value object = Value::object();
      for (const auto& [key, value] : e.kwargs) {
        ASSIGN_OR_RETURN(object[key], Eval(*value));
      }
      return object;
    }
    if (f == "range") {
      int64_t r[3] = {0, 0, 1};
      if (args.empty() || args.size() > 3) return Error("range takes 1 to 3 arguments");
      for (const Value& a : args) {
        if (!a.is_number_integer()) return Error("range takes integers");
      }
      if (args.size() == 1) r[1] = args[0].get<int64_t>();
      for (size_t k = 0; args.size() > 1 && k < args.size(); ++k) r[k] = args[k].get<int64_t>();
      if (r[2] == 0) return Error("range step cannot be zero");
      Value out = Value::array();
      for (int64_t i = r[0]; r[2] > 0 ? i < r[1] : i > r[1]; i += r[2]) out.push_back(i);
      return out;
    }
    if (f == "strftime_now") {
      if (args.empty() || !args[0].is_string()) return Error("strftime_now takes a format string");
      const std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      char text[256];
      const size_t n = std::strftime(text, sizeof(text), args[0].get<std::string>().c_str(), &local);
      return std::string(text, n);
    }
    return Error(absl::StrCat("unknown function '", f, "'"));
  }

  absl::StatusOr<Value> Method(const Value& object, const std::string& m, const std::vector<Value>& args) {
    auto arg = [&](size_t k) { return k < args.size() && args[k].is_string() ? args[k].get<std::string>() : std::string(); };
    if (object.is_string()) {
      const std::string& s = object.get_ref<const std::string&>();
      if (m == "strip" || m == "lstrip" || m == "rstrip") return Strip(s, arg(0), m != "rstrip", m != "lstrip");
      if (m == "startswith") return s.rfind(arg(0), 0) == 0;
      if (m == "endswith") return s.size() >= arg(0).size() && s.compare(s.size() - arg(0).size(), arg(0).size(), arg(0)) == 0;
      if (m == "upper") return absl::AsciiStrToUpper(s);
      if (m == "lower") return absl::AsciiStrToLower(s);
      if (m == "replace") return absl::StrReplaceAll(s, {{arg(0), arg(1)}});
      if (m == "title" || m == "capitalize") return Filter1(m, object);
      if (m == "split") {
        Value parts = Value::array();
        if (args.empty() || args[0].is_null()) {
          for (absl::string_view p : absl::StrSplit(s, absl::ByAnyChar(" \t\n\r\f\v"), absl::SkipEmpty())) {
            parts.push_back(std::string(p));
          }
        } else {
          for (absl::string_view p : absl::StrSplit(s, arg(0))) parts.push_back(std::string(p));
        }
        return parts;
      }
      if (m == "find") return static_cast<int64_t>(s.find(arg(0)) == std::string::npos ? -1 : s.find(arg(0)));
      if (m == "join" && !args.empty() && args[0].is_array()) {
        std::vector<std::string> items;
        for (const Value& x : args[0]) items.push_back(Str(x));
        return absl::StrJoin(items, s);
      }
    }
    if (object.is_object()) {
      if (m == "items" || m == "keys" || m == "values") {
        Value out = Value::array();
        for (auto it = object.begin(); it != object.end(); ++it) {
          if (m == "items") out.push_back(Value::array({it.key(), it.value()}));
          else if (m == "keys") out.push_back(it.key());
          else out.push_back(it.value());
        }
        return out;
      }
      if (m == "get") {
        if (object.contains(arg(0))) return object[arg(0)];
        return args.size() > 1 ? args[1] : Value(nullptr);
      }
    }
    return Error(absl::StrCat("unsupported method '", m, "' of a ", TypeName(object)));
  }

  // Filters that take only their input (also the methods of the same name).
  absl::StatusOr<Value> Filter1(const std::string& f, const Value& v) {
    if (f == "title" || f == "capitalize") {
      std::string s = Str(v);
      bool start = true;
      for (char& c : s) {
        const bool letter = std::isalpha(static_cast<unsigned char>(c));
        c = start && letter ? absl::ascii_toupper(c) : (f == "title" && !start ? absl::ascii_tolower(c) : c);
        if (f == "capitalize" && !start) c = absl::ascii_tolower(c);
        start = f == "title" ? !letter : false;
      }
      return s;
    }
    return Error(absl::StrCat("unsupported filter '", f, "'"));
  }

  absl::StatusOr<Value> Filter(const Expr& e) {
    ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
    ASSIGN_OR_RETURN(std::vector<Value> args, Arguments(e, 1));
    const std::string& f = e.name;
    auto string_arg = [&](size_t k, std::string fallback) {
      return k < args.size() && args[k].is_string() ? args[k].get<std::string>() : fallback;
    };
    if (f == "trim") return Strip(Str(v), string_arg(0, ""), true, true);
    if (f == "length" || f == "count") {
      if (v.is_string()) return static_cast<int64_t>(v.get<std::string>().size());  // bytes: ASCII-exact
      if (v.is_array() || v.is_object()) return static_cast<int64_t>(v.size());
      return Error(absl::StrCat("length of a ", TypeName(v)));
    }
    if (f == "tojson") {
      ASSIGN_OR_RETURN(Value indent, Keyword(e, "indent"));
      std::string out;
      Json(v, indent.is_number_integer() ? static_cast<int>(indent.get<int64_t>()) : -1, 0, &out);
      return out;
    }
    if (f == "string" || f == "safe" || f == "e" || f == "escape") {
      if (f == "e" || f == "escape") {
        return absl::StrReplaceAll(Str(v), {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&#34;"}, {"'", "&#39;"}});
      }
      return Str(v);
    }
    if (f == "upper") return absl::AsciiStrToUpper(Str(v));
    if (f == "lower") return absl::AsciiStrToLower(Str(v));
    if (f == "title" || f == "capitalize") return Filter1(f, v);
    if (f == "replace") return absl::StrReplaceAll(Str(v), {{string_arg(0, ""), string_arg(1, "")}});
    if (f == "default" || f == "d") {
      const bool boolean = args.size() > 1 && Truthy(args[1]);
      if (IsUndefined(v) || (boolean && !Truthy(v))) return args.empty() ? Value(std::string()) : args[0];
      return v;
    }
    if (f == "wordcount") return static_cast<int64_t>(std::vector<std::string>(absl::StrSplit(Str(v), ' ', absl::SkipEmpty())).size());
    if (f == "abs") return v.is_number_float() ? Value(std::fabs(v.get<double>())) : Value(std::llabs(v.get<int64_t>()));
    if (f == "int") return v.is_number() ? Value(static_cast<int64_t>(v.get<double>())) : Value(std::atoll(Str(v).c_str()));
    if (f == "float") return v.is_number() ? Value(v.get<double>()) : Value(std::atof(Str(v).c_str()));
    if (f == "indent") {
      const int64_t width = !args.empty() && args[0].is_number_integer() ? args[0].get<int64_t>() : 4;
      ASSIGN_OR_RETURN(Value first, Keyword(e, "first"));
      const std::string pad(static_cast<size_t>(width), ' ');
      std::string s = absl::StrReplaceAll(Str(v), {{"\n", "\n" + pad}});
      return Truthy(first) ? pad + s : s;
    }
    // The rest work on sequences (a dict: its keys, a string: its characters).
    Value list = v;
    if (v.is_object()) {
      if (f == "items") return Method(v, "items", {});
      list = Value::array();
      for (auto it = v.begin(); it != v.end(); ++it) list.push_back(it.key());
    } else if (v.is_string()) {
      list = Value::array();
      for (char c : v.get<std::string>()) list.push_back(std::string(1, c));
    } else if (!v.is_array()) {
      return Error(absl::StrCat("filter '", f, "' on a ", TypeName(v)));
    }
    if (f == "list" || f == "items") return list;
    if (f == "first") return list.empty() ? Undefined() : list.front();
    if (f == "last") return list.empty() ? Undefined() : list.back();
    if (f == "reverse") return Value(std::vector<Value>(list.rbegin(), list.rend()));
    if (f == "join") {
      std::vector<std::string> items;
      ASSIGN_OR_RETURN(Value attribute, Keyword(e, "attribute"));
      for (const Value& x : list) items.push_back(Str(attribute.is_string() && x.is_object() ? x.value(attribute.get<std::string>(), Value()) : x));
      return absl::StrJoin(items, string_arg(0, ""));
    }
    if (f == "unique") {
      Value out = Value::array();
      for (const Value& x : list) {
        if (std::find(out.begin(), out.end(), x) == out.end()) out.push_back(x);
      }
      return out;
    }
    if (f == "map") {
      ASSIGN_OR_RETURN(Value attribute, Keyword(e, "attribute"));
      Value out = Value::array();
      for (const Value& x : list) {
        if (attribute.is_string()) {
          out.push_back(x.is_object() && x.contains(attribute.get<std::string>()) ? x[attribute.get<std::string>()] : Undefined());
        } else if (!args.empty() && args[0].is_string()) {
          Expr single{Expr::Kind::kFilter, {}, args[0].get<std::string>()};
          auto literal = std::make_unique<Expr>();
          literal->kind = Expr::Kind::kLiteral;
          literal->literal = x;
          single.args.push_back(std::move(literal));
          ASSIGN_OR_RETURN(Value mapped, Filter(single));
          out.push_back(std::move(mapped));
        } else {
          return Error("map needs attribute= or a filter name");
        }
      }
      return out;
    }
    if (f == "selectattr" || f == "rejectattr") {
      const std::string attribute = string_arg(0, "");
      const std::string test = string_arg(1, "");
      Value out = Value::array();
      for (const Value& x : list) {
        const Value field = x.is_object() && x.contains(attribute) ? x[attribute] : Undefined();
        bool pass;
        if (test.empty()) {
          pass = Truthy(field);
        } else {
          ASSIGN_OR_RETURN(pass, TestValue(test, field, std::vector<Value>(args.begin() + std::min<size_t>(2, args.size()), args.end())));
        }
        if (pass == (f == "selectattr")) out.push_back(x);
      }
      return out;
    }
    return Error(absl::StrCat("unsupported filter '", f, "'"));
  }

  absl::StatusOr<bool> Test(const Expr& e) {
    ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
    ASSIGN_OR_RETURN(std::vector<Value> args, Arguments(e, 1));
    return TestValue(e.name, v, args);
  }

  absl::StatusOr<bool> TestValue(const std::string& t, const Value& v, const std::vector<Value>& args) {
    if (t == "defined") return !IsUndefined(v);
    if (t == "undefined") return IsUndefined(v);
    if (t == "none") return v.is_null();
    if (t == "string") return v.is_string();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.is_number_integer();
    if (t == "float") return v.is_number_float();
    if (t == "boolean") return v.is_boolean();
    if (t == "true") return v.is_boolean() && v.get<bool>();
    if (t == "false") return v.is_boolean() && !v.get<bool>();
    if (t == "mapping") return v.is_object();
    if (t == "sequence" || t == "iterable") return v.is_array() || v.is_string() || v.is_object();
    if (t == "odd" || t == "even" || t == "divisibleby") {
      if (!v.is_number_integer()) return Error(absl::StrCat("'", t, "' of a ", TypeName(v)));
      const int64_t n = v.get<int64_t>();
      if (t == "divisibleby") {
        if (args.empty() || !args[0].is_number_integer() || args[0].get<int64_t>() == 0) return Error("divisibleby takes a non-zero integer");
        return n % args[0].get<int64_t>() == 0;
      }
      return (n % 2 != 0) == (t == "odd");
    }
    if (args.empty()) return Error(absl::StrCat("test '", t, "' takes an argument"));
    if (t == "equalto" || t == "eq" || t == "sameas") return v == args[0];
    if (t == "in") {
      const Value& c = args[0];
      if (c.is_array()) return std::find(c.begin(), c.end(), v) != c.end();
      if (c.is_object() && v.is_string()) return c.contains(v.get<std::string>());
      if (c.is_string() && v.is_string()) return c.get<std::string>().find(v.get<std::string>()) != std::string::npos;
      return false;
    }
    return Error(absl::StrCat("unsupported test '", t, "'"));
  }

  std::vector<Value> scopes_;
};

}  // namespace
}  // namespace jinja

JinjaTemplate::JinjaTemplate() = default;
JinjaTemplate::JinjaTemplate(JinjaTemplate&&) noexcept = default;
JinjaTemplate& JinjaTemplate::operator=(JinjaTemplate&&) noexcept = default;
JinjaTemplate::~JinjaTemplate() = default;

absl::StatusOr<JinjaTemplate> JinjaTemplate::Parse(std::string_view source) {
  ASSIGN_OR_RETURN(jinja::Body body, jinja::ParseTemplate(source));
  JinjaTemplate t;
  t.body_ = std::make_unique<jinja::Body>(std::move(body));
  return t;
}

absl::StatusOr<std::string> JinjaTemplate::Render(const nlohmann::ordered_json& context) const {
  jinja::Renderer renderer(context);
  std::string out;
  ASSIGN_OR_RETURN(jinja::Renderer::Flow flow, renderer.Run(*body_, &out));
  (void)flow;
  return out;
}

}  // namespace tessera::tokenizer
