"""MOSS serialization round trips on real text, the command grammar, and malformed input."""

from __future__ import annotations

import itertools
import random

import pytest

from moss_data.io.documents import iter_documents
from moss_data.formats import (
    Capabilities,
    Command,
    CommandSyntaxError,
    Conversation,
    FormatError,
    Turn,
    meta_instruction,
    parse_capabilities,
    parse_commands,
    render_commands,
    turn_from_segments,
)


@pytest.fixture(scope="module")
def sentences(sample_run) -> list[str]:
    """Real English and Chinese paragraphs from the sample corpus."""
    out = []
    for route in ("en", "zh"):
        for d in itertools.islice(iter_documents(sample_run.output_dir / "clean" / route), 40):
            out += [p for p in d["text"].split("\n") if len(p) > 30][:3]
    assert len(out) > 60
    return out


def make_conversation(sentences: list[str], seed: int) -> Conversation:
    rng = random.Random(seed)
    caps = Capabilities(inner_thoughts=True, web_search=True, calculator=True, equation_solver=rng.random() < 0.5)
    turns = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.5:
            cmds = [Command("Search", rng.choice(sentences)[:50]), Command("Calculate", "(12/2)*3")]
            results = 'Search("q") =>\n<|1|>: "' + rng.choice(sentences) + "\"\nCalculate(\"(12/2)*3\") => '18.0'"
            turns.append(Turn(rng.choice(sentences), rng.choice(sentences), rng.choice(sentences), cmds, results))
        else:
            turns.append(Turn(rng.choice(sentences), rng.choice(sentences) + "\n\n" + rng.choice(sentences)))
        turns[-1].quality = rng.choice([None, 1, 3, 5])  # tagged and untagged responses mix in a conversation
    return Conversation(f"c{seed}", "writing", turns, caps)


def test_record_and_messages_round_trip_on_real_text(sentences):
    for seed in range(30):
        conv = make_conversation(sentences, seed)
        record = conv.to_record()
        assert record["num_turns"] == len(conv.turns)
        back = Conversation.from_record(record)
        assert back.to_record() == record and back.turns == conv.turns
        again = Conversation.from_messages(conv.to_messages(), conv.conversation_id, conv.category)
        assert again.to_record() == record


def test_serialized_turn_exactly_as_designed():
    plain = Turn("Hi", "Hello!")
    assert plain.serialize() == (
        "<|Human|>: Hi<eoh>\n<|Inner Thoughts|>: None<eot>\n<|Commands|>: None<eoc>\n"
        "<|Results|>: None<eor>\n<|MOSS|>: Hello!<eom>\n"
    )
    tool = Turn("2*3?", "It is 6.", "I should calculate.", [Command("Calculate", "2*3")], "Calculate(\"2*3\") => '6'")
    assert tool.segments()["Commands"] == '<|Commands|>: Calculate("2*3")<eoc>\n'
    assert tool.segments()["Tool Responses"] == "<|Results|>:\nCalculate(\"2*3\") => '6'<eor>\n"


def test_quality_tag_in_all_three_views():
    tagged = Turn("Hi", "Hello!", quality=4)
    assert tagged.segments()["MOSS"] == "<|MOSS|>: <quality:4> Hello!<eom>\n"
    conv = Conversation("c", "writing", [tagged, Turn("More?", "Sure.")])
    assert Conversation.from_record(conv.to_record()).turns == conv.turns
    messages = conv.to_messages()
    assert messages[2] == {"role": "assistant", "content": "Hello!", "quality": 4} and "quality" not in messages[4]
    assert Conversation.from_messages(messages, "c", "writing").turns == conv.turns
    # a reply that merely mentions a tag-like string later is not tagged
    assert Conversation.from_record(Conversation("c", "w", [Turn("q", "use <quality:5> as the tag")]).to_record()).turns[0].quality is None
    with pytest.raises(ValueError, match="quality must be one of"):
        Turn("q", "a", quality=9).serialize()


def test_meta_instruction_flags_round_trip():
    for bits in itertools.product([False, True], repeat=5):
        caps = Capabilities(*bits)
        meta = meta_instruction(caps)
        assert parse_capabilities(meta) == caps
        assert ("API: Search(query)" in meta) == caps.web_search
    assert "- Image edition: disabled." in meta_instruction()


@pytest.mark.parametrize(
    "argument",
    ['plain', 'with "quotes"', "back\\slash", 'tricky\\"', "a), Search(\"b", "中文 查询", "x+y=5;x-y=1", ""],
)
def test_command_arguments_survive_rendering(argument):
    cmds = [Command("Search", argument), Command("Solve", argument)]
    assert parse_commands(render_commands(cmds)) == cmds


@pytest.mark.parametrize(
    "text",
    ['Search("unterminated', "Search(unquoted)", 'Search("a") Search("b")', '__import__("os")x', 'Search("a"',
     "Calculate(1+1)", '", ".join(x)'],
)
def test_malformed_commands_raise(text):
    with pytest.raises(CommandSyntaxError):
        parse_commands(text)


def test_too_many_commands():
    with pytest.raises(CommandSyntaxError, match="more than 3"):
        parse_commands(", ".join(['Search("q")'] * 4), max_commands=3)


def test_malformed_records_raise():
    good = Turn("a", "b").segments()
    with pytest.raises(FormatError, match="lacks the 'MOSS'"):
        turn_from_segments({k: v for k, v in good.items() if k != "MOSS"})
    with pytest.raises(FormatError, match="not a serialized Human"):
        turn_from_segments({**good, "Human": "Human: a\n"})
    with pytest.raises(FormatError, match="lacks"):
        Conversation.from_record({"conversation_id": "x", "num_turns": 2, "chat": {"turn_1": good}, "category": "c",
                                  "meta_instruction": meta_instruction()})


def test_response_ids_round_trip():
    from moss_data.formats import FormatError, parse_response_id, response_id

    assert response_id("en-writing:000001", 0) == "en-writing:000001:t1"
    assert parse_response_id(response_id("tool-en-calculate:t9", 4)) == ("tool-en-calculate:t9", 4)
    for bad in ("no-turn", "c:t0", "c:tx", ":t3"):
        with pytest.raises(FormatError):
            parse_response_id(bad)
