"""DPO on feedback pairs: the pairs file alone gives the full MOSS context (tool calls, results, earlier tags), the
completion is exactly the reply, and a step runs on CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

from moss_data.feedback.pairs import with_prompts_from
from moss_data.io.pairs import write_pairs
from moss_data.formats import Capabilities, Command, Conversation, Turn
from moss_train.dpo import DPORecipe, build_dpo_trainer, preference_rows, run_dpo



def feedback_dir(tmp_path: Path) -> Path:
    out = tmp_path / "feedback"
    tagged = {"t1": Conversation("t1", "tool", [
                  Turn("What is 2+3?", "2 + 3 = 5.", "I should calculate.", [Command("Calculate", "2+3")],
                       "Calculate(\"2+3\") => '5'", quality=4)], Capabilities(calculator=True)),
              "w1": Conversation("w1", "writing", [Turn("Say hi.", "Hi!", quality=5), Turn("Again?", "Hi again!")])}
    reply = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    # the feedback stage's own last step: each pair's prompt from its tagged conversation, then the lossless file
    write_pairs(out, with_prompts_from([
        {"context_id": "t1:t1", "language": "en", "category": "tool", "split": "train", "prompt": [],
         "chosen": reply("2 + 3 = 5."), "rejected": reply("It is 6."), "score_chosen": 5, "score_rejected": 1,
         "provenance": "{}"},
        {"context_id": "w1:t2", "language": "en", "category": "writing", "split": "train", "prompt": [],
         "chosen": reply("Hi again!"), "rejected": reply("I'm sorry. I'm sorry. I'm sorry."), "score_chosen": 4,
         "score_rejected": 1, "provenance": "{}"},
    ], tagged))
    return out


def test_pairs_get_the_full_moss_context(tmp_path):
    fb = feedback_dir(tmp_path)
    assert sorted(p.name for p in fb.iterdir()) == ["pairs"]  # nothing else to rebuild a context from
    rows = preference_rows(fb)
    tool, writing = rows
    assert tool["prompt"][-1]["role"] == "tool" and tool["prompt"][-2]["tool_calls"][0]["function"]["name"] == "Calculate"
    assert writing["prompt"][-1] == {"role": "user", "content": "Again?"}
    assert writing["prompt"][-2]["quality"] == 5  # earlier tags stay in the context
    # lossless: exactly the messages the conversation gives for that reply (thinking, tool-call arguments, tags)
    assert tool["prompt"] == Conversation("t1", "tool", [
        Turn("What is 2+3?", "2 + 3 = 5.", "I should calculate.", [Command("Calculate", "2+3")],
             "Calculate(\"2+3\") => '5'", quality=4)], Capabilities(calculator=True)).prompt_messages(0)
    assert tool["prompt"][-2]["thinking"] == "I should calculate."
    assert tool["prompt"][-2]["tool_calls"][0]["function"]["arguments"] == {"expression": "2+3"}


def test_dpo_tokenizes_the_moss_prompt_and_runs_a_step(smollm2, tmp_path):
    fb = feedback_dir(tmp_path)
    recipe = DPORecipe(name="t", feedback_dir=fb, output_dir=tmp_path / "dpo", base_model=str(smollm2), max_steps=1,
                       batch_size=2, max_length=768, report_to=[])
    trainer = build_dpo_trainer(recipe)
    tok = trainer.processing_class
    first = trainer.train_dataset[0]
    assert tok.decode(first["prompt_ids"]).endswith("Calculate(\"2+3\") => '5'<eor>\n<|MOSS|>:")
    assert tok.decode(first["chosen_ids"]).startswith(" 2 + 3 = 5.<eom>")
    assert tok.decode(first["rejected_ids"]).startswith(" It is 6.<eom>")
    second = trainer.train_dataset[1]
    assert tok.decode(second["prompt_ids"]).endswith("<|Human|>: Again?<eoh>\n<|Inner Thoughts|>:")
    run_dpo(recipe)
    summary = json.loads((tmp_path / "dpo" / "train_summary.json").read_text())
    assert summary["steps"] == 1 and math.isfinite(summary["train_loss"])
