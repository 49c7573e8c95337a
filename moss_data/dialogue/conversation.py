"""One multi-turn conversation as one rollout: the MOSS assistant and a user simulator alternate, each output checked.

Turns per conversation are drawn per category (``1 + Poisson(mean - 1)``, capped at ``max_turns``); released MOSS
data averages 5-6 turns for writing, role-play and code, ~3 for honest and harmless. Every model output is checked
(:func:`check_output`); a failed one is generated again with another seed, up to ``attempts`` times (rejection
sampling; the rejections are counted in the conversation's provenance), and if it still fails the whole
conversation goes to quarantine with the reason (``empty_reply``, ``truncated_reply``, ``role_marker``,
``wrong_language_reply``, ``repetitive_reply``, ``echo_reply``, ``backend_error``, the same for the simulated user,
and ``user_sounds_like_assistant``), never into the shards.

Replies are also checked for what the conversation is for (:func:`reply_check`): a harmful request must be refused
with a safe alternative (``complied``, ``refusal_without_alternative``), and no reply of an honest or harmless
conversation may be offensive (``offensive_reply``); a benign look-alike must not be refused (``over_refusal``); an identity question is answered
as MOSS by Fudan University (``claims_other_identity``, ``missing_name``, ...); a question nobody can answer gets
honest uncertainty (``fabricated_answer``, ``no_uncertainty``). Continue/switching conversations follow a script of
user turns (continue, switch topic); a continuation must not repeat what it continues (``repeats_previous_reply``).

The conversation advances on its own (it never waits for other conversations' turns): the runner keeps many of
them in flight, so the server sees a steady stream. Seeds are derived from the conversation id, the turn and the
try, so a resumed rollout sends the same requests (and gets them from the request cache).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import xxhash

from moss_data.formats import Capabilities, meta_instruction
from moss_data.dialogue.harmlessness import check_alignment, check_offensive
from moss_data.dialogue.seeding import is_continue_request
from moss_data.llm import SamplingParams, check_output
from moss_data.llm.checks import is_echo
from moss_data.llm.rollouts import RolloutLLM
from moss_data.text.langid import LanguageIdentifier
from moss_data.text.scripts import LANGUAGE_NAMES


def draw_turns(rng: np.random.Generator, mean: float, max_turns: int) -> int:
    return int(min(max_turns, 1 + rng.poisson(max(mean - 1, 0))))


def request_seed(base: int, *key) -> int:
    """A seed per request: the recipe's seed moved by a hash of what the request is (conversation, turn, who, try)."""
    return base + xxhash.xxh32_intdigest("/".join(map(str, key))) % 1_000_003


class Failed(Exception):
    def __init__(self, reason: str, raw: str):
        self.reason, self.raw = reason, raw


async def checked(llm: RolloutLLM, messages: list[dict], params: SamplingParams, who: str, role: str, item: dict,
                  turn: int, attempts: int, router: LanguageIdentifier, answers: str, usage: Counter,
                  extra_check=None) -> str:
    """A checked output; failed ones are generated again with another seed (up to ``attempts`` tries), then
    :class:`Failed` with the last reason. ``extra_check(text) -> reason`` runs after the generic checks."""
    for attempt in range(attempts):
        seed = request_seed(params.seed, item["conversation_id"], turn, who, attempt)
        gen = await llm.chat(messages, params.model_copy(update={"seed": seed}), role=role)
        usage["requests"] += 1
        usage["prompt_tokens"] += gen.prompt_tokens
        usage["completion_tokens"] += gen.completion_tokens
        usage[f"{who}_completion_tokens"] += gen.completion_tokens
        usage[f"turn{turn + 1}_completion_tokens"] += gen.completion_tokens
        reason = check_output(gen, who, item["language"], router, answers)
        if not reason and extra_check is not None:
            reason = extra_check(gen.text.strip())
        if not reason:
            return gen.text.strip()
        usage[f"rejected:{reason}"] += 1
        if reason == "backend_error" or attempt + 1 == attempts:  # the runner already retried transport errors
            raise Failed(reason, gen.text or gen.error)
    raise AssertionError("unreachable")


def assistant_request(system: str, turns: list[tuple[str, str]], human: str) -> list[dict]:
    """The assistant's context: the meta instruction, the turns so far, the user's new message."""
    messages = [{"role": "system", "content": system}]
    for h, m in turns:
        messages += [{"role": "user", "content": h}, {"role": "assistant", "content": m}]
    return messages + [{"role": "user", "content": human}]


def user_request(user_template: str, turns: list[tuple[str, str]], language: str) -> list[dict]:
    """The user simulator's request: the transcript so far, in the conversation's language."""
    return [{"role": "user", "content": user_template.format(transcript=transcript(turns),
                                                             language_name=LANGUAGE_NAMES[language])}]


def transcript(turns: list[tuple[str, str]]) -> str:
    return "\n".join(line for human, moss in turns for line in (f"User: {human}", f"Assistant: {moss}"))


def conversation_context(prompts_dir: str, assistant_sampling: dict, user_sampling: dict, attempts: int) -> dict:
    """What every conversation rollout of a task shares (built once per task)."""
    return {"router": LanguageIdentifier(), "system": meta_instruction(Capabilities()),
            "user_template": (Path(prompts_dir) / "user_simulator.txt").read_text(encoding="utf-8"),
            "assistant_params": SamplingParams(**assistant_sampling), "user_params": SamplingParams(**user_sampling),
            "attempts": attempts}


def reply_check(item: dict, turn: int, previous_reply: str):
    """What a reply must also pass beyond the generic checks: the honest and harmless checks for the item's kind on
    the first reply (later turns answer the simulated user's follow-ups, which may be harmless: they are checked for
    offensive language only), and a continuation must not repeat the reply it continues."""
    kind, language = item.get("kind"), item["language"]

    def check(reply: str) -> str:
        if kind and turn == 0:
            if reason := check_alignment(kind, item["prompt"], reply, language):
                return reason
        elif kind:
            if reason := check_offensive(reply, language):
                return reason
        if previous_reply and is_echo(reply, previous_reply):
            return "repeats_previous_reply"
        return ""
    return check


async def conversation_rollout(item: dict, llm: RolloutLLM, *, router, system: str, user_template: str,
                               assistant_params: SamplingParams, user_params: SamplingParams, attempts: int) -> dict:
    """``item``: conversation_id, language, category, prompt, target_turns, and optionally ``kind`` (honest and
    harmless checks) and ``script`` (scripted user turns: continue/switching). Returns ``status`` kept (with
    ``turns``: [human, moss] pairs) or quarantine (``reason``, ``raw``), and token counts and rejections."""
    usage: Counter = Counter()
    turns: list[tuple[str, str]] = []
    human, continued = item["prompt"], ""
    script = item.get("script") or []
    try:
        while True:
            reply = await checked(llm, assistant_request(system, turns, human), assistant_params, "reply",
                                  "assistant", item, len(turns), attempts, router, human, usage,
                                  reply_check(item, len(turns), continued))
            turns.append((human, reply))
            if len(turns) >= item["target_turns"]:
                break
            if len(turns) - 1 < len(script):  # a scripted turn: continue the last reply, or switch topic
                human = script[len(turns) - 1]
                continued = reply if is_continue_request(human, item["language"]) else ""
                continue
            message = await checked(llm, user_request(user_template, turns, item["language"]), user_params, "user",
                                    "user", item, len(turns), attempts, router, reply, usage)
            human, continued = message.removeprefix("User:").strip(), ""
    except Failed as failed:
        return {"status": "quarantine", "reason": failed.reason, "raw": failed.raw, **_usage(usage)}
    return {"status": "kept", "turns": turns, **_usage(usage)}


def _usage(usage: Counter) -> dict:
    rejected = {k.split(":", 1)[1]: v for k, v in usage.items() if k.startswith("rejected:")}
    return {"usage": {k: v for k, v in usage.items() if not k.startswith("rejected:")}, "rejected": rejected}


def template_hash(*texts: str) -> str:
    return xxhash.xxh3_64_hexdigest("\0".join(texts))
