"""The feedback stage: dialogue shards -> judged candidates -> preference pairs, a reward model, tagged shards.

Steps (each resumable; outputs under ``output_dir``):

1. Contexts: every assistant response of the input conversations, with the conversation before it.
2. Candidates (``candidates.jsonl``): the original response plus ``candidates_per_context - 1`` sampled ones; each
   marked with whether it passes the dialogue engine's output checks.
3. Judgements (``judgements.jsonl``): the rubric on every candidate; unparsable ones go to ``quarantine/``.
   A sample is judged again with another seed (self-consistency) and a sample of candidate pairs is compared in
   both orders (position bias) (``verdicts.jsonl``).
4. Pairs (``pairs/``): per context the best and worst judged candidates when their overall scores differ by
   ``min_margin`` and the best passes the checks, in TRL's conversational preference format, split train/held-out.
5. Reward model (``reward_model/``): TRL RewardTrainer on the training pairs; agreement with the judge on held-out
   pairs and with external labelled sets.
6. Tags: each original response's quality 1-5 from the reward model (thresholds set so the judged candidates' tag
   distribution matches the judge's) or, without a reward model, from the judge; ``untagged_share`` left untagged.
   Tagged conversations go to ``shards/`` (the dialogue shard schema, with the tag in the MOSS record and in
   ``messages[].quality``).
7. ``report.md``, ``summary.json``, ``tags.png``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from loguru import logger
from pydantic import Field
from tqdm import tqdm

from moss_data.dialogue.backends import BackendConfig, SamplingParams, build_backend
from moss_data.dialogue.conversation import check_output
from moss_data.dialogue.shards import ShardStore, read_conversations
from moss_data.feedback.cache import JsonlCache
from moss_data.feedback.judge import Judge
from moss_data.feedback.reward import RewardModelConfig, without_tool_roles
from moss_data.feedback.rubric import ASPECTS
from moss_data.formats import QUALITY_LEVELS, Conversation, Turn, response_id
from moss_data.recipe import StrictModel


class FeedbackRecipe(StrictModel):
    name: str
    input_dir: Path = Field(description="a dialogue stage's output folder (its shards/ are read)")
    output_dir: Path
    prompts_dir: Path = Path("prompts")
    backend: BackendConfig = BackendConfig()
    candidates_per_context: int = Field(3, ge=1, description="the original response plus sampled ones")
    candidate_sampling: SamplingParams = SamplingParams(max_new_tokens=256, temperature=0.9, top_p=0.95)
    judge_sampling: SamplingParams = SamplingParams(max_new_tokens=96, temperature=0.3, top_p=0.9)
    consistency_sample: int = Field(16, ge=0, description="candidates judged twice (another seed)")
    position_sample: int = Field(16, ge=0, description="candidate pairs compared in both orders")
    min_margin: int = Field(1, ge=1, description="overall-score gap between chosen and rejected")
    heldout_share: float = Field(0.25, ge=0, lt=1)
    untagged_share: float = Field(0.1, ge=0, le=1, description="responses left untagged on purpose")
    reward_model: RewardModelConfig = RewardModelConfig()
    external_pairs: list[Path] = Field(default_factory=list, description="labelled preference sets (JSON, "
                                       "LLaMA-Factory DPO format) the reward model is tested on")
    external_limit: int = Field(100, ge=1, description="pairs used from each external set")
    batch_size: int = 16
    seed: int = 0


@dataclass
class Context:
    context_id: str
    conversation_id: str
    turn: int
    language: str
    category: str
    prompt: list[dict]  # messages before the response
    original: str


def _hash(text: str) -> int:
    return xxhash.xxh3_64_intdigest(text)


def contexts_of(conv: Conversation, language: str) -> list[Context]:
    return [Context(response_id(conv.conversation_id, t), conv.conversation_id, t, language, conv.category,
                    conv.prompt_messages(t), turn.moss) for t, turn in enumerate(conv.turns)]


class FeedbackStage:
    def __init__(self, recipe: FeedbackRecipe):
        self.r = recipe
        self.out = recipe.output_dir
        self.out.mkdir(parents=True, exist_ok=True)
        self.candidates = JsonlCache(self.out / "candidates.jsonl")
        self.judgements = JsonlCache(self.out / "judgements.jsonl")
        self.verdicts = JsonlCache(self.out / "verdicts.jsonl")
        self.store = ShardStore(self.out)
        self._backend = None
        self._judge: Judge | None = None
        self.router = None

    @property
    def backend(self):
        """Built on first use: a resumed run whose work is all cached loads no model."""
        if self._backend is None:
            self._backend = build_backend(self.r.backend)
        return self._backend

    @property
    def judge_client(self) -> Judge:
        if self._judge is None:
            self._judge = Judge(self.backend, self.r.prompts_dir, self.r.judge_sampling)
        return self._judge

    @property
    def judge_label(self) -> str:
        return f"{self.r.backend.kind}:{self.r.backend.model or 'smollm2-135m-instruct'}"

    # ---------------------------------------------------------------- steps

    def make_candidates(self, contexts: list[Context]) -> dict[str, list[dict]]:
        from moss_data.corpus.langid import LanguageRouter

        self.router = self.router or LanguageRouter()
        originals = [{"key": f"{c.context_id}:c0", "context_id": c.context_id, "text": c.original,
                      "source": "original", "passes_checks": True} for c in contexts]
        self.candidates.put_many([o for o in originals if o["key"] not in self.candidates])
        todo = [(c, k) for c in contexts for k in range(1, self.r.candidates_per_context)
                if f"{c.context_id}:c{k}" not in self.candidates]
        bar = tqdm(total=len(todo), desc="candidates", unit="resp")
        for start in range(0, len(todo), self.r.batch_size):
            batch = todo[start : start + self.r.batch_size]
            params = self.r.candidate_sampling.model_copy(update={"seed": self.r.seed + start})
            gens = self.backend.chat([without_tool_roles(c.prompt) for c, _ in batch], params)
            rows = []
            for (c, k), gen in zip(batch, gens):
                reason = check_output(gen, "reply", c.language, self.router, c.prompt[-1]["content"])
                rows.append({"key": f"{c.context_id}:c{k}", "context_id": c.context_id, "text": gen.text.strip(),
                             "source": "sampled", "passes_checks": not reason, "check": reason})
            self.candidates.put_many(rows)
            bar.update(len(batch))
        bar.close()
        by_context: dict[str, list[dict]] = {c.context_id: [] for c in contexts}
        for row in self.candidates.rows.values():
            if row["context_id"] in by_context:
                by_context[row["context_id"]].append(row)
        for rows in by_context.values():
            rows.sort(key=lambda r: int(r["key"].rsplit(":c", 1)[1]))
        return by_context

    def judge(self, items: list[tuple[str, Context, dict]], seed: int, desc: str) -> None:
        """Judge (cache key, context, candidate) items not judged yet; unparsable answers are quarantined."""
        todo = [it for it in items if it[0] not in self.judgements]
        bar = tqdm(total=len(todo), desc=desc, unit="resp")
        for start in range(0, len(todo), self.r.batch_size):
            batch = todo[start : start + self.r.batch_size]
            results = self.judge_client.score([(c.prompt, cand["text"]) for _, c, cand in batch], seed + start)
            mode = self.judge_client.mode
            self.judgements.put_many([
                {"key": key, "ok": False, "reason": result.reason, "raw": raw, "category": c.category, "mode": mode}
                if isinstance(result, Exception) else {"key": key, "ok": True, **result.as_dict(), "raw": raw, "mode": mode}
                for (key, c, _), (result, raw) in zip(batch, results)
            ])
            bar.update(len(batch))
        bar.close()
        self.quarantine_failed_judgements()

    def quarantine_failed_judgements(self) -> None:
        """Unparsable judgements -> quarantine, once each (from the cache, so a kill between the two writes
        neither loses nor doubles one)."""
        done = self.store.done_ids()
        for row in self.judgements.rows.values():
            if not row["ok"] and row["key"] not in done:
                self.store.quarantine_output(row["key"], row.get("category", ""), f"judge_{row['reason']}", row["raw"],
                                             {"judge": self.judge_label})
        self.store.flush()

    def compare(self, items: list[tuple[str, Context, dict, dict]]) -> None:
        todo = [it for it in items if it[0] not in self.verdicts]
        for start in range(0, len(todo), self.r.batch_size):
            batch = todo[start : start + self.r.batch_size]
            results = self.judge_client.compare([(c.prompt, a["text"], b["text"]) for _, c, a, b in batch],
                                                self.r.seed + start)
            self.verdicts.put_many([
                {"key": key, "a": a["key"], "b": b["key"], "ok": not isinstance(v, Exception),
                 "better": None if isinstance(v, Exception) else v.better, "raw": raw}
                for (key, _, a, b), (v, raw) in zip(batch, results)
            ])

    # ---------------------------------------------------------------- the run

    def run(self) -> dict:
        conversations = read_conversations(self.r.input_dir)
        contexts = [ctx for conv, lang, _ in conversations for ctx in contexts_of(conv, lang)]
        logger.info(f"feedback: {len(conversations)} conversations, {len(contexts)} responses to judge")
        by_context = self.make_candidates(contexts)
        ctx_by_id = {c.context_id: c for c in contexts}
        items = [(cand["key"], ctx_by_id[cid], cand) for cid, cands in by_context.items() for cand in cands]
        self.judge(items, self.r.seed, "judge")
        # self-consistency: a fixed sample judged again with another seed
        sample = sorted(items, key=lambda it: _hash(it[0]))[: self.r.consistency_sample]
        self.judge([(f"{k}#again", c, cand) for k, c, cand in sample], self.r.seed + 10_007, "judge again")
        # position bias: the original and the first sampled candidate, in both orders
        pair_ctx = sorted((cid for cid, cands in by_context.items() if len(cands) >= 2), key=_hash)[: self.r.position_sample]
        comparisons = []
        for cid in pair_ctx:
            a, b = by_context[cid][:2]
            comparisons += [(f"{cid}:ab", ctx_by_id[cid], a, b), (f"{cid}:ba", ctx_by_id[cid], b, a)]
        self.compare(comparisons)

        pairs = self.build_pairs(contexts, by_context)
        self.write_pairs(pairs)
        rm = self.reward_model(pairs)
        tags, tag_source = self.tag(contexts, by_context, rm)
        self.write_tagged(conversations, tags, tag_source)
        summary = self.summary(items, sample, pair_ctx, pairs, rm, tags, tag_source)
        from moss_data.feedback.report import write_report

        write_report(self.out, summary)
        return summary

    def judged(self, key: str) -> dict | None:
        row = self.judgements.rows.get(key)
        return row if row and row["ok"] else None

    def build_pairs(self, contexts: list[Context], by_context: dict[str, list[dict]]) -> list[dict]:
        pairs = []
        for c in contexts:
            scored = [(self.judged(cand["key"]), cand) for cand in by_context[c.context_id]]
            scored = [(j, cand) for j, cand in scored if j]
            if len(scored) < 2:
                continue
            rank = lambda jc: (jc[0]["overall"], sum(jc[0][a] for a in ASPECTS))  # noqa: E731
            eligible = [jc for jc in scored if jc[1]["passes_checks"]]
            if not eligible:
                continue
            best, worst = max(eligible, key=rank), min(scored, key=rank)
            if best[0]["overall"] - worst[0]["overall"] < self.r.min_margin:
                continue
            pairs.append({
                "context_id": c.context_id, "language": c.language, "category": c.category,
                "split": "heldout" if _hash(c.context_id) % 1000 < self.r.heldout_share * 1000 else "train",
                "prompt": [{"role": m["role"], "content": m.get("content") or ""} for m in c.prompt],
                "chosen": [{"role": "assistant", "content": best[1]["text"]}],
                "rejected": [{"role": "assistant", "content": worst[1]["text"]}],
                "score_chosen": best[0]["overall"], "score_rejected": worst[0]["overall"],
                "provenance": orjson.dumps({"judge": self.judge_label, "judge_mode": best[0].get("mode"),
                                            "chosen": best[1]["key"], "rejected": worst[1]["key"],
                                            "chosen_source": best[1]["source"],
                                            "rejected_source": worst[1]["source"]}).decode(),
            })
        return pairs

    def write_pairs(self, pairs: list[dict]) -> None:
        folder = self.out / "pairs"
        folder.mkdir(exist_ok=True)
        message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
        schema = pa.schema([("context_id", pa.string()), ("language", pa.string()), ("category", pa.string()),
                            ("split", pa.string()), ("prompt", message), ("chosen", message), ("rejected", message),
                            ("score_chosen", pa.int8()), ("score_rejected", pa.int8()), ("provenance", pa.string())])
        for split in ("train", "heldout"):
            rows = [p for p in pairs if p["split"] == split]
            tmp = folder / f"{split}.parquet.tmp"
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
            os.replace(tmp, folder / f"{split}.parquet")

    def reward_model(self, pairs: list[dict]):
        from moss_data.feedback.external import load_preference_pairs
        from moss_data.feedback.reward import RewardModelSkipped, RewardScorer, train_reward_model

        cfg = self.r.reward_model
        train = [p for p in pairs if p["split"] == "train"]
        if not cfg.enabled or len(train) < cfg.min_pairs:
            logger.warning(f"feedback: {len(train)} training pairs (< {cfg.min_pairs}): no reward model; tags come "
                           "from the judge")
            return None
        fingerprint = xxhash.xxh3_64_hexdigest(orjson.dumps([train, cfg.model_dump()]))
        model_dir, stamp = self.out / "reward_model" / "model", self.out / "reward_model" / "pairs.fingerprint"
        if not (stamp.exists() and stamp.read_text() == fingerprint and (model_dir / "config.json").exists()):
            try:
                train_reward_model(train, self.out / "reward_model", cfg)
            except RewardModelSkipped as e:
                logger.warning(f"feedback: no reward model ({e}); tags come from the judge")
                return None
            stamp.write_text(fingerprint)
        scorer = RewardScorer(model_dir, max_length=cfg.max_length)
        scorer.figures = {
            "train_pairs": len(train),
            "agreement_train": scorer.agreement(train),
            "heldout_pairs": len(pairs) - len(train),
            "agreement_heldout": scorer.agreement([p for p in pairs if p["split"] == "heldout"]),
            "external": {str(path): scorer.agreement(load_preference_pairs(path, self.r.external_limit))
                         for path in self.external_sets()},
        }
        return scorer

    def external_sets(self) -> list[Path]:
        present = [p for p in self.r.external_pairs if Path(p).exists()]
        for missing in set(self.r.external_pairs) - set(present):
            logger.warning(f"feedback: external preference set {missing} not found (`moss-data fetch-preference-sets` "
                           "gets it); its agreement figure is left out")
        return present

    def tag(self, contexts: list[Context], by_context: dict[str, list[dict]], rm) -> tuple[dict[str, int | None], str]:
        if rm is not None:
            judged = [(c, cand, self.judged(cand["key"])) for c in contexts for cand in by_context[c.context_id]]
            judged = [(c, cand, j) for c, cand, j in judged if j]
            calib = rm.score([c.prompt for c, _, _ in judged], [cand["text"] for _, cand, _ in judged])
            thresholds = quantile_thresholds(np.array(calib), [j["overall"] for _, _, j in judged])
            scores = rm.score([c.prompt for c in contexts], [c.original for c in contexts])
            tags = {c.context_id: int(np.searchsorted(thresholds, s, side="left")) + 1 for c, s in zip(contexts, scores)}
            source = "reward_model"
        else:
            tags = {c.context_id: (self.judged(f"{c.context_id}:c0") or {}).get("overall") for c in contexts}
            source = "judge"
        for cid in tags:  # the configured share stays untagged, chosen by a hash of the id (stable across runs)
            if _hash(f"untagged:{cid}") % 10_000 < self.r.untagged_share * 10_000:
                tags[cid] = None
        return tags, source

    def write_tagged(self, conversations, tags: dict[str, int | None], source: str) -> None:
        done = self.store.done_ids()
        for conv, language, prov in conversations:
            if conv.conversation_id in done:
                continue
            turns = [Turn(t.human, t.moss, t.inner_thoughts, t.commands, t.results,
                          tags.get(response_id(conv.conversation_id, i))) for i, t in enumerate(conv.turns)]
            tagged = Conversation(conv.conversation_id, conv.category, turns, conv.capabilities)
            self.store.add_conversation(tagged, language, prov | {"feedback": {"judge": self.judge_label,
                                                                              "tag_source": source}})
        self.store.flush()

    def summary(self, items, sample, pair_ctx, pairs, rm, tags, tag_source) -> dict:
        rows = [self.judgements.rows[k] for k, _, _ in items if k in self.judgements]
        reasons = Counter(r["reason"] for r in rows if not r["ok"])
        twice = [(self.judged(k), self.judged(f"{k}#again")) for k, _, _ in sample]
        twice = [(a, b) for a, b in twice if a and b]
        verdicts = [self.verdicts.rows.get(f"{cid}:{o}") for cid in pair_ctx for o in ("ab", "ba")]
        parsed = [v for v in verdicts if v and v["ok"]]
        both = [(self.verdicts.rows[f"{cid}:ab"], self.verdicts.rows[f"{cid}:ba"]) for cid in pair_ctx
                if all(self.verdicts.rows.get(f"{cid}:{o}", {}).get("ok") for o in ("ab", "ba"))]
        winner = lambda v: v["a"] if v["better"] == "A" else v["b"] if v["better"] == "B" else "tie"  # noqa: E731
        tag_counts = Counter("untagged" if t is None else str(t) for t in tags.values())
        return {
            "responses": len({k.rsplit(':c', 1)[0] for k, _, _ in items}),
            "candidates": len(items),
            "judge": {"judged": len(rows), "parsed": sum(r["ok"] for r in rows),
                      "parse_rate": round(sum(r["ok"] for r in rows) / max(len(rows), 1), 4),
                      "quarantined_by_reason": dict(reasons),
                      "modes": dict(Counter(r.get("mode", "") for r in rows))},
            "self_consistency": {"judged_twice": len(twice),
                                 "overall_agreement": _rate(sum(a["overall"] == b["overall"] for a, b in twice), len(twice)),
                                 "mean_abs_overall_diff": _mean([abs(a["overall"] - b["overall"]) for a, b in twice])},
            "position_bias": {"comparisons": len(verdicts), "parsed": len(parsed),
                              "first_position_rate": _rate(sum(v["better"] == "A" for v in parsed), len(parsed)),
                              "pairs_in_both_orders": len(both),
                              "order_consistency": _rate(sum(winner(x) == winner(y) for x, y in both), len(both))},
            "pairs": {"train": sum(p["split"] == "train" for p in pairs),
                      "heldout": sum(p["split"] == "heldout" for p in pairs)},
            "reward_model": getattr(rm, "figures", None),
            "tags": {"source": tag_source, "untagged_share_target": self.r.untagged_share,
                     "distribution": {k: tag_counts.get(k, 0) for k in [*map(str, QUALITY_LEVELS), "untagged"]}},
            "tagged_conversations": self.store.counts()["shards"],
        }


def quantile_thresholds(scores: np.ndarray, judge_levels: list[int]) -> np.ndarray:
    """Reward-score cut points between tags 1..5 such that the calibration scores, bucketed, reproduce the judge's
    tag distribution (quantile matching); ``searchsorted(thresholds, s, side="left") + 1`` is the tag (a score on a
    cut point takes the lower tag, so a level the judge never gave is never assigned)."""
    counts = np.bincount(np.asarray(judge_levels) - 1, minlength=len(QUALITY_LEVELS))
    cumulative = np.cumsum(counts)[:-1] / max(counts.sum(), 1)
    return np.quantile(scores, cumulative) if len(scores) else np.zeros(len(QUALITY_LEVELS) - 1)


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def run_feedback(recipe: FeedbackRecipe) -> dict:
    summary = FeedbackStage(recipe).run()
    (recipe.output_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary

