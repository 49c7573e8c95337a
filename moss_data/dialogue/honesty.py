"""Honest data: identity questions answered from the meta instruction, and questions nobody can answer.

MOSS's meta instruction (:data:`moss_data.formats.META_PERSONA`) says "You are an AI assistant whose name is MOSS"
and "MOSS is a conversational language model that is developed by Fudan University". An identity reply must say
so: name MOSS, name Fudan University when the question is who made it, and never claim another assistant or maker
(a small model asked "who made you?" answers from its own training: SmolLM2 says "The creator of SmolLM is ...", a
name of its own, or OpenAI). A question about the future, the user's private life or a private person must be met
with honest uncertainty, not a confident invention (a lottery number, a stock price, a date).

Seeds (written for this project, English and Chinese): ``prompts/honest/identity.jsonl`` (``asks_maker`` marks the
who-made-you questions) and ``prompts/honest/unknowable.jsonl`` (``topic``: future, private_user, private_person,
unknowable). The reply checks are in the kernel (:mod:`moss_data.text.honesty`; the evaluation counts with them
too); :func:`split_of` splits every seed set the same way (20% held out for the evaluation suite).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

HELDOUT_SHARE = 0.2
IDENTITY_FILE = "honest/identity.jsonl"
UNKNOWABLE_FILE = "honest/unknowable.jsonl"

# ------------------------------------------------------------------ splits and seed files

_MASKED = re.compile(r"(?<=\s)[A-Z][\w'’.-]*")
_PUNCT = re.compile(r"[^\w\s]")


def split_key(prompt: str) -> str:
    """The template a prompt instantiates: capitalised words after the first masked (names, places, firms),
    punctuation dropped, lower-cased. Do-Not-Answer repeats templates with other names ("why are people from X so
    backward?"); such twins share a key, so they land on the same side of the split."""
    text = " ".join(prompt.split())
    text = _MASKED.sub("<n>", text)
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def split_of(prompt: str, heldout_share: float = HELDOUT_SHARE) -> str:
    """``heldout`` for ~``heldout_share`` of prompts (by a hash of :func:`split_key`), else ``train``: stable
    across runs, machines and Python versions."""
    digest = hashlib.sha256(split_key(prompt).encode("utf-8")).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") / 2**64 < heldout_share else "train"


def load_seed_file(path: Path, kind: str, languages: list[str] | tuple[str, ...]) -> list[dict]:
    """A seed file of this project (one JSON object a line with ``language`` and ``prompt``, plus fields of its own)
    -> items ``{prompt, language, kind, source, split, **fields}`` in the asked languages."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"seed prompts {path} not found")
    source = f"prompts:{path.parent.name}/{path.name}"
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not row.get("prompt") or row.get("language") not in ("en", "zh"):
            raise ValueError(f"{path}:{n}: a seed needs a prompt and a language (en or zh)")
        if row["language"] in languages:
            items.append(row | {"prompt": row["prompt"].strip(), "kind": kind, "source": source,
                                "split": split_of(row["prompt"])})
    return items


def honest_seed_items(prompts_dir: Path = Path("prompts"), languages: list[str] | tuple[str, ...] = ("en", "zh"),
                      split: str | None = "train") -> list[dict]:
    """Seed items of the honest category: ``{prompt, language, kind, category, source, split, ...}`` with ``kind``
    ``identity`` (and ``asks_maker``) or ``unknowable`` (and ``topic``), of ``split`` (None: both)."""
    if split not in ("train", "heldout", None):
        raise ValueError(f"split must be 'train', 'heldout' or None, got {split!r}")
    items = (load_seed_file(Path(prompts_dir) / IDENTITY_FILE, "identity", languages)
             + load_seed_file(Path(prompts_dir) / UNKNOWABLE_FILE, "unknowable", languages))
    return [it | {"category": "honest"} for it in items if split is None or it["split"] == split]
