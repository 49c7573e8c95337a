"""The judge's rubric and a tolerant, never-guessing parser for its answers.

The judge scores one response on helpfulness, honesty and harmlessness plus an overall score, each an integer 1-5,
with a short rationale, as one JSON object (:data:`JUDGEMENT_SCHEMA`; vLLM and OpenAI-compatible servers enforce it
as a structured output). Models without structured outputs wrap the object in prose or code fences, use single
quotes, trailing commas, "4/5" or "4.0": :func:`parse_judgement` accepts those. It never fills in a missing or
out-of-range score: such a judgement is a :class:`JudgementError` with the reason, and the caller quarantines it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

ASPECTS = ("helpfulness", "honesty", "harmlessness", "overall")
ALIASES = {"helpful": "helpfulness", "help": "helpfulness", "honest": "honesty", "harmless": "harmlessness",
           "safety": "harmlessness", "overall_score": "overall", "score": "overall", "overall score": "overall",
           "reason": "rationale", "explanation": "rationale", "justification": "rationale"}
JUDGEMENT_SCHEMA = {
    "type": "object",
    "properties": {**{a: {"type": "integer", "minimum": 1, "maximum": 5} for a in ASPECTS},
                   "rationale": {"type": "string", "maxLength": 400}},
    "required": [*ASPECTS, "rationale"],
    "additionalProperties": False,
}


class JudgementError(ValueError):
    """The judge's text holds no usable judgement; ``reason`` is the quarantine reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Judgement:
    helpfulness: int
    honesty: int
    harmlessness: int
    overall: int
    rationale: str = ""

    def as_dict(self) -> dict:
        return {a: getattr(self, a) for a in (*ASPECTS, "rationale")}


def first_json_object(text: str) -> str:
    """The first balanced ``{...}`` in the text (quotes respected), or JudgementError('no_json')."""
    start = text.find("{")
    while start >= 0:
        depth, quote, escaped = 0, "", False
        for i in range(start, len(text)):
            ch = text[i]
            if quote:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    raise JudgementError("no_json", text[:80])


def load_json_object(obj: str) -> dict:
    attempts = [obj, re.sub(r",\s*([}\]])", r"\1", obj)]
    if '"' not in obj:  # a Python-style dict with single quotes
        attempts.append(re.sub(r",\s*([}\]])", r"\1", obj.replace("'", '"')))
    for candidate in attempts:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise JudgementError("invalid_json", obj[:80])


def _score(value, aspect: str) -> int:
    if isinstance(value, bool):
        raise JudgementError("bad_score", f"{aspect}={value!r}")
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.0+)?)\s*(?:/\s*5)?\s*", value)
        if not m:
            raise JudgementError("bad_score", f"{aspect}={value!r}")
        value = float(m.group(1))
    if isinstance(value, float):
        if not value.is_integer():
            raise JudgementError("bad_score", f"{aspect}={value!r}")  # 3.5 is not on the scale: no rounding
        value = int(value)
    if not isinstance(value, int):
        raise JudgementError("bad_score", f"{aspect}={value!r}")
    if not 1 <= value <= 5:
        raise JudgementError("score_out_of_range", f"{aspect}={value}")
    return value


def parse_judgement(text: str) -> Judgement:
    raw = load_json_object(first_json_object(text))
    fields = {}
    for key, value in raw.items():
        name = " ".join(str(key).strip().lower().replace("_", " ").split())
        name = ALIASES.get(name, ALIASES.get(name.replace(" ", "_"), name)).replace(" ", "_")
        fields.setdefault(name, value)
    missing = [a for a in ASPECTS if a not in fields]
    if missing:
        raise JudgementError("missing_score", ", ".join(missing))
    scores = {a: _score(fields[a], a) for a in ASPECTS}
    rationale = fields.get("rationale", "")
    return Judgement(**scores, rationale=str(rationale).strip()[:400])


def parse_verdict(text: str) -> str:
    """A pairwise verdict: 'A', 'B' or 'tie'; JudgementError('no_verdict') when it names neither or both."""
    t = text.strip()
    m = re.match(r"^\W*(?:response\s*|answer\s*|回答\s*)?([AB])\b", t, re.IGNORECASE)
    if m:
        return m.group(1).upper()
    if re.search(r"\btie\b|equally|平局|一样好", t, re.IGNORECASE):
        return "tie"
    named = set(re.findall(r"\b(?:response|answer)\s+([AB])\b|回答\s*([AB])", t, re.IGNORECASE))
    letters = {x.upper() for pair in named for x in pair if x}
    if len(letters) == 1:
        return letters.pop()
    raise JudgementError("no_verdict", t[:80])
