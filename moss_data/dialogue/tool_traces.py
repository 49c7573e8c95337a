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
quarantine with its last reason; counts per reason and attempt are written to ``tool_trace_stats.json``.
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
from moss_data.llm import Backend, SamplingParams
from moss_data.llm.checks import check_output
from moss_data.text.scripts import LANGUAGE_NAMES
from moss_data.io.conversations import ShardStore
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


class ToolTraceGenerator:
    def __init__(self, backend: Backend, prompts_dir: Path, search_index: SearchIndex | None,
                 params: SamplingParams, attempts: int = 3):
        self.backend = backend
        self.search_index = search_index
        self.params = params
        self.attempts = attempts
        self.command_template = (prompts_dir / "tool_command.txt").read_text(encoding="utf-8")
        self.reply_template = (prompts_dir / "tool_reply.txt").read_text(encoding="utf-8")
        self.examples = load_examples(prompts_dir / "tool_examples.json")
        self.stats: Counter = Counter()
        self.router = LanguageIdentifier()

    def run(self, prompts: list[ToolPrompt], store: ShardStore, provenance: dict) -> Counter:
        done = store.done_ids()
        pending = [p for p in prompts if p.trace_id not in done]
        for attempt in range(self.attempts):
            if not pending:
                break
            outcomes = self.attempt(pending, attempt)
            retry = []
            for p, (reason, raw, turn) in zip(pending, outcomes):
                self.stats[f"attempt_{attempt}:{reason or 'kept'}"] += 1
                prov = provenance | {"tools": p.tools, "attempts": attempt + 1}
                if not reason:
                    store.add_conversation(Conversation(p.trace_id, "tool", [turn], p.capabilities), p.language, prov)
                elif attempt + 1 == self.attempts:
                    store.quarantine_output(p.trace_id, "tool", reason, raw, prov)
                else:
                    retry.append(p)
            store.flush()
            pending = retry
        return self.stats

    def attempt(self, prompts: list[ToolPrompt], attempt: int) -> list[tuple[str, str, Turn | None]]:
        """One try at each prompt: (reason or '', raw text for quarantine, the turn when kept)."""
        params = self.params.model_copy(update={"seed": self.params.seed + 1000 * attempt, "stop": STOP})
        pairs = [(p, tool) for p in prompts for tool in p.tools]
        gens = self.backend.chat([command_request(p, t, self.command_template, self.examples) for p, t in pairs], params)
        arguments: dict[str, dict[str, str]] = {p.trace_id: {} for p in prompts}
        failed: dict[str, tuple[str, str]] = {}
        for (p, tool), gen in zip(pairs, gens):
            if gen.finish_reason != "stop":
                failed.setdefault(p.trace_id, ("truncated_command", f'{tool}("{gen.text or gen.error}'))
            arguments[p.trace_id][tool] = gen.text.strip()
        staged = []
        for p in prompts:
            if p.trace_id in failed:
                continue
            command_text = ", ".join(f'{t}("{a}")' for t, a in arguments[p.trace_id].items())
            reason = check_command(p, arguments[p.trace_id], self.examples)
            if reason:
                failed[p.trace_id] = (reason, command_text)
                continue
            registry = ToolRegistry(p.capabilities, self.search_index)
            try:
                commands, results = parse_commands(command_text), registry.execute(command_text)
            except CommandSyntaxError as e:
                failed[p.trace_id] = ("bad_command", f"{e}: {command_text}")
                continue
            staged.append((p, registry, commands, results))
        replies = self.backend.chat(
            [reply_request(p, res.text, self.reply_template, self.examples) for p, _, _, res in staged],
            params.model_copy(update={"stop": []}),
        ) if staged else []
        kept: dict[str, tuple[str, str, Turn | None]] = {}
        for (p, registry, commands, results), gen in zip(staged, replies):
            thought = " ".join(THOUGHT[t] for t in p.tools)
            turn = Turn(p.question, gen.text.strip(), thought, commands, results.text)
            reason = check_output(gen, "reply", p.language, self.router) or check_trace(turn, p.capabilities, registry)
            kept[p.trace_id] = (reason, turn.serialize(), None if reason else turn)
        return [kept.get(p.trace_id) or (*failed[p.trace_id], None) for p in prompts]
