"""Exact, URL and near dedup on real documents of all three routes, as the plan of datatrove jobs; decisions without
chaining; token-less documents; sharding; lineage."""

from __future__ import annotations

import gzip
import json
import pickle
import random
import sysconfig
from itertools import combinations
from pathlib import Path

import numpy as np
import orjson
import pytest

from moss_data.io.documents import iter_documents
from moss_data.dedup.clusters import decide
from moss_data.dedup.groundtruth import all_pairs, plant_near_duplicate, reference_shingles
from moss_data.dedup.keys import normalize_url
from moss_data.dedup.lineage import EXACT, NEAR, URL, LineageError, RemovalList, doc_uid
from moss_data.io.atomic import file_sha256, input_fingerprint
from moss_data.text.shingles import jaccard, shingle_hashes
from moss_data.dedup.config import DedupConfig
from moss_data.dedup.stage import apply_removals, compute_removals, dedup_plan, run_dedup

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
    decisions = decide(3, [0, 1], [1, 2], [NEAR, NEAR], [jaccard(sh[0], sh[1]), jaccard(sh[1], sh[2])])
    assert decisions.duplicate_of[1] == 0
    assert decisions.duplicate_of[2] == -1  # C is not a near-duplicate of the kept A
    assert decisions.kept.tolist() == [True, False, True]


def ids_in_uid_order(count: int, source: str = "t") -> list[str]:
    """Document ids whose doc_uids come in this order (the stable order within a route)."""
    return sorted((f"doc-{i}" for i in range(count)), key=lambda i: doc_uid(source, i))


def planted_chain(text: str, steps: int, rate: float, seed: int, ok) -> list[str]:
    rng = random.Random(seed)
    for _ in range(200):
        texts = [text]
        for _ in range(steps):
            texts.append(plant_near_duplicate(texts[-1], rate, rng))
        sh = [shingle_hashes(t, "en") for t in texts]
        sims = {(i, j): jaccard(sh[i], sh[j]) for i, j in combinations(range(len(texts)), 2)}
        if ok(sims):
            return texts
    pytest.fail("could not plant the texts")


def test_no_chaining_and_a_pair_the_keeper_rule_missed_end_to_end(real, tmp_path):
    """Through the whole plan, stable order A < B < C: B ~ A, C ~ B, C !~ A -> C kept. And A < B < D < C with
    A ~ B ~ D ~ C only: B goes (dup of A), D stays (its only kept neighbour would be B, removed), C goes as a
    duplicate of D, a kept document that is not its component's first (the keeper-only rule kept both C and D)."""
    text = max(real["en"], key=len)
    a, b, c = planted_chain(text, 2, 0.025, 3, lambda s: s[0, 1] >= 0.8 and s[1, 2] >= 0.8 and s[0, 2] < 0.8)
    ids = ids_in_uid_order(3)
    chain = [mk(ids[0], a, "en"), mk(ids[1], b, "en"), mk(ids[2], c, "en")]

    def pattern(s):  # 0=A, 1=B, 2=D, 3=C
        return (s[0, 1] >= 0.8 and s[1, 2] >= 0.8 and s[2, 3] >= 0.8
                and max(s[0, 2], s[0, 3], s[1, 3]) < 0.8)

    texts = planted_chain(sorted(real["en"], key=len)[-2], 3, 0.02, 5, pattern)
    order = ids_in_uid_order(4, source="u")
    four = [mk(order[k], t, "en", source="u") for k, t in enumerate(texts)]
    clean = write_clean(tmp_path / "clean", chain + four)
    run_dedup(clean, tmp_path / "dedup", DedupConfig())
    removed = {d["id"]: d["metadata"] for d in iter_documents(tmp_path / "dedup" / "removed")}
    kept = {d["id"]: d["metadata"] for d in iter_documents(tmp_path / "dedup" / "kept")}
    assert set(kept) == {ids[0], ids[2], order[0], order[2]}
    assert removed[ids[1]]["duplicate_of"] == kept[ids[0]]["doc_uid"]
    assert removed[order[1]]["duplicate_of"] == kept[order[0]]["doc_uid"]
    assert removed[order[3]]["duplicate_of"] == kept[order[2]]["doc_uid"]  # the recovered pair
    assert removed[order[3]]["dedup_reason"] == "near_duplicate" and removed[order[3]]["similarity"] >= 0.8
    assert kept[order[2]]["dup_cluster_size"] == 2 and kept[order[0]]["dup_cluster_size"] == 2


def test_decisions_prefer_exact_then_url_then_the_most_similar_kept_document():
    # 0, 1 kept (no edge between them); 2 is an exact copy of 1, a URL duplicate of 0 and a near one of both
    d = decide(3, [0, 0, 1, 1], [2, 2, 2, 2], [NEAR, URL, NEAR, EXACT], [0.9, np.nan, 0.95, 1.0])
    assert d.reason.tolist() == [0, 0, EXACT] and d.duplicate_of[2] == 1 and d.similarity[2] == 1.0
    d = decide(3, [0, 1], [2, 2], [NEAR, NEAR], [0.85, 0.95])
    assert d.reason[2] == NEAR and d.duplicate_of[2] == 1 and d.cluster_size.tolist() == [1, 2, 0]
    # a contaminated document goes first and never keeps a duplicate of its own
    d = decide(3, [0, 1], [1, 2], [NEAR, NEAR], [0.9, 0.9], contaminated=np.array([True, False, False]))
    assert d.kept.tolist() == [False, True, False] and d.duplicate_of[2] == 1


def test_decisions_resolve_a_long_chain_and_a_big_star():
    """Cost linear in edges: a 50k-edge chain and a 50k-edge star, decided in one pass (no per-cluster loop)."""
    n = 50_001
    chain = decide(n, np.arange(n - 1), np.arange(1, n), np.full(n - 1, NEAR), np.full(n - 1, 0.9))
    assert chain.kept[::2].all() and not chain.kept[1::2].any()  # every other one: nothing chains
    assert (chain.duplicate_of[1::2] == np.arange(0, n - 1, 2)).all()
    assert (chain.cluster_size[::2][:-1] == 2).all() and chain.cluster_size[-1] == 1
    star = decide(n, np.zeros(n - 1, dtype=int), np.arange(1, n), np.full(n - 1, NEAR), np.full(n - 1, 0.9))
    assert star.kept.sum() == 1 and (star.duplicate_of[1:] == 0).all() and star.cluster_size[0] == n


def test_removal_list_refuses_another_input(dedup_case, tmp_path):
    _, docs, _ = dedup_case
    clean = write_clean(tmp_path / "clean", docs)
    cfg = DedupConfig()
    removals = compute_removals(clean, tmp_path / "out", cfg)
    assert removals.entries  # the case has duplicates to remove
    # the input changes after the removals were computed: one document dropped from a shard
    write_clean(tmp_path / "clean", [d for d in docs if d["id"] != "en-5"])
    with pytest.raises(LineageError, match="recompute the removals"):
        apply_removals(clean, tmp_path / "out", removals, cfg)
    assert not (tmp_path / "out" / "kept").exists()  # nothing was written
    current = input_fingerprint(sorted(clean.glob("*/*.jsonl.gz")), clean)
    forged = RemovalList.from_entries(current, {"ffffffffffffffff": {"reason": "near_duplicate"}})
    with pytest.raises(LineageError, match="not in this input"):
        apply_removals(clean, tmp_path / "out2", forged, cfg)
    assert not (tmp_path / "out2" / "kept").exists()
    # a forged uid said to be in a real input file: found missing once that file was read
    files = [{"name": str(p.relative_to(clean)), "size": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(clean.glob("*/*.jsonl.gz"))]
    entry = {"reason": "near_duplicate", "file": files[0]["name"]}
    forged = RemovalList.from_entries(current, {"ffffffffffffffff": entry}, files=files)
    with pytest.raises(LineageError, match="not in this input"):
        apply_removals(clean, tmp_path / "out3", forged, cfg)
    # the stage itself recomputes on the changed input (no stale work is reused) and names only its documents
    manifest = run_dedup(clean, tmp_path / "out4", cfg)
    assert manifest["input_documents"] == len(docs) - 1
    again = run_dedup(clean, tmp_path / "out4", cfg.model_copy(update={"threshold": 0.9}))
    assert again["key"]["config"] != manifest["key"]["config"] and again["input_documents"] == len(docs) - 1


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


def test_decontamination_takes_the_evaluation_sets(real, tmp_path):
    """The eval sets `moss-data eval-sets` writes (a 'prompt' per line): a page quoting an alpaca_eval instruction
    of 13 tokens or more is removed as contaminated; the others stay."""
    from moss_data.dialogue.eval_sets import write_eval_sets

    REPO = Path(__file__).resolve().parent.parent
    sets = tmp_path / "eval_sets"
    write_eval_sets(sets, REPO / "data" / "external", REPO / "prompts")
    prompts = [json.loads(line)["prompt"] for line in (sets / "winrate_en.jsonl").read_text().splitlines()]
    quoted = next(p for p in prompts if len(p.split()) >= 20)
    en = real["en"]
    docs = [mk("q", en[0] + "\n\nA reader asked: " + quoted + "\n", "en"), mk("k", en[1], "en")]
    clean = write_clean(tmp_path / "clean", docs)
    cfg = DedupConfig.model_validate({"decontaminate": {"eval_sets": [str(sets / "winrate_en.jsonl")]}})
    run_dedup(clean, tmp_path / "dedup", cfg)
    reasons = {d["id"]: d["metadata"]["dedup_reason"] for d in iter_documents(tmp_path / "dedup" / "removed")}
    assert reasons == {"q": "contaminated"}


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
    """verify: signature keeps no shingle sets in memory; on clear duplicates (exact Jaccard >= 0.9: the estimate
    from 120 permutations has a spread of ~0.03, so pairs nearer the 0.8 threshold may fall either side) it decides
    the same, and it removes nothing the exact mode keeps."""
    root, _, _ = dedup_case
    run_dedup(root / "clean", tmp_path / "sig", DedupConfig(verify="signature"))
    exact = {d["id"]: d["metadata"] for d in iter_documents(root / "dedup" / "removed")}
    estimated = {d["id"] for d in iter_documents(tmp_path / "sig" / "removed")}
    clear = {i for i, m in exact.items() if m["similarity"] is None or m["similarity"] >= 0.9}
    assert len(clear) >= 5  # the 3 exact copies and near-duplicates at J >= 0.9 (en: 2 of 3 here)
    assert clear <= estimated <= set(exact)


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
    import zipfile

    from moss_data.io.pypi import download_package

    cache = Path(__file__).resolve().parent.parent / "data" / "bench" / "cache" / "wheels"
    wheel = download_package("pip==24.0", cache, purpose="a second pip release to compare")
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


def outcome(folder: Path) -> dict[str, tuple]:
    """Per document id: (reason, duplicate_of, dup_cluster_size), from a dedup output folder."""
    return {d["id"]: (d["metadata"].get("dedup_reason"), d["metadata"].get("duplicate_of"),
                      d["metadata"].get("dup_cluster_size")) for d in iter_documents(folder, "*/*/*.jsonl.gz")}


def test_sharding_does_not_change_decisions(dedup_case, tmp_path):
    """1, 3 (one file each) or 5 tasks (two with no file) decide exactly as the default 2."""
    root, docs, _ = dedup_case
    base = outcome(root / "dedup")
    assert len(base) == len(docs) and any(r for r, _, _ in base.values())
    for tasks in (1, 3, 5):
        manifest = run_dedup(root / "clean", tmp_path / f"t{tasks}", DedupConfig(), tasks=tasks)
        assert outcome(tmp_path / f"t{tasks}") == base, tasks
        assert manifest["input_documents"] == len(docs)
    assert len(list((tmp_path / "t3" / "kept").glob("*/*.jsonl.gz"))) == 3  # each task wrote its own file


def test_token_less_documents_are_never_near_duplicates(real, tmp_path):
    """Punctuation-only texts have no shingle: never near-duplicates (also with verify: signature, where their
    identical empty signatures used to match), still exact duplicates of identical texts."""
    en = ["!!!", "???", "... --- ...", "(*&^%$#@!)", "«»“”—", "!!!"]
    code = ["{}();", "+-*/=", "[](){}", "{}();\n"]
    docs = [mk(f"en-{i}", t, "en") for i, t in enumerate(en)] + [mk(f"code-{i}", t, "code") for i, t in enumerate(code)]
    docs += [mk("en-real", real["en"][0], "en"), mk("code-real", real["code"][0], "code")]
    clean = write_clean(tmp_path / "clean", docs)
    for verify in ("exact", "signature"):
        run_dedup(clean, tmp_path / verify, DedupConfig(verify=verify))
        removed = {d["id"]: d["metadata"] for d in iter_documents(tmp_path / verify / "removed")}
        assert sorted(m["dedup_reason"] for m in removed.values()) == ["exact_duplicate"] * 2, (verify, removed)
        assert set(removed) & {"en-0", "en-5"} and set(removed) & {"code-0", "code-3"}


def test_duplicate_of_always_names_a_kept_document_on_the_sample_corpus(sample_run, tmp_path):
    """On the chain's own output, and on the sample corpus with planted chains of near-duplicates and exact copies:
    every duplicate_of is a kept document, every removed document is itself a duplicate of it, and no two kept
    documents are near-duplicates."""
    clean = sample_run.output_dir / "clean"
    docs = list(iter_documents(clean, "*/*.jsonl.gz"))
    rng = random.Random(11)
    planted, groups = [], []
    long = [d for d in docs if len(d["text"]) > 1000 and d["metadata"]["route"] in ("en", "zh", "code")]
    for k, d in enumerate(rng.sample(long, min(30, len(long)))):
        route = d["metadata"]["route"]
        b = plant_near_duplicate(d["text"], 0.015, rng, cjk=route == "zh")
        c = plant_near_duplicate(b, 0.015, rng, cjk=route == "zh")
        new = [mk(f"p{k}-b", b, route), mk(f"p{k}-c", c, route), mk(f"p{k}-x", " " + d["text"] + "\n\n", route)]
        planted += new
        groups.append([d] + new)
    write_clean(tmp_path / "clean", docs + planted)
    run_dedup(tmp_path / "clean", tmp_path / "dedup", DedupConfig())
    for folder, expect in ((sample_run.output_dir / "dedup", 0), (tmp_path / "dedup", len(groups) + 10)):
        kept = {d["metadata"]["doc_uid"]: d for d in iter_documents(folder / "kept")}
        removed = list(iter_documents(folder / "removed"))
        assert len(kept) + len(removed) == len(docs) + (len(planted) if expect else 0)
        named = [d for d in removed if d["metadata"]["duplicate_of"] is not None]
        assert len(named) >= expect
        for d in named:
            assert d["metadata"]["duplicate_of"] in kept, d["id"]
            keeper = kept[d["metadata"]["duplicate_of"]]
            route = d["metadata"]["route"]
            if d["metadata"]["dedup_reason"] == "near_duplicate":
                sim = jaccard(shingle_hashes(d["text"], route), shingle_hashes(keeper["text"], route))
                assert sim >= 0.8 and abs(sim - d["metadata"]["similarity"]) < 1e-3
    kept_ids = {d["id"] for d in iter_documents(tmp_path / "dedup" / "kept")}
    for group in groups:
        route = group[0]["metadata"]["route"]
        sh = [shingle_hashes(d["text"], route) for d in group]
        for i, j in combinations(range(len(group)), 2):
            if jaccard(sh[i], sh[j]) >= 0.8:
                assert not {group[i]["id"], group[j]["id"]} <= kept_ids


def test_the_plan_is_five_jobs_that_pickle(tmp_path):
    jobs = dedup_plan(str(tmp_path / "clean"), "memory://bucket/corpus/dedup", DedupConfig(), 4)
    assert [(j.name, j.tasks) for j in jobs] == [("dedup-signatures", 4), ("dedup-candidates", 4),
                                                 ("dedup-clusters", 1), ("dedup-apply", 4), ("dedup-finalize", 1)]
    assert jobs[1].pipeline[0].work_dir == "memory://bucket/corpus/dedup/work"
    for job in jobs:  # a Slurm task unpickles its pipeline in a fresh process
        again = pickle.loads(pickle.dumps(job.pipeline))
        assert [type(s) for s in again] == [type(s) for s in job.pipeline]


def test_the_plan_runs_on_fsspec_urls(dedup_case, tmp_path):
    """Input and output on a non-local filesystem (fsspec's memory://): the work files are read in ranges, not
    memory-mapped; the decisions and the manifest's key are the same as on local disk."""
    import fsspec

    from moss_data.plan import run_local

    root, _, manifest = dedup_case
    fs = fsspec.filesystem("memory")
    for p in sorted((root / "clean").glob("*/*.jsonl.gz")):
        fs.pipe(f"/dedup-test/in/{p.relative_to(root / 'clean')}", p.read_bytes())
    run_local(dedup_plan("memory://dedup-test/in", "memory://dedup-test/out", DedupConfig(), 2),
              logging_root=tmp_path / "logs", workers=1)
    got = {}
    for name in sorted(fs.glob("/dedup-test/out/*/*/*.jsonl.gz")):
        for line in gzip.decompress(fs.cat(name)).splitlines():
            d = orjson.loads(line)
            got[d["id"]] = (d["metadata"].get("dedup_reason"), d["metadata"].get("duplicate_of"),
                            d["metadata"].get("dup_cluster_size"))
    assert got == outcome(root / "dedup")
    remote = orjson.loads(fs.cat("/dedup-test/out/manifest.json"))
    assert remote["key"] == manifest["key"] and remote["counts"] == manifest["counts"]
    assert not fs.exists("/dedup-test/out/work")
    fs.rm("/dedup-test", recursive=True)


def test_buckets_pair_all_members_up_to_max_bucket_then_only_with_the_first():
    from moss_data.dedup.minhash import bucket_pairs

    keys = np.array([1, 1, 1, 2, 3, 3, 3, 3, 3], dtype=np.uint64)  # runs of 3 (all pairs), 1 (none), 5 (star)
    i, j = bucket_pairs(keys, max_bucket=4)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (0, 2), (1, 2), (4, 5), (4, 6), (4, 7), (4, 8)]


def test_vectorized_chinese_tokens_equal_the_regex_tokens(real):
    """zh_token_hashes (code-point tables) gives exactly the hashes of the regex tokenizer, on real Chinese documents
    and on the edge cases: full-width forms (NFKC), astral characters (emoji, CJK extension B), underscores, digits,
    an empty text."""
    from moss_data.text.shingles import token_hashes, tokenize, zh_token_hashes

    texts = real["zh"][:40] + ["😀 emoji 𠀀 ext-B 中文ＡＢＣ１２３", "x_y 测试 123 ÉCOLE", ""]
    for text in texts:
        assert np.array_equal(zh_token_hashes(text), token_hashes(tokenize(text, "zh")))
