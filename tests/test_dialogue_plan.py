"""Planning a dialogue run: where each category's prompts come from (no model), the continue/switching script, the
checks a reply gets for its kind, and the category/turn report against MOSS's released counts."""

from __future__ import annotations

from pathlib import Path

from moss_data.dialogue.conversation import reply_check
from moss_data.dialogue.distribution import write_report
from moss_data.dialogue.seeding import (CONTINUE_REQUESTS, continue_switching_script, interleave,
                                        is_continue_request)
from moss_data.formats import Conversation, Turn
from moss_data.io.conversations import ShardStore

REPO = Path(__file__).resolve().parent.parent


def test_continue_switching_script_alternates_continue_and_switch():
    others = ["Write a haiku about rain.", "List three uses of vinegar."]
    script = continue_switching_script("en", others, 5, seed=3)
    assert len(script) == 4
    assert is_continue_request(script[0], "en") and is_continue_request(script[2], "en")
    assert not is_continue_request(script[1], "en") and script[1].split(". ", 1)[1] in others
    assert continue_switching_script("en", others, 5, seed=3) == script  # planned again: the same
    zh = continue_switching_script("zh", ["写一首关于春天的诗。"], 2, seed=0)
    assert zh[0] in CONTINUE_REQUESTS["zh"]
    assert interleave([[1, 2, 3], [10], []], 4) == [1, 10, 2, 3]


def test_a_continuation_must_not_repeat_what_it_continues():
    item = {"conversation_id": "c", "language": "en", "prompt": "Tell me about tides."}
    previous = "Tides are the rise and fall of sea levels caused by the Moon's gravity and the rotation of the Earth."
    check = reply_check(item, 1, previous)
    assert check(previous) == "repeats_previous_reply"
    assert check("Spring tides happen when the Sun and Moon line up, so the range between high and low is largest.") == ""


def test_distribution_report_compares_categories_and_turns_with_moss(tmp_path):
    store = ShardStore(tmp_path)
    store.add_conversation(Conversation("en-writing-0", "writing", [Turn("a", "b"), Turn("c", "d")]), "en", {})
    store.add_conversation(Conversation("en-writing-1", "writing", [Turn("a", "b")] * 4), "en", {})
    store.add_conversation(Conversation("zh-honest-0", "honest", [Turn("你是谁？", "我是 MOSS。")]), "zh", {})
    store.add_conversation(Conversation("zh-cs-0", "continue/switching", [Turn("a", "b")] * 2), "zh", {})
    store.quarantine_output("en-harmless-0", "harmless", "complied", "sure, here is how", {})
    store.flush()
    report = write_report(tmp_path)
    groups = report["groups"]
    assert report["kept"] == 4
    assert groups["writing"]["kept"] == 2 and groups["writing"]["mean_turns"] == 3.0
    assert groups["others"]["kept"] == 2 and groups["others"]["mean_turns"] == 1.5  # honest + continue/switching
    assert groups["harmless"]["kept"] == 0 and groups["harmless"]["quarantined"] == 1
    assert abs(groups["writing"]["moss_share"] - 341 / 1425) < 1e-3
    assert report["by_language_category"] == {"en:writing": 2, "zh:continue/switching": 1, "zh:honest": 1}
    table = (tmp_path / "distribution.md").read_text()
    assert "| writing | 2 | 50.0% | 23.9% | 3.0 | 5.5 | 0 |" in table


def test_every_category_is_planned_from_its_source(smollm2, tmp_path):
    """Honest prompts from the identity and unknowable sets, harmless ones from real red-team sets (training split
    only; Chinese ones translated by the backend, checked and marked) and benign look-alikes, continue/switching
    with a script, tool-free categories from seeds; every planned id unique. Fails on a main without them."""
    import orjson

    from moss_data.dialogue.honesty import split_of
    from moss_data.dialogue.stage import CATEGORIES, DialogueRecipe, plan_conversations, prepare_prompts

    recipe = DialogueRecipe(
        name="plan", output_dir=tmp_path / "out", prompts_dir=REPO / "prompts", conversations_per_category=2,
        self_instruct={"enabled": False}, tool_traces={"enabled": False},
        generation={"assistant": {"model": str(smollm2)}, "max_concurrent": 8})
    items = prepare_prompts(recipe)
    stats = orjson.loads((recipe.output_dir / "prompt_stats.json").read_bytes())
    by = {}
    for it in items:
        by.setdefault((it["language"], it["category"]), []).append(it)
    assert len({it["conversation_id"] for it in items}) == len(items)
    assert set(CATEGORIES) == {c for _, c in by}
    for lang in ("en", "zh"):
        assert {it["kind"] for it in by[(lang, "honest")]} == {"identity", "unknowable"}
        assert [it["kind"] for it in by[(lang, "harmless")]].count("benign_lookalike") == 1
        assert all(split_of(it.get("original", it["prompt"])) == "train" for it in by[(lang, "harmless")])
    en_harmful = [it for it in by[("en", "harmless")] if it["kind"] == "harmful"]
    assert len(en_harmful) == 2 and {it["source"] for it in en_harmful} <= {"do-not-answer", "harmbench"}
    translations = {k: n for k, n in stats.items() if k.startswith("translation:")}
    assert sum(translations.values()) == 6  # 2 needed x 3 sent; each kept or rejected with its reason
    zh_harmful = [it for it in by[("zh", "harmless")] if it["kind"] == "harmful"]
    assert len(zh_harmful) == min(2, translations.get("translation:kept", 0))
    assert all(it["translated_from"] == "en" and it["original"] != it["prompt"] for it in zh_harmful)
    planned = plan_conversations(recipe, items)
    for it in planned.values():
        if it["category"] == "continue/switching":
            assert it["target_turns"] >= 2 and len(it["script"]) == it["target_turns"] - 1
    assert prepare_prompts(recipe) == items  # planned once: a resumed run reads the same plan
