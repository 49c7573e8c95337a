"""Code repositories as folders: one document per source file.

Each first-level folder under ``data_folder`` is a repository. A document carries ``repo``, ``path`` (inside the
repo), ``language`` (from the extension: LID calls Python Spanish, so code never goes through LID), ``size`` and
``license`` (SPDX guess from the repo's LICENSE/COPYING file, ``unknown`` when there is none).

Skips, counted as ``skipped_<reason>``: ``too_large`` (checked from the file size, before reading), ``binary``
(NUL bytes), ``invalid_utf8``, ``empty``, ``not_code`` (an extension we do not route as code), ``vcs_or_hidden``, and
the file reasons of :func:`moss_data.corpus.readers.file_problem` (symlink loops, dangling links, links out of the
repository, FIFOs and other non-regular files).
"""

from __future__ import annotations

import posixpath
import re
from functools import lru_cache
from typing import Iterator

from datatrove.data import Document
from datatrove.io import DataFolderLike
from datatrove.pipeline.readers.base import BaseDiskReader

from moss_data.corpus.readers import SkipCountingMixin

# Extension -> language. Data formats are routed as code too; the code filter applies their size limits.
EXTENSION_LANGUAGE: dict[str, str] = {
    ".py": "Python", ".pyi": "Python", ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".cxx": "C++",
    ".hpp": "C++", ".hh": "C++", ".java": "Java", ".js": "JavaScript", ".mjs": "JavaScript", ".cjs": "JavaScript",
    ".ts": "TypeScript", ".tsx": "TypeScript", ".jsx": "JavaScript", ".go": "Go", ".rs": "Rust", ".rb": "Ruby",
    ".php": "PHP", ".pl": "Perl", ".pm": "Perl", ".sh": "Shell", ".bash": "Shell", ".lua": "Lua",
    ".scala": "Scala", ".kt": "Kotlin", ".swift": "Swift", ".cs": "C#", ".m": "Objective-C", ".r": "R",
    ".jl": "Julia", ".hs": "Haskell", ".ml": "OCaml", ".sql": "SQL", ".html": "HTML", ".css": "CSS",
    ".md": "Markdown", ".rst": "reStructuredText", ".tex": "TeX", ".json": "JSON", ".yaml": "YAML",
    ".yml": "YAML", ".toml": "TOML", ".xml": "XML", ".csv": "CSV", ".ipynb": "Jupyter",
}
DATA_LANGUAGES = frozenset({"JSON", "YAML", "TOML", "XML", "CSV"})

LICENSE_FILE = re.compile(r"^(licen[cs]e|copying)(\.(txt|md|rst))?$", re.IGNORECASE)
# Ordered: the first matching marker wins (e.g. LGPL before GPL).
LICENSE_MARKERS: tuple[tuple[str, str], ...] = (
    ("PYTHON SOFTWARE FOUNDATION LICENSE", "PSF-2.0"),
    ("Apache License", "Apache-2.0"),
    ("GNU LESSER GENERAL PUBLIC LICENSE", "LGPL"),
    ("GNU AFFERO GENERAL PUBLIC LICENSE", "AGPL"),
    ("GNU GENERAL PUBLIC LICENSE", "GPL"),
    ("Mozilla Public License", "MPL-2.0"),
    ("Permission is hereby granted, free of charge", "MIT"),
    ("Redistribution and use in source and binary forms", "BSD"),
    ("This is free and unencumbered software released into the public domain", "Unlicense"),
)


def guess_license(text: str) -> str:
    for marker, spdx in LICENSE_MARKERS:
        if marker.lower() in text.lower():
            return spdx
    return "other"


class CodeRepoReader(SkipCountingMixin, BaseDiskReader):
    """Reads a folder of repositories, one document per code file, with repo/path/language/license metadata."""

    name = "🧑‍💻 Code repos"

    def __init__(
        self,
        data_folder: DataFolderLike,
        *,
        source: str = "code",
        skip_log_folder=None,
        max_file_bytes: int = 1_000_000,
        **kwargs,
    ):
        super().__init__(data_folder, **kwargs)
        self.max_file_bytes = max_file_bytes
        self._init_skip_log(skip_log_folder, source)

    def read_file(self, filepath: str) -> Iterator[Document]:
        parts = filepath.split("/")
        if any(p.startswith(".") for p in parts):
            self.stat_update("skipped_vcs_or_hidden")  # .git internals etc.: not worth a log line each
            return
        repo, inner = (parts[0], "/".join(parts[1:])) if len(parts) > 1 else ("", parts[0])
        name = posixpath.basename(filepath)
        if LICENSE_FILE.match(name):
            return  # read as metadata of the repo, not as a document
        language = EXTENSION_LANGUAGE.get(posixpath.splitext(name)[1].lower())
        if language is None:
            self.skip_log.skip("not_code", filepath)
            return
        if self._unsafe(filepath, root=repo):  # links are followed only to files inside the repository
            return
        with self.track_time():
            size = self.data_folder.size(filepath)
            if size > self.max_file_bytes:
                self.skip_log.skip("too_large", filepath, None, f"{size} bytes > {self.max_file_bytes}")
                return
            with self.data_folder.open(filepath, "rb") as f:
                raw = f.read()
            if b"\x00" in raw[:8192]:
                self.skip_log.skip("binary", filepath, None, "NUL byte in the first 8 KiB")
                return
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                self.skip_log.skip("invalid_utf8", filepath, None, str(e))
                return
            data = {
                "text": text,
                "id": f"{self.skip_log.source}/{filepath}",
                "route": "code",
                "repo": repo,
                "path": inner,
                "language": language,
                "size": size,
                "license": self._repo_license(repo),
            }
        doc = self._document_or_skip(data, filepath, filepath)
        if doc is not None:
            yield doc

    def _repo_license(self, repo: str) -> str:
        return _license_of(self.data_folder, repo)


@lru_cache(maxsize=4096)
def _license_of(folder, repo: str) -> str:
    try:
        names = [posixpath.basename(p) for p in folder.ls(repo or "", detail=False)]
    except (FileNotFoundError, OSError):
        return "unknown"
    for name in sorted(names):
        if LICENSE_FILE.match(name):
            with folder.open(posixpath.join(repo, name) if repo else name, "rt", errors="replace") as f:
                return guess_license(f.read(20000))
    return "unknown"
