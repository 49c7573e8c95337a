"""The dialogue recipe: seeds -> self-instruct prompts -> multi-turn conversations -> dialogue shards.

Resumable at every step: accepted prompts are kept in ``prompts.jsonl`` (written once, atomically), conversations
in the shard store (see :mod:`moss_data.io.conversations`), keyed by deterministic conversation ids, so a run killed
at any point (kill -9 included) continues where it stopped without duplicates or losses.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
from loguru import logger
from pydantic import Field

from moss_data.llm import Backend, BackendConfig, SamplingParams, build_backend
from moss_data.dialogue.conversation import Job, draw_turns, run_conversations, template_hash
from moss_data.dialogue.selfinstruct import SelfInstructConfig, expand, load_seeds
from moss_data.io.conversations import ShardStore
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
    backend: BackendConfig = BackendConfig()
    self_instruct: SelfInstructConfig = SelfInstructConfig()
    assistant_sampling: SamplingParams = SamplingParams(max_new_tokens=256, temperature=0.7)
    user_sampling: SamplingParams = SamplingParams(max_new_tokens=64, temperature=0.9)
    tool_traces: ToolTraceConfig = ToolTraceConfig()
    batch_size: int = 16
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


def prepare_prompts(recipe: DialogueRecipe, backend: Backend) -> list[dict]:
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
        generated, counts = expand(backend, seeds, n, recipe.self_instruct, template, recipe.seed)
        atomic_write_text(recipe.output_dir / "self_instruct_stats.json", json.dumps(dict(counts), indent=2))
        logger.info(f"self-instruct: {dict(counts)}")
    else:
        generated = {key: pool[:n] for key, pool in seeds.items()}
    items = []
    for (language, category), prompts in sorted(generated.items()):
        sources = ["self-instruct" if recipe.self_instruct.enabled else "seed"] * len(prompts[:n])
        if len(prompts) < n:  # self-instruct fell short of the quota (a small model): fill with seed prompts
            fill = seeds[(language, category)][: n - len(prompts)]
            logger.warning(f"self-instruct: {language}/{category} got {len(prompts)} of {n}; {len(fill)} seed prompts fill in")
            prompts, sources = prompts + fill, sources + ["seed"] * len(fill)
        for i, (prompt, source) in enumerate(zip(prompts[:n], sources)):
            items.append({"conversation_id": f"{language}-{_slug(category)}-{i:06d}", "language": language,
                          "category": category, "prompt": prompt, "prompt_source": source})
    atomic_write(path, b"".join(orjson.dumps(it) + b"\n" for it in items))
    run.finish({"prompts": len(items)})
    return items


def run_tool_traces(recipe: DialogueRecipe, backend, store: ShardStore, provenance: dict) -> None:
    from moss_data.dialogue.tool_traces import ToolTraceGenerator, load_tool_prompts
    from moss_data.tools.search import SearchIndex

    cfg = recipe.tool_traces
    index = None
    if cfg.search_corpus is not None and cfg.search_corpus.exists():
        index = SearchIndex.from_shards(cfg.search_corpus)
    else:
        logger.warning(f"tool traces: no search corpus at {cfg.search_corpus} (run `just demo`); Search finds nothing")
    prompts = load_tool_prompts(recipe.prompts_dir / cfg.prompts_file)
    generator = ToolTraceGenerator(backend, recipe.prompts_dir, index, cfg.sampling, cfg.attempts)
    stats = generator.run(prompts, store, provenance)
    atomic_write_text(recipe.output_dir / "tool_trace_stats.json", json.dumps(dict(sorted(stats.items())), indent=2))
    logger.info(f"tool traces: {dict(stats)}")


def run_dialogues(recipe: DialogueRecipe) -> dict:
    recipe.output_dir.mkdir(parents=True, exist_ok=True)
    store = ShardStore(recipe.output_dir, rows_per_shard=recipe.rows_per_shard)
    backend = build_backend(recipe.backend)
    items = prepare_prompts(recipe, backend)
    done = store.done_ids()
    rng = np.random.default_rng(recipe.seed)
    turns = {it["conversation_id"]: draw_turns(rng, recipe.mean_turns.get(it["category"], 3.0), recipe.max_turns)
             for it in items}  # drawn for all items in a fixed order, so a resumed run draws the same
    jobs = [Job(it["conversation_id"], it["category"], it["language"], it["prompt"], turns[it["conversation_id"]])
            for it in items if it["conversation_id"] not in done]
    logger.info(f"dialogues: {len(items)} conversations planned, {len(done)} done, {len(jobs)} to generate")
    user_template = (recipe.prompts_dir / "user_simulator.txt").read_text(encoding="utf-8")
    provenance = {
        "model": backend.name,
        "assistant_sampling": recipe.assistant_sampling.model_dump(),
        "user_sampling": recipe.user_sampling.model_dump(),
        "seed": recipe.seed,
        "template_hash": template_hash(user_template, (recipe.prompts_dir / "self_instruct.txt").read_text()),
    }
    run_conversations(backend, jobs, store, recipe.assistant_sampling, recipe.user_sampling, user_template,
                      provenance, recipe.batch_size, recipe.attempts)
    if recipe.tool_traces.enabled:
        run_tool_traces(recipe, backend, store, provenance)
    summary = {"planned": len(items), **store.counts()}
    atomic_write_text(recipe.output_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
