"""The MOSS chat template: renders the messages view exactly as the MOSS serialization, and its generation
markers select exactly the tokens each loss mask trains (golden tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from moss_data.formats import SPECIAL_TOKENS, Capabilities, Command, Conversation, Turn, meta_instruction
from moss_train.chat_template import moss_chat_template, trained_spans

REPO = Path(__file__).resolve().parent.parent

CONVERSATION = Conversation("c", "tool", [
    Turn("What is 2+3?", "2 + 3 = 5.", "I should calculate.", [Command("Calculate", '2+3 "x" \\ y')],
         "Calculate(\"2+3\") => '5'", quality=4),
    Turn("Thanks! And hello?", "Hello!"),
], Capabilities(calculator=True))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from moss_data.llm.models import local_smollm2

    tok = AutoTokenizer.from_pretrained(str(local_smollm2(REPO / "data" / "models" / "smollm2-135m-instruct")))
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tok


@pytest.mark.parametrize("loss_mask", ["moss", "assistant"])
def test_template_renders_the_moss_serialization(tokenizer, loss_mask):
    tokenizer.chat_template = moss_chat_template(loss_mask)
    rendered = tokenizer.apply_chat_template(CONVERSATION.to_messages(), tokenize=False)
    expected = meta_instruction(CONVERSATION.capabilities) + "".join(t.serialize() for t in CONVERSATION.turns)
    assert rendered == expected
    prompt = tokenizer.apply_chat_template(CONVERSATION.to_messages()[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|Human|>: What is 2+3?<eoh>\n<|Inner Thoughts|>:")  # where the chat loop starts pass 1
    after_tool = tokenizer.apply_chat_template(CONVERSATION.prompt_messages(0), tokenize=False, add_generation_prompt=True)
    assert after_tool.endswith("Calculate(\"2+3\") => '5'<eor>\n<|MOSS|>:")  # pass 2 starts at the reply


def trained_text(tokenizer, loss_mask: str) -> str:
    tokenizer.chat_template = moss_chat_template(loss_mask)
    out = tokenizer.apply_chat_template(CONVERSATION.to_messages(), tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    return "|".join(trained_spans(tokenizer, ids, mask))  # a "|" wherever an untrained stretch was cut out


def test_assistant_mask_trains_only_what_the_model_writes(tokenizer):
    assert trained_text(tokenizer, "assistant") == "|".join([
        ' I should calculate.<eot>\n<|Commands|>: Calculate("2+3 \\"x\\" \\\\ y")<eoc>\n',
        " 2 + 3 = 5.<eom>\n",  # after the tag: <quality:4> is not trained
        " None<eot>\n<|Commands|>: None<eoc>\n",
        " Hello!<eom>\n",
    ])


def test_moss_mask_trains_everything_but_meta_results_and_tag(tokenizer):
    assert trained_text(tokenizer, "moss") == "|".join([
        "<|Human|>: What is 2+3?<eoh>\n",
        ' I should calculate.<eot>\n<|Commands|>: Calculate("2+3 \\"x\\" \\\\ y")<eoc>\n<|Results|>:',
        "<eor>\n",
        " 2 + 3 = 5.<eom>\n<|Human|>: Thanks! And hello?<eoh>\n",
        " None<eot>\n<|Commands|>: None<eoc>\n<|Results|>: None<eor>\n",
        " Hello!<eom>\n",
    ])


def test_rows_that_went_through_arrow_render_the_same(tokenizer):
    """datasets stores messages as Arrow structs: a Solve row gets a null 'expression' key from a Calculate row and
    the reverse; the template must still render each row's own argument."""
    import datasets

    solve = Conversation("s", "tool", [Turn("Solve x+1=3.", "x = 2.", "Solve it.", [Command("Solve", "x+1=3")],
                                            'Solve("x+1=3") =>\nx = 2')], Capabilities(equation_solver=True))
    convs = [CONVERSATION, solve]
    ds = datasets.Dataset.from_list([{"messages": c.to_messages()} for c in convs])
    tokenizer.chat_template = moss_chat_template("moss")
    for conv, row in zip(convs, ds):
        expected = meta_instruction(conv.capabilities) + "".join(t.serialize() for t in conv.turns)
        assert tokenizer.apply_chat_template(row["messages"], tokenize=False) == expected
