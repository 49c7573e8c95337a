"""Writing hand-off files so that a reader never sees half of one, fingerprints of inputs, and "skip if done".

Every stage writes through these helpers:

- :func:`atomic_write` / :func:`atomic_write_json`: a temporary file beside the target, fsynced, then renamed over it.
- :func:`atomic_folder`: a folder built under ``<name>.partial`` and renamed into place when complete (a killed
  build leaves only the ``.partial``, which the next build removes).
- :func:`input_fingerprint`: names, sizes and content hashes of a set of files; any change to the input changes it.
- :class:`StageRun`: a stage's ``manifest.json`` carries the *key* of what produced it (config hash, input
  fingerprint, ...). ``done()`` returns the manifest only when the key matches: a changed config or input redoes the
  stage, an unchanged one is skipped. ``finish()`` writes the manifest atomically, last, so a manifest exists only
  for complete work.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import orjson
import xxhash
from loguru import logger
from pydantic import BaseModel

from moss_data.io.storage import as_path, local_path, remove_tree


def atomic_write(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that ``path`` holds either its old content or all of ``data``. Local files:
    a temporary file, fsynced, renamed over the target; object stores: one PUT (atomic per object there)."""
    local = local_path(path)
    if local is None:
        remote = as_path(path)
        remote.parent.mkdir(parents=True, exist_ok=True)
        remote.write_bytes(data)
        return
    path = local
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj, indent: bool = True) -> None:
    atomic_write(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 if indent else 0))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def atomic_write_figure(path: Path, fig, dpi: int = 100) -> None:
    """A matplotlib figure as a PNG file (rendered in memory, so the target may be on any filesystem)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write(path, buf.getvalue())


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yields ``<path>.partial`` to build in; on success replaces ``path`` with it, on error removes it. Local
    folders only (models, checkpoints, the sample): a folder rename is not atomic on object stores."""
    local = local_path(path)
    if local is None:
        raise ValueError(f"{path}: built folders (models, checkpoints) go to a local or mounted filesystem")
    path = local
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a build that was killed
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def stream_sha256(f) -> str:
    """sha256 of an open binary file (local or fsspec), read in 1 MB blocks."""
    h = hashlib.sha256()
    while block := f.read(1 << 20):
        h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    with as_path(path).open("rb") as f:
        return stream_sha256(f)


def fingerprint_records(records: list[dict]) -> str:
    """The input fingerprint of ``{"name", "size", "sha256"}`` records (names relative to the input folder), in
    name order: any change to the files changes it. One formula for local files and DataFolders."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: PurePosixPath(r["name"]).parts):
        h.update(f"{r['name']}\0{r['size']}\0{r['sha256']}\n".encode())
    return h.hexdigest()


def input_fingerprint(files: list[Path], root: Path) -> str:
    """Names (relative to ``root``), sizes and content hashes of the input files: any change to them changes it."""
    root = as_path(root)
    return fingerprint_records([{"name": as_path(f).relative_to(root).as_posix(), "size": as_path(f).stat().st_size,
                                 "sha256": file_sha256(f)} for f in files])


def config_hash(config: BaseModel | dict | list) -> str:
    """A stable hash of a config model (or plain data): part of a stage's key."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    return xxhash.xxh3_64_hexdigest(orjson.dumps(data, option=orjson.OPT_SORT_KEYS))


def keyed_name(name: str, key: BaseModel | dict | list) -> str:
    """``<name>-<hash of key>``: a job's logging folder, so that another key gets another folder."""
    return f"{name}-{config_hash(key)}"


class StageRun:
    """The completion record of one stage (or one unit of a stage) in ``manifest_path``.

    ``key`` says what the output was made from; the manifest stores it under ``"key"``. A run whose key differs from
    the stored one is not done, so it is redone (and the log says which part of the key changed)."""

    def __init__(self, manifest_path: Path, **key: str | int | float | None):
        self.manifest_path = as_path(manifest_path)
        self.key = key

    def load(self) -> dict | None:
        if not self.manifest_path.exists():
            return None
        return orjson.loads(self.manifest_path.read_bytes())

    def done(self) -> dict | None:
        """The stored manifest if it was made with this key, else None."""
        manifest = self.load()
        if manifest is None:
            return None
        stored = manifest.get("key", {})
        if stored == self.key:
            return manifest
        changed = sorted(k for k in self.key.keys() | stored.keys() if stored.get(k) != self.key.get(k))
        logger.info(f"{self.manifest_path}: redoing, changed since the last run: {', '.join(changed)}")
        return None

    def finish(self, manifest: dict) -> dict:
        manifest = {"key": self.key, **manifest}
        atomic_write_json(self.manifest_path, manifest)
        return manifest
