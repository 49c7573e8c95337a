"""Byte-identical gzip: the same content always gives the same file.

A gzip header carries the write time and the file's name, so two runs writing the same documents produced different
bytes, and every fingerprint downstream (dedup's input, token shards' keys) changed with them. fsspec's ``gzip``
compression, which datatrove's writers use, is registered again here with ``mtime=0`` and no name; reading is
unchanged. ``moss_data/__init__`` imports this module, so every process that unpickles one of our pipeline steps
(local workers, Slurm tasks, Ray tasks) writes the same bytes.
"""

from __future__ import annotations

import gzip

from fsspec.compression import register_compression


def stable_gzip(infile, mode: str = "rb", **kwargs):
    if "w" in mode or "a" in mode:
        kwargs.setdefault("mtime", 0)
        kwargs.setdefault("filename", "")
    return gzip.GzipFile(fileobj=infile, mode=mode, **kwargs)


register_compression("gzip", stable_gzip, "gz", force=True)
