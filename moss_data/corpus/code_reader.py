"""Code repositories as folders: one document per source file.

Each first-level folder under ``data_folder`` is a repository. A document carries ``repo``, ``path`` (inside the
repo), ``language`` (from the extension: LID calls Python Spanish, so code never goes through LID), ``size`` and
``license`` (the file's own ``SPDX-License-Identifier`` tag, else the SPDX id guessed from the repo's LICENSE/COPYING
file: ``other`` when the text is not one we recognise, ``unknown`` when there is no such file).

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
# A per-file licence tag (REUSE / SPDX convention) in a file's first lines overrides the repository's licence.
SPDX_TAG = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+-]+(?:\s+(?:OR|AND|WITH)\s+[A-Za-z0-9.+-]+)*)")

# (SPDX id, markers that must all appear), ordered: the first match wins. Title markers are matched in the licence
# file's first 600 characters (a GPL-3 text mentions the Affero GPL in its section 13, an LGPL text the GPL), body
# markers anywhere (as lower case, whitespace collapsed).
_TITLE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AGPL-3.0", ("gnu affero general public license", "version 3")),
    ("LGPL-2.1", ("gnu lesser general public license", "version 2.1")),
    ("LGPL-3.0", ("gnu lesser general public license", "version 3")),
    ("LGPL-2.0", ("gnu library general public license",)),
    ("GFDL-1.3", ("gnu free documentation license", "version 1.3")),
    ("GFDL-1.2", ("gnu free documentation license", "version 1.2")),
    ("GPL-3.0", ("gnu general public license", "version 3")),
    ("GPL-2.0", ("gnu general public license", "version 2")),
    ("GPL-1.0", ("gnu general public license", "version 1")),
    ("MPL-2.0", ("mozilla public license", "2.0")),
    ("MPL-1.1", ("mozilla public license", "1.1")),
    ("EPL-2.0", ("eclipse public license", "2.0")),
    ("EPL-1.0", ("eclipse public license", "1.0")),
    ("Apache-2.0", ("apache license", "version 2.0")),
    ("BSL-1.0", ("boost software license",)),
    ("Artistic-2.0", ("artistic license 2.0",)),
    ("Artistic-1.0", ('the "artistic license"',)),
    ("CC0-1.0", ("cc0 1.0 universal",)),
)
_BODY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PSF-2.0", ("python software foundation license",)),
    ("Apache-2.0", ("apache license", "version 2.0")),
    ("Unlicense", ("this is free and unencumbered software released into the public domain",)),
    ("MIT-0", ("permission is hereby granted, free of charge", "without restriction",
               "the software is provided \"as is\"")),  # refined below: MIT-0 lacks MIT's notice condition
    ("BSD-4-Clause", ("redistribution and use in source and binary forms", "all advertising materials")),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "endorse or promote products")),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",)),
    ("ISC", ("permission to use, copy, modify, and", "for any purpose with or without fee is hereby granted")),
    ("Zlib", ("this software is provided 'as-is'", "permission is granted to anyone to use this software")),
    ("CC0-1.0", ("to the extent possible under law", "dedicated all copyright")),
    ("WTFPL", ("do what the fuck you want to public license",)),
    ("LGPL-3.0", ("gnu lesser general public license", "version 3")),
    ("LGPL-2.1", ("gnu lesser general public license", "version 2.1")),
    ("AGPL-3.0", ("gnu affero general public license", "version 3")),
    ("GPL-3.0", ("gnu general public license", "version 3")),
    ("GPL-2.0", ("gnu general public license", "version 2")),
    ("MPL-2.0", ("mozilla public license", "2.0")),
)
_MIT_NOTICE = "the above copyright notice and this permission notice shall be included"

# Permissive licences (the kinds The Stack kept): no copyleft and no advertising clause beyond a notice.
PERMISSIVE_LICENSES = frozenset({
    "MIT", "MIT-0", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "ISC", "PSF-2.0", "Python-2.0", "Unlicense",
    "CC0-1.0", "Zlib", "BSL-1.0", "0BSD", "WTFPL", "Artistic-2.0", "X11", "NCSA", "UPL-1.0", "PostgreSQL",
})


def guess_license(text: str) -> str:
    """The SPDX id of a licence file's text; ``other`` when it is none of the licences above."""
    flat = re.sub(r"(?:^|\s)[*#;/]+(?=\s)", " ", text.lower())  # comment leaders of a licence in a C/shell comment
    flat = re.sub(r"\s+", " ", flat)
    head = flat[:600]
    for spdx, markers in _TITLE_RULES:
        if all(m in head for m in markers):
            return spdx
    for spdx, markers in _BODY_RULES:
        if all(m in flat for m in markers):
            if spdx == "MIT-0" and _MIT_NOTICE in flat:
                return "MIT"
            return spdx
    if "permission is hereby granted, free of charge" in flat:
        return "MIT"
    return "other"


def license_tag(text: str, lines: int = 20) -> str | None:
    """The ``SPDX-License-Identifier`` of a source file's first lines, if it has one."""
    m = SPDX_TAG.search("\n".join(text.splitlines()[:lines]))
    return m.group(1) if m else None


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
                "license": license_tag(text) or self._repo_license(repo),
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
