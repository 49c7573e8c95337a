"""Recipes are validated on load with errors that name the bad key; the CLI documents every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moss_data.cli import app
from moss_data.chain.recipe import CorpusRecipe
from moss_data.executors import build_executor
from moss_data.corpus.pipeline import build_pipeline
from moss_data.plan import Job
from moss_data.recipe import RecipeError, load_recipe

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(text)
    return p


MINIMAL = """
name: t
output_dir: out
sources:
  - {name: web, kind: warc, path: raw}
"""


def test_every_shipped_recipe_validates():
    recipes = sorted((REPO / "recipes/corpus").glob("*.yaml"))
    assert len(recipes) >= 3
    for path in recipes:
        cfg = load_recipe(path, CorpusRecipe)
        assert cfg.sources


def test_defaults_fill_in(tmp_path):
    cfg = load_recipe(write(tmp_path, MINIMAL), CorpusRecipe)
    assert cfg.sources[0].content == "html"  # warc defaults to html extraction
    assert cfg.executor.kind == "local"
    assert cfg.filters.en.gopher_quality.min_doc_words == 50


def test_unknown_nested_key_is_named(tmp_path):
    bad = MINIMAL + "filters:\n  en:\n    gopher_quality:\n      min_doc_wrods: 3\n"
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, bad), CorpusRecipe)
    assert "filters.en.gopher_quality.min_doc_wrods: unknown key" in str(e.value)


def test_wrong_type_is_named(tmp_path):
    bad = MINIMAL + "executor:\n  tasks: many\n"
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, bad), CorpusRecipe)
    assert "executor.tasks" in str(e.value) and "'many'" in str(e.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        ("executor:\n  kind: slurm\n", "needs executor.partition"),
        ("  - {name: web, kind: jsonl, path: other}\n", "source names must be unique"),
        ("  - {name: 'bad name', kind: code, path: x}\n", "sources.1.name"),
        ("  - {name: c, kind: code, path: x, content: html}\n", "code source cannot have content: html"),
    ],
)
def test_semantic_errors(tmp_path, extra, message):
    text = MINIMAL + extra if extra.startswith("  -") else MINIMAL + extra
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, text), CorpusRecipe)
    assert message in str(e.value)


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, "name: [unclosed"), CorpusRecipe)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml", CorpusRecipe)


def test_overrides_are_validated_too(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert load_recipe(path, CorpusRecipe, {"executor.tasks": 7}).executor.tasks == 7
    with pytest.raises(RecipeError, match="executor.tasks"):
        load_recipe(path, CorpusRecipe, {"executor.tasks": 0})


def test_cli_help_for_every_command():
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = ["sample", "corpus", "corpus-status", "corpus-report", "check-recipe", "dialogues", "feedback", "fetch-preference-sets"]
    for command in commands:
        assert command in result.output
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "Usage" in sub.output


def test_cli_check_recipe_reports_bad_key(tmp_path):
    path = write(tmp_path, MINIMAL + "executor:\n  taskz: 3\n")
    result = CliRunner().invoke(app, ["check-recipe", str(path)])
    assert result.exit_code == 2
    assert "executor.taskz: unknown key" in result.output


def test_just_list_documents_recipes():
    just = Path(sys.executable).parent / "just"  # rust-just installs the binary into the venv
    out = subprocess.run([str(just), "--list"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for recipe in ("demo", "test", "sample", "corpus", "install", "dialogues", "feedback", "pretrain", "sft", "dpo",
                   "bench-dedup",
                   "bench-generation"):
        assert recipe in out
    # every recipe has a doc comment
    listed = [line for line in out.splitlines()[1:] if line.strip()]
    assert all("#" in line for line in listed), listed


def test_slurm_executor_built_from_recipe(tmp_path):
    cfg = load_recipe(REPO / "recipes/corpus/slurm.yaml", CorpusRecipe)
    from datatrove.executor import SlurmPipelineExecutor

    job = Job("x", build_pipeline(cfg, cfg.sources[0], cfg.output_dir), cfg.executor.tasks)
    ex = build_executor(cfg.executor, job, str(tmp_path / "logs"))
    assert isinstance(ex, SlurmPipelineExecutor)
    assert (ex.tasks, ex.partition, ex.time) == (1000, "cpu", "12:00:00")
    assert ex.get_sbatch_args()["kill-on-invalid-dep"] == "yes"  # a failed upstream cancels, never pends forever


def test_ray_executor_needs_ray_or_says_how(tmp_path):
    cfg = load_recipe(REPO / "recipes/corpus/ray.yaml", CorpusRecipe)
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"pip install -e '\.\[ray\]'"):
            build_executor(cfg.executor, Job("x", [], 512), str(tmp_path))
    else:
        assert build_executor(cfg.executor, Job("x", [], 512), str(tmp_path)).tasks == 512


def test_shipped_dialogue_recipes_validate_and_reject_typos(tmp_path):
    from moss_data.dialogue.importer import ImportRecipe
    from moss_data.dialogue.stage import DialogueRecipe

    recipes = sorted((REPO / "recipes/dialogue").glob("*.yaml"))
    assert recipes
    for path in recipes:  # import recipes (import_*.yaml) feed the dialogue stage; the others are dialogue recipes
        kind = ImportRecipe if path.name.startswith("import_") else DialogueRecipe
        assert load_recipe(path, kind).generation.assistant.kind in ("transformers", "http", "vllm")
    bad = write(tmp_path, "name: d\noutput_dir: out\ngeneration:\n  assistant:\n    kind: http\n    base_ulr: http://x\n")
    with pytest.raises(RecipeError, match="generation.assistant.base_ulr: unknown key"):
        load_recipe(bad, DialogueRecipe)


def test_shipped_feedback_recipes_validate_and_reject_typos(tmp_path):
    from moss_data.feedback.stage import FeedbackRecipe

    recipes = sorted((REPO / "recipes/feedback").glob("*.yaml"))
    assert recipes
    for path in recipes:
        cfg = load_recipe(path, FeedbackRecipe)
        assert cfg.candidates_per_context >= 2 and 0 <= cfg.untagged_share <= 1
    bad = write(tmp_path, "name: f\ninput_dir: d\noutput_dir: out\nreward_model:\n  max_stpes: 3\n")
    with pytest.raises(RecipeError, match="reward_model.max_stpes: unknown key"):
        load_recipe(bad, FeedbackRecipe)


def test_moss_train_cli_and_shipped_train_recipes():
    from moss_train.cli import app as train_app
    from moss_train.dpo import DPORecipe
    from moss_train.sft import SFTRecipe

    runner = CliRunner()
    assert runner.invoke(train_app, ["sft", "--help"]).exit_code == 0
    shown = runner.invoke(train_app, ["show-template", "--loss-mask", "assistant"])
    assert shown.exit_code == 0 and "{% generation %}" in shown.output
    assert runner.invoke(train_app, ["dpo", "--help"]).exit_code == 0
    assert runner.invoke(train_app, ["pretrain", "--help"]).exit_code == 0
    from moss_train.pretrain import PretrainRecipe

    for path in sorted((REPO / "recipes/train").glob("pretrain*.yaml")):
        assert load_recipe(path, PretrainRecipe).block_size >= 8
    for path in sorted((REPO / "recipes/train").glob("sft*.yaml")):
        assert load_recipe(path, SFTRecipe).loss_mask in ("moss", "assistant")
    for path in sorted((REPO / "recipes/train").glob("dpo*.yaml")):
        assert load_recipe(path, DPORecipe).beta > 0


def test_output_urls_survive_loading_and_dumping():
    cfg = load_recipe(REPO / "recipes/corpus/ray.yaml", CorpusRecipe)
    assert str(cfg.output_dir) == "s3://my-bucket/moss/corpus"  # a Path would have made it s3:/my-bucket/...
    assert cfg.output_dir.protocol == "s3"
    assert str(cfg.output_dir / "tokens") == "s3://my-bucket/moss/corpus/tokens"
    assert cfg.model_dump(mode="json")["output_dir"] == "s3://my-bucket/moss/corpus"
    again = CorpusRecipe.model_validate_json(cfg.model_dump_json())  # as a Slurm or Ray task receives it
    assert str(again.output_dir) == "s3://my-bucket/moss/corpus"
    local = load_recipe(REPO / "recipes/corpus/sample.yaml", CorpusRecipe, {"output_dir": "file:///tmp/out"})
    assert local.output_dir.protocol == "file" and str(local.output_dir) == "file:///tmp/out"