"""Trace checks on traces built with the real executors, and the trace generator end to end with the small model."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from moss_data.io.conversations import ShardStore
from moss_data.dialogue.tool_traces import (ToolConversation, ToolPrompt, check_command, check_thought, check_toolless_reply,
                                            check_trace, command_request, in_context, load_examples,
                                            load_tool_prompts, thought_request)
from moss_data.formats import Capabilities, Command, Conversation, Turn, parse_commands
from moss_data.tools.registry import ToolRegistry
from moss_data.tools.search import SearchIndex

REPO = Path(__file__).resolve().parent.parent
CALC = Capabilities(calculator=True)


def traced(caps: Capabilities, command_text: str, reply: str, index=None) -> tuple[Turn, ToolRegistry]:
    registry = ToolRegistry(caps, index)
    results = registry.execute(command_text)
    return Turn("q", reply, "thought", parse_commands(command_text), results.text), registry


def test_sound_traces_pass():
    turn, reg = traced(CALC, 'Calculate("(12/2)*3")', "(12/2)*3 is 18.")
    assert check_trace(turn, CALC, reg) == ""
    solver = Capabilities(equation_solver=True)
    turn, reg = traced(solver, 'Solve("x+y=10;x-y=4")', "x = 7 and y = 3.")
    assert check_trace(turn, solver, reg) == ""
    assert Conversation.from_record(Conversation("t", "tool", [turn], solver).to_record()).turns == [turn]


def test_unsound_traces_are_caught():
    turn, reg = traced(CALC, 'Calculate("(12/2)*3")', "It is 20.")
    assert check_trace(turn, CALC, reg) == "reply_inconsistent_with_result"
    forged = Turn("q", "It is 18.", "t", [Command("Calculate", "(12/2)*3")], "Calculate(\"(12/2)*3\") => '19.0'")
    assert check_trace(forged, CALC, reg) == "results_differ_from_executor"
    sneaky = Turn("q", "x = 1", "t", [Command("Solve", "x=1")], 'Solve("x=1") => This tool is disabled.')
    assert check_trace(sneaky, CALC, reg) == "disabled_tool_called"
    failed, reg2 = traced(CALC, 'Calculate("1/0")', "It is infinite.")
    assert check_trace(failed, CALC, reg2) == "tool_failed"
    search = Capabilities(web_search=True)
    nothing, reg3 = traced(search, 'Search("zzqx")', "Nothing.", SearchIndex(["unrelated passage"]))
    assert check_trace(nothing, search, reg3) == "no_search_results"
    image = Capabilities(text_to_image=True)
    claim, reg4 = traced(image, 'Text2Image("a cat")', "Here is the image you asked for.")
    assert check_trace(claim, image, reg4) == "reply_claims_missing_image"
    honest, reg5 = traced(image, 'Text2Image("a cat")', "Sorry, I could not draw it.")
    assert check_trace(honest, image, reg5) == "tool_failed"  # no trace teaches a tool that fails


def test_tool_conversations_are_multi_turn_and_may_need_no_tool(tmp_path):
    seeds = tmp_path / "tool_seeds.jsonl"
    seeds.write_text(
        '{"tool": "Calculate", "language": "en", "prompt": "What is 2+2?"}\n'
        '{"language": "zh", "enabled": ["Search"], "turns": [{"tools": ["Calculate"], "prompt": "24 乘以 12 是多少？"},'
        ' {"tools": [], "prompt": "谢谢！"}]}\n', encoding="utf-8")
    one, two = load_tool_prompts(seeds)
    assert [t.tools for t in one.turns] == [["Calculate"]] and one.tools == ["Calculate"]
    assert [t.tools for t in two.turns] == [["Calculate"], []] and two.tools == ["Calculate", "Search"]
    caps = two.capabilities
    assert caps.inner_thoughts and caps.calculator and caps.web_search and not caps.text_to_image
    assert ToolConversation.from_item(two.to_item()) == two  # what the runner's items carry
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"language": "en", "turns": [{"tools": [], "prompt": "hi"}]}\n')
    with pytest.raises(ValueError, match="no tool is needed or enabled"):
        load_tool_prompts(bad)
    # A turn that needs no tool must not pretend to call one; a follow-up carries the conversation so far.
    assert check_toolless_reply("Sure! Calculate(\"2+2\") gives 4.", caps) == "command_in_toolless_reply"
    assert check_toolless_reply("不客气，有问题随时问我。", caps) == ""
    first = Turn("24 乘以 12 是多少？", "24 乘以 12 等于 288。")
    assert in_context("平均分给 8 个班呢？", [first]).endswith("New question: 平均分给 8 个班呢？")
    assert "24 乘以 12 等于 288。" in in_context("平均分给 8 个班呢？", [first])
    # The thought names its tool and invents no number; a math follow-up works on the earlier result.
    assert check_thought("用户想知道 24 乘以 12 的结果，我用计算器计算。", two.turns[0]) == ""
    assert check_thought("用户想知道答案。", two.turns[0]) == "thought_misses_tool"
    assert check_thought("The user asks for 24 times 12, which is 349; I will calculate it.",
                         ToolPrompt("t", ["Calculate"], "en", "What is 24 times 12?")) == "thought_invents_numbers"
    follow = ToolPrompt("t", ["Calculate"], "zh", "再平均分给 8 个班呢？")
    examples = load_examples(REPO / "prompts" / "tool_examples.json")
    assert check_command(follow, {"Calculate": "288/8"}, examples, [first]) == ""
    assert check_command(follow, {"Calculate": "12*8"}, examples, [first]) == "command_ignores_context"
    fresh = ToolPrompt("t", ["Calculate"], "en", "What is 12 times 8?")  # a new question, not a follow-up
    assert check_command(fresh, {"Calculate": "12*8"}, examples, [first]) == ""
    assert check_thought("The user wants to know the address; I will add it.",
                         ToolPrompt("t", ["Search"], "en", "Where is the museum?")) == "thought_misses_tool"
    messages = thought_request(two.turns[0], "Write in {language_name}; tools: {tools}.", [])
    assert "Chinese" in messages[0]["content"] and messages[-1] == {"role": "assistant", "content": "用户"}


def test_generated_commands_are_checked_against_the_question():
    examples = load_examples(REPO / "prompts" / "tool_examples.json")
    calc = ToolPrompt("t", ["Calculate"], "en", "What is (12 / 2) * 3?")
    assert check_command(calc, {"Calculate": "(12/2)*3"}, examples) == ""
    assert check_command(calc, {"Calculate": "12/2"}, examples) == "command_misses_numbers"
    assert check_command(calc, {"Calculate": "(7+5)*3"}, examples) == "command_copies_example"
    assert check_command(calc, {"Calculate": " "}, examples) == "empty_command"
    solve = ToolPrompt("t", ["Solve"], "zh", "解方程组：2x + y = 7，x - y = 2。")
    assert check_command(solve, {"Solve": "2x + y = 7; x - y = 2"}, examples) == ""
    assert check_command(solve, {"Solve": "2*y+z=7;2*x-z=2"}, examples) == "command_invents_variables"
    mixed = ToolPrompt("t", ["Calculate", "Solve"], "en", "What is 18 times 4, and what x solves 2x + 6 = 20?")
    assert check_command(mixed, {"Calculate": "18*4", "Solve": "2*x+6=20"}, examples) == ""
    assert check_command(mixed, {"Calculate": "18*4", "Solve": "2*x=20"}, examples) == "command_misses_numbers"


def test_command_request_prefills_the_call_after_worked_examples():
    examples = load_examples(REPO / "prompts" / "tool_examples.json")
    p = ToolPrompt("t", ["Solve"], "zh", "求解方程 x^2 = 49。")
    messages = command_request(p, "Solve", "Call {tool}: {api}.", examples)
    assert messages[0]["role"] == "system" and "Solve(" in messages[0]["content"]
    assert messages[-2] == {"role": "user", "content": p.question}
    assert messages[-1] == {"role": "assistant", "content": 'Solve("'}  # the model continues from here
    shots = [m["content"] for m in messages[1:-2] if m["role"] == "user"]
    assert len(shots) == len(examples["Solve"]) and shots[-1] in {e.question for e in examples["Solve"] if e.language == "zh"}


def test_example_replies_are_checked_against_their_real_results(tmp_path):
    import json

    examples = load_examples(REPO / "prompts" / "tool_examples.json")
    assert examples["Calculate"][0].results == "Calculate(\"(7+5)*3\") => '36'"  # computed, not written by hand
    bad = {"Calculate": [{"language": "en", "question": "What is 2+2?", "argument": "2+2", "reply": "It is 5."}]}
    (tmp_path / "tool_examples.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="fails its own check"):
        load_examples(tmp_path / "tool_examples.json")


def test_generator_keeps_only_checked_traces(sample_run, tmp_path):
    """Tool questions as rollouts on the generation runner (in-process SmolLM2), through the dialogue stage's step."""
    import orjson

    from moss_data.dialogue.stage import DialogueRecipe, run_tool_traces
    from moss_data.llm.models import local_smollm2

    prompts = load_tool_prompts(REPO / "prompts" / "tool_seeds.jsonl")
    assert {t for p in prompts for t in p.tools} == {"Calculate", "Solve", "Search", "Text2Image"}
    assert {p.language for p in prompts} == {"en", "zh"}
    shapes = {tuple(tuple(t.tools) for t in p.turns) for p in prompts}
    assert any(len(s) > 1 for s in shapes) and ((),) in shapes and any(len(t) > 1 for s in shapes for t in s)
    # One conversation per shape and language, to keep the test short.
    chosen = list({(tuple(tuple(t.tools) for t in p.turns), p.language): p for p in prompts}.values())
    seeds = tmp_path / "tool_seeds.jsonl"
    seeds.write_bytes(b"".join(orjson.dumps({"language": p.language, "enabled": p.enabled, "turns": [
        {"tools": t.tools, "prompt": t.question} for t in p.turns]}) + b"\n" for p in chosen))
    picked = load_tool_prompts(seeds)
    images = [p for p in picked if "Text2Image" in {t for turn in p.turns for t in turn.tools}]
    recipe = DialogueRecipe(name="t", output_dir=tmp_path / "out", prompts_dir=REPO / "prompts", tool_traces={
        "prompts_file": str(seeds), "search_corpus": sample_run.output_dir / "clean", "attempts": 2,
        "sampling": {"max_new_tokens": 64, "temperature": 0.3, "repetition_penalty": 1.05}},
        generation={"assistant": {"model": str(local_smollm2(REPO / "data" / "models" / "smollm2-135m-instruct"))},
                    "max_concurrent": 16})
    store = ShardStore(tmp_path)
    run_tool_traces(recipe, store, {"model": "smollm2"})
    stats = orjson.loads((recipe.output_dir / "tool_trace_stats.json").read_bytes())
    index = SearchIndex.from_shards(sample_run.output_dir / "clean")
    generated = {p.trace_id for p in picked} - {p.trace_id for p in images}
    # No text-to-image model here: those conversations are not generated (a trace would teach a failing tool).
    assert images and stats["skipped:text_to_image_unavailable"] == len(images)
    assert store.done_ids() == generated  # every other conversation: kept or quarantined, none lost
    assert len(generated) <= sum(n for k, n in stats.items() if k.startswith("attempt_0:")) <= sum(
        len(p.turns) for p in picked if p.trace_id in generated)
    known = {"truncated_command", "empty_command", "command_copies_example", "command_misses_numbers",
             "command_invents_variables", "bad_command", "no_command", "disabled_tool_called",
             "results_differ_from_executor", "empty_reply", "tool_failed", "reply_inconsistent_with_result",
             "no_search_results", "truncated_reply", "wrong_language_reply", "repetitive_reply", "role_marker",
             "echo_reply", "command_in_toolless_reply", "empty_thought", "truncated_thought", "thought_misses_tool",
             "thought_invents_numbers", "command_ignores_context", "role_marker",
             "wrong_language_thought", "repetitive_thought"}
    for s in store.manifest["quarantine"]:
        assert set(pq.read_table(tmp_path / s["file"]).column("reason").to_pylist()) <= known
    kept = []
    for s in store.manifest["shards"]:
        for record in pq.read_table(tmp_path / s["file"]).column("moss_record").to_pylist():
            conv = Conversation.from_record(orjson.loads(record))
            for turn in conv.turns:
                assert check_trace(turn, conv.capabilities, ToolRegistry(conv.capabilities, index)) == "" \
                    if turn.commands else turn.inner_thoughts == turn.results == "None"
                if turn.commands:  # the model's own thought, begun in the conversation's language
                    assert turn.inner_thoughts.startswith("用户" if "-zh-" in conv.conversation_id else "The user")
            kept.append(conv)
    assert kept, "the small model should get at least one trace through (Calculate works in a trial)"
