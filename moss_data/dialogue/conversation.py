"""Multi-turn conversations: the MOSS assistant and a user simulator alternate, batched across conversations.

Turns per conversation are drawn per category (``1 + Poisson(mean - 1)``, capped at ``max_turns``); released MOSS
data averages 5-6 turns for writing, role-play and code, ~3 for honest and harmless. Every model output is checked;
a bad one sends the whole conversation to quarantine with the reason (``empty_reply``, ``truncated_reply``,
``role_marker``, ``wrong_language_reply``, ``backend_error``, and the same for the simulated user), never into the
shards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import xxhash
from tqdm import tqdm

from moss_data.dialogue.backends import Backend, Generation, SamplingParams
from moss_data.corpus.filters.chinese import CJK
from moss_data.dialogue.selfinstruct import LANGUAGE_NAMES
from moss_data.dialogue.shards import ShardStore
from moss_data.formats import Capabilities, Conversation, Turn, meta_instruction

# Markers of MOSS's own format inside model text would corrupt the serialization.
ROLE_MARKER = re.compile(r"<\|(?:Human|MOSS|Inner Thoughts|Commands|Results)\|>|<eo[htcrm]>")


@dataclass
class Job:
    conversation_id: str
    category: str
    language: str
    prompt: str
    target_turns: int
    turns: list[Turn] = field(default_factory=list)
    pending_human: str = ""
    failure: str = ""
    raw: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def active(self) -> bool:
        return not self.failure and len(self.turns) < self.target_turns

    def take(self, gen: Generation, who: str, router) -> str | None:
        """Counts the tokens; returns the output's text if usable, else records why not (the conversation then
        goes to quarantine) and returns None."""
        self.prompt_tokens += gen.prompt_tokens
        self.completion_tokens += gen.completion_tokens
        reason = check_output(gen, who, self.language, router)
        if reason:
            self.failure, self.raw = reason, gen.text or gen.error
            return None
        return gen.text.strip()


def draw_turns(rng: np.random.Generator, mean: float, max_turns: int) -> int:
    return int(min(max_turns, 1 + rng.poisson(max(mean - 1, 0))))


def check_output(gen: Generation, who: str, language: str | None = None, router=None) -> str:
    """'' if the output is usable, else the quarantine reason. Language follows the prompt: an output of 20+
    letters in the other script (a Chinese conversation answered in Latin letters, or the reverse), or of 40+
    letters that lid.176 confidently puts in the other language, is ``wrong_language_<who>``."""
    if gen.finish_reason == "error":
        return "backend_error"
    if not gen.text.strip():
        return f"empty_{who}"
    if gen.finish_reason == "length":
        return f"truncated_{who}"
    if ROLE_MARKER.search(gen.text):
        return "role_marker"
    letters = [ch for ch in gen.text if ch.isalpha()]
    if language in ("en", "zh") and len(letters) >= 20:
        # Script first (cheap and decisive): Chinese text is mostly CJK, English has next to none. Code and names
        # mix scripts, hence the margins. Then lid.176 for what the script cannot tell.
        cjk_share = sum(1 for ch in letters if CJK.match(ch)) / len(letters)
        if (language == "zh" and cjk_share < 0.2) or (language == "en" and cjk_share > 0.3):
            return f"wrong_language_{who}"
        if router is not None and len(letters) >= 40:
            detected, score = router.classify(gen.text)
            if detected in ("en", "zh") and detected != language and score >= 0.8:
                return f"wrong_language_{who}"
    return ""


def transcript(job: Job) -> str:
    lines = []
    for t in job.turns:
        lines += [f"User: {t.human}", f"Assistant: {t.moss}"]
    return "\n".join(lines)


def run_conversations(
    backend: Backend,
    jobs: list[Job],
    store: ShardStore,
    assistant_params: SamplingParams,
    user_params: SamplingParams,
    user_template: str,
    provenance: dict,
    batch_size: int = 16,
) -> None:
    from moss_data.corpus.langid import LanguageRouter

    router = LanguageRouter()
    system = {"role": "system", "content": meta_instruction(Capabilities())}
    bar = tqdm(total=len(jobs), desc="conversations", unit="conv")
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        for job in batch:
            job.pending_human = job.prompt
        while any(j.active for j in batch):
            active = [j for j in batch if j.active]
            histories = []
            for j in active:
                messages = [system]
                for t in j.turns:
                    messages += [{"role": "user", "content": t.human}, {"role": "assistant", "content": t.moss}]
                histories.append(messages + [{"role": "user", "content": j.pending_human}])
            for j, gen in zip(active, backend.chat(histories, assistant_params)):
                reply = j.take(gen, "reply", router)
                if reply is not None:
                    j.turns.append(Turn(j.pending_human, reply))
            needs_user = [j for j in active if j.active]
            if needs_user:
                requests = [[{"role": "user", "content": user_template.format(
                    transcript=transcript(j), language_name=LANGUAGE_NAMES[j.language])}] for j in needs_user]
                for j, gen in zip(needs_user, backend.chat(requests, user_params)):
                    message = j.take(gen, "user", router)
                    if message is not None:
                        j.pending_human = message.removeprefix("User:").strip()
        for job in batch:
            prov = provenance | {"target_turns": job.target_turns, "prompt_tokens": job.prompt_tokens,
                                 "completion_tokens": job.completion_tokens}
            if job.failure:
                store.quarantine_output(job.conversation_id, job.category, job.failure, job.raw, prov)
            else:
                store.add_conversation(Conversation(job.conversation_id, job.category, job.turns), job.language, prov)
            bar.update()
    store.flush()
    bar.close()


def template_hash(*texts: str) -> str:
    return xxhash.xxh3_64_hexdigest("\0".join(texts))
