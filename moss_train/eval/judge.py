"""The evaluation's pairwise judge: which of two replies to one prompt is better, A, B or a tie (C), asked in both
orders so that the judge's preference for a position cancels out.

The answer is constrained to the three letters: on the in-process transformers backend as the model's next-token
probabilities over exactly those tokens (the argmax is the verdict), on an OpenAI-compatible server through vLLM's
``structured_outputs`` choice. Nothing is parsed from free text, so every request gets a verdict.
"""

from __future__ import annotations

from pathlib import Path

from moss_data.llm import SamplingParams

CHOICES = [" A", " B", " C"]
PREFILL = "Answer:"
SCORE_FIRST = {"A": 1.0, "B": 0.0, "C": 0.5}  # what a verdict gives the response shown first


class PairwiseJudge:
    def __init__(self, backend, prompts_dir: Path = Path("prompts")):
        self.backend = backend
        self.system = (Path(prompts_dir) / "eval" / "judge_pairwise.txt").read_text(encoding="utf-8").strip()

    def _request(self, prompt: str, a: str, b: str) -> list[dict]:
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": f"User request:\n{prompt}\n\nResponse A:\n{a}\n\nResponse B:\n{b}\n\n"
                                            "Which response is better? Answer A, B, or C for a tie."},
                {"role": "assistant", "content": PREFILL}]

    def verdicts(self, triples: list[tuple[str, str, str]]) -> list[str]:
        """'A', 'B' or 'C' for each (prompt, response A, response B)."""
        requests = [self._request(*t) for t in triples]
        if hasattr(self.backend, "choose"):
            probs = self.backend.choose([self.backend.render(r) for r in requests], CHOICES)
            return [max(p, key=p.get).strip() for p in probs]
        params = SamplingParams(max_new_tokens=1, temperature=0, choices=CHOICES)
        out = []
        for gen in self.backend.chat(requests, params):
            letter = gen.text.strip()[:1].upper()
            out.append(letter if letter in SCORE_FIRST else "C")  # an error or an empty answer: no preference
        return out

    def compare(self, prompts: list[str], model: list[str], reference: list[str]) -> list[dict]:
        """Per prompt: both verdicts and the model's outcome (1 win, 0 loss, 0.5 tie; an order-dependent verdict
        averages to 0.25 or 0.75). ``consistent``: the two orders agree."""
        first = self.verdicts([(p, m, r) for p, m, r in zip(prompts, model, reference)])   # model shown as A
        second = self.verdicts([(p, r, m) for p, m, r in zip(prompts, model, reference)])  # model shown as B
        rows = []
        for v1, v2 in zip(first, second):
            s1, s2 = SCORE_FIRST[v1], 1.0 - SCORE_FIRST[v2]
            rows.append({"model_first": v1, "model_second": v2, "outcome": (s1 + s2) / 2, "consistent": s1 == s2})
        return rows
