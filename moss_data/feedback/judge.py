"""The AI judge: pointwise rubric scores and pairwise verdicts, one judge request per rollout call.

How the answer is held to the rubric's JSON, by what the judge role's backend can do:

- ``schema``: the backend enforces a JSON schema while decoding (vLLM structured outputs, OpenAI-compatible
  servers' ``response_format``).
- ``choice``: the in-process transformers backend decodes the same object field by field: the JSON text is written
  by the judge and each score is the model's choice among "1".."5" (a request with vLLM's ``structured_outputs``
  choice extension: the server samples among exactly those tokens at the judge temperature), then the rationale is
  generated up to its closing quote; a verdict is the choice between " A" and " B". This is constrained decoding
  for a schema of small enums.
- ``prefill``: any other backend: the request prefills ``{"helpfulness":`` and the tolerant parser reads the rest.

In every mode the answer then goes through :func:`~moss_data.feedback.rubric.parse_judgement`; nothing is guessed:
an answer it cannot read is returned as a :class:`~moss_data.feedback.rubric.JudgementError` for the caller to
quarantine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from moss_data.llm import Generation, SamplingParams
from moss_data.llm.rollouts import RolloutLLM
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


def judge_mode(llm: RolloutLLM) -> str:
    if llm.supports_json_schema("judge"):
        return "schema"
    return "choice" if llm.kind("judge") == "transformers" else "prefill"


class Judge:
    def __init__(self, prompts_dir: Path, params: SamplingParams):
        self.params = params
        self.rubric = (prompts_dir / "judge.txt").read_text(encoding="utf-8").strip()
        self.pairwise = (prompts_dir / "judge_pairwise.txt").read_text(encoding="utf-8").strip()

    def _rubric_request(self, context: list[dict], response: str) -> list[dict]:
        return [{"role": "system", "content": self.rubric},
                {"role": "user", "content": f"Conversation:\n{transcript(context)}\n\nResponse to judge:\n{response}"}]

    def _pairwise_request(self, context: list[dict], a: str, b: str) -> list[dict]:
        return [{"role": "system", "content": self.pairwise},
                {"role": "user", "content": f"Conversation:\n{transcript(context)}\n\nResponse A:\n{a}\n\n"
                                            f"Response B:\n{b}\n\nWhich response is better, A or B?"}]

    async def _ask(self, llm: RolloutLLM, messages: list[dict], **update) -> Generation:
        return await llm.chat(messages, self.params.model_copy(update=update), role="judge")

    async def score(self, llm: RolloutLLM, context: list[dict], response: str,
                    seed: int) -> tuple[Judgement | JudgementError, str]:
        """(judgement or error, the raw answer) for one response."""
        mode = judge_mode(llm)
        request = self._rubric_request(context, response)
        if mode == "choice":
            prefix = "{"
            for i, aspect in enumerate(ASPECTS):
                prefix += ("" if i == 0 else ", ") + f'"{aspect}": '
                gen = await self._ask(llm, request + [{"role": "assistant", "content": prefix}], seed=seed + i,
                                      max_new_tokens=1, choices=SCORES)
                if gen.finish_reason == "error":
                    return JudgementError("backend_error", gen.error), prefix
                prefix += gen.text
            prefix += ', "rationale": "'
            gen = await self._ask(llm, request + [{"role": "assistant", "content": prefix}], seed=seed,
                                  stop=['"', "\n"], max_new_tokens=48)
            # the rationale is the model's text, escaped so the object stays valid JSON whatever it wrote
            return self._parse(prefix + json.dumps(gen.text.strip())[1:-1] + '"}')
        if mode == "prefill":
            gen = await self._ask(llm, request + [{"role": "assistant", "content": JSON_PREFILL}], seed=seed,
                                  stop=["}"])
        else:
            gen = await self._ask(llm, request, seed=seed, json_schema=JUDGEMENT_SCHEMA)
        if gen.finish_reason == "error":
            return JudgementError("backend_error", gen.error), gen.text
        return self._parse(gen.text if mode == "schema" else f"{JSON_PREFILL}{gen.text}}}")

    @staticmethod
    def _parse(raw: str) -> tuple[Judgement | JudgementError, str]:
        try:
            return parse_judgement(raw), raw
        except JudgementError as e:
            return e, raw

    async def compare(self, llm: RolloutLLM, context: list[dict], a: str, b: str,
                      seed: int) -> tuple[Verdict | JudgementError, str]:
        """(verdict or error, the raw answer) for responses A and B of one context."""
        mode = judge_mode(llm)
        request = self._pairwise_request(context, a, b)
        if mode == "choice":
            gen = await self._ask(llm, request + [{"role": "assistant", "content": VERDICT_PREFILL}], seed=seed,
                                  max_new_tokens=1, choices=VERDICT_CHOICES)
        elif mode == "prefill":
            gen = await self._ask(llm, request + [{"role": "assistant", "content": VERDICT_PREFILL}], seed=seed,
                                  max_new_tokens=8)
        else:
            gen = await self._ask(llm, request, seed=seed, max_new_tokens=24, json_schema=VERDICT_SCHEMA)
        try:
            if gen.finish_reason == "error":
                raise JudgementError("backend_error", gen.error)
            better = gen.text
            if mode == "schema":
                better = str(load_json_object(first_json_object(gen.text)).get("better", ""))
            return Verdict(parse_verdict(better), gen.text), gen.text
        except JudgementError as e:
            return e, gen.text
