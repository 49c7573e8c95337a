"""Step 2: the judge on every candidate (``judgements.jsonl``), a sample judged again with another seed
(self-consistency) and a sample of candidate pairs compared in both orders (position bias, ``verdicts.jsonl``).
Unparsable judgements go to quarantine, once each. Everything is cached, so a resumed run judges nothing twice."""

from __future__ import annotations

import functools
from pathlib import Path

from moss_data.feedback.cache import JsonlCache
from moss_data.feedback.contexts import Context, stable_hash
from moss_data.feedback.judge import Judge, judge_mode
from moss_data.llm import SamplingParams
from moss_data.io.conversations import ShardStore

Item = tuple[str, Context, dict]  # (judgement key, context, candidate)
ORDERS = ("ab", "ba")


def again_key(key: str) -> str:
    """The judgement key of a candidate's second judging (self-consistency)."""
    return f"{key}#again"


def verdict_key(context_id: str, order: str) -> str:
    """The key of a pairwise comparison of a context's first two candidates, shown in ``order`` (ab or ba)."""
    return f"{context_id}:{order}"


def consistency_sample(items: list[Item], n: int) -> list[Item]:
    """A fixed sample (same in every run) of judged items to judge again."""
    return sorted(items, key=lambda it: stable_hash(it[0]))[:n]


def position_sample(by_context: dict[str, list[dict]], n: int) -> list[str]:
    """A fixed sample of contexts with at least two candidates, to compare in both orders."""
    return sorted((cid for cid, cands in by_context.items() if len(cands) >= 2), key=stable_hash)[:n]


def judge_context(prompts_dir: str, sampling: dict) -> dict:
    return {"judge": Judge(Path(prompts_dir), SamplingParams(**sampling))}


async def judge_rollout(item: dict, llm, *, judge: Judge) -> dict:
    """One judge request: a rubric score (``kind`` score) or a pairwise verdict (``kind`` compare)."""
    mode = judge_mode(llm)
    if item["kind"] == "score":
        result, raw = await judge.score(llm, item["context"], item["response"], item["seed"])
        if isinstance(result, Exception):
            return {"ok": False, "reason": result.reason, "raw": raw, "category": item["category"], "mode": mode}
        return {"ok": True, **result.as_dict(), "raw": raw, "mode": mode}
    verdict, raw = await judge.compare(llm, item["context"], item["a"], item["b"], item["seed"])
    return {"ok": not isinstance(verdict, Exception), "better": None if isinstance(verdict, Exception) else
            verdict.better, "raw": raw}


def as_judgement(result: dict, item: dict) -> dict:
    """A rollout that raised (status error) is a failed judgement with its reason, cached and quarantined like one."""
    if "ok" in result:
        return result
    return {"ok": False, "reason": result.get("reason", "rollout_error"), "raw": result.get("raw", ""),
            "category": item.get("category", ""), "better": None}


class Judging:
    def __init__(self, judgements: JsonlCache, verdicts: JsonlCache, run, prompts_dir: Path, sampling: SamplingParams):
        self.judgements = judgements
        self.verdicts = verdicts
        self._run = run  # the stage's rollout runner: called only when something must be judged
        self._context = functools.partial(judge_context, str(prompts_dir), sampling.model_dump())

    def judged(self, key: str) -> dict | None:
        """The parsed judgement of a key, None if it failed or was never made."""
        row = self.judgements.rows.get(key)
        return row if row and row["ok"] else None

    def judge(self, items: list[Item], seed: int, name: str) -> None:
        """Judges the items not judged yet, one rollout each; an unparsable answer is cached as failed, with its
        reason."""
        work = {key: {"kind": "score", "context": c.prompt, "response": cand["text"], "category": c.category,
                      "seed": seed + stable_hash(key) % 1_000_003}
                for key, c, cand in items if key not in self.judgements}
        if not work:
            return
        results = self._run(name, work, judge_rollout, self._context)
        self.judgements.put_many([{"key": key, **as_judgement(results[key], work[key])} for key in work])

    def quarantine_failed(self, store: ShardStore, judge_label: str) -> None:
        """Unparsable judgements -> quarantine, once each (from the cache, so a kill between the two writes neither
        loses nor doubles one)."""
        done = store.done_ids()
        for row in self.judgements.rows.values():
            if not row["ok"] and row["key"] not in done:
                store.quarantine_output(row["key"], row.get("category", ""), f"judge_{row['reason']}", row["raw"],
                                        {"judge": judge_label})
        store.flush()

    def compare(self, contexts: dict[str, Context], by_context: dict[str, list[dict]], sample: list[str],
                seed: int) -> None:
        """Each sampled context's first two candidates, compared in both orders."""
        work, pairs = {}, {}
        for cid in sample:
            a, b = by_context[cid][:2]
            for key, first, second in ((verdict_key(cid, "ab"), a, b), (verdict_key(cid, "ba"), b, a)):
                if key not in self.verdicts:
                    pairs[key] = (first, second)
                    work[key] = {"kind": "compare", "context": contexts[cid].prompt, "a": first["text"],
                                 "b": second["text"], "seed": seed + stable_hash(key) % 1_000_003}
        if not work:
            return
        results = self._run("compare", work, judge_rollout, self._context)
        self.verdicts.put_many([{"key": key, "a": pairs[key][0]["key"], "b": pairs[key][1]["key"],
                                 **as_judgement(results[key], work[key])} for key in work])
