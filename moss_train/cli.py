"""`moss-train`: the trainer backend's command line (issue 7: pretraining, SFT and DPO so far)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from moss_data.cli import SetOpt, load_recipe_or_exit

app = typer.Typer(help="MOSS toolkit trainer backend.", no_args_is_help=True, add_completion=False)


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
    typer.echo(f"model: {cfg.output_dir / 'final'}")


@app.command()
def sft(
    recipe: Annotated[Path, typer.Argument(help="SFT recipe YAML, e.g. recipes/train/sft_tiny_cpu.yaml")],
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in output_dir")] = False,
):
    """Supervised fine-tuning on conversation shards (TRL SFTTrainer, MOSS chat template, loss mask per recipe)."""
    from moss_train.sft import SFTRecipe, run_sft

    cfg = load_recipe_or_exit(recipe, SFTRecipe, set_)
    final = run_sft(cfg, resume=resume)
    typer.echo(json.dumps(json.loads((cfg.output_dir / "train_summary.json").read_text()), indent=2))
    typer.echo(f"model: {final}")


@app.command()
def dpo(
    recipe: Annotated[Path, typer.Argument(help="DPO recipe YAML, e.g. recipes/train/dpo_tiny_cpu.yaml")],
    set_: SetOpt = None,
):
    """DPO on the feedback stage's preference pairs (TRL DPOTrainer, full MOSS contexts from the tagged shards)."""
    from moss_train.dpo import DPORecipe, run_dpo

    cfg = load_recipe_or_exit(recipe, DPORecipe, set_)
    final = run_dpo(cfg)
    typer.echo(json.dumps(json.loads((cfg.output_dir / "train_summary.json").read_text()), indent=2))
    typer.echo(f"model: {final}")


@app.command("show-template")
def show_template(loss_mask: Annotated[str, typer.Option(help="moss or assistant")] = "moss"):
    """Print the MOSS chat template (Jinja) for a loss mask."""
    from moss_train.chat_template import moss_chat_template

    if loss_mask not in ("moss", "assistant"):
        raise typer.BadParameter("loss mask is moss or assistant")
    typer.echo(moss_chat_template(loss_mask))  # type: ignore[arg-type]


if __name__ == "__main__":  # pragma: no cover
    app()
