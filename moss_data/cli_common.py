"""What both command lines (``moss-data``, ``moss-train``) share: ``--set`` overrides and loading a recipe or exiting
with its error (the message names the bad key path; exit code 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from moss_data.recipe import RecipeError, load_recipe

SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="override a recipe key: --set executor.tasks=4 (value as YAML)")
]


def _overrides(pairs: list[str] | None) -> dict:
    import yaml

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise typer.BadParameter(f"--set takes key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_recipe_or_exit(path: Path, model, sets: list[str] | None):
    """The recipe as its validated config, or the error's message (naming the key path) and exit code 2."""
    try:
        return load_recipe(path, model, _overrides(sets))
    except RecipeError as e:
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
