"""Tool-use traces whose results come from really running the tools, each checked before it is kept.

Per question (``prompts/tool_seeds.jsonl``: one tool, or several for a mixed turn; English and Chinese):

1. Command: the model writes each call's argument. The request shows worked examples
   (``prompts/tool_examples.json``) and *prefills* ``Tool("`` so the model only has to write the argument up to the
   closing ``")`` (a stop string): a small model then keeps to the syntax, and the argument is still its own.
2. The registry executes the commands with only the question's tools enabled.
3. Reply: the model answers from the real results, again after worked examples whose results are computed at
   start-up by running their commands (an example whose reply disagrees with its result is an error, not a shot).

:func:`check_command` and :func:`check_trace` verify what the issue asks: the command parses; it is not an
example's argument copied; a math call keeps the question's numbers; only enabled tools were called; the Results
segment is exactly what the executors return when run again; the reply is consistent with the result (a
calculated or solved number appears in it, a text-to-image reply does not claim an image that was not made) and in
the question's language (the dialogue engine's output checks).
A failed trace is generated again with another seed, up to ``attempts`` times (rejection sampling), then goes to
quarantine with its last reason; counts per reason and attempt are written to ``tool_trace_stats.json``. Each
question is one rollout on the generation runner (:func:`tool_trace_rollout`): its calls of several tools are sent
together, the tools run in a worker thread, and it never waits for other questions.
The inner thought is a fixed sentence per tool (English, as in MOSS's released data), not generated.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson

from moss_data.text.langid import LanguageIdentifier
from moss_data.llm import SamplingParams
from moss_data.llm.checks import check_output
from moss_data.text.scripts import LANGUAGE_NAMES
from moss_data.formats import Capabilities, CommandSyntaxError, Conversation, Turn, parse_commands
from moss_data.tools.registry import ToolRegistry
from moss_data.tools.search import SearchIndex

TOOLS = ("Calculate", "Solve", "Search", "Text2Image")
CAPABILITY = {"Calculate": "calculator", "Solve": "equation_solver", "Search": "web_search",
              "Text2Image": "text_to_image"}
API = {"Calculate": 'Calculate("arithmetic expression")', "Solve": 'Solve("equation; equation")',
       "Search": 'Search("search words")', "Text2Image": 'Text2Image("picture description")'}
THOUGHT = {
    "Calculate": "The user asks for a calculation; I should use the calculator to get the exact value.",
    "Solve": "The user asks to solve an equation; I should use the equation solver.",
    "Search": "The user asks about something I should look up; I should search the web.",
    "Text2Image": "The user wants a picture; I should use the text-to-image tool.",
}
MATH_TOOLS = ("Calculate", "Solve")
STOP = ['")', '"\n']
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_VARIABLE = re.compile(r"(?<![A-Za-z])[a-zA-Z]\d?(?![A-Za-z(])")  # x, y1: the solver's variable names


@dataclass
class ToolPrompt:
    trace_id: str
    tools: list[str]
    language: str
    question: str

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(**{CAPABILITY[t]: True for t in self.tools})


@dataclass
class Example:
    language: str
    question: str
    argument: str
    reply: str | None = None
    results: str = ""  # filled by running the command (load_examples)


def load_tool_prompts(path: Path) -> list[ToolPrompt]:
    prompts = []
    for i, line in enumerate(path.read_bytes().splitlines()):
        if not line.strip():
            continue
        item = orjson.loads(line)
        tools = item.get("tools") or [item["tool"]]
        unknown = [t for t in tools if t not in TOOLS]
        if unknown:
            raise ValueError(f"{path}:{i + 1}: unknown tool {unknown}; tools are {', '.join(TOOLS)}")
        prompts.append(ToolPrompt(f"tool-{item['language']}-{'+'.join(tools).lower()}-{i:04d}", tools,
                                  item["language"], item["prompt"]))
    return prompts


def load_examples(path: Path) -> dict[str, list[Example]]:
    """The worked examples, with their results computed by the real executors and their replies checked."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    examples = {tool: [Example(**e) for e in raw.get(tool, [])] for tool in TOOLS}
    for tool, items in examples.items():
        registry = ToolRegistry(Capabilities(**{CAPABILITY[tool]: True}))
        for ex in items:
            if ex.reply is None:
                continue
            results = registry.execute(f'{tool}("{ex.argument}")')
            ex.results = results.text
            turn = Turn(ex.question, ex.reply, THOUGHT[tool], parse_commands(f'{tool}("{ex.argument}")'), results.text)
            reason = check_trace(turn, Capabilities(**{CAPABILITY[tool]: True}), registry)
            if reason:
                raise ValueError(f"{path}: the {tool} example {ex.question!r} fails its own check ({reason}); "
                                 f"its command returns {results.text!r}: fix the example's reply")
    return examples


def numbers(text: str) -> set[float]:
    text = unicodedata.normalize("NFKC", text).replace(",", "")
    return {round(float(n), 6) for n in _NUMBER.findall(text)}


def shots(examples: list[Example], language: str) -> list[Example]:
    """Same-language examples first (the last shot sits next to the question), then the others."""
    return [e for e in examples if e.language != language] + [e for e in examples if e.language == language]


def command_request(p: ToolPrompt, tool: str, template: str, examples: dict[str, list[Example]]) -> list[dict]:
    messages = [{"role": "system", "content": template.format(tool=tool, api=API[tool])}]
    for ex in shots(examples[tool], p.language):
        messages += [{"role": "user", "content": ex.question}, {"role": "assistant", "content": f'{tool}("{ex.argument}")'}]
    return messages + [{"role": "user", "content": p.question}, {"role": "assistant", "content": f'{tool}("'}]


def reply_request(p: ToolPrompt, results: str, template: str, examples: dict[str, list[Example]]) -> list[dict]:
    messages = [{"role": "system", "content": template.format(language_name=LANGUAGE_NAMES[p.language])}]
    with_replies = [e for t in p.tools for e in examples[t] if e.reply and e.language == p.language]
    for ex in with_replies:
        messages += [{"role": "user", "content": f"Question: {ex.question}\nResults:\n{ex.results}"},
                     {"role": "assistant", "content": ex.reply}]
    return messages + [{"role": "user", "content": f"Question: {p.question}\nResults:\n{results}"}]


def check_command(p: ToolPrompt, arguments: dict[str, str], examples: dict[str, list[Example]]) -> str:
    """'' if the generated arguments are usable, else the reason."""
    for tool, argument in arguments.items():
        if not argument.strip():
            return "empty_command"
        if any(argument.strip() == ex.argument for ex in examples[tool]):
            return "command_copies_example"
    if all(t in MATH_TOOLS for t in p.tools):
        # Every number of the question must reach the calls ("What is (12/2)*3?" answered with Calculate("12/2")
        # is wrong however well the reply reads). Mixed turns with search carry numbers for one tool only.
        if not numbers(p.question) <= set().union(*(numbers(a) for a in arguments.values())):
            return "command_misses_numbers"
    if "Solve" in arguments and not set(_VARIABLE.findall(arguments["Solve"])) <= set(_VARIABLE.findall(p.question)):
        return "command_invents_variables"  # a variable the question never names: the system was mistranscribed
    return ""


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
        if call.command.name in MATH_TOOLS:
            if not call.ok:
                return "tool_failed"
            expected = numbers(call.output.replace("'", "").replace("x =", " ").replace("=", " "))
            if not expected & numbers(turn.moss):
                return "reply_inconsistent_with_result"
        if call.command.name == "Search" and not call.ok:
            return "no_search_results"
        if call.command.name == "Text2Image" and not call.ok:
            if re.search(r"here is (the|your) (image|picture)|已生成|生成了", turn.moss, re.IGNORECASE):
                return "reply_claims_missing_image"
    return ""


def tool_context(prompts_dir: str, search_corpus: str | None, sampling: dict, attempts: int) -> dict:
    """What every tool-trace rollout of a task shares (built once per task): templates, checked examples, the
    offline search index."""
    from loguru import logger

    prompts_dir = Path(prompts_dir)
    index = None
    if search_corpus is not None and Path(search_corpus).exists():
        index = SearchIndex.from_shards(Path(search_corpus))
    else:
        logger.warning(f"tool traces: no search corpus at {search_corpus} (run `just demo`); Search finds nothing")
    return {"command_template": (prompts_dir / "tool_command.txt").read_text(encoding="utf-8"),
            "reply_template": (prompts_dir / "tool_reply.txt").read_text(encoding="utf-8"),
            "examples": load_examples(prompts_dir / "tool_examples.json"), "search_index": index,
            "params": SamplingParams(**sampling), "attempts": attempts, "router": LanguageIdentifier()}


async def tool_trace_rollout(item: dict, llm, *, command_template: str, reply_template: str, examples: dict,
                             search_index: SearchIndex | None, params: SamplingParams, attempts: int,
                             router: LanguageIdentifier) -> dict:
    """One tool question, tried up to ``attempts`` times (new seeds each): kept with its turn (a MOSS record), or
    quarantined with the last reason. The tools run in a worker thread (they have their own time limits)."""
    import asyncio

    p = ToolPrompt(**item)
    tries: list[str] = []
    usage: Counter = Counter()
    reason, raw = "", ""
    for attempt in range(attempts):
        attempt_params = params.model_copy(update={"seed": params.seed + 1000 * attempt, "stop": STOP})
        commands = await asyncio.gather(*(llm.chat(command_request(p, tool, command_template, examples),
                                                   attempt_params) for tool in p.tools))
        for gen in commands:
            usage["completion_tokens"] += gen.completion_tokens
        truncated = [(t, g) for t, g in zip(p.tools, commands) if g.finish_reason != "stop"]
        arguments = {tool: gen.text.strip() for tool, gen in zip(p.tools, commands)}
        command_text = ", ".join(f'{t}("{a}")' for t, a in arguments.items())
        if truncated:
            tool, gen = truncated[0]
            reason, raw = "truncated_command", f'{tool}("{gen.text or gen.error}'
        elif reason := check_command(p, arguments, examples):
            raw = command_text
        else:
            registry = ToolRegistry(p.capabilities, search_index)
            try:
                parsed, results = await asyncio.to_thread(lambda: (parse_commands(command_text),
                                                                   registry.execute(command_text)))
            except CommandSyntaxError as e:
                reason, raw = "bad_command", f"{e}: {command_text}"
            else:
                gen = await llm.chat(reply_request(p, results.text, reply_template, examples),
                                     attempt_params.model_copy(update={"stop": []}))
                usage["completion_tokens"] += gen.completion_tokens
                turn = Turn(p.question, gen.text.strip(), " ".join(THOUGHT[t] for t in p.tools), parsed, results.text)
                reason = check_output(gen, "reply", p.language, router) or await asyncio.to_thread(
                    check_trace, turn, p.capabilities, registry)
                raw = turn.serialize()
                if not reason:
                    tries.append("kept")
                    conversation = Conversation(p.trace_id, "tool", [turn], p.capabilities)
                    return {"status": "kept", "record": conversation.to_record(), "tries": tries,
                            "usage": dict(usage)}
        tries.append(reason)
    return {"status": "quarantine", "reason": reason, "raw": raw, "tries": tries, "usage": dict(usage)}
