"""SFT with TRL on conversation shards: the tokens that carry loss in the trainer's batches are exactly the chat
template's trained spans (golden), and a step runs and saves a model that still renders MOSS chats."""

from __future__ import annotations

from pathlib import Path

import pytest

from moss_data.io.conversations import ShardStore
from moss_data.formats import Capabilities, Command, Conversation, Turn
from moss_train.chat_template import trained_spans
from moss_train.sft import SFTRecipe, build_sft_trainer

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "data" / "models" / "smollm2-135m-instruct"


def write_shards(folder: Path) -> None:
    store = ShardStore(folder)
    store.add_conversation(Conversation("t1", "tool", [
        Turn("What is 2+3?", "2 + 3 = 5.", "I should calculate.", [Command("Calculate", "2+3")],
             "Calculate(\"2+3\") => '5'", quality=4)], Capabilities(calculator=True)), "en", {})
    store.add_conversation(Conversation("w1", "writing", [Turn("Say hi.", "Hi!"), Turn("Again?", "Hi again!")]),
                           "en", {})
    store.flush()


@pytest.mark.parametrize("loss_mask, golden", [
    ("assistant", {"t1": [' I should calculate.<eot>\n<|Commands|>: Calculate("2+3")<eoc>\n', " 2 + 3 = 5.<eom>\n"],
                   "w1": [" None<eot>\n<|Commands|>: None<eoc>\n", " Hi!<eom>\n",
                          " None<eot>\n<|Commands|>: None<eoc>\n", " Hi again!<eom>\n"]}),
    ("moss", {"t1": ["<|Human|>: What is 2+3?<eoh>\n",
                     ' I should calculate.<eot>\n<|Commands|>: Calculate("2+3")<eoc>\n<|Results|>:', "<eor>\n",
                     " 2 + 3 = 5.<eom>\n"],
              "w1": ["<|Human|>: Say hi.<eoh>\n", " None<eot>\n<|Commands|>: None<eoc>\n<|Results|>: None<eor>\n",
                     " Hi!<eom>\n<|Human|>: Again?<eoh>\n",
                     " None<eot>\n<|Commands|>: None<eoc>\n<|Results|>: None<eor>\n", " Hi again!<eom>\n"]}),
])
def test_trainer_labels_carry_exactly_the_masked_spans(tmp_path, loss_mask, golden):
    write_shards(tmp_path / "d")
    recipe = SFTRecipe(name="t", data=[tmp_path / "d"], output_dir=tmp_path / "out", base_model=str(MODEL),
                       loss_mask=loss_mask, max_steps=1, batch_size=2, report_to=[])
    trainer = build_sft_trainer(recipe)
    tok = trainer.processing_class
    for i, cid in enumerate(["t1", "w1"]):  # shard order
        batch = trainer.data_collator([trainer.train_dataset[i]])
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        assert all(label in (-100, token) for token, label in zip(ids, labels))
        assert trained_spans(tok, ids, [label != -100 for label in labels]) == golden[cid]


def test_one_sft_step_runs_and_saves(tmp_path):
    import json
    import math

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moss_train.sft import run_sft

    write_shards(tmp_path / "d")
    recipe = SFTRecipe(name="t", data=[tmp_path / "d"], output_dir=tmp_path / "out", base_model=str(MODEL),
                       max_steps=1, batch_size=2, max_length=768, report_to=["tensorboard"])
    final = run_sft(recipe)
    assert list((tmp_path / "out").rglob("events.out.tfevents.*"))  # TensorBoard logs
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["steps"] == 1 and math.isfinite(summary["train_loss"]) and summary["train_loss"] > 0
    tok = AutoTokenizer.from_pretrained(str(final))
    assert "<eoc>" in tok.all_special_tokens and "{% generation %}" in tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(str(final))
    assert model.get_input_embeddings().weight.shape[0] == len(tok)  # grown for the MOSS special tokens
