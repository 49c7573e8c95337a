"""Step 1: candidates per response: the original plus ``n - 1`` sampled ones, each marked with whether it passes the
dialogue engine's output checks (``candidates.jsonl``, resumable)."""

from __future__ import annotations

from collections.abc import Callable

from tqdm import tqdm

from moss_data.feedback.cache import JsonlCache
from moss_data.feedback.contexts import Context
from moss_data.feedback.reward import without_tool_roles
from moss_data.formats import candidate_id, parse_candidate_id
from moss_data.llm import Backend, SamplingParams, check_output
from moss_data.text.langid import LanguageIdentifier


def make_candidates(contexts: list[Context], cache: JsonlCache, backend: Callable[[], Backend], per_context: int,
                    sampling: SamplingParams, seed: int, batch_size: int) -> dict[str, list[dict]]:
    """Candidates by context id, in candidate order. ``backend`` is called only if something must be generated."""
    originals = [{"key": candidate_id(c.context_id, 0), "context_id": c.context_id, "text": c.original,
                  "source": "original", "passes_checks": True} for c in contexts]
    cache.put_many([o for o in originals if o["key"] not in cache])
    todo = [(c, k) for c in contexts for k in range(1, per_context) if candidate_id(c.context_id, k) not in cache]
    identifier = LanguageIdentifier() if todo else None
    bar = tqdm(total=len(todo), desc="candidates", unit="resp")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        params = sampling.model_copy(update={"seed": seed + start})
        gens = backend().chat([without_tool_roles(c.prompt) for c, _ in batch], params)
        rows = []
        for (c, k), gen in zip(batch, gens):
            reason = check_output(gen, "reply", c.language, identifier, c.prompt[-1]["content"])
            rows.append({"key": candidate_id(c.context_id, k), "context_id": c.context_id, "text": gen.text.strip(),
                         "source": "sampled", "passes_checks": not reason, "check": reason})
        cache.put_many(rows)
        bar.update(len(batch))
    bar.close()
    by_context: dict[str, list[dict]] = {c.context_id: [] for c in contexts}
    for row in cache.rows.values():
        if row["context_id"] in by_context:
            by_context[row["context_id"]].append(row)
    for rows in by_context.values():
        rows.sort(key=lambda r: parse_candidate_id(r["key"])[1])
    return by_context
