"""What dedup compares documents on, besides shingles: the normalized text hash (exact duplicates), the normalized URL
(URL duplicates, web routes only), n-gram overlap with eval sets (decontamination) and the scope a route is deduped in.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import xxhash

from moss_data.dedup.config import DecontaminationConfig
from moss_data.text.shingles import tokenize

WEB_ROUTES = ("en", "zh", "other")
_SPACES = re.compile(r"\s+")
_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|ref|source)$")


def normalized_text_hash(text: str) -> bytes:
    """128-bit hash of NFKC, lower-cased, whitespace-collapsed text: equal for exact duplicates."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()
    return xxhash.xxh3_128_digest(text)


def normalize_url(url: str) -> str:
    parts = urlsplit(url.strip())
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query) if not _TRACKING.match(k)))
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower().removeprefix("www."), path, query, ""))


def url_hash(route: str, url: str | None) -> bytes | None:
    """128-bit hash of the normalized URL of a web document (``file:`` URLs name local files, not pages)."""
    if route not in WEB_ROUTES or not url or url.startswith("file:"):
        return None
    return xxhash.xxh3_128_digest(normalize_url(url))


def scope_of(route: str, scope: str) -> str:
    """The group a document is deduplicated in: its route, or all text routes together (code is always alone)."""
    return route if scope == "route" or route == "code" else "text"


def ngram_hashes(text: str, n: int) -> set[int]:
    tokens = tokenize(text, "zh")  # CJK characters and words: one tokenizer for every language here
    return {xxhash.xxh3_64_intdigest(" ".join(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}


def eval_ngrams(cfg: DecontaminationConfig) -> set[int]:
    """The n-grams of the eval sets (local paths or fsspec URLs: JSONL with a 'text' field per line, or a 'prompt'
    field as ``moss-data eval-sets`` writes them, or text)."""
    from datatrove.io import get_datafolder

    grams: set[int] = set()
    for spec in cfg.eval_sets:
        parent, _, name = spec.rstrip("/").rpartition("/")
        folder = get_datafolder(parent or ".")
        if not folder.isfile(name):
            raise FileNotFoundError(f"decontaminate.eval_sets: {spec} not found")
        with folder.open(name, "rb") as f:
            data = f.read()
        if name.endswith(".jsonl"):
            rows = [orjson.loads(line) for line in data.splitlines() if line.strip()]
            texts = [row.get("text") or row.get("prompt") or "" for row in rows]  # corpus rows, or eval-set prompts
        else:
            texts = data.decode("utf-8").splitlines()
        for text in texts:
            grams.update(ngram_hashes(text, cfg.ngram))
    return grams
