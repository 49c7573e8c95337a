"""Recipe files: YAML mapped onto validated pydantic models.

Every recipe is one YAML file that maps onto one config object. Unknown keys are errors (a typo must
not silently fall back to a default), and errors name the key path, e.g. ``filters.en.gopher_quality.min_doc_wrods``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, ValidationError
from upath import UPath


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _path_or_url(value) -> UPath:
    """A folder as a UPath: a local path, or an fsspec URL kept whole (``s3://b/x``, ``file:///x``; a
    ``pathlib.Path`` would turn ``s3://b`` into ``s3:/b``)."""
    if isinstance(value, UPath):
        return value
    if isinstance(value, Path):
        return UPath(str(value))
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a folder path or URL, got {value!r}")
    return UPath(value)


# A recipe field naming a folder that may live on any fsspec filesystem (see moss_data.io.storage).
DataPath = Annotated[UPath, PlainValidator(_path_or_url), PlainSerializer(str, return_type=str)]


def is_url(path: Path | str) -> bool:
    return bool(_URL.match(str(path)))


class RecipeError(ValueError):
    """A recipe file could not be read or did not validate; the message names the file and the bad keys."""


M = TypeVar("M", bound=BaseModel)


def format_validation_error(path: Path | str, err: ValidationError) -> str:
    lines = [f"recipe {path} is invalid:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (check its spelling against the documented fields)")
        else:
            lines.append(f"  - {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_recipe(path: Path | str, model: type[M], overrides: dict | None = None) -> M:
    """Read a YAML recipe into ``model``; relative paths inside stay relative to the working directory."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a mapping at the top level, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise RecipeError(format_validation_error(path, e)) from None


def _set_dotted(data: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
