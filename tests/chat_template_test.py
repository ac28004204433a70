#!/usr/bin/env python3
"""`tessera chat-template` against python3-jinja2, the reference Jinja, byte for byte.

Every template in tests/data/chat_templates (the llama3 and qwen ones from real
checkpoints, the others written in the style of ChatML, Mistral instruct, Gemma,
Phi-3, DeepSeek and Llama 3.1) is rendered for each message set, with and without
the generation prompt, by jinja2 set up as transformers' apply_chat_template sets it
up (sandboxed, trim_blocks, lstrip_blocks, loop controls, raise_exception, tojson,
strftime_now) and by tessera. A template that raises must make tessera fail (exit 2)
with the same message. Exit 77 (a CTest skip) without python3-jinja2.

  chat_template_test.py TESSERA_BINARY
"""
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

try:
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("python3-jinja2 is not installed: skipping")
    sys.exit(77)

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "chat_templates")
TOKENS = {  # bos, eos as each family's tokenizer_config.json has them
    "chatml": ("", "<|im_end|>"), "qwen": ("", "<|im_end|>"), "mistral": ("<s>", "</s>"),
    "gemma": ("<bos>", "<eos>"), "phi3": ("<s>", "<|endoftext|>"),
    "deepseek": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "llama3": ("<|begin_of_text|>", "<|end_of_text|>"), "llama31": ("<|begin_of_text|>", "<|eot_id|>"),
}
MESSAGES = {
    "user": [{"role": "user", "content": "Hello, who are you?"}],
    "system_user": [{"role": "system", "content": "You are a helpful assistant.  "},
                    {"role": "user", "content": "  What is 2 + 2?\n"}],
    "multi_turn": [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "An apple."},
                   {"role": "user", "content": [{"type": "text", "text": "Another"}, {"type": "text", "text": "one?"}]}],
    "assistant_last": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": "<think>\nplan\n</think>\n\nHello! \"Quoted\" ünïcode ✓"}],
    "tool": [{"role": "user", "content": "Weather?"}, {"role": "tool", "content": {"temp": 21.5, "unit": "C"}}],
    # A call as OpenAI clients send it back: null content, arguments as JSON text.
    "tool_calls": [{"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}],
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def as_templates_see_it(message):
    """Text parts joined, null content as "", call arguments as objects: as tessera (and vLLM) do."""
    m = dict(message)
    if isinstance(m.get("content"), list):
        m["content"] = "\n".join(p["text"] for p in m["content"])
    if "content" in m and m["content"] is None:
        m["content"] = ""
    if m.get("tool_calls"):
        m["tool_calls"] = [dict(c, function=dict(c["function"], arguments=json.loads(c["function"]["arguments"])))
                           for c in m["tool_calls"]]
    return m


def reference(source, messages, generation_prompt, bos, eos, tools):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    variables = {"tools": tools} if tools else {}
    return env.from_string(source).render(messages=[as_templates_see_it(m) for m in messages],
                                          add_generation_prompt=generation_prompt, bos_token=bos, eos_token=eos,
                                          **variables)


def main():
    tessera = sys.argv[1]
    failures, checked = [], 0
    with tempfile.TemporaryDirectory() as work:
        for file in sorted(os.listdir(TEMPLATES)):
            name = file.removesuffix(".jinja")
            source = open(os.path.join(TEMPLATES, file), encoding="utf-8").read()
            bos, eos = TOKENS[name]
            model = os.path.join(work, name)
            os.makedirs(model)
            with open(os.path.join(model, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump({"chat_template": source, "bos_token": bos, "eos_token": eos}, f, ensure_ascii=False)
            tools_path = os.path.join(work, "tools.json")
            with open(tools_path, "w", encoding="utf-8") as f:
                json.dump(TOOLS, f)
            for (set_name, messages), tools in [(item, None) for item in MESSAGES.items()] + \
                    [(("tool_calls", MESSAGES["tool_calls"]), TOOLS)]:
                path = os.path.join(work, set_name + ".json")
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(messages, f, ensure_ascii=False)
                for generation_prompt in (True, False):
                    case = f"{name}/{set_name}{'+tools' if tools else ''}/{'prompt' if generation_prompt else 'no-prompt'}"
                    checked += 1
                    try:
                        want, want_error = reference(source, messages, generation_prompt, bos, eos, tools), None
                    except (TemplateError, TypeError) as e:
                        want, want_error = None, str(e)
                    args = [tessera, "chat-template", "--model", model, "--messages", path]
                    if tools:
                        args += ["--tools", tools_path]
                    if not generation_prompt:
                        args.append("--no-generation-prompt")
                    got = subprocess.run(args, capture_output=True)
                    if want_error is not None:
                        if got.returncode != 2 or want_error not in got.stderr.decode():
                            failures.append(f"{case}: jinja2 raised {want_error!r}; tessera exit {got.returncode}, "
                                            f"{got.stderr.decode()!r}")
                    elif got.returncode != 0 or got.stdout != want.encode():
                        failures.append(f"{case}: tessera exit {got.returncode} {got.stderr.decode()!r}\n"
                                        f"  want {want!r}\n  got  {got.stdout.decode(errors='replace')!r}")
    for f in failures:
        print(f)
    print(f"{checked - len(failures)} of {checked} renderings byte-identical to python3-jinja2")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
