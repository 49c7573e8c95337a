"""Multi-turn conversations: the MOSS assistant and a user simulator alternate, batched across conversations.

Turns per conversation are drawn per category (``1 + Poisson(mean - 1)``, capped at ``max_turns``); released MOSS
data averages 5-6 turns for writing, role-play and code, ~3 for honest and harmless. Every model output is checked
(:func:`check_output`); a failed one is generated again with another seed, up to ``attempts`` times (rejection
sampling; the rejections are counted in the conversation's provenance), and if it still fails the whole
conversation goes to quarantine with the reason (``empty_reply``, ``truncated_reply``, ``role_marker``,
``wrong_language_reply``, ``repetitive_reply``, ``echo_reply``, ``backend_error``, the same for the simulated user,
and ``user_sounds_like_assistant``), never into the shards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import xxhash
from tqdm import tqdm

from moss_data.io.conversations import ShardStore
from moss_data.llm import Backend, Generation, SamplingParams, check_output
from moss_data.text.langid import LanguageIdentifier
from moss_data.text.scripts import LANGUAGE_NAMES
from moss_data.formats import Capabilities, Conversation, Turn, meta_instruction



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
    rejections: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def active(self) -> bool:
        return not self.failure and len(self.turns) < self.target_turns

    def count(self, gen: Generation) -> None:
        self.prompt_tokens += gen.prompt_tokens
        self.completion_tokens += gen.completion_tokens

    @property
    def last_message(self) -> str:
        """What the next output answers: the pending user message, or the assistant's last reply."""
        return self.turns[-1].moss if self.turns and self.pending_human == self.turns[-1].human else self.pending_human


def draw_turns(rng: np.random.Generator, mean: float, max_turns: int) -> int:
    return int(min(max_turns, 1 + rng.poisson(max(mean - 1, 0))))


def checked_chat(backend: Backend, jobs: list[Job], requests: list[list[dict]], params: SamplingParams, who: str,
                 router, attempts: int) -> list[str | None]:
    """One output per job, each checked; failed ones are generated again with a new seed (up to ``attempts``
    tries). A job whose last try fails gets its ``failure`` set and None here."""
    out: list[str | None] = [None] * len(jobs)
    todo = list(range(len(jobs)))
    for attempt in range(attempts):
        gens = backend.chat([requests[i] for i in todo], params.model_copy(update={"seed": params.seed + 7919 * attempt}))
        retry = []
        for i, gen in zip(todo, gens):
            job = jobs[i]
            job.count(gen)
            reason = check_output(gen, who, job.language, router, job.last_message)
            if not reason:
                out[i] = gen.text.strip()
                continue
            job.rejections[reason] += 1
            if attempt + 1 < attempts and reason != "backend_error":  # the backend already retried its errors
                retry.append(i)
            else:
                job.failure, job.raw = reason, gen.text or gen.error
        todo = retry
        if not todo:
            break
    return out


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
    attempts: int = 1,
) -> None:
    router = LanguageIdentifier()
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
            for j, reply in zip(active, checked_chat(backend, active, histories, assistant_params, "reply", router,
                                                     attempts)):
                if reply is not None:
                    j.turns.append(Turn(j.pending_human, reply))
            needs_user = [j for j in active if j.active]
            if needs_user:
                requests = [[{"role": "user", "content": user_template.format(
                    transcript=transcript(j), language_name=LANGUAGE_NAMES[j.language])}] for j in needs_user]
                for j, message in zip(needs_user, checked_chat(backend, needs_user, requests, user_params, "user",
                                                               router, attempts)):
                    if message is not None:
                        j.pending_human = message.removeprefix("User:").strip()
        for job in batch:
            prov = provenance | {"target_turns": job.target_turns, "prompt_tokens": job.prompt_tokens,
                                 "completion_tokens": job.completion_tokens, "rejected": dict(job.rejections)}
            if job.failure:
                store.quarantine_output(job.conversation_id, job.category, job.failure, job.raw, prov)
            else:
                store.add_conversation(Conversation(job.conversation_id, job.category, job.turns), job.language, prov)
            bar.update()
    store.flush()
    bar.close()


def template_hash(*texts: str) -> str:
    return xxhash.xxh3_64_hexdigest("\0".join(texts))
