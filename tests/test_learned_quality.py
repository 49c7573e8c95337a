"""moss-data train-quality: a fastText quality classifier from keep/drop documents (DCLM's way) and from the judge's
rubric scores (FineWeb-Edu's way), on the real sample corpus, and its filter block on real documents."""

from __future__ import annotations

import json

import pytest
from datatrove.data import Document

from moss_data.corpus.filters.learned import LearnedQualityConfig, LearnedQualityFilter
from moss_data.corpus.learned_quality import QualityTrainRecipe, _documents, train_quality
from moss_data.recipe import load_recipe
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_contrast_classifier_learns_what_the_filters_kept(sample_run, tmp_path):
    out = sample_run.output_dir
    recipe = load_recipe(REPO / "recipes/quality/zh_contrast.yaml", QualityTrainRecipe).model_copy(update={
        "output_dir": tmp_path / "q"})
    recipe.contrast.keep, recipe.contrast.drop = [out / "clean"], [out / "excluded"]
    report = train_quality(recipe)
    held = report["heldout"]
    assert report["labels"]["keep"] > 100 and report["labels"]["drop"] > 50 and held["n"] > 30
    assert not report["collapsed"] and held["accuracy"] > held["majority_baseline"] + 0.1, held  # beats the prior
    labels = [json.loads(line) for line in (tmp_path / "q" / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == report["labelled"] and "text" not in labels[0]
    # the filter block: the real documents' keep probability lands in metadata; kept ones score higher
    block = LearnedQualityFilter(LearnedQualityConfig(model=tmp_path / "q" / "model.bin", threshold=0.5))
    def keep_rate(folder):
        docs = [Document(d["text"], d["id"]) for d in _documents(folder, "zh")][:80]
        kept = [block.filter(d) is True for d in docs]
        assert all(0 <= d.metadata["quality_score"] <= 1 for d in docs)
        return sum(kept) / len(kept)
    assert keep_rate(out / "clean") > keep_rate(out / "excluded") + 0.3
    with pytest.raises(FileNotFoundError, match="train-quality"):
        LearnedQualityFilter(LearnedQualityConfig(model=tmp_path / "missing.bin"))


def test_the_judge_annotates_real_documents(sample_run, smollm2, tmp_path):
    """SmolLM2-135M scores 8 real English documents through the generation runner (constrained to one digit); a
    classifier is trained when its labels have both classes, else the run stops saying why."""
    recipe = QualityTrainRecipe.model_validate({
        "name": "t", "output_dir": tmp_path / "q", "mode": "annotate",
        "annotate": {"documents": sample_run.output_dir / "clean", "route": "en", "sample": 8,
                     "rubric": REPO / "prompts/quality_rubric.txt",
                     "generation": {"assistant": {"kind": "transformers", "model": str(smollm2), "batch_size": 8},
                                    "max_concurrent": 8}}})
    try:
        report = train_quality(recipe)
    except ValueError as e:
        assert "no classifier can be trained" in str(e)
        report = json.loads((tmp_path / "q" / "report.json").read_text())
    assert report["labelled"] + report["unreadable"] == 8 and report["unreadable"] == 0
    assert sum(report["scores"].values()) == 8
    assert all(json.loads(line)["score"] in range(6) for line in (tmp_path / "q" / "labels.jsonl").read_text()
               .splitlines())


def test_the_sample_chain_runs_with_the_learned_classifier(sample_run, tmp_path):
    """The whole sample chain with a learned classifier on the Chinese route (trained on the first run's kept and
    removed documents), toxicity and the Chinese PII rules on: the removals and their examples are in the report."""
    from moss_data.chain.run import run_corpus

    out = sample_run.output_dir
    recipe = load_recipe(REPO / "recipes/quality/zh_contrast.yaml", QualityTrainRecipe).model_copy(update={
        "output_dir": tmp_path / "q"})
    recipe.contrast.keep, recipe.contrast.drop = [out / "clean"], [out / "excluded"]
    train_quality(recipe)
    corpus = sample_run.model_copy(deep=True)
    corpus.output_dir = tmp_path / "corpus"
    corpus.filters.learned_quality = {"zh": LearnedQualityConfig(model=tmp_path / "q" / "model.bin", threshold=0.8)}
    corpus.dedup.enabled = corpus.tokenize.enabled = False  # the clean stage is what this checks
    assert corpus.filters.toxicity.enabled and corpus.pii.cn_mobile and corpus.pii.cn_resident_id
    report_dir = run_corpus(corpus)
    report = (report_dir / "report.md").read_text()
    assert "learned_quality" in report and "keep probability" in report
    kept_zh = [d for d in _documents(tmp_path / "corpus" / "clean", "zh")]
    assert 0 < len(kept_zh) < len(_documents(out / "clean", "zh"))  # the classifier removed some, not all
