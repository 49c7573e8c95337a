"""Trace checks on traces built with the real executors, and the trace generator end to end with the small model."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from moss_data.dialogue.backends import SamplingParams, TransformersBackend
from moss_data.dialogue.shards import ShardStore
from moss_data.dialogue.tool_traces import check_trace, extract_command, generate_tool_traces, load_tool_prompts
from moss_data.formats import Capabilities, Command, CommandSyntaxError, Conversation, Turn, parse_commands
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


def test_extract_command_from_model_prose():
    assert extract_command('Sure! ```Calculate("2*3")``` done', "Calculate") == 'Calculate("2*3")'
    with pytest.raises(CommandSyntaxError):
        extract_command("Calculate(2*3)", "Calculate")


def test_generator_keeps_only_checked_traces(sample_run, tmp_path):
    from moss_data.dialogue.models import local_smollm2

    backend = TransformersBackend(local_smollm2(REPO / "data" / "models" / "smollm2-135m-instruct"))
    prompts = load_tool_prompts(REPO / "prompts" / "tool_seeds.jsonl")
    assert {p.tool for p in prompts} == {"Calculate", "Solve", "Search", "Text2Image"}
    assert {p.language for p in prompts} == {"en", "zh"}
    store = ShardStore(tmp_path)
    index = SearchIndex.from_shards(sample_run.output_dir / "clean")
    generate_tool_traces(backend, prompts, store, REPO / "prompts", index,
                         SamplingParams(max_new_tokens=64, temperature=0.3), {"model": backend.name})
    assert store.done_ids() == {p.trace_id for p in prompts}  # every prompt: kept or quarantined, none lost
    known = {"bad_command", "truncated_reply", "no_command", "disabled_tool_called", "results_differ_from_executor",
             "empty_reply", "tool_failed", "reply_inconsistent_with_result", "no_search_results",
             "reply_claims_missing_image"}
    for s in store.manifest["quarantine"]:
        assert set(pq.read_table(tmp_path / s["file"]).column("reason").to_pylist()) <= known
    for s in store.manifest["shards"]:
        import orjson

        for record in pq.read_table(tmp_path / s["file"]).column("moss_record").to_pylist():
            conv = Conversation.from_record(orjson.loads(record))
            assert check_trace(conv.turns[0], conv.capabilities, ToolRegistry(conv.capabilities, index)) == ""
