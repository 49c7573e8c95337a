"""The AI judge: pointwise rubric scores and pairwise verdicts, with any dialogue backend.

How the answer is held to the rubric's JSON, by what the backend can do:

- ``schema``: the backend enforces a JSON schema while decoding (vLLM structured outputs, OpenAI-compatible
  servers' ``response_format``).
- ``choice``: the in-process transformers backend decodes the same object field by field: the JSON text is written
  by the judge and each score is the model's choice among "1".."5" (its next-token probabilities over exactly those,
  sampled at the judge temperature), then the rationale is generated up to its closing quote; a verdict is the
  choice between " A" and " B". This is constrained decoding for a schema of small enums.
- ``prefill``: any other backend: the request prefills ``{"helpfulness":`` and the tolerant parser reads the rest.

In every mode the answer then goes through :func:`~moss_data.feedback.rubric.parse_judgement`; nothing is guessed:
an answer it cannot read is returned as a :class:`~moss_data.feedback.rubric.JudgementError` for the caller to
quarantine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moss_data.llm import Backend, SamplingParams
from moss_data.feedback.rubric import (ASPECTS, JUDGEMENT_SCHEMA, Judgement, JudgementError, first_json_object,
                                      load_json_object, parse_judgement, parse_verdict)

SCORES = ["1", "2", "3", "4", "5"]

JSON_PREFILL = '{"helpfulness":'
VERDICT_PREFILL = "The better response is Response"
VERDICT_CHOICES = [" A", " B"]
VERDICT_SCHEMA = {"type": "object", "properties": {"better": {"enum": ["A", "B"]}}, "required": ["better"],
                  "additionalProperties": False}


def transcript(context: list[dict], limit: int = 3000) -> str:
    """The conversation before the judged response, system prompt left out (the judge need not read it)."""
    lines = [f"{'User' if m['role'] == 'user' else 'Assistant' if m['role'] == 'assistant' else 'Tool'}: {m['content']}"
             for m in context if m["role"] != "system" and m.get("content")]
    text = "\n".join(lines)
    return text if len(text) <= limit else "..." + text[-limit:]


@dataclass
class Verdict:
    better: str  # "A" | "B" | "tie"
    raw: str


def pick(probs: dict[str, float], temperature: float, rng: np.random.Generator) -> str:
    """A choice from next-token probabilities: the argmax at temperature 0, else a sample at that temperature."""
    names, p = list(probs), np.array(list(probs.values()), dtype=float)
    if temperature <= 0:
        return names[int(p.argmax())]
    p = np.power(np.maximum(p, 1e-12), 1.0 / temperature)
    return names[rng.choice(len(names), p=p / p.sum())]


class Judge:
    def __init__(self, backend: Backend, prompts_dir: Path, params: SamplingParams):
        self.backend = backend
        self.params = params
        if getattr(backend, "supports_json_schema", False):
            self.mode = "schema"
        elif hasattr(backend, "choose") and hasattr(backend, "render"):
            self.mode = "choice"
        else:
            self.mode = "prefill"
        self.rubric = (prompts_dir / "judge.txt").read_text(encoding="utf-8").strip()
        self.pairwise = (prompts_dir / "judge_pairwise.txt").read_text(encoding="utf-8").strip()

    def _rubric_request(self, context: list[dict], response: str) -> list[dict]:
        return [{"role": "system", "content": self.rubric},
                {"role": "user", "content": f"Conversation:\n{transcript(context)}\n\nResponse to judge:\n{response}"}]

    def _pairwise_request(self, context: list[dict], a: str, b: str) -> list[dict]:
        return [{"role": "system", "content": self.pairwise},
                {"role": "user", "content": f"Conversation:\n{transcript(context)}\n\nResponse A:\n{a}\n\n"
                                            f"Response B:\n{b}\n\nWhich response is better, A or B?"}]

    def score(self, items: list[tuple[list[dict], str]], seed: int) -> list[tuple[Judgement | JudgementError, str]]:
        """(context, response) -> (judgement or error, the raw answer)."""
        requests = [self._rubric_request(c, r) for c, r in items]
        if self.mode == "choice":
            raws = self._constrained_json(requests, seed)
            return [self._parse(raw) for raw in raws]
        if self.mode == "prefill":
            requests = [r + [{"role": "assistant", "content": JSON_PREFILL}] for r in requests]
            update = {"seed": seed, "stop": ["}"]}
        else:
            update = {"seed": seed, "json_schema": JUDGEMENT_SCHEMA}
        out = []
        for gen in self.backend.chat(requests, self.params.model_copy(update=update)):
            if gen.finish_reason == "error":
                out.append((JudgementError("backend_error", gen.error), gen.text))
                continue
            out.append(self._parse(gen.text if self.mode == "schema" else f"{JSON_PREFILL}{gen.text}}}"))
        return out

    @staticmethod
    def _parse(raw: str) -> tuple[Judgement | JudgementError, str]:
        try:
            return parse_judgement(raw), raw
        except JudgementError as e:
            return e, raw

    def _constrained_json(self, requests: list[list[dict]], seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        prefixes = ["{"] * len(requests)
        for i, aspect in enumerate(ASPECTS):
            prefixes = [p + ("" if i == 0 else ", ") + f'"{aspect}": ' for p in prefixes]
            texts = [self.backend.render(r + [{"role": "assistant", "content": p}]) for r, p in zip(requests, prefixes)]
            prefixes = [p + pick(probs, self.params.temperature, rng)
                        for p, probs in zip(prefixes, self.backend.choose(texts, SCORES))]
        prefixes = [p + ', "rationale": "' for p in prefixes]
        gens = self.backend.chat([r + [{"role": "assistant", "content": p}] for r, p in zip(requests, prefixes)],
                                 self.params.model_copy(update={"seed": seed, "stop": ['"', "\n"], "max_new_tokens": 48}))
        # the rationale is the model's text, escaped so the object stays valid JSON whatever it wrote
        return [p + json.dumps(g.text.strip())[1:-1] + '"}' for p, g in zip(prefixes, gens)]

    def compare(self, items: list[tuple[list[dict], str, str]], seed: int) -> list[tuple[Verdict | JudgementError, str]]:
        """(context, response A, response B) -> (verdict or error, the raw answer)."""
        requests = [self._pairwise_request(c, a, b) for c, a, b in items]
        if self.mode == "choice":
            rng = np.random.default_rng(seed)
            texts = [self.backend.render(r + [{"role": "assistant", "content": VERDICT_PREFILL}]) for r in requests]
            out = []
            for probs in self.backend.choose(texts, VERDICT_CHOICES):
                raw = pick(probs, self.params.temperature, rng)
                out.append((Verdict(parse_verdict(raw), raw), json.dumps(probs)))
            return out
        if self.mode == "prefill":
            requests = [r + [{"role": "assistant", "content": VERDICT_PREFILL}] for r in requests]
        update = {"seed": seed, "max_new_tokens": 8 if self.mode == "prefill" else 24}
        if self.mode == "schema":
            update["json_schema"] = VERDICT_SCHEMA
        out = []
        for gen in self.backend.chat(requests, self.params.model_copy(update=update)):
            try:
                if gen.finish_reason == "error":
                    raise JudgementError("backend_error", gen.error)
                better = gen.text
                if self.mode == "schema":
                    better = str(load_json_object(first_json_object(gen.text)).get("better", ""))
                out.append((Verdict(parse_verdict(better), gen.text), gen.text))
            except JudgementError as e:
                out.append((e, gen.text))
        return out
