"""The Modelfile's TEMPLATE renders chats like HF `apply_chat_template`, under Ollama's semantics.

Ollama is not installable here and no PyPI package renders Go templates (cognihub-pygotemplate, a CGo
wrapper, has no installable distribution), so `render_go` below is a small independent renderer for the
subset of Go's text/template that chat templates use: text, `{{ .Field }}`, `{{ $.Field }}`, string
literals, `eq ne and or not len`, `if / else if / else / end`, `range ... end` (dot becomes the element)
and the `{{-` / `-}}` whitespace trim markers; truthiness as in Go (empty string, zero, nil and empty
lists are false). `ollama_chat` models what Ollama does before rendering a `.Messages` template
(server/routes.go ChatHandler, template/template.go Execute and collate): the Modelfile's SYSTEM is
prepended as a system message when the chat does not start with one; consecutive messages of one role
are merged with a blank line; system messages stay in `.Messages` and, joined by blank lines, are also
`.System`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from distill2edge.export.ollama import CHECK_CHATS, ollama_modelfile

_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.DOTALL)
_WORD = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')
_FUNCS = {
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "and": lambda *a: next((x for x in a if not _truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truth(x)), a[-1]),
    "not": lambda a: not _truth(a),
    "len": len,
}


def _truth(v: Any) -> bool:
    return v is not None and v is not False and v != 0 and v != "" and v != [] and v != {}


def _tokens(src: str) -> list[tuple[str, str]]:
    """[('text', s) | ('act', s)] with the trim markers applied to the neighbouring text."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(src):
        text = src[pos : m.start()]
        text = text.lstrip(" \t\r\n") if trim_next else text
        out.append(("text", text.rstrip(" \t\r\n") if m.group(1) else text))
        out.append(("act", m.group(2)))
        pos, trim_next = m.end(), bool(m.group(3))
    tail = src[pos:]
    out.append(("text", tail.lstrip(" \t\r\n") if trim_next else tail))
    return out


def _parse(toks: list[tuple[str, str]], i: int, stops: tuple[str, ...]) -> tuple[list[Any], int, str]:
    """Nodes up to one of `stops` (an action keyword); returns (nodes, next index, the stop action)."""
    nodes: list[Any] = []
    while i < len(toks):
        kind, s = toks[i]
        i += 1
        if kind == "text":
            nodes.append(("text", s))
        elif s == "end" or s == "else" or s.startswith("else if "):
            if s.split(" ")[0] not in stops and s not in stops:
                raise ValueError(f"unexpected {{{{ {s} }}}}")
            return nodes, i, s
        elif s.startswith(("if ", "range ")):
            kw, pipe = s.split(" ", 1)
            branches, other = [], []
            while True:
                body, i, stop = _parse(toks, i, ("end", "else"))
                branches.append((pipe, body))
                if stop == "end":
                    break
                if stop.startswith("else if ") and kw == "if":
                    pipe = stop[len("else if ") :]
                    continue
                other, i, _ = _parse(toks, i, ("end",))
                break
            nodes.append((kw, branches, other))
        else:
            nodes.append(("act", s))
    if stops:
        raise ValueError(f"missing {{{{ end }}}} (expected one of {stops})")
    return nodes, i, ""


def _value(word: str, dot: Any, root: Any) -> Any:
    if word.startswith('"'):
        return json.loads(word)
    base, path = (root, word[1:]) if word.startswith("$") else (dot, word)
    for part in [p for p in path.split(".") if p]:
        base = base.get(part) if isinstance(base, dict) else getattr(base, part)
    return base


def _pipe(expr: str, dot: Any, root: Any) -> Any:
    words = _WORD.findall(expr)
    if words[0] in _FUNCS:
        return _FUNCS[words[0]](*(_value(w, dot, root) for w in words[1:]))
    assert len(words) == 1, f"unsupported pipeline {expr!r}"
    return _value(words[0], dot, root)


def _exec(nodes: list[Any], dot: Any, root: Any) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "act":
            v = _pipe(node[1], dot, root)
            out.append("" if v is None else str(v))
        elif node[0] == "if":
            taken = next((body for pipe, body in node[1] if _truth(_pipe(pipe, dot, root))), node[2])
            out.append(_exec(taken, dot, root))
        else:  # range
            items = _pipe(node[1][0][0], dot, root) or []
            out.append(
                "".join(_exec(node[1][0][1], item, root) for item in items) or _exec(node[2], dot, root)
            )
    return "".join(out)


def render_go(template: str, data: dict[str, Any]) -> str:
    """Render `template` (the Go text/template subset in the module docstring) with `data` as dot."""
    nodes, _, _ = _parse(_tokens(template), 0, ())
    return _exec(nodes, data, data)


def _modelfile_field(text: str, key: str) -> str | None:
    m = re.search(rf'^{key} """(.*?)"""', text, re.DOTALL | re.MULTILINE)
    return m.group(1) if m else None


def ollama_chat(modelfile: str, messages: list[dict[str, str]]) -> str:
    """The prompt Ollama builds for a /api/chat request with `messages` (see the module docstring)."""
    template, system = _modelfile_field(modelfile, "TEMPLATE"), _modelfile_field(modelfile, "SYSTEM")
    assert template is not None and ".Messages" in template
    msgs = [dict(m) for m in messages]
    if msgs[0]["role"] != "system" and system:
        msgs.insert(0, {"role": "system", "content": system})
    merged: list[dict[str, str]] = []
    for m in msgs:
        if merged and merged[-1]["role"] == m["role"]:
            merged[-1]["content"] += "\n\n" + m["content"]
        else:
            merged.append(m)
    joined = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
    go_msgs = [{"Role": m["role"], "Content": m["content"]} for m in merged]  # api.Message's Go fields
    return render_go(template, {"System": joined, "Messages": go_msgs, "Tools": None, "Response": ""})


def _tok(folder: Path, template: str | None = None) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    if template is not None:
        tok.chat_template = template
    return tok


def _hf(tok: Any, chat: tuple[dict[str, str], ...]) -> str:
    return tok.apply_chat_template(list(chat), tokenize=False, add_generation_prompt=True)


def test_renderer_models_ollama_semantics() -> None:
    """The old ChatML template printed .System and then every message: system rendered twice."""
    old = "{{- if .System }}<s>{{ .System }}</s>\n{{ end }}"
    old += "{{- range .Messages }}<{{ .Role }}>{{ .Content }}\n{{ end }}"
    got = ollama_chat(f'TEMPLATE """{old}"""', list(CHECK_CHATS[1]))
    assert got == "<s>You are terse.</s>\n<system>You are terse.\n<user>What is 5G?\n"
    branches = '{{ range .Messages }}{{ if eq .Role "user" }}U{{ else if eq .Role "system" }}S'
    branches += "{{ else }}A{{ end }}{{ end }}"
    assert render_go(branches, {"Messages": [{"Role": r} for r in ("system", "user", "assistant")]}) == "SUA"


def test_smollm2_template_renders_like_hf() -> None:
    """SmolLM2's template inserts a default system prompt: it becomes SYSTEM, and 3 of 3 chats match."""
    folder = Path.home() / ".cache/distill2edge/models/smollm2-135m-instruct"
    if not (folder / "tokenizer.json").is_file():
        pytest.skip("embedded SmolLM2 not converted on this machine")
    tok = _tok(folder)
    text = ollama_modelfile("m.gguf", tok, threads=2, n_ctx=2048)
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    for chat in CHECK_CHATS:
        assert ollama_chat(text, [{"role": m["role"], "content": m["content"]} for m in chat]) == _hf(
            tok, chat
        )
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|im_start|>"' in text


_LLAMA3ISH = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
_ZEPHYRISH = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|>\n{{ m['content'] }}</s>\n"
    "{% elif m['role'] == 'system' %}<|system|>\n{{ m['content'] }}</s>\n{% else %}<|assistant|>\n"
    "{{ m['content'] }}</s>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.mark.parametrize("template", [None, _LLAMA3ISH, _ZEPHYRISH])
def test_other_per_message_templates(tiny_llama: Path, template: str | None) -> None:
    """Plain ChatML (no default system), a Llama-3-like one with a BOS lead, per-role branches."""
    tok = _tok(tiny_llama, template)
    text = ollama_modelfile("m.gguf", tok, threads=2, n_ctx=512)
    assert "SYSTEM" not in text
    for chat in CHECK_CHATS:
        assert ollama_chat(text, list(chat)) == _hf(tok, chat)


def test_unmappable_template_left_to_gguf(tiny_llama: Path) -> None:
    """Llama-2's [INST] puts the system prompt inside the first user turn: no TEMPLATE, the GGUF's is used."""
    inst = (
        "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
        "{% set messages = messages[1:] %}{% else %}{% set sys = '' %}{% endif %}{% for m in messages %}"
        "{% if m['role'] == 'user' %}[INST] {% if loop.first and sys %}<<SYS>>\n{{ sys }}\n<</SYS>>\n\n"
        "{% endif %}{{ m['content'] }} [/INST]{% else %} {{ m['content'] }}</s>{% endif %}{% endfor %}"
    )
    text = ollama_modelfile("m.gguf", _tok(tiny_llama, inst), threads=2, n_ctx=512)
    assert "TEMPLATE" not in text and "tokenizer.chat_template from the GGUF" in text
