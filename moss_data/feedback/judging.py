"""Step 2: the judge on every candidate (``judgements.jsonl``), a sample judged again with another seed
(self-consistency) and a sample of candidate pairs compared in both orders (position bias, ``verdicts.jsonl``).
Unparsable judgements go to quarantine, once each. Everything is cached, so a resumed run judges nothing twice."""

from __future__ import annotations

from collections.abc import Callable

from tqdm import tqdm

from moss_data.feedback.cache import JsonlCache
from moss_data.feedback.contexts import Context, stable_hash
from moss_data.feedback.judge import Judge
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


class Judging:
    def __init__(self, judgements: JsonlCache, verdicts: JsonlCache, judge: Callable[[], Judge], batch_size: int):
        self.judgements = judgements
        self.verdicts = verdicts
        self._judge = judge  # called only when something must be judged: a fully cached run loads no model
        self.batch_size = batch_size

    def judged(self, key: str) -> dict | None:
        """The parsed judgement of a key, None if it failed or was never made."""
        row = self.judgements.rows.get(key)
        return row if row and row["ok"] else None

    def judge(self, items: list[Item], seed: int, desc: str) -> None:
        """Judges the items not judged yet; an unparsable answer is cached as failed, with its reason."""
        todo = [it for it in items if it[0] not in self.judgements]
        bar = tqdm(total=len(todo), desc=desc, unit="resp")
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            judge = self._judge()
            results = judge.score([(c.prompt, cand["text"]) for _, c, cand in batch], seed + start)
            self.judgements.put_many([
                {"key": key, "ok": False, "reason": result.reason, "raw": raw, "category": c.category, "mode": judge.mode}
                if isinstance(result, Exception) else {"key": key, "ok": True, **result.as_dict(), "raw": raw,
                                                      "mode": judge.mode}
                for (key, c, _), (result, raw) in zip(batch, results)
            ])
            bar.update(len(batch))
        bar.close()

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
        items = []
        for cid in sample:
            a, b = by_context[cid][:2]
            items += [(verdict_key(cid, "ab"), contexts[cid], a, b), (verdict_key(cid, "ba"), contexts[cid], b, a)]
        todo = [it for it in items if it[0] not in self.verdicts]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            results = self._judge().compare([(c.prompt, a["text"], b["text"]) for _, c, a, b in batch], seed + start)
            self.verdicts.put_many([
                {"key": key, "a": a["key"], "b": b["key"], "ok": not isinstance(v, Exception),
                 "better": None if isinstance(v, Exception) else v.better, "raw": raw}
                for (key, _, a, b), (v, raw) in zip(batch, results)
            ])
