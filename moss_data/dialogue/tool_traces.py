"""Tool-use traces whose results come from really running the tools, each checked before it is kept.

Per prompt (``prompts/tool_seeds.jsonl``: one tool each, English and Chinese): the model writes the command
(``prompts/tool_command.txt``), the registry executes it with only that tool enabled, and the model writes the
reply from the results (``prompts/tool_reply.txt``). :func:`check_trace` then verifies what the issue asks: the
command parses, only enabled tools were called, the Results segment is exactly what the executors return when run
again, and the reply is consistent with the result (a calculated or solved number appears in it; a search found
something; a text-to-image reply does not claim an image that was not made). The inner thought is a fixed
sentence naming the tool for now, not generated. Failures go to quarantine with the
reason; nothing unchecked reaches the shards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import orjson

from moss_data.dialogue.backends import Backend, SamplingParams
from moss_data.dialogue.selfinstruct import LANGUAGE_NAMES
from moss_data.dialogue.shards import ShardStore
from moss_data.formats import Capabilities, CommandSyntaxError, Conversation, Turn, parse_commands
from moss_data.tools.registry import ToolRegistry
from moss_data.tools.search import SearchIndex

CAPABILITY = {"Calculate": "calculator", "Solve": "equation_solver", "Search": "web_search",
              "Text2Image": "text_to_image"}
API = {"Calculate": "Calculate(expression)", "Solve": "Solve(equation)", "Search": "Search(query)",
       "Text2Image": "Text2Image(description)"}
EXAMPLE = {"Calculate": 'Calculate("(12/2)*3")', "Solve": 'Solve("x+y=5;x-y=1")', "Search": 'Search("query words")',
           "Text2Image": 'Text2Image("a short description")'}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class ToolPrompt:
    trace_id: str
    tool: str
    language: str
    question: str


def load_tool_prompts(path: Path) -> list[ToolPrompt]:
    items = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [ToolPrompt(f"tool-{it['language']}-{it['tool'].lower()}-{i:04d}", it["tool"], it["language"], it["prompt"])
            for i, it in enumerate(items)]


def extract_command(text: str, tool: str) -> str:
    """The first ``Tool("...")`` call in the model's text (models wrap it in prose or code fences)."""
    m = re.search(rf'{tool}\(\s*"(?:[^"\\]|\\.)*"\s*\)', text)
    if not m:
        raise CommandSyntaxError(f"no {tool}(\"...\") call in the model's output")
    return m.group(0)


def _numbers(text: str) -> set[float]:
    return {round(float(n), 6) for n in _NUMBER.findall(text.replace(",", ""))}


def check_trace(turn: Turn, caps: Capabilities, registry: ToolRegistry) -> str:
    """'' if the trace is sound, else the reason."""
    if not turn.commands:
        return "no_command"
    if any(c.name not in caps.enabled_commands() for c in turn.commands):
        return "disabled_tool_called"
    again = registry.execute(", ".join(c.render() for c in turn.commands))
    if again.text != turn.results:
        return "results_differ_from_executor"
    if not turn.moss.strip():
        return "empty_reply"
    for call in again.calls:
        if call.command.name in ("Calculate", "Solve"):
            if not call.ok:
                return "tool_failed"
            expected = _numbers(call.output.replace("'", "").replace("x =", " ").replace("=", " "))
            if not expected & _numbers(turn.moss):
                return "reply_inconsistent_with_result"
        if call.command.name == "Search" and not call.ok:
            return "no_search_results"
        if call.command.name == "Text2Image" and not call.ok:
            if re.search(r"here is (the|your) (image|picture)|已生成|生成了", turn.moss, re.IGNORECASE):
                return "reply_claims_missing_image"
    return ""


def generate_tool_traces(
    backend: Backend,
    prompts: list[ToolPrompt],
    store: ShardStore,
    prompts_dir: Path,
    search_index: SearchIndex | None,
    params: SamplingParams,
    provenance: dict,
) -> None:
    done = store.done_ids()
    todo = [p for p in prompts if p.trace_id not in done]
    if not todo:
        return
    command_tpl = (prompts_dir / "tool_command.txt").read_text(encoding="utf-8")
    reply_tpl = (prompts_dir / "tool_reply.txt").read_text(encoding="utf-8")
    requests = [[{"role": "user", "content": command_tpl.format(tool=p.tool, api=API[p.tool], question=p.question,
                                                                example=EXAMPLE[p.tool])}] for p in todo]
    staged = []
    for p, gen in zip(todo, backend.chat(requests, params)):
        caps = Capabilities(**{CAPABILITY[p.tool]: True})
        registry = ToolRegistry(caps, search_index)
        try:
            command_text = extract_command(gen.text, p.tool)
            commands = parse_commands(command_text)
            results = registry.execute(command_text)
        except CommandSyntaxError as e:
            _quarantine(store, p, "bad_command", f"{e}: {gen.text}", provenance)
            continue
        staged.append((p, caps, registry, commands, results))
    replies = backend.chat(
        [[{"role": "user", "content": reply_tpl.format(question=p.question, results=res.text,
                                                        language_name=LANGUAGE_NAMES[p.language])}]
         for p, _, _, _, res in staged],
        params,
    ) if staged else []
    for (p, caps, registry, commands, results), gen in zip(staged, replies):
        thought = f"The user asks a question that needs the {p.tool} tool."
        turn = Turn(p.question, gen.text.strip(), thought, commands, results.text)
        reason = "truncated_reply" if gen.finish_reason != "stop" else check_trace(turn, caps, registry)
        if reason:
            _quarantine(store, p, reason, f"{turn.serialize()}", provenance)
            continue
        store.add_conversation(Conversation(p.trace_id, "tool", [turn], caps), p.language, provenance | {"tool": p.tool})
    store.flush()


def _quarantine(store: ShardStore, p: ToolPrompt, reason: str, raw: str, provenance: dict) -> None:
    store.quarantine_output(p.trace_id, "tool", reason, raw, provenance | {"tool": p.tool})
