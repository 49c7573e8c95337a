"""Learned quality (`moss-data train-quality RECIPE`): a fastText classifier that keeps the documents a model or a
reference set says are good, trained on this project's own parts; the filter block is
:class:`moss_data.corpus.filters.learned.LearnedQualityFilter`.

Two ways to get labels, as the strongest open corpora did:
- ``annotate`` (FineWeb-Edu): the judge backend scores a sample of a route's clean documents 0-5 against a rubric
  (``prompts/quality_rubric.txt``), constrained to one digit (choice decoding in process, vLLM's choice on a
  server), as rollouts on the generation runner (resumable); a document is ``keep`` when its score reaches
  ``keep_score`` (FineWeb-Edu: 3).
- ``contrast`` (DCLM): ``keep`` documents and ``drop`` documents the user names (clean shard folders or JSONL files
  with a ``text`` field), e.g. reference manuals against random web.

The labelled documents are split by a hash of their id (``heldout_share`` held out); fastText trains on the rest and
its agreement with the held-out labels (accuracy against the majority baseline, precision and recall of ``keep``)
goes to ``report.json`` beside ``model.bin`` in the run folder. The recipe's corpus filter points at that file:
models are files in the run folder, never downloads. Text is lower-cased word / CJK-character tokens
(:func:`model_text`), the same in training and filtering.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import multiprocessing
import re
from pathlib import Path
from typing import Literal

import xxhash
from loguru import logger
from pydantic import Field, model_validator

from moss_data.io.atomic import atomic_write, atomic_write_json
from moss_data.io.documents import iter_documents
from moss_data.llm import SamplingParams
from moss_data.llm.rollouts import GenerationConfig, RolloutLLM, run_rollouts
from moss_data.recipe import StrictModel
from moss_data.text.shingles import tokenize

SCORES = ["0", "1", "2", "3", "4", "5"]
PREFILL = "Score: "  # digits are single tokens without a leading space in most BPEs
MODEL_FILE, REPORT_FILE, LABELS_FILE = "model.bin", "report.json", "labels.jsonl"


def model_text(text: str, max_tokens: int = 1000) -> str:
    """What fastText reads: the first ``max_tokens`` word / CJK-character tokens, lower-cased, on one line."""
    return " ".join(tokenize(text, "zh")[:max_tokens])


class FastTextParams(StrictModel):
    epoch: int = Field(20, ge=1)
    lr: float = Field(0.5, gt=0, description="halved and retried (3 times) if training diverges to NaN or collapses "
                    "to one class")
    word_ngrams: int = Field(2, ge=1, le=5)
    dim: int = Field(64, ge=8)
    min_count: int = Field(1, ge=1)
    max_tokens: int = Field(1000, ge=16, description="tokens of a document the classifier reads")


class AnnotateConfig(StrictModel):
    documents: Path = Field(description="clean shards (a corpus run's clean/ folder or one route's subfolder)")
    route: Literal["en", "zh"] = "en"
    sample: int = Field(200, ge=4, description="documents annotated (chosen by a hash of their id)")
    keep_score: int = Field(3, ge=1, le=5, description="score from which a document is labelled keep")
    max_chars: int = Field(2000, ge=200, description="of a document shown to the judge")
    rubric: Path = Path("prompts/quality_rubric.txt")
    generation: GenerationConfig = GenerationConfig()


class ContrastConfig(StrictModel):
    keep: list[Path] = Field(min_length=1, description="reference-quality documents: clean shard folders or JSONL")
    drop: list[Path] = Field(min_length=1, description="documents to filter out (e.g. random web)")
    route: Literal["en", "zh"] | None = Field(None, description="documents of this route only (shard folders)")
    limit: int | None = Field(2000, ge=2, description="documents per side at most")


class QualityTrainRecipe(StrictModel):
    name: str
    output_dir: Path = Field(description="the run folder: labels.jsonl, model.bin, report.json")
    mode: Literal["annotate", "contrast"]
    annotate: AnnotateConfig | None = None
    contrast: ContrastConfig | None = None
    heldout_share: float = Field(0.2, gt=0, lt=1)
    fasttext: FastTextParams = FastTextParams()
    seed: int = 0

    @model_validator(mode="after")
    def _mode_has_its_section(self):
        if getattr(self, self.mode) is None:
            raise ValueError(f"mode {self.mode} needs its `{self.mode}:` section")
        return self


# ------------------------------------------------------------------ labels


def _hash_share(key: str) -> float:
    return xxhash.xxh3_64_intdigest(key.encode()) / 2**64


def _documents(path: Path, route: str | None = None) -> list[dict]:
    """{id, text} of clean shards (a folder, searched recursively: a clean/ or excluded/ folder; documents of
    ``route`` only, by their metadata) or a JSONL file with a ``text`` field (optional ``id``)."""
    path = Path(path)
    if path.is_file():
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                rows.append({"id": str(row.get("id", f"{path.name}:{n}")), "text": row["text"]})
        return rows
    return [{"id": d["id"], "text": d["text"]} for d in iter_documents(path)
            if route is None or d.get("metadata", {}).get("route", route) == route]


def rubric_context(rubric: str) -> dict:
    return {"system": rubric}


async def annotate_rollout(item: dict, llm: RolloutLLM, *, system: str) -> dict:
    """One document -> {"score": 0-5 or None, "raw"}: the judge's digit after the rubric."""
    request = [{"role": "system", "content": system},
               {"role": "user", "content": f"Document:\n{item['text']}\n\nScore it from 0 to 5."},
               {"role": "assistant", "content": PREFILL}]
    gen = await llm.chat(request, SamplingParams(max_new_tokens=2, temperature=0.0, choices=SCORES,
                                                 seed=item.get("seed", 0)), role="judge")
    m = re.search(r"[0-5]", gen.text) if gen.finish_reason != "error" else None
    return {"score": int(m.group(0)) if m else None, "raw": gen.text[:20]}


def annotated_labels(cfg: AnnotateConfig, work: Path) -> list[dict]:
    docs = sorted(_documents(cfg.documents, cfg.route), key=lambda d: _hash_share(d["id"]))[: cfg.sample]
    if not docs:
        raise FileNotFoundError(f"no documents under {cfg.documents} (route {cfg.route})")
    items = {d["id"]: {"text": d["text"][: cfg.max_chars], "seed": i} for i, d in enumerate(docs)}
    rubric = Path(cfg.rubric).read_text(encoding="utf-8").strip()
    results = run_rollouts("quality_annotate", items, annotate_rollout, work, cfg.generation,
                           functools.partial(rubric_context, rubric))
    labels = []
    for d in docs:
        score = results.get(d["id"], {}).get("score")
        if score is None:
            continue  # counted below as unreadable
        labels.append({"id": d["id"], "text": d["text"], "score": score,
                       "label": "keep" if score >= cfg.keep_score else "drop"})
    return labels


def contrast_labels(cfg: ContrastConfig) -> list[dict]:
    labels = []
    for label, paths in (("keep", cfg.keep), ("drop", cfg.drop)):
        docs = [d for p in paths for d in _documents(p, cfg.route)]
        docs = sorted(docs, key=lambda d: _hash_share(d["id"]))[: cfg.limit]
        labels += [{"id": f"{label}:{d['id']}", "text": d["text"], "label": label} for d in docs]
    return labels


# ------------------------------------------------------------------ training and agreement


def agreement(truth: list[str], predicted: list[str]) -> dict:
    n = len(truth)
    tp = sum(t == p == "keep" for t, p in zip(truth, predicted))
    kept, actual = predicted.count("keep"), truth.count("keep")
    majority = max(actual, n - actual) / n if n else None
    return {"n": n, "accuracy": sum(t == p for t, p in zip(truth, predicted)) / n if n else None,
            "majority_baseline": majority, "keep_precision": tp / kept if kept else None,
            "keep_recall": tp / actual if actual else None}


def fit_fasttext(train_file: str, model_file: str, ft: FastTextParams, seed: int, train_texts: list[str],
                 held_texts: list[str]) -> dict:
    """fastText on ``train_file`` (run in a spawned child by :func:`train_quality`): the learning rate is halved and
    training retried (3 times) when it diverges to NaN or collapses to one class for every training document; saves
    the model and returns ``{lr, collapsed, held_predictions}``."""
    import fasttext

    lr = ft.lr
    for attempt in range(4):
        try:
            model = fasttext.train_supervised(input=train_file, epoch=ft.epoch, lr=lr, wordNgrams=ft.word_ngrams,
                                              dim=ft.dim, minCount=ft.min_count, seed=seed, thread=1, verbose=0)
        except RuntimeError as e:  # fastText's "Encountered NaN": the learning rate was too high for these data
            if "NaN" not in str(e) or attempt == 3:
                raise
            problem = "diverged to NaN"
        else:
            collapsed = len({model.predict(t)[0][0] for t in train_texts}) == 1  # also a rate too high
            if not collapsed or attempt == 3:
                break
            problem = "predicts one class for every training document"
        lr /= 2
        logger.warning(f"train-quality: fastText {problem}; retrying with lr {lr}")
    model.save_model(model_file)
    return {"lr": lr, "collapsed": collapsed,
            "held_predictions": [model.predict(t)[0][0].removeprefix("__label__") for t in held_texts]}


def train_quality(recipe: QualityTrainRecipe) -> dict:
    """Labels, split, fastText training, agreement on the held-out labels; returns the report."""
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = annotated_labels(recipe.annotate, out / "generation") if recipe.mode == "annotate" else \
        contrast_labels(recipe.contrast)
    atomic_write(out / LABELS_FILE, b"".join(json.dumps({k: v for k, v in r.items() if k != "text"},
                                                        ensure_ascii=False).encode() + b"\n" for r in labels))
    classes = sorted({r["label"] for r in labels})
    report: dict = {"recipe": recipe.name, "mode": recipe.mode, "labelled": len(labels),
                    "labels": {c: sum(r["label"] == c for r in labels) for c in classes}}
    if recipe.mode == "annotate":
        report["scores"] = {s: sum(r["score"] == int(s) for r in labels) for s in SCORES}
        report["unreadable"] = recipe.annotate.sample - len(labels)
    if len(classes) < 2:
        report["error"] = (f"every labelled document is {classes[0] if classes else 'missing'}: no classifier can be "
                           "trained; use a stronger judge (annotate.generation.judge), another keep_score, or "
                           "contrast mode")
        atomic_write_json(out / REPORT_FILE, report)
        raise ValueError(report["error"])
    train = [r for r in labels if _hash_share(f"{recipe.seed}:{r['id']}") >= recipe.heldout_share]
    held = [r for r in labels if _hash_share(f"{recipe.seed}:{r['id']}") < recipe.heldout_share]
    # SGD reads the file in order: lines grouped by label would end training on one class (a collapsed model on
    # some label sets), so the lines are interleaved by a hash of their ids
    train.sort(key=lambda r: _hash_share(f"{recipe.seed}:order:{r['id']}"))
    ft = recipe.fasttext
    train_texts = [model_text(r["text"], ft.max_tokens) for r in train]
    train_file = out / "train.txt"
    train_file.write_text("".join(f"__label__{r['label']} {t}\n" for r, t in zip(train, train_texts)),
                          encoding="utf-8")
    # fastText trains in a fresh interpreter: in one long test session it hit "Encountered NaN" at every learning
    # rate in 0.1 s (what corrupted the process was not found); a spawned child starts clean, and a crash in
    # native code cannot take the caller down with it
    held_texts = [model_text(r["text"], ft.max_tokens) for r in held]
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        fitted = pool.submit(fit_fasttext, str(train_file), str(out / MODEL_FILE), ft, recipe.seed,
                             train_texts, held_texts).result()
    report["collapsed"] = fitted["collapsed"]  # one class even at the smallest rate: nothing to learn in the labels
    report["lr_used"] = fitted["lr"]
    predicted = fitted["held_predictions"]
    report |= {"train": len(train), "heldout": agreement([r["label"] for r in held], predicted),
               "model": str(out / MODEL_FILE), "fasttext": ft.model_dump()}
    atomic_write_json(out / REPORT_FILE, report)
    logger.info(f"train-quality {recipe.name}: {len(train)} train, held-out {report['heldout']}")
    return report
