"""Category classification of imported prompts by the judge role's backend, one rollout per prompt on the
generation runner, and its agreement with labelled prompts.

The answer is held to the category list the way the feedback judge holds its rubric (the same three modes, chosen
by what the judge's backend can do):

- ``schema``: the backend enforces ``{"category": <one of the names>}`` while decoding (vLLM, OpenAI-compatible
  servers with ``response_format``).
- ``choice``: the in-process transformers backend: the request prefills ``Category: `` and the model's next token
  is its choice among the category numbers "1".."9" (vLLM's ``structured_outputs`` choice; temperature 0: argmax).
- ``prefill``: any other backend: the same prefill, and the first number of the answer is read.

An answer that names no category is a failure (``label`` None), never a guess.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from pathlib import Path

from moss_data.llm import SamplingParams
from moss_data.llm.rollouts import GenerationConfig, RolloutLLM, run_rollouts

DESCRIPTIONS = {
    "writing": "write, rewrite or edit a text: an email, letter, story, poem, essay, summary or review",
    "role-play": "the user asks the assistant to act as a character, a person or a role",
    "code": "programming: write, explain, fix or review code",
    "brainstorming": "ideas, suggestions, advice, options, or what-if speculation",
    "complex instruction": "one task with several explicit requirements on its content, steps or format",
    "honest": "questions about the assistant itself (who made it, what it can do), or facts to be candid about",
    "harmless": "harmful, dangerous, illegal, unethical or offensive requests that should be declined",
    "continue/switching": "continue an earlier text or answer, or change the topic in the middle of a conversation",
    "tool": "needs a tool: a web search, current information, a calculation, an equation to solve, an API call",
}
PREFILL = "Category: "


def system_prompt(names: list[str]) -> str:
    lines = [f"{i + 1}. {name}: {DESCRIPTIONS.get(name, name)}." for i, name in enumerate(names)]
    return ("You sort the requests users send to an AI assistant into categories. The categories:\n"
            + "\n".join(lines) + "\nAnswer with the number of the one category that fits best.")


def request_text(user_messages: list[str], max_chars: int) -> str:
    """What the classifier reads: the user's messages of a conversation (the first, or all of them, numbered)."""
    if len(user_messages) == 1:
        return user_messages[0][:max_chars]
    share = max(80, max_chars // len(user_messages))
    return "\n".join(f"[message {i + 1}] {m[:share]}" for i, m in enumerate(user_messages))[:max_chars]


def classify_mode(llm: RolloutLLM) -> str:
    if llm.supports_json_schema("judge"):
        return "schema"
    return "choice" if llm.kind("judge") == "transformers" else "prefill"


def classify_context(names: list[str]) -> dict:
    return {"names": names, "system": system_prompt(names)}


async def classify_rollout(item: dict, llm: RolloutLLM, *, names: list[str], system: str) -> dict:
    """One prompt -> ``{"label": name or None, "raw", "mode"}``."""
    mode = classify_mode(llm)
    request = [{"role": "system", "content": system},
               {"role": "user", "content": f"Request:\n{item['text']}\n\nWhich category is it? Answer with its "
                                           "number."}]
    numbers = [str(i + 1) for i in range(len(names))]
    params = SamplingParams(max_new_tokens=1, temperature=0.0, seed=item.get("seed", 0))
    if mode == "choice":
        gen = await llm.chat(request + [{"role": "assistant", "content": PREFILL}],
                             params.model_copy(update={"choices": numbers}), role="judge")
    elif mode == "prefill":
        gen = await llm.chat(request + [{"role": "assistant", "content": PREFILL}],
                             params.model_copy(update={"max_new_tokens": 6}), role="judge")
    else:
        schema = {"type": "object", "properties": {"category": {"type": "string", "enum": names}},
                  "required": ["category"], "additionalProperties": False}
        gen = await llm.chat(request, params.model_copy(update={"max_new_tokens": 32, "json_schema": schema}),
                             role="judge")
    return {"label": parse_label(gen.text, names, mode) if gen.finish_reason != "error" else None,
            "raw": gen.text[:200], "mode": mode}


def parse_label(text: str, names: list[str], mode: str) -> str | None:
    if mode == "schema":
        try:
            label = json.loads(text[text.index("{"): text.rindex("}") + 1]).get("category")
        except ValueError:
            return None
        return label if label in names else None
    m = re.match(r"\s*(\d+)", text)
    return names[int(m.group(1)) - 1] if m and 1 <= int(m.group(1)) <= len(names) else None


def classify(texts: dict[str, str], names: list[str], generation: GenerationConfig, work_dir: Path,
             name: str = "classify") -> dict[str, dict]:
    """id -> ``{"label", "raw", "mode"}`` for every text, as rollouts on the generation runner (resumable)."""
    if not texts:
        return {}
    items = {key: {"text": text, "seed": i} for i, (key, text) in enumerate(texts.items())}
    return run_rollouts(name, items, classify_rollout, work_dir, generation,
                        functools.partial(classify_context, list(names)))


def agreement(gold: dict[str, str], predicted: dict[str, str | None], names: list[str]) -> dict:
    """Accuracy, per-class precision/recall and the confusion matrix (gold -> predicted -> count) of the
    classifier on labelled prompts; an unparsed answer counts as wrong (predicted ``none``). Baselines for scale:
    always answering the most frequent gold class, and a uniform guess."""
    confusion: dict[str, Counter] = {g: Counter() for g in sorted(set(gold.values()))}
    for key, g in gold.items():
        confusion[g][predicted.get(key) or "none"] += 1
    n = len(gold)
    correct = sum(confusion[g][g] for g in confusion)
    predicted_counts = Counter(predicted.get(k) or "none" for k in gold)
    per_class = {}
    for label in names:
        support = sum(confusion.get(label, Counter()).values())
        hit = confusion.get(label, Counter())[label]
        per_class[label] = {"support": support, "predicted": predicted_counts[label], "correct": hit,
                            "recall": round(hit / support, 3) if support else None,
                            "precision": round(hit / predicted_counts[label], 3) if predicted_counts[label] else None}
    gold_counts = Counter(gold.values())
    return {"n": n, "correct": correct, "accuracy": round(correct / n, 3) if n else None,
            "unparsed": predicted_counts["none"],
            "majority_baseline": round(max(gold_counts.values()) / n, 3) if n else None,
            "uniform_baseline": round(1 / len(names), 3),
            "per_class": per_class, "predicted": dict(predicted_counts),
            "confusion": {g: dict(c) for g, c in confusion.items()}}
