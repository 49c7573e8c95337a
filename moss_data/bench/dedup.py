"""`just bench-dedup`: near-dedup quality and signature speed, ours vs datatrove's default vs plain datasketch.

Data (real, fetched at set-up like the sample corpus; nothing shipped):
- code: this interpreter's standard library (tests excluded) plus the vendored libraries inside pip and setuptools,
  twice: the versions in our .venv and the pinned pip 24.0 / setuptools 69.5.1 wheels (natural near-duplicates).
- en: LibreOffice help pages (en-US) and the Debian Reference text edition, in sections.
- zh: LibreOffice help pages (zh-CN, those mostly in Chinese), Debian Reference (zh-cn) sections, fortunes-zh.
- each language: planted near-duplicates of random documents (random token edits at a random rate up to 15%),
  labelled by their measured Jaccard like every other pair.
Ground truth: every pair with exact Jaccard >= 0.8 on word 5-gram shingles (CJK characters are words), from
exact prefix-filtering all-pairs (moss_data.dedup.groundtruth). Reported per language: pair precision, recall and
F1 of each method, and signature throughput (shingling + MinHash) in MB/s on one core.
- ours: route-aware shingles, 24x5 LSH, candidates verified on exact shingle Jaccard: the library functions the dedup
  jobs run (bucket keys and a sort-based grouping with the big-bucket rule, then verification).
- datatrove: MinhashDedupSignature with its default MinhashConfig (5-grams, 14 buckets x 8 hashes, spaCy English
  word tokenizer), pairs sharing a bucket (what its bucket stage emits).
- datasketch: MinHash(num_perm=128) over lower-cased word 5-grams, MinHashLSH(threshold=0.8).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sysconfig
import tempfile
import time
import zipfile
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
from tqdm import tqdm

from moss_data.corpus.sample import fetch_debs
from moss_data.dedup.groundtruth import all_pairs, plant_near_duplicate, reference_shingles
from moss_data.dedup.config import DedupConfig
from moss_data.dedup.minhash import candidate_pairs, verify_pairs
from moss_data.io.pypi import download_package
from moss_data.text.minhash import LSHParams, MinHasher
from moss_data.text.shingles import shingle_hashes

THRESHOLD = 0.8
CJK = re.compile(r"[\u4e00-\u9fff]")


# ------------------------------------------------------------------ data


def load_code(cache: Path) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in stdlib.rglob("*.py") if not re.search(r"/(test|tests|idle_test|site-packages)/", str(p))]
    purelib = Path(sysconfig.get_paths()["purelib"])
    for pkg in ("pip", "setuptools", "pkg_resources"):
        files += sorted((purelib / pkg).rglob("*.py"))
    wheels = cache / "wheels"
    pinned = [download_package(requirement, wheels, purpose="the dedup benchmark's code")
              for requirement in ("pip==24.0", "setuptools==69.5.1")]
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    for whl in pinned:
        with zipfile.ZipFile(whl) as z:
            texts += [z.read(n).decode("utf-8", "replace") for n in sorted(z.namelist()) if n.endswith(".py")]
    return [t for t in texts if len(t) > 200]


def _html_text(path: Path) -> str:
    import lxml.html

    try:
        root = lxml.html.fromstring(path.read_bytes())
    except Exception:  # noqa: BLE001 - an unparsable page is left out of the benchmark
        return ""
    body = root.find("body")
    return " ".join((body if body is not None else root).text_content().split())


def _debian_sections(root: Path, lang: str) -> list[str]:
    text = gzip.open(root / f"usr/share/debian-reference/debian-reference.{lang}.txt.gz", "rt", errors="replace").read()
    return [p.strip() for p in re.split(r"\n(?=\d+(?:\.\d+){1,2}\.[ \u00a0]\S)", text) if len(p.strip()) >= 300]


def load_text(roots: dict[str, Path], lang: str) -> list[str]:
    if lang == "en":
        pages = sorted((roots["libreoffice-help-en-us"] / "usr/share/libreoffice/help/en-US").rglob("*.html"))
        texts = [_html_text(p) for p in pages] + _debian_sections(roots["debian-reference-en"], "en")
    else:
        pages = sorted((roots["libreoffice-help-zh-cn"] / "usr/share/libreoffice/help/zh-CN").rglob("*.html"))
        texts = [t for t in (_html_text(p) for p in pages) if len(CJK.findall(t)) > 0.3 * len(t)]
        texts += _debian_sections(roots["debian-reference-zh-cn"], "zh-cn")
        fortunes = (roots["fortunes-zh"] / "usr/share/games/fortunes/chinese").read_text(errors="replace")
        entries = [e.strip() for e in re.sub(r"\x1b\[[0-9;]*m", "", fortunes).split("\n%\n") if e.strip()]
        texts += ["\n".join(entries[i : i + 5]) for i in range(0, len(entries), 5)]
    return [t for t in texts if len(t) > 200]


def add_planted(texts: list[str], lang: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    base = rng.sample(range(len(texts)), min(count, len(texts)))
    return texts + [plant_near_duplicate(texts[i], rng.uniform(0.0, 0.15), rng, cjk=(lang == "zh")) for i in base]


# ------------------------------------------------------------------ methods


def run_ours(texts: list[str], route: str):
    params = LSHParams()
    hasher = MinHasher(params)
    start = time.perf_counter()
    shingles = [shingle_hashes(t, route) for t in tqdm(texts, desc=f"ours {route}", leave=False)]
    sigs = np.stack([hasher.signature(s) for s in shingles])
    sig_s = time.perf_counter() - start
    token_less = np.array([len(s) == 0 for s in shingles])
    candidates = candidate_pairs(sigs, params, DedupConfig().max_bucket, include=~token_less)
    pairs = set(verify_pairs(candidates, THRESHOLD, shingles=shingles))
    return pairs, sig_s


def run_datatrove(texts: list[str]):
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    step = MinhashDedupSignature(output_folder=tempfile.mkdtemp(), config=MinhashConfig())
    step.get_signature(step.get_shingles("warm up the spaCy tokenizer " * 5))
    start = time.perf_counter()
    sigs = [step.get_signature(step.get_shingles(t)) for t in tqdm(texts, desc="datatrove", leave=False)]
    sig_s = time.perf_counter() - start
    buckets = defaultdict(list)
    for i, sig in enumerate(sigs):
        for b, band in enumerate(sig):
            buckets[(b, tuple(band))].append(i)
    pairs = {p for members in buckets.values() if len(members) > 1 for p in combinations(members, 2)}
    return pairs, sig_s


def run_datasketch(texts: list[str]):
    from datasketch import MinHash, MinHashLSH

    start = time.perf_counter()
    minhashes = []
    for t in tqdm(texts, desc="datasketch", leave=False):
        words = re.findall(r"\w+", t.lower())
        m = MinHash(num_perm=128)
        m.update_batch([" ".join(words[i : i + 5]).encode() for i in range(max(1, len(words) - 4))])
        minhashes.append(m)
    sig_s = time.perf_counter() - start
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    pairs = {(min(i, j), max(i, j)) for i, m in enumerate(minhashes) for j in lsh.query(m) if j != i}
    return pairs, sig_s


def score(pred: set, truth: set) -> dict:
    tp = len(pred & truth)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(truth) if truth else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/bench"))
    parser.add_argument("--sample", type=Path, default=Path("data/sample"))
    parser.add_argument("--planted", type=int, default=300, help="planted near-duplicates per language")
    parser.add_argument("--max-docs", type=int, default=4000, help="documents per language (random subset above)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    roots = fetch_debs(args.sample / "cache" / "debs")
    rng = random.Random(0)
    datasets = {"en": load_text(roots, "en"), "zh": load_text(roots, "zh"), "code": load_code(args.out / "cache")}
    rows = []
    for lang, texts in datasets.items():
        if len(texts) > args.max_docs:
            texts = rng.sample(texts, args.max_docs)
        texts = add_planted(texts, lang, args.planted, seed=1)
        mb = sum(len(t.encode()) for t in texts) / 1e6
        truth = set(all_pairs([reference_shingles(t) for t in tqdm(texts, desc=f"truth {lang}", leave=False)], THRESHOLD))
        for name, fn in (("ours", lambda: run_ours(texts, lang)), ("datatrove default", lambda: run_datatrove(texts)),
                         ("datasketch", lambda: run_datasketch(texts))):
            pairs, sig_s = fn()
            rows.append({"language": lang, "method": name, "docs": len(texts), "MB": round(mb, 1),
                         "true_pairs": len(truth), "predicted_pairs": len(pairs), **score(pairs, truth),
                         "signature_MB_s_per_core": round(mb / sig_s, 2)})
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    (args.out / "dedup.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    cols = list(rows[0])
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
