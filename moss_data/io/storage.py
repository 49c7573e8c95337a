"""Where hand-off files live: a local folder or any fsspec URL (``file://``, ``s3://``, ``gs://``, ``memory://``).

Paths are :class:`upath.UPath` (universal-pathlib: pathlib's API over fsspec), so a URL keeps its protocol through
every join (``pathlib.Path`` turns ``s3://b/x`` into ``s3:/b/x``) and the same code reads and writes local disks and
object stores. Datatrove steps get ``str(path)``, which is the URL, and open it as a ``DataFolder``. The few
operations that need a real local file (a memory map, an atomic rename) ask :func:`local_path` first.
"""

from __future__ import annotations

from pathlib import Path

from upath import UPath

LOCAL_PROTOCOLS = ("", "file", "local")


def as_path(path: str | Path | UPath) -> UPath:
    """A local path or fsspec URL as a UPath (a plain local path becomes a pathlib-compatible ``PosixUPath``)."""
    return path if isinstance(path, UPath) else UPath(str(path) if isinstance(path, Path) else path)


def local_path(path: str | Path | UPath) -> Path | None:
    """The local filesystem path behind ``path`` (a plain path or a ``file://`` URL), or None on other filesystems."""
    if isinstance(path, Path) and not isinstance(path, UPath):
        return path
    p = as_path(path)
    return Path(p.path) if p.protocol in LOCAL_PROTOCOLS else None


def remove_tree(path: str | Path | UPath) -> None:
    """Removes a file or folder wherever it lives; nothing if it is not there."""
    p = as_path(path)
    if p.exists():
        p.fs.rm(p.path, recursive=True)


def unlink(path: str | Path | UPath) -> None:
    """Removes a file if it is there."""
    p = as_path(path)
    if p.exists():
        p.unlink()


def load_npy(path: str | Path | UPath, mmap: bool = False):
    """A ``.npy`` array: memory-mapped when asked and the file is local, else read whole."""
    import io

    import numpy as np

    local = local_path(path)
    if local is not None:
        return np.load(local, mmap_mode="r" if mmap else None)
    return np.load(io.BytesIO(as_path(path).read_bytes()))
