"""Cleaning and deduplication of imported records (``moss-data import``, see :mod:`~moss_data.dialogue.importer`
for the order of the checks and their reasons).

- :func:`clean`: system prompt dropped (MOSS writes its own meta instruction), roles to MOSS turns
  (:func:`build_turns`), length, format markers (removed; or the record dropped), PII (dropped; or scrubbed),
  calls to functions MOSS does not have.
- :func:`identify`: lid.176 on the user's messages, then on the whole conversation when those are too short to tell.
- :class:`PromptDedup`: exact (normalised text hash) and near (MinHash LSH on character 5-grams, verified by exact
  Jaccard) duplicates of first prompts.

PII: the patterns are the corpus scrubber's (:mod:`moss_data.text.pii_patterns`): e-mail addresses outside the
documentation domains, public IP addresses, secrets. Dropping is the default: a placeholder in a conversation teaches
the model to write placeholders.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import orjson
import xxhash

from moss_data.dialogue.import_formats import Record, Skip
from moss_data.formats import COMMAND_ARGUMENT, Command, Turn
from moss_data.llm.checks import ROLE_MARKER
from moss_data.text.langid import LanguageIdentifier
from moss_data.text.minhash import LSHParams, MinHasher
from moss_data.text.pii_patterns import (DOC_DOMAINS, EMAIL, IPV4, IPV6, PLACEHOLDER_VALUES, SECRET_PATTERNS,
                                         is_public_ip)
from moss_data.text.shingles import jaccard

if TYPE_CHECKING:
    from moss_data.dialogue.importer import ImportRecipe

MARKERS = re.compile(ROLE_MARKER.pattern + r"|\[/?INST\]|<</?SYS>>")  # and Llama-2 chat markers


# ------------------------------------------------------------------ cleaning


def normalized(text: str) -> str:
    return " ".join(re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold()))


def _pii(text: str) -> list[re.Match]:
    found = [m for m in EMAIL.finditer(text) if not m.group(0).lower().endswith(DOC_DOMAINS)]
    found += [m for pattern in (IPV4, IPV6) for m in pattern.finditer(text) if is_public_ip(m.group(0))]
    return found + [m for pattern in SECRET_PATTERNS.values() for m in pattern.finditer(text)
                    if m.group(0) not in PLACEHOLDER_VALUES]


def _scrub(text: str) -> str:
    for m in sorted(_pii(text), key=lambda m: -m.start()):
        ip = IPV4.fullmatch(m.group(0)) or IPV6.fullmatch(m.group(0))
        tag = "<EMAIL>" if EMAIL.fullmatch(m.group(0)) else "<IP_ADDRESS>" if ip else "<KEY>"
        text = text[: m.start()] + tag + text[m.end():]
    return text


def _command(name: str, args) -> Command:
    if name in COMMAND_ARGUMENT:  # one of MOSS's own tools
        value = next(iter(args.values())) if isinstance(args, dict) and len(args) == 1 else args
        return Command(name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    camel = "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p) or "Function"
    camel = camel if camel[0].isalpha() else f"F{camel}"
    return Command(camel, args if isinstance(args, str) else json.dumps(args, ensure_ascii=False))


def build_turns(messages: list[dict], moss_results: bool) -> list[Turn]:
    """user, [tool_call, tool]*, assistant, ... -> MOSS turns; raises Skip(broken_roles | ends_on_user)."""
    turns, i = [], 0
    while i < len(messages):
        if messages[i]["role"] != "user":
            raise Skip("broken_roles", f"message {i} is {messages[i]['role']} where the user's was expected")
        human, i = messages[i]["content"], i + 1
        commands, results, thinking = [], [], "None"
        while i < len(messages) and messages[i]["role"] == "tool_call":
            if i + 1 >= len(messages) or messages[i + 1]["role"] != "tool":
                raise Skip("broken_roles", "a function call without its result")
            calls = [_command(name, args) for name, args in messages[i]["calls"]]
            commands += calls
            thinking = messages[i].get("thinking") or messages[i]["content"] or thinking
            result = messages[i + 1]["content"]
            results.append(result if moss_results else f"{', '.join(c.render() for c in calls)} => {result}")
            i += 2
        if i >= len(messages):
            raise Skip("ends_on_user")
        if messages[i]["role"] != "assistant":
            raise Skip("broken_roles", f"message {i} is {messages[i]['role']} where the assistant's was expected")
        reply = messages[i]
        turns.append(Turn(human, reply["content"], reply.get("thinking", thinking) if not commands else thinking,
                          commands, "\n".join(results) if commands else "None"))
        i += 1
    return turns


def clean(rec: Record, cfg: "ImportRecipe", notes: Counter) -> tuple[Record, list[Turn] | None]:
    """The record cleaned (and its MOSS turns, for a conversation) or Skip."""
    if any(m["role"] == "system" for m in rec.messages[1:]) or (rec.messages and rec.messages[-1]["role"] == "system"):
        raise Skip("broken_roles", "a system message after the first")
    if rec.messages and rec.messages[0]["role"] == "system":
        notes["system_prompt_dropped"] += 1  # MOSS writes its own meta instruction
        rec.messages = rec.messages[1:]
    for m in rec.messages:
        m["content"] = m["content"].strip()
    users = [m for m in rec.messages if m["role"] == "user"]
    if not users or any(not m["content"] for m in rec.messages if m["role"] in ("user", "assistant")):
        raise Skip("empty")
    turns = build_turns(rec.messages, rec.capabilities_meta is not None) if rec.kind == "conversation" else None
    if len(users) > cfg.max_turns or any(len(m["content"]) > cfg.max_message_chars for m in rec.messages):
        raise Skip("too_long")
    texts = [m["content"] for m in rec.messages] + [t.inner_thoughts for t in turns or []] + [
        c.argument for t in turns or [] for c in t.commands]  # a call's argument reaches the Commands segment
    if any(MARKERS.search(t) for t in texts):
        if cfg.markers == "drop":
            raise Skip("format_markers")
        notes["markers_removed"] += 1
    if any(_pii(t) for t in texts):
        if cfg.pii == "drop":
            raise Skip("pii")
        notes["pii_scrubbed"] += 1

    def fix(text: str) -> str:
        return _scrub(MARKERS.sub("", text)).strip() if text else text

    for m in rec.messages:
        m["content"] = fix(m["content"])
    for t in turns or []:
        t.human, t.moss, t.inner_thoughts, t.results = fix(t.human), fix(t.moss), fix(t.inner_thoughts), fix(t.results)
        t.commands = [replace(c, argument=fix(c.argument)) for c in t.commands]
    if any(not m["content"] for m in rec.messages if m["role"] in ("user", "assistant")):
        raise Skip("empty", "nothing left once the markers were removed")
    if turns is not None:
        if any(c.name not in COMMAND_ARGUMENT for t in turns for c in t.commands):
            if cfg.foreign_tools == "drop":
                raise Skip("foreign_tools")
            if cfg.foreign_tools == "prompt":
                notes["foreign_tools_kept_as_prompt"] += 1
                return Record(rec.index, "prompt", rec.messages[:1], "tool", rec.source_id), None
        rec.category = rec.category or ("tool" if any(t.commands for t in turns) else None)
    return rec, turns


# ------------------------------------------------------------------ dedup


class PromptDedup:
    """Exact (normalised text hash) and near (MinHash LSH on character 5-grams, verified by exact Jaccard)."""

    def __init__(self, threshold: float, n: int = 5):
        self.threshold, self.n = threshold, n
        self.params = LSHParams(bands=24, rows=5, seed=11)
        self.hasher = MinHasher(self.params)
        self.exact: set[str] = set()
        self.shingles: list[np.ndarray] = []
        self.buckets: list[dict[bytes, list[int]]] = [defaultdict(list) for _ in range(self.params.bands)]

    def _shingles(self, text: str) -> np.ndarray:
        t = normalized(text)
        grams = {t[i: i + self.n] for i in range(max(1, len(t) - self.n + 1))}
        return np.array(sorted({xxhash.xxh32_intdigest(g.encode()) for g in grams}), dtype=np.uint64)

    def check(self, text: str, add: bool = True) -> str | None:
        """'duplicate', 'near_duplicate' or None (then the text is added, unless ``add`` is False)."""
        key = xxhash.xxh3_128_hexdigest(normalized(text).encode())
        if key in self.exact:
            return "duplicate"
        shingles = self._shingles(text)
        sig = self.hasher.signature(shingles)
        r = self.params.rows
        bands = [sig[b * r: (b + 1) * r].tobytes() for b in range(self.params.bands)]
        candidates = {i for b, k in enumerate(bands) for i in self.buckets[b].get(k, ())}
        if any(jaccard(shingles, self.shingles[i]) >= self.threshold for i in candidates):
            return "near_duplicate"
        if not add:
            return None
        self.exact.add(key)
        for b, k in enumerate(bands):
            self.buckets[b][k].append(len(self.shingles))
        self.shingles.append(shingles)
        return None


def identify(lid: LanguageIdentifier, rec: Record, languages: list[str]) -> tuple[str, str, float]:
    """(route, lid.176 language, score) of the user's messages; when they are not confidently one of
    ``languages`` (a short "Hi", a prompt that quotes French), of the whole conversation."""
    tries = [[m["content"] for m in rec.messages if m["role"] == "user"],
             [m["content"] for m in rec.messages if m["role"] in ("user", "assistant")]]
    for texts in tries[: 1 if rec.kind == "prompt" else 2]:
        language, score = lid.classify("\n".join(texts)[:4000])
        route = lid.route_for(language, score)
        if route in languages:
            break
    return route, language, score


def record_id(rec: Record, turns: list[Turn] | None) -> str:
    content = [t.serialize() for t in turns] if turns else [rec.messages[0]["content"]]
    return "imp-" + xxhash.xxh3_64_hexdigest(orjson.dumps([rec.kind, content]))
