"""Exact, URL and near dedup on real documents of all three routes; clusters without chaining; lineage."""

from __future__ import annotations

import gzip
import random
import sysconfig
from itertools import combinations
from pathlib import Path

import numpy as np
import orjson
import pytest

from moss_data.io.documents import iter_documents
from moss_data.dedup.clusters import resolve_clusters
from moss_data.dedup.groundtruth import all_pairs, plant_near_duplicate, reference_shingles
from moss_data.dedup.lineage import LineageError, RemovalList
from moss_data.io.atomic import input_fingerprint
from moss_data.text.shingles import jaccard, shingle_hashes
from moss_data.dedup.config import DedupConfig
from moss_data.dedup.stage import apply_removals, compute_removals, normalize_url, run_dedup, scan

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def write_clean(root: Path, docs: list[dict]) -> Path:
    """A corpus-stage output folder (clean/<route>/*.jsonl.gz) holding ``docs``."""
    by_route: dict[str, list[dict]] = {}
    for d in docs:
        by_route.setdefault(d["metadata"]["route"], []).append(d)
    for route, items in by_route.items():
        (root / route).mkdir(parents=True, exist_ok=True)
        with gzip.open(root / route / "src_00000.jsonl.gz", "wb") as f:
            for d in items:
                f.write(orjson.dumps(d) + b"\n")
    return root


def mk(doc_id: str, text: str, route: str, **meta) -> dict:
    return {"id": doc_id, "text": text, "metadata": {"route": route, "source": "t", **meta}}


@pytest.fixture(scope="module")
def real(sample_run) -> dict[str, list[str]]:
    clean = sample_run.output_dir / "clean"
    out = {r: [d["text"] for d in iter_documents(clean / r) if len(d["text"]) > 1500] for r in ("en", "zh")}
    out["code"] = [p.read_text() for p in sorted((STDLIB / "email").glob("*.py")) if p.stat().st_size > 3000]
    assert all(len(v) >= 8 for v in out.values())
    return out


@pytest.fixture(scope="module")
def dedup_case(real, tmp_path_factory):
    """Per route: 8 real documents, an exact copy (case and spacing changed), and planted near-duplicates."""
    rng = random.Random(7)
    docs = []
    for route, texts in real.items():
        base = texts[:8]
        docs += [mk(f"{route}-{i}", t, route) for i, t in enumerate(base)]
        docs.append(mk(f"{route}-exact", "  " + base[0].upper().replace(" ", "  ") + "\n", route))
        for k, i in enumerate((1, 2, 3)):
            docs.append(mk(f"{route}-near-{k}", plant_near_duplicate(base[i], 0.01, rng, cjk=route == "zh"), route))
    root = tmp_path_factory.mktemp("dedup")
    clean = write_clean(root / "clean", docs)
    manifest = run_dedup(clean, root / "dedup", DedupConfig())
    return root, docs, manifest


def test_exact_copies_removed_in_every_route(dedup_case):
    root, _, _ = dedup_case
    removed = {d["id"]: d["metadata"] for d in iter_documents(root / "dedup" / "removed")}
    for route in ("en", "zh", "code"):
        pair = [removed.get(f"{route}-0"), removed.get(f"{route}-exact")]
        gone = [m for m in pair if m is not None]
        assert len(gone) == 1 and gone[0]["dedup_reason"] == "exact_duplicate", route  # which one stays: uid order


def test_near_duplicates_match_the_exact_ground_truth(dedup_case):
    """Every pair with true Jaccard >= 0.8 loses one member; nothing under 0.8 of its keeper is removed."""
    root, docs, _ = dedup_case
    removed = {d["metadata"]["doc_uid"]: d for d in iter_documents(root / "dedup" / "removed")}
    by_id = {d["id"]: d for d in list(iter_documents(root / "dedup" / "kept")) + list(removed.values())}
    for route in ("en", "zh", "code"):
        group = [d for d in docs if d["metadata"]["route"] == route and not d["id"].endswith("exact")]
        truth = all_pairs([reference_shingles(d["text"]) for d in group], 0.8)
        assert len(truth) >= 2, route  # planted edits at 1% stay above 0.8 (J ~ 0.9)
        for i, j in truth:
            a, b = by_id[group[i]["id"]], by_id[group[j]["id"]]
            assert "dedup_reason" in a["metadata"] or "dedup_reason" in b["metadata"], (route, a["id"], b["id"])
    uid_to_text = {d["metadata"]["doc_uid"]: d["text"] for d in by_id.values()}
    for d in removed.values():
        if d["metadata"]["dedup_reason"] == "near_duplicate":
            keeper = uid_to_text[d["metadata"]["duplicate_of"]]
            route = d["metadata"]["route"]
            assert jaccard(shingle_hashes(d["text"], route), shingle_hashes(keeper, route)) >= 0.8


def test_cluster_metadata_on_kept_documents(dedup_case):
    root, _, manifest = dedup_case
    kept = list(iter_documents(root / "dedup" / "kept"))
    removed = list(iter_documents(root / "dedup" / "removed"))
    for d in kept:
        members = [r for r in removed if r["metadata"]["duplicate_of"] == d["metadata"]["doc_uid"]
                   and r["metadata"]["dedup_reason"] == "near_duplicate"]
        assert d["metadata"]["dup_cluster_size"] == 1 + len(members)
    assert manifest["cluster_sizes"]["1"] >= 1 and any(int(k) >= 2 for k in manifest["cluster_sizes"])
    assert len(kept) + len(removed) == manifest["input_documents"]


def test_rerun_is_a_no_op(dedup_case):
    root, _, manifest = dedup_case
    files = sorted((root / "dedup").glob("*/*/*.jsonl.gz"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = run_dedup(root / "clean", root / "dedup", DedupConfig())
    assert again == manifest and [f.stat().st_mtime_ns for f in files] == mtimes


def test_no_chaining_through_a_middle_document(real):
    """A ~ B and B ~ C but not A ~ C: connected components would remove both B and C."""
    rng = random.Random(3)
    text = max(real["en"], key=len)
    for _ in range(50):
        b = plant_near_duplicate(text, 0.025, rng)
        c = plant_near_duplicate(b, 0.025, rng)
        sh = [shingle_hashes(t, "en") for t in (text, b, c)]
        if jaccard(sh[0], sh[1]) >= 0.8 and jaccard(sh[1], sh[2]) >= 0.8 and jaccard(sh[0], sh[2]) < 0.8:
            break
    else:
        pytest.fail("could not plant a chain")
    pairs = {(0, 1): jaccard(sh[0], sh[1]), (1, 2): jaccard(sh[1], sh[2])}
    decisions = resolve_clusters(3, pairs, 0.8, sh)
    assert decisions[1].duplicate_of == 0
    assert decisions[2].duplicate_of is None  # C is not a near-duplicate of the kept A


def test_removal_list_refuses_another_input(dedup_case, tmp_path):
    root, docs, _ = dedup_case
    clean = write_clean(tmp_path / "clean", docs)
    cfg = DedupConfig()
    removals, clusters = compute_removals(clean, scan(clean, cfg), cfg)
    assert removals.entries  # the case has duplicates to remove
    # the input changes after the removals were computed: one document dropped from a shard
    write_clean(tmp_path / "clean", [d for d in docs if d["id"] != "en-5"])
    with pytest.raises(LineageError, match="recompute the removals"):
        apply_removals(clean, removals, clusters, tmp_path / "out")
    assert not (tmp_path / "out" / "kept").exists()  # nothing was written
    current = input_fingerprint(sorted(clean.glob("*/*.jsonl.gz")), clean)
    forged = RemovalList(input_fingerprint=current, entries={"ffffffffffffffff": {"reason": "near_duplicate"}})
    with pytest.raises(LineageError, match="not in this input"):
        apply_removals(clean, forged, {}, tmp_path / "out2")
    assert not (tmp_path / "out2" / "kept").exists()


def test_url_dedup_and_decontamination(real, tmp_path):
    en = real["en"]
    docs = [
        mk("a", en[0], "en", url="https://www.Example.org/page/?utm_source=x#top"),
        mk("b", en[1], "en", url="https://example.org/page"),
        mk("c", en[2], "en", url="https://example.org/other"),
        mk("d", en[3], "en"),
    ]
    paragraph = max(en[3].split("\n"), key=len)
    eval_set = tmp_path / "eval.jsonl"
    eval_set.write_bytes(orjson.dumps({"text": "Question: " + paragraph}) + b"\n")
    clean = write_clean(tmp_path / "clean", docs)
    cfg = DedupConfig.model_validate({"decontaminate": {"eval_sets": [str(eval_set)]}})
    run_dedup(clean, tmp_path / "dedup", cfg)
    reasons = {d["id"]: d["metadata"]["dedup_reason"] for d in iter_documents(tmp_path / "dedup" / "removed")}
    assert reasons == {"b": "url_duplicate", "d": "contaminated"} or reasons == {"a": "url_duplicate", "d": "contaminated"}
    assert normalize_url("HTTPS://www.a.org/x/?b=1&utm_medium=m&a=2#f") == "https://a.org/x?a=2&b=1"


def test_all_pairs_is_exact_against_brute_force():
    rng = np.random.default_rng(0)
    base = [np.unique(rng.integers(0, 5000, size=rng.integers(20, 200))).astype(np.uint64) for _ in range(40)]
    sets = list(base)
    for s in base[:20]:  # near copies with a few elements changed
        keep = s[rng.random(len(s)) > rng.uniform(0, 0.3)]
        sets.append(np.unique(np.concatenate([keep, rng.integers(5000, 6000, size=rng.integers(0, 10)).astype(np.uint64)])))
    for t in (0.5, 0.8):
        brute = {(i, j) for i, j in combinations(range(len(sets)), 2) if jaccard(sets[i], sets[j]) >= t}
        assert set(all_pairs(sets, t)) == brute
        assert brute  # the check means something


def test_signature_verification_mode_agrees_on_clear_duplicates(dedup_case, tmp_path):
    """verify: signature keeps no shingle sets in memory; on clear duplicates it decides the same."""
    root, _, _ = dedup_case
    run_dedup(root / "clean", tmp_path / "sig", DedupConfig(verify="signature"))
    exact = {d["id"] for d in iter_documents(root / "dedup" / "removed")}
    estimated = {d["id"] for d in iter_documents(tmp_path / "sig" / "removed")}
    assert exact == estimated


def _near_dedup_against_truth(docs: list[dict], tmp: Path) -> tuple[int, int]:
    """Runs the stage; returns (true pairs, true pairs left with both members kept)."""
    clean = write_clean(tmp / "clean", docs)
    run_dedup(clean, tmp / "dedup", DedupConfig())
    removed = {d["id"] for d in iter_documents(tmp / "dedup" / "removed")}
    truth = all_pairs([reference_shingles(d["text"]) for d in docs], 0.8)
    missed = [(i, j) for i, j in truth if docs[i]["id"] not in removed and docs[j]["id"] not in removed]
    return len(truth), len(missed)


def test_natural_code_duplicates_between_two_pip_releases(tmp_path):
    """pip 24.0 (a wheel from PyPI) against the pip in this venv: two releases of the same files."""
    import subprocess
    import sys
    import zipfile

    cache = Path(__file__).resolve().parent.parent / "data" / "bench" / "cache" / "wheels"
    if not list(cache.glob("pip-24.0-*.whl")):
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "-d", str(cache), "pip==24.0"], check=True)
    wheel = next(cache.glob("pip-24.0-*.whl"))
    installed = Path(sysconfig.get_paths()["purelib"]) / "pip"
    docs = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(n for n in z.namelist() if n.startswith("pip/_internal/") and n.endswith(".py")):
            mine = installed.parent / name
            text = z.read(name).decode()
            if mine.exists() and len(text) > 1500:
                docs.append(mk(f"whl/{name}", text, "code"))
                docs.append(mk(f"venv/{name}", mine.read_text(), "code"))
    true_pairs, missed = _near_dedup_against_truth(docs, tmp_path)
    assert true_pairs >= 20 and missed == 0


def test_natural_english_duplicates_in_untranslated_help_pages(sample_raw, tmp_path):
    """LibreOffice's zh-CN help still has English pages: they near-duplicate their en-US originals."""
    from trafilatura import extract

    debs = sample_raw.parent / "cache" / "debs" / "root"
    en_root = debs / "libreoffice-help-en-us/usr/share/libreoffice/help/en-US"
    zh_root = debs / "libreoffice-help-zh-cn/usr/share/libreoffice/help/zh-CN"
    sections = ("scalc/guide", "swriter/guide", "shared/guide")
    pages = sorted(p for section in sections for p in (en_root / "text" / section).glob("*.html"))
    docs = []
    for page in pages:
        for lang, root in (("en", en_root), ("zh", zh_root)):
            text = extract((root / page.relative_to(en_root)).read_text(errors="replace")) or ""
            if len(text) > 300:
                docs.append(mk(f"{lang}/{page.name}", text, "en"))
    true_pairs, missed = _near_dedup_against_truth(docs, tmp_path)
    assert true_pairs >= 5 and missed == 0
