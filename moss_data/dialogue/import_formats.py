"""Reading real prompt and conversation sets for ``moss-data import``: files -> records -> one message list each.

Formats (``format:`` of a source; ``auto`` tells each record's format by its shape):

- ``sharegpt``: ``{"conversations": [{"from": "human"|"gpt"|"system"|"function_call"|"observation", "value"}]}``
  (LLaMA-Factory's glaive tool-call sets add ``function_call`` / ``observation`` turns and a ``tools`` field).
- ``openai``: ``{"messages": [{"role", "content", "tool_calls"?}]}``; content may be a list of text parts.
- ``alpaca``: ``{"instruction", "input", "output", "history"?}``; no output makes it a prompt.
- ``moss``: the released moss-003-sft shape, ``{conversation_id, meta_instruction, num_turns, chat: {turn_1: {Human,
  Inner Thoughts, Commands, Tool Responses, MOSS}}, category}``; the field markers (``<|Human|>: ...<eoh>\\n``) are
  stripped here, tolerantly: the release writes ``<|Results|>:\\nNone\\n<eor>`` where our writer has ``: None``, and
  ids may be numbers.
- ``prompts``: a plain string per record, or ``{"instruction"|"prompt"|"question"|"text", "input"?}`` (alpaca_eval's
  ``outputs.json``): prompts, never conversations; a ``.txt`` file is one prompt a line.
- ``chatterbot``: chatterbot-corpus YAML (a file or a folder of them): each ``conversations`` entry is a list of
  alternating lines, user first; an unanswered last line is dropped.

A file is a JSON array, a JSONL file (a line that does not parse is a ``malformed_json`` record, counted), a ``.txt``
list or chatterbot YAML. Every record comes out as a :class:`Record` or a :class:`Skip` with its reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("auto", "sharegpt", "openai", "alpaca", "moss", "prompts", "chatterbot")
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
         "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system",
         "function_call": "tool_call", "observation": "tool", "function": "tool", "tool": "tool"}
# Released MOSS categories and common spellings -> the import's category names.
CATEGORY_ALIASES = {"roleplay": "role-play", "role playing": "role-play", "role play": "role-play",
                    "coding": "code", "brainstorm": "brainstorming", "complex instructions": "complex instruction",
                    "continue": "continue/switching", "switching": "continue/switching", "harmless en": "harmless",
                    "harmless zh": "harmless", "honest en": "honest", "honest zh": "honest", "tools": "tool",
                    "plugin": "tool"}
MEDIA_FIELDS = ("images", "videos", "audios")


class Skip(Exception):
    """A record that is not imported, with the reason counted in the import report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Record:
    """One record as messages: roles user, assistant, system, tool_call (``calls``: [(name, arguments)]) and tool.
    ``kind`` is conversation or prompt; ``category`` what the record itself says (MOSS), or None."""

    index: str
    kind: str
    messages: list[dict]
    category: str | None = None
    source_id: str | None = None
    capabilities_meta: str | None = None  # MOSS: the record's meta instruction (its capability flags)
    notes: list[str] = field(default_factory=list)


def normalize_category(name: str | None) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return None
    key = name.strip().lower()
    return CATEGORY_ALIASES.get(key, CATEGORY_ALIASES.get(key.replace("_", " "), key.replace("_", " ")))


# ------------------------------------------------------------------ reading files


def _iter_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml", ".json", ".jsonl", ".txt"))
    if not path.exists():
        raise FileNotFoundError(f"import source {path} not found (fetch it first: moss-data import with "
                                "fetch_external_sets: true, or point at your own file)")
    return [path]


def raw_records(path: Path) -> Iterator[tuple[str, object]]:
    """(index, raw record) for every record of a file or folder; a raw record that could not be read is a Skip."""
    for file in _iter_files(Path(path)):
        tag = file.name if Path(path).is_dir() else ""
        prefix = f"{tag}:" if tag else ""
        if file.suffix in (".yml", ".yaml"):
            yield from _chatterbot_file(file, prefix or f"{file.name}:")
            continue
        data = file.read_bytes()
        if file.suffix == ".txt":
            lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
            yield from ((f"{prefix}{i}", line) for i, line in enumerate(lines))
            continue
        if file.suffix == ".json" or data.lstrip()[:1] == b"[":
            try:
                whole = json.loads(data)
            except ValueError:
                whole = None  # perhaps JSONL named .json: read it line by line
            if isinstance(whole, list):
                yield from ((f"{prefix}{i}", r) for i, r in enumerate(whole))
                continue
            if isinstance(whole, dict):
                yield f"{prefix}0", whole
                continue
        for i, line in enumerate(data.splitlines()):
            if not line.strip():
                continue
            try:
                yield f"{prefix}{i}", json.loads(line)
            except ValueError as e:
                yield f"{prefix}{i}", Skip("malformed_json", str(e)[:120])


def _chatterbot_file(file: Path, prefix: str) -> Iterator[tuple[str, object]]:
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        yield prefix.rstrip(":"), Skip("malformed_json", str(e)[:120])
        return
    for i, dialogue in enumerate(data.get("conversations") or []):
        yield f"{prefix}{i}", {"chatterbot": dialogue, "categories": data.get("categories")}


def detect_format(raw: object) -> str | None:
    if isinstance(raw, str):
        return "prompts"
    if not isinstance(raw, dict):
        return None
    if "chatterbot" in raw:
        return "chatterbot"
    if "chat" in raw and ("num_turns" in raw or "meta_instruction" in raw):
        return "moss"
    if isinstance(raw.get("conversations"), list):
        return "sharegpt"
    if isinstance(raw.get("messages"), list):
        return "openai"
    if "instruction" in raw and "output" in raw:
        return "alpaca"
    if any(k in raw for k in ("instruction", "prompt", "question")):
        return "prompts"
    return None


def parse_record(fmt: str, index: str, raw: object) -> Record:
    """The record in ``fmt`` as a :class:`Record`; raises :class:`Skip` (malformed_record, unsupported_content)."""
    if isinstance(raw, Skip):
        raise raw
    parser = PARSERS[fmt]
    try:
        return parser(index, raw)
    except Skip:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise Skip("malformed_record", f"{type(e).__name__}: {e}"[:120]) from None


def _text(value) -> str:
    """A message's content as text: a string, or a list of text parts (OpenAI ``text``, LLaMA-Factory ``value``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                parts.append(part.get("text", part.get("value", "")))
            else:
                raise Skip("unsupported_content", f"a {part.get('type') if isinstance(part, dict) else part!r} part")
        return "".join(parts)
    raise Skip("malformed_record", f"content of type {type(value).__name__}")


def _no_media(raw: dict) -> None:
    if any(raw.get(k) for k in MEDIA_FIELDS):
        raise Skip("unsupported_content", "images, video or audio")


def _calls(value) -> list[tuple[str, object]]:
    """Function calls from a glaive ``function_call`` value (JSON text) or OpenAI ``tool_calls``."""
    items = json.loads(value) if isinstance(value, str) else value
    items = items if isinstance(items, list) else [items]
    out = []
    for call in items:
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        out.append((str(fn["name"]), json.loads(args) if isinstance(args, str) and args.strip()[:1] == "{" else args))
    return out


def _sharegpt(index: str, raw: dict) -> Record:
    _no_media(raw)
    messages = [{"role": "system", "content": raw["system"]}] if raw.get("system") else []
    for turn in raw["conversations"]:
        role = ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise Skip("broken_roles", f"unknown role {turn['from']!r}")
        if role == "tool_call":
            messages.append({"role": role, "content": "", "calls": _calls(turn["value"])})
        else:
            messages.append({"role": role, "content": _text(turn["value"])})
    return Record(index, "conversation", messages, normalize_category(raw.get("category")), _id(raw))


def _openai(index: str, raw: dict) -> Record:
    _no_media(raw)
    messages = []
    for m in raw["messages"]:
        role = ROLES.get(str(m["role"]).lower())
        if role is None:
            raise Skip("broken_roles", f"unknown role {m['role']!r}")
        if role == "assistant" and m.get("tool_calls"):
            messages.append({"role": "tool_call", "content": _text(m.get("content")), "calls": _calls(m["tool_calls"])})
        else:
            messages.append({"role": role, "content": _text(m.get("content"))})
    return Record(index, "conversation", messages, normalize_category(raw.get("category")), _id(raw))


def _alpaca(index: str, raw: dict) -> Record:
    _no_media(raw)
    prompt = _text(raw["instruction"]).strip()
    if _text(raw.get("input")).strip():
        prompt = f"{prompt}\n\n{_text(raw['input']).strip()}"
    messages = [{"role": "system", "content": raw["system"]}] if raw.get("system") else []
    for question, answer in raw.get("history") or []:
        messages += [{"role": "user", "content": _text(question)}, {"role": "assistant", "content": _text(answer)}]
    messages.append({"role": "user", "content": prompt})
    output = _text(raw.get("output"))
    if not output.strip() and not raw.get("history"):
        return Record(index, "prompt", messages, normalize_category(raw.get("category")), _id(raw))
    messages.append({"role": "assistant", "content": output})
    return Record(index, "conversation", messages, normalize_category(raw.get("category")), _id(raw))


def _prompts(index: str, raw) -> Record:
    if isinstance(raw, str):
        return Record(index, "prompt", [{"role": "user", "content": raw}])
    key = next(k for k in ("instruction", "prompt", "question", "text") if k in raw)
    prompt = _text(raw[key]).strip()
    if _text(raw.get("input")).strip():
        prompt = f"{prompt}\n\n{_text(raw['input']).strip()}"
    return Record(index, "prompt", [{"role": "user", "content": prompt}], normalize_category(raw.get("category")),
                  _id(raw))


def _chatterbot(index: str, raw: dict) -> Record:
    lines = raw["chatterbot"]
    if not isinstance(lines, list) or not all(isinstance(x, (str, int, float)) for x in lines):
        raise Skip("malformed_record", "a chatterbot dialogue is a list of lines")
    lines = [str(x) for x in lines]
    notes = ["dropped_unanswered_last_line"] if len(lines) % 2 else []
    lines = lines[: len(lines) // 2 * 2]
    if not lines:
        raise Skip("empty")
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": x} for i, x in enumerate(lines)]
    return Record(index, "conversation", messages, notes=notes)


_FIELD = {
    "Human": re.compile(r"^\s*<\|Human\|>:\s?(.*?)\s*<eoh>\s*$", re.DOTALL),
    "Inner Thoughts": re.compile(r"^\s*<\|Inner Thoughts\|>:\s?(.*?)\s*<eot>\s*$", re.DOTALL),
    "Commands": re.compile(r"^\s*<\|Commands\|>:\s?(.*?)\s*<eoc>\s*$", re.DOTALL),
    "Tool Responses": re.compile(r"^\s*<\|Results\|>:\s*(.*?)\s*<eor>\s*$", re.DOTALL),
    "MOSS": re.compile(r"^\s*<\|MOSS\|>:\s?(?:<quality:[1-5]> )?(.*?)\s*<eom>\s*$", re.DOTALL),
}


def _moss_field(turn: dict, key: str, required: bool) -> str:
    value = turn.get(key)
    if value is None:
        if required:
            raise Skip("malformed_record", f"turn lacks {key!r}")
        return "None"
    m = _FIELD[key].match(value)
    if not m:
        raise Skip("malformed_record", f"{key!r} is not a serialized {key} field: {value[:40]!r}")
    return m.group(1)


def _moss(index: str, raw: dict) -> Record:
    from moss_data.formats import CommandSyntaxError, parse_commands

    chat, messages = raw["chat"], []
    for i in range(int(raw.get("num_turns") or len(chat))):
        turn = chat[f"turn_{i + 1}"]
        messages.append({"role": "user", "content": _moss_field(turn, "Human", True)})
        thoughts = _moss_field(turn, "Inner Thoughts", False)
        try:
            commands = parse_commands(_moss_field(turn, "Commands", False))
        except CommandSyntaxError as e:
            raise Skip("malformed_record", f"commands: {e}") from None
        if commands:
            messages.append({"role": "tool_call", "content": "", "thinking": thoughts,
                             "calls": [(c.name, c.argument) for c in commands]})
            messages.append({"role": "tool", "content": _moss_field(turn, "Tool Responses", False)})
        reply = {"role": "assistant", "content": _moss_field(turn, "MOSS", True)}
        if thoughts.strip() != "None" and not commands:
            reply["thinking"] = thoughts
        messages.append(reply)
    return Record(index, "conversation", messages, normalize_category(raw.get("category")), _id(raw),
                  capabilities_meta=raw.get("meta_instruction"))


def _id(raw) -> str | None:
    value = raw.get("conversation_id", raw.get("id")) if isinstance(raw, dict) else None
    return None if value is None else str(value)


PARSERS = {"sharegpt": _sharegpt, "openai": _openai, "alpaca": _alpaca, "moss": _moss, "prompts": _prompts,
           "chatterbot": _chatterbot}


def read_source(path: Path, fmt: str = "auto") -> Iterator[tuple[str, Record | Skip]]:
    """Every record of a source as (index, Record) or (index, Skip), in file order; ``auto`` detects each record's
    format from its shape (a file may mix them)."""
    for index, raw in raw_records(Path(path)):
        if isinstance(raw, Skip):
            yield index, raw
            continue
        chosen = detect_format(raw) if fmt == "auto" else fmt
        if chosen is None:
            yield index, Skip("malformed_record", "no known format")
            continue
        try:
            yield index, parse_record(chosen, index, raw)
        except Skip as s:
            yield index, s
