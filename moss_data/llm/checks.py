"""Checks on a model's output that every generating stage applies the same way (dialogues, tool traces, feedback
candidates): '' when the output is usable, else the quarantine reason."""

from __future__ import annotations

import re
from collections import Counter
from difflib import SequenceMatcher

from moss_data.llm.base import Generation
from moss_data.text.scripts import cjk_share

# Markers of MOSS's own format inside model text would corrupt the serialization.
# MOSS's role markers and end tokens, any chat template's special tokens (<|im_end|>, <|endoftext|>) and our quality
# tag: none may appear in a generated output (snippet citations <|1|> may).
ROLE_MARKER = re.compile(r"<\|[A-Za-z_ ]{2,24}\|>|<eo[htcrm]>|<quality:[1-5]>")
_SENTENCE_END = re.compile(r"[.!?。！？；;\n]+")
# Role confusion: small models asked to write a *user's* request often write an assistant's line instead.
ASSISTANT_VOICE = re.compile(
    r"how (can|may) i (help|assist)|\bhere to (help|assist)|i(?:'m| am) (?:happy|glad) to (?:help|assist)|"
    r"i'?ll be happy to help|i(?:'m| am) ready\b|your request is|as an ai\b|"
    r"what would you like (?:to|me to) (?:know|do|discuss|talk)|what do you want\?|"
    r"有什么(可以|能)帮|我(很)?乐意(帮|为)|我可以帮(你|您)",
    re.IGNORECASE,
)


def most_repeated_sentence(text: str) -> int:
    """How often the most frequent sentence (8+ characters) occurs: small models loop on one sentence."""
    counts = Counter(s.strip().lower() for s in _SENTENCE_END.split(text) if len(s.strip()) >= 8)
    return max(counts.values(), default=0)


def is_echo(text: str, previous: str) -> bool:
    """The output mostly repeats the message it answers (a simulated user parroting the assistant)."""
    a, b = " ".join(text.split()), " ".join(previous.split())
    return bool(a) and len(b) >= 20 and SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.8


def check_output(gen: Generation, who: str, language: str | None = None, router=None, previous: str = "") -> str:
    """'' if the output is usable, else the quarantine reason. Language follows the prompt: an output of 20+
    letters in the other script (a Chinese conversation answered in Latin letters, or the reverse), or of 40+
    letters that lid.176 confidently puts in the other language, is ``wrong_language_<who>``. ``previous`` is the
    message being answered (for the echo check)."""
    if gen.finish_reason == "error":
        return "backend_error"
    if not gen.text.strip():
        return f"empty_{who}"
    if gen.finish_reason == "length":
        return f"truncated_{who}"
    if ROLE_MARKER.search(gen.text):
        return "role_marker"
    if most_repeated_sentence(gen.text) >= 3:
        return f"repetitive_{who}"
    if previous and is_echo(gen.text, previous):
        return f"echo_{who}"
    if who == "user" and ASSISTANT_VOICE.search(gen.text):
        return "user_sounds_like_assistant"
    letters = [ch for ch in gen.text if ch.isalpha()]
    if language in ("en", "zh") and len(letters) >= 20:
        # Script first (cheap and decisive): Chinese text is mostly CJK, English has next to none. Code and names
        # mix scripts, hence the margins. Then lid.176 for what the script cannot tell.
        share = cjk_share(letters)
        if (language == "zh" and share < 0.2) or (language == "en" and share > 0.3):
            return f"wrong_language_{who}"
        if router is not None and len(letters) >= 40:
            detected, score = router.classify(gen.text)
            if detected in ("en", "zh") and detected != language and score >= 0.8:
                return f"wrong_language_{who}"
    return ""
