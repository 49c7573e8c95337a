"""moss-train eval: loss per category under the template's mask, and tool-call accuracy through the chat loop."""

from __future__ import annotations

from pathlib import Path

from moss_data.io.conversations import ShardStore
from moss_data.formats import Capabilities, Command, Conversation, Turn
from moss_train.eval.held_out import evaluate

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "data" / "models" / "smollm2-135m-instruct"

SENSIBLE = [("Write one sentence about the sea.", "The sea was calm and silver under the morning sky."),
            ("Name three primary colors.", "Red, yellow and blue are the three primary colors.")]


def shards(folder: Path, garbled: bool = False) -> Path:
    store = ShardStore(folder)
    for i, (q, a) in enumerate(SENSIBLE):
        reply = " ".join(reversed(a.split())) + " sky the colors" if garbled else a
        store.add_conversation(Conversation(f"w{i}", "writing", [Turn(q, reply)]), "en", {})
    calc = Capabilities(calculator=True)
    traces = [("What is 12 plus 30?", "12+30", "42"), ("How much is 7 times 9?", "7*9", "63"),
              ("What is 36 times 24?", "36*24", "864")]
    turns = [Turn(q, f"The answer is {r}.", "I should calculate.", [Command("Calculate", e)],
                  f"Calculate(\"{e}\") => '{r}'") for q, e, r in traces]
    store.add_conversation(Conversation("t0", "tool", turns, calc), "en", {})
    store.flush()
    return folder


def test_eval_reports_loss_per_category_and_tool_call_accuracy(tmp_path):
    report = evaluate(MODEL, [shards(tmp_path / "good")], tool_call_tokens=24)
    assert set(report["loss_by_category"]) == {"writing", "tool"}
    assert all(v["tokens"] > 0 and v["loss"] > 0 for v in report["loss_by_category"].values())
    calls = report["tool_calls"]
    assert calls["tool_turns"] == 3 and 0 <= calls["correct"] <= calls["parsed"] <= 3
    # the loss is a real measurement: the same conversations with garbled replies score worse
    garbled = evaluate(MODEL, [shards(tmp_path / "bad", garbled=True)], tool_calls=False)
    assert garbled["loss_by_category"]["writing"]["loss"] > report["loss_by_category"]["writing"]["loss"]
