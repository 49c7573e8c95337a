"""Step 1: candidates per response: the original plus ``n - 1`` sampled ones, each marked with whether it passes the
dialogue engine's output checks (``candidates.jsonl``, resumable). One rollout per context: its sampled candidates
are requested together, each with its own seed (so they differ on any server)."""

from __future__ import annotations

import asyncio

from loguru import logger

from moss_data.feedback.cache import JsonlCache
from moss_data.feedback.contexts import Context, stable_hash
from moss_data.feedback.reward import without_tool_roles
from moss_data.formats import candidate_id, parse_candidate_id
from moss_data.llm import SamplingParams, check_output
from moss_data.text.langid import LanguageIdentifier


def candidates_context(sampling: dict) -> dict:
    return {"sampling": SamplingParams(**sampling), "router": LanguageIdentifier()}


async def candidates_rollout(item: dict, llm, *, sampling: SamplingParams, router: LanguageIdentifier) -> dict:
    gens = await asyncio.gather(*(llm.chat(item["prompt"], sampling.model_copy(update={"seed": item["seed"] + k}))
                                  for k in item["ks"]))
    rows = []
    for k, gen in zip(item["ks"], gens):
        reason = check_output(gen, "reply", item["language"], router, item["answers"])
        rows.append({"key": candidate_id(item["context_id"], k), "context_id": item["context_id"],
                     "text": gen.text.strip(), "source": "sampled", "passes_checks": not reason, "check": reason})
    return {"status": "done", "rows": rows}


def make_candidates(contexts: list[Context], cache: JsonlCache, run, per_context: int, sampling: SamplingParams,
                    seed: int) -> dict[str, list[dict]]:
    """Candidates by context id, in candidate order. ``run(name, items, rollout, context)`` runs rollouts (the
    stage's generation runner); it is called only if something must be generated."""
    import functools

    originals = [{"key": candidate_id(c.context_id, 0), "context_id": c.context_id, "text": c.original,
                  "source": "original", "passes_checks": True} for c in contexts]
    cache.put_many([o for o in originals if o["key"] not in cache])
    items = {}
    for c in contexts:
        ks = [k for k in range(1, per_context) if candidate_id(c.context_id, k) not in cache]
        if ks:
            items[c.context_id] = {"context_id": c.context_id, "prompt": without_tool_roles(c.prompt), "ks": ks,
                                   "language": c.language, "answers": c.prompt[-1]["content"],
                                   "seed": seed + stable_hash(c.context_id) % 1_000_003}
    if items:
        results = run("candidates", items, candidates_rollout,
                      functools.partial(candidates_context, sampling.model_dump()))
        failed = [cid for cid in items if results[cid].get("status") != "done"]
        if failed:  # a rollout that raised: its candidates are generated again on the next run
            logger.warning(f"candidates: {len(failed)} contexts failed ({results[failed[0]].get('raw', '')[:200]})")
        cache.put_many([row for cid in items for row in results[cid].get("rows", [])])
    by_context: dict[str, list[dict]] = {c.context_id: [] for c in contexts}
    for row in cache.rows.values():
        if row["context_id"] in by_context:
            by_context[row["context_id"]].append(row)
    for rows in by_context.values():
        rows.sort(key=lambda r: parse_candidate_id(r["key"])[1])
    return by_context
