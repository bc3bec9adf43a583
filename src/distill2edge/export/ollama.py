"""An Ollama Modelfile whose TEMPLATE renders a chat exactly as the HF chat template does.

Ollama renders `.Messages` templates with these semantics (server/routes.go and template/template.go):
when a request's first message is not a system message and the Modelfile has `SYSTEM`, that text is
prepended as a system message; consecutive messages of one role are merged; every system message stays
in `.Messages` *and* all of them, joined, are also `.System`. A template that prints `.System` and then
ranges over `.Messages` therefore prints the system prompt twice.

Rather than map known template families by hand, the per-role wrappers are read off the HF template by
rendering it with sentinel contents (`_wrappers`): for a template of the form
`LEAD + sum(prefix[role] + content + suffix[role]) + GEN` this recovers every piece, and a default system
prompt (one the HF template inserts when the chat has none) becomes the Modelfile's `SYSTEM`. The result
is checked before it is written: `_ollama_render` replays Ollama's semantics over the derived pieces for
user-only, system+user and user/assistant/user chats and must equal `apply_chat_template`; if not (a
template of another shape), no TEMPLATE is written and Ollama falls back to the GGUF's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError

_S, _U, _A, _V = "\x01SYS\x01", "\x01USR\x01", "\x01AST\x01", "\x01USR2\x01"
_ROLES = ("system", "user", "assistant")

#: The conversations the TEMPLATE must render like HF (also used by the tests).
CHECK_CHATS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "user", "content": "What is 5G?"},),
    ({"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 5G?"}),
    (
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is LTE?"},
    ),
)


@dataclass
class ChatWrappers:
    """Pieces of a per-message chat template: LEAD, prefix/suffix per role, generation prompt and the
    default system prompt."""

    lead: str
    prefix: dict[str, str]
    suffix: dict[str, str]
    gen: str
    default_system: str | None


def _render(tok: Any, msgs: list[dict[str, str]], gen: bool) -> str:
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _after(text: str, sentinel: str) -> str:
    return text.split(sentinel, 1)[1]


def _wrappers(tok: Any) -> ChatWrappers | None:
    """Read the per-role wrappers off the HF template by rendering sentinel contents (None: other shape)."""
    try:
        full = _render(
            tok, [_msg("system", _S), _msg("user", _U), _msg("assistant", _A), _msg("user", _V)], True
        )
        suffix = {r: _after(_render(tok, [_msg(r, c)], False), c) for r, c in zip(_ROLES, (_S, _U, _A))}
        user_only = _render(tok, [_msg("user", _U)], False)
    except (TemplateError, IndexError, KeyError, TypeError, ValueError):  # e.g. "roles must alternate"
        return None
    if any(s not in full for s in (_S, _U, _A, _V)):
        return None
    p0, rest = full.split(_S, 1)
    p1, rest = rest.split(_U, 1)
    p2, rest = rest.split(_A, 1)
    p3, p4 = rest.split(_V, 1)
    if not (
        p1.startswith(suffix["system"]) and p2.startswith(suffix["user"]) and p4.startswith(suffix["user"])
    ):
        return None
    prefix = {
        "user": p1[len(suffix["system"]) :],
        "assistant": p2[len(suffix["user"]) :],
    }
    if p3 != suffix["assistant"] + prefix["user"]:
        return None
    gen = p4[len(suffix["user"]) :]
    before_user = user_only.split(_U, 1)[0]
    tail = suffix["system"] + prefix["user"]
    if before_user.startswith(p0) and before_user.endswith(tail) and len(before_user) >= len(p0) + len(tail):
        # a default system prompt was inserted; LEAD cannot be told from the system prefix, and need not be:
        # Ollama then always starts with a system message (SYSTEM is prepended)
        lead, default = "", before_user[len(p0) : len(before_user) - len(tail)]
    elif before_user.endswith(prefix["user"]) and p0.startswith(
        before_user[: len(before_user) - len(prefix["user"])]
    ):
        lead, default = before_user[: len(before_user) - len(prefix["user"])], None
    else:
        return None
    prefix["system"] = p0[len(lead) :]
    return ChatWrappers(lead, prefix, suffix, gen, default)


def _ollama_render(w: ChatWrappers, msgs: list[dict[str, str]]) -> str:
    """What Ollama's range-over-.Messages template built from `w` produces for `msgs` (SYSTEM prepended
    when the chat has no system message first, consecutive same-role messages merged)."""
    if w.default_system is not None and msgs[0]["role"] != "system":
        msgs = [_msg("system", w.default_system), *msgs]
    merged: list[dict[str, str]] = []
    for m in msgs:
        if merged and merged[-1]["role"] == m["role"]:
            merged[-1] = _msg(m["role"], merged[-1]["content"] + "\n\n" + m["content"])
        else:
            merged.append(dict(m))
    body = "".join(w.prefix[m["role"]] + m["content"] + w.suffix[m["role"]] for m in merged)
    return w.lead + body + w.gen


def _go_template(w: ChatWrappers) -> str:
    """The Go template text: one `range .Messages`, `.Role` inlined when every prefix is A + role + B."""
    a, _, b = w.prefix["user"].partition("user")
    uniform = all(w.prefix[r] == a + r + b for r in _ROLES) and len(set(w.suffix.values())) == 1
    if uniform:
        body = f"{a}{{{{ .Role }}}}{b}{{{{ .Content }}}}{w.suffix['user']}"
    else:
        branches = [
            f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{r}" }}}}'
            f"{w.prefix[r]}{{{{ .Content }}}}{w.suffix[r]}"
            for i, r in enumerate(_ROLES)
        ]
        body = "".join(branches) + "{{ end }}"
    return f"{w.lead}{{{{- range .Messages }}}}{body}{{{{ end }}}}{w.gen}"


def ollama_chat_template(tok: Any) -> tuple[str, str | None] | None:
    """(Go TEMPLATE, SYSTEM or None) equivalent to the tokenizer's chat template under Ollama's semantics,
    or None when the template is not a per-message one or the check against HF fails."""
    if not getattr(tok, "chat_template", None):
        return None
    w = _wrappers(tok)
    if w is None:
        return None
    pieces = [w.lead, w.gen, w.default_system or "", *w.prefix.values(), *w.suffix.values()]
    if any("{{" in p or '"""' in p for p in pieces):
        return None
    for chat in CHECK_CHATS:
        if _ollama_render(w, list(chat)) != _render(tok, list(chat), True):
            return None
    return _go_template(w), w.default_system


def ollama_modelfile(gguf_name: str, tok: Any, threads: int, n_ctx: int) -> str:
    """An Ollama Modelfile for the GGUF: FROM, context and threads, the chat TEMPLATE (+ SYSTEM when the
    HF template has a default system prompt) and stop strings; without a usable template, a comment says
    that Ollama will read `tokenizer.chat_template` from the GGUF."""
    lines = [
        f"# Ollama Modelfile written by distill2edge for {gguf_name}",
        f"FROM ./{gguf_name}",
        f"PARAMETER num_ctx {n_ctx}",
        f"PARAMETER num_thread {threads}",
    ]
    mapped = ollama_chat_template(tok)
    stops: list[str] = []
    if mapped is not None:
        template, system = mapped
        lines.append(f'TEMPLATE """{template}"""')
        if system is not None:
            lines.append(f'SYSTEM """{system}"""')
        w = _wrappers(tok)
        assert w is not None
        stops = [
            s.strip() for s in (w.suffix["assistant"], w.prefix["user"].partition("user")[0]) if s.strip()
        ]
    elif getattr(tok, "chat_template", None):
        lines.append(
            "# chat template: not mapped to Ollama syntax; Ollama reads tokenizer.chat_template from the GGUF"
        )
    eos = getattr(tok, "eos_token", None)
    if eos and eos not in stops:
        stops.append(eos)
    lines += [f'PARAMETER stop "{s}"' for s in dict.fromkeys(stops)]
    return "\n".join(lines) + "\n"
