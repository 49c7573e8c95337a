"""The dialogue recipe: seeds -> self-instruct prompts -> multi-turn conversations and tool traces -> dialogue shards.

Every model call runs as rollouts on datatrove's inference runner (:mod:`moss_data.llm.rollouts`): one per
self-instruct request, per planned conversation, per tool question; on the recipe's ``generation.executor``
(local, Slurm, Ray) with each role's backend (``generation.assistant``, ``generation.user``).

Resumable at every step: accepted prompts are kept in ``prompts.jsonl`` (written once, atomically); the runner's
work folders (``generation/``) keep finished chunks, checkpoints and a request cache; results go to the shard store
(see :mod:`moss_data.io.conversations`) keyed by deterministic ids, so a run killed at any point (kill -9
included) continues where it stopped without duplicates or losses.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
from loguru import logger
from pydantic import Field

from moss_data.dialogue.conversation import conversation_context, conversation_rollout, draw_turns, template_hash
from moss_data.dialogue.selfinstruct import SelfInstructConfig, expand, load_seeds
from moss_data.formats import Conversation, Turn
from moss_data.io.conversations import ShardStore
from moss_data.llm import Generation, SamplingParams
from moss_data.llm.rollouts import GenerationConfig, run_rollouts
from moss_data.io.atomic import StageRun, atomic_write, atomic_write_text, config_hash
from moss_data.recipe import StrictModel

CATEGORIES = ("writing", "role-play", "code", "brainstorming", "complex instruction", "honest", "harmless")
# Released MOSS data: 5-6 turns for writing/role-play/code/brainstorming, ~3 for honest/harmless.
MEAN_TURNS = {"writing": 5.5, "role-play": 5.5, "code": 5.0, "brainstorming": 5.0, "complex instruction": 4.0,
              "honest": 3.0, "harmless": 3.0}


class ToolTraceConfig(StrictModel):
    enabled: bool = True
    prompts_file: str = Field("tool_seeds.jsonl", description="in prompts_dir: one {tool, language, prompt} a line")
    search_corpus: Path | None = Field(Path("data/sample/corpus/clean"),
                                       description="clean corpus shards the offline Search tool indexes")
    sampling: SamplingParams = SamplingParams(max_new_tokens=128, temperature=0.3, repetition_penalty=1.05)
    attempts: int = Field(3, ge=1, description="tries per question (new seed each) before it goes to quarantine")


class DialogueRecipe(StrictModel):
    name: str
    output_dir: Path
    prompts_dir: Path = Path("prompts")
    languages: list[str] = Field(default_factory=lambda: ["en", "zh"])
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES))
    conversations_per_category: int = Field(1, ge=1, description="per language and category")
    mean_turns: dict[str, float] = Field(default_factory=lambda: dict(MEAN_TURNS))
    max_turns: int = Field(8, ge=1)
    generation: GenerationConfig = GenerationConfig()
    self_instruct: SelfInstructConfig = SelfInstructConfig()
    assistant_sampling: SamplingParams = SamplingParams(max_new_tokens=256, temperature=0.7)
    user_sampling: SamplingParams = SamplingParams(max_new_tokens=64, temperature=0.9)
    tool_traces: ToolTraceConfig = ToolTraceConfig()
    attempts: int = Field(2, ge=1, description="tries per model output (new seed each) before the conversation "
                                               "goes to quarantine")
    rows_per_shard: int = 500
    seed: int = 0


def _slug(text: str) -> str:
    return text.replace(" ", "_")


def prompt_settings(recipe: DialogueRecipe) -> dict:
    """What the planned prompts (and so the conversation ids) depend on."""
    return {"languages": recipe.languages, "categories": recipe.categories,
            "conversations_per_category": recipe.conversations_per_category,
            "self_instruct": recipe.self_instruct.model_dump(mode="json"), "seed": recipe.seed}


def generation_dir(recipe: DialogueRecipe) -> Path:
    return recipe.output_dir / "generation"


async def _one_request(item: dict, llm, *, params: dict) -> dict:
    gen = await llm.chat(item["messages"], SamplingParams(**params).model_copy(update={"seed": item["seed"]}))
    return {"text": gen.text, "finish_reason": gen.finish_reason, "completion_tokens": gen.completion_tokens}


def self_instruct_requester(recipe: DialogueRecipe):
    """A round of self-instruct requests as rollouts (one each; request i gets the round's seed + i)."""
    def request(round_: int, requests: list[list[dict]], params: SamplingParams) -> list[Generation]:
        items = {f"r{round_:03d}-{i:06d}": {"messages": m, "seed": params.seed + i} for i, m in enumerate(requests)}
        results = run_rollouts(f"self-instruct-{round_:03d}", items,
                               functools.partial(_one_request, params=params.model_dump()), generation_dir(recipe),
                               recipe.generation)
        return [Generation(r.get("text", ""), r.get("finish_reason", "error"),
                           completion_tokens=r.get("completion_tokens", 0)) for r in map(results.get, items)]
    return request


def prepare_prompts(recipe: DialogueRecipe) -> list[dict]:
    """The planned conversations' first prompts, made once per prompt settings (``prompts.jsonl``)."""
    path = recipe.output_dir / "prompts.jsonl"
    run = StageRun(recipe.output_dir / "prompts.manifest.json", settings=config_hash(prompt_settings(recipe)))
    if run.done() is not None and path.exists():
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    if run.load() is not None:
        raise RuntimeError(f"{recipe.output_dir}: its conversations were planned with other prompt settings "
                           "(languages, categories, conversations_per_category, self_instruct, seed); use a new "
                           "output_dir, or delete this one to start over")
    seeds = load_seeds(recipe.prompts_dir / "seeds", recipe.languages, recipe.categories)
    n = recipe.conversations_per_category
    if recipe.self_instruct.enabled:
        template = (recipe.prompts_dir / "self_instruct.txt").read_text(encoding="utf-8")
        generated, counts = expand(self_instruct_requester(recipe), seeds, n, recipe.self_instruct, template, recipe.seed)
        atomic_write_text(recipe.output_dir / "self_instruct_stats.json", json.dumps(dict(counts), indent=2))
        logger.info(f"self-instruct: {dict(counts)}")
    else:
        generated = {key: pool[:n] for key, pool in seeds.items()}
    items = []
    for (language, category), prompts in sorted(generated.items()):
        sources = ["self-instruct" if recipe.self_instruct.enabled else "seed"] * len(prompts[:n])
        if len(prompts) < n:  # self-instruct fell short of the quota (a small model): fill with seed prompts
            fill = [seed for seed in seeds[(language, category)] if seed not in prompts][: n - len(prompts)]
            logger.warning(f"self-instruct: {language}/{category} got {len(prompts)} of {n}; {len(fill)} seed prompts fill in")
            prompts, sources = prompts + fill, sources + ["seed"] * len(fill)
        for i, (prompt, source) in enumerate(zip(prompts[:n], sources)):
            items.append({"conversation_id": f"{language}-{_slug(category)}-{i:06d}", "language": language,
                          "category": category, "prompt": prompt, "prompt_source": source})
    atomic_write(path, b"".join(orjson.dumps(it) + b"\n" for it in items))
    run.finish({"prompts": len(items)})
    return items


def run_tool_traces(recipe: DialogueRecipe, store: ShardStore, provenance: dict) -> None:
    from moss_data.dialogue.tool_traces import load_tool_prompts, tool_context, tool_trace_rollout

    cfg = recipe.tool_traces
    prompts = load_tool_prompts(recipe.prompts_dir / cfg.prompts_file)
    context = functools.partial(tool_context, str(recipe.prompts_dir),
                                str(cfg.search_corpus) if cfg.search_corpus else None, cfg.sampling.model_dump(),
                                cfg.attempts)
    items = {p.trace_id: {"trace_id": p.trace_id, "tools": p.tools, "language": p.language, "question": p.question}
             for p in prompts}
    results = run_rollouts("tool-traces", items, tool_trace_rollout, generation_dir(recipe), recipe.generation,
                           context)
    done = store.done_ids()
    stats: Counter = Counter()
    for p in prompts:
        result = results[p.trace_id]
        for attempt, outcome in enumerate(result.get("tries") or [result.get("reason", "error")]):
            stats[f"attempt_{attempt}:{outcome}"] += 1
        if p.trace_id in done:
            continue
        prov = provenance | {"tools": p.tools, "attempts": len(result.get("tries", [])), **result.get("usage", {})}
        if result["status"] == "kept":
            store.add_conversation(Conversation.from_record(result["record"]), p.language, prov)
        else:
            store.quarantine_output(p.trace_id, "tool", result.get("reason", "error"), result.get("raw", ""), prov)
    store.flush()
    atomic_write_text(recipe.output_dir / "tool_trace_stats.json", json.dumps(dict(sorted(stats.items())), indent=2))
    logger.info(f"tool traces: {dict(stats)}")


def plan_conversations(recipe: DialogueRecipe, items: list[dict]) -> dict[str, dict]:
    rng = np.random.default_rng(recipe.seed)
    # turns drawn for all items in a fixed order, so a resumed run draws the same
    return {it["conversation_id"]: it | {"target_turns": draw_turns(rng, recipe.mean_turns.get(it["category"], 3.0),
                                                                    recipe.max_turns)} for it in items}


def run_dialogues(recipe: DialogueRecipe) -> dict:
    recipe.output_dir.mkdir(parents=True, exist_ok=True)
    store = ShardStore(recipe.output_dir, rows_per_shard=recipe.rows_per_shard)
    items = prepare_prompts(recipe)
    planned = plan_conversations(recipe, items)
    user_template = (recipe.prompts_dir / "user_simulator.txt").read_text(encoding="utf-8")
    provenance = {
        "models": recipe.generation.labels(),
        "assistant_sampling": recipe.assistant_sampling.model_dump(),
        "user_sampling": recipe.user_sampling.model_dump(),
        "seed": recipe.seed,
        "template_hash": template_hash(user_template, (recipe.prompts_dir / "self_instruct.txt").read_text()),
    }
    done = store.done_ids()
    logger.info(f"dialogues: {len(planned)} conversations planned, {len(done & set(planned))} already in shards")
    context = functools.partial(conversation_context, str(recipe.prompts_dir), recipe.assistant_sampling.model_dump(),
                                recipe.user_sampling.model_dump(), recipe.attempts)
    results = run_rollouts("conversations", planned, conversation_rollout, generation_dir(recipe), recipe.generation,
                           context)
    for cid, item in planned.items():
        if cid in done:
            continue
        result = results[cid]
        prov = provenance | {"target_turns": item["target_turns"], **result.get("usage", {}),
                             "rejected": result.get("rejected", {})}
        if result["status"] == "kept":
            turns = [Turn(human, moss) for human, moss in result["turns"]]
            store.add_conversation(Conversation(cid, item["category"], turns), item["language"], prov)
        else:
            store.quarantine_output(cid, item["category"], result.get("reason", "error"), result.get("raw", ""), prov)
    store.flush()
    if recipe.tool_traces.enabled:
        run_tool_traces(recipe, store, provenance)
    summary = {"planned": len(items), **store.counts()}
    atomic_write_text(recipe.output_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
