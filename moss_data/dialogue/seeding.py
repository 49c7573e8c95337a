"""Where each planned conversation's first prompt comes from, per category.

- writing, role-play, code, brainstorming, complex instruction: real imported prompts (``moss-data import``) first,
  up to ``imports.share`` of the quota, then self-instruct grown from the seed prompts *and* the imported ones, as
  MOSS grew its API prompts;
- honest: identity questions ("who made you?", answered from the meta instruction) and questions nobody can answer
  (the future, private facts), alternating (:mod:`moss_data.dialogue.honesty`);
- harmless: real red-team prompts (Do-Not-Answer, HarmBench; the training split only, the held-out split is the
  evaluation's), Chinese ones translated by the assistant's backend and marked ``translated_from``, plus benign
  look-alikes ("how do I kill a Python process?") that must *not* be refused (:mod:`moss_data.dialogue.harmlessness`);
- continue/switching: a first prompt from another category, then scripted user turns that ask to continue or switch
  topic, alternating (MOSS's "continue/switching" category).

Each item carries ``kind`` (what its replies are checked for) and ``prompt_source``; the choice is seeded, so a
run planned again picks the same prompts.
"""

from __future__ import annotations

import numpy as np
import xxhash

CONTINUE_SWITCHING = "continue/switching"
ALIGNMENT_CATEGORIES = ("honest", "harmless")
# Scripted user turns of the continue/switching category.
CONTINUE_REQUESTS = {
    "en": ["Please continue.", "Go on, tell me more.", "Continue from where you stopped."],
    "zh": ["请继续。", "接着说下去。", "继续写完它。"],
}
SWITCH_OPENERS = {"en": "Let's talk about something else. ", "zh": "我们换个话题吧。"}


def interleave(pools: list[list[dict]], n: int) -> list[dict]:
    """``n`` items taken from the pools in turn (one from each, then again), skipping empty pools."""
    out, index = [], 0
    while len(out) < n and any(index < len(p) for p in pools):
        out += [p[index] for p in pools if index < len(p)]
        index += 1
    return out[:n]


def shuffled(items: list, seed: int, key: str) -> list:
    """``items`` in an order fixed by the run's seed and ``key`` (a pool's name)."""
    rng = np.random.default_rng([seed, xxhash.xxh32_intdigest(key)])
    return [items[i] for i in rng.permutation(len(items))]


def continue_switching_script(language: str, other_prompts: list[str], turns: int, seed: int,
                              conversation_id: str = "") -> list[str]:
    """The user's messages for turns 2..``turns``: a continue request, then a switch to another topic, in turn
    (drawn per conversation: the run's seed and the conversation's id)."""
    if not other_prompts:
        raise ValueError("continue/switching needs prompts to switch to: add seed prompts of another category")
    rng = np.random.default_rng([seed, xxhash.xxh32_intdigest(conversation_id)])
    script = []
    for k in range(turns - 1):
        if k % 2 == 0:
            script.append(CONTINUE_REQUESTS[language][int(rng.integers(len(CONTINUE_REQUESTS[language])))])
        else:
            script.append(SWITCH_OPENERS[language] + other_prompts[int(rng.integers(len(other_prompts)))])
    return script


def is_continue_request(message: str, language: str) -> bool:
    return message in CONTINUE_REQUESTS.get(language, [])
