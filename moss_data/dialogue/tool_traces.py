"""Tool-use conversations whose results come from really running the tools, each turn checked before it is kept.

A seed (``prompts/tool_seeds.jsonl``) is a conversation of one or more turns, English or Chinese::

    {"language": "en", "tool": "Calculate", "prompt": "..."}                      one turn, one tool
    {"language": "en", "tools": ["Calculate", "Solve"], "prompt": "..."}           one turn, several tools
    {"language": "zh", "enabled": ["Search"], "turns": [{"tools": ["Calculate"], "prompt": "..."},
                                                       {"tools": [], "prompt": "..."}]}

``enabled`` adds tools to the meta instruction that no turn needs; a turn whose ``tools`` is empty is answered
without a tool (Inner Thoughts, Commands and Results ``None``, as MOSS writes a turn that needs none), so the model
also learns when *not* to call. Per tool turn:

1. Inner thought: the model writes one sentence in the conversation's language (what the user wants, which tool),
   started with a short opener in that language (``The user`` / ``用户``) and checked like any output.
2. Command: the model writes each call's argument. The request shows worked examples
   (``prompts/tool_examples.json``) and *prefills* ``Tool("`` so the model only has to write the argument up to the
   closing ``")`` (a stop string): a small model then keeps to the syntax, and the argument is still its own.
3. The registry executes the commands with only the conversation's tools enabled.
4. Reply: the model answers from the real results, again after worked examples whose results are computed at
   start-up by running their commands (an example whose reply disagrees with its result is an error, not a shot).
Later turns see the conversation so far, so a follow-up ("and that divided by 7?") is answered in context.

:func:`check_command` and :func:`check_trace` verify: the command parses; it is not an example's argument copied; a
math call keeps the question's numbers; only enabled tools were called; the Results segment is exactly what the
executors return when run again; every call succeeded; the reply is consistent with the result (a calculated or
solved number appears in it) and in the question's language (the dialogue engine's output checks). A turn that
needs no tool must not write a command into its reply. Text2Image turns are planned only where the text-to-image
tool really makes images (a local diffusers model on a GPU); elsewhere they are not generated and are counted
(``skipped:text_to_image_unavailable``), so no trace teaches that the tool fails.
A failed turn is generated again with another seed, up to ``attempts`` times (rejection sampling), then the
conversation goes to quarantine with its last reason; counts per reason and attempt are written to
``tool_trace_stats.json``. Each conversation is one rollout on the generation runner (:func:`tool_trace_rollout`):
its calls of several tools are sent together, the tools run in a worker thread, and it never waits for others.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from moss_data.text.langid import LanguageIdentifier
from moss_data.llm import SamplingParams
from moss_data.llm.checks import check_output
from moss_data.text.scripts import LANGUAGE_NAMES
from moss_data.formats import (Capabilities, CommandSyntaxError, Conversation, Turn, meta_instruction,
                               neutralize_markers, parse_commands)
from moss_data.tools.registry import ToolRegistry
from moss_data.tools.search import SearchIndex
from moss_data.tools.text_to_image import TextToImage

TOOLS = ("Calculate", "Solve", "Search", "Text2Image")
CAPABILITY = {"Calculate": "calculator", "Solve": "equation_solver", "Search": "web_search",
              "Text2Image": "text_to_image"}
API = {"Calculate": 'Calculate("arithmetic expression")', "Solve": 'Solve("equation; equation")',
       "Search": 'Search("search words")', "Text2Image": 'Text2Image("picture description")'}
# The inner thought is the model's, in the conversation's language; it starts from this opener (a small model then
# writes a thought, not an answer) and ends at the first sentence end.
THOUGHT_OPENER = {"en": "The user", "zh": "用户"}
THOUGHT_END = {"en": ".", "zh": "。"}
THOUGHT_STOP = [". ", ".\n", "。", "\n"]
TOOL_WORDS = {  # a thought names what it will do: one of these for a tool of its turn (whole words; Chinese terms)
    "Calculate": r"\b(?:calculat\w*|comput\w*|arithmetic|multipl\w*|divid\w*|add|adding|subtract\w*|exponent\w*|powers?)\b"
                 r"|计算|乘以|除以|相乘|相除|相加|相减|算出|算一下",
    "Solve": r"\b(?:solv\w*|equations?|unknowns?|variables?)\b|求解|解方程|方程",
    "Search": r"\b(?:search\w*|look(?:ing)? (?:it |this |that )?up|web)\b|搜索|查找|查询|检索|上网",
    "Text2Image": r"\b(?:image|picture|draw\w*|paint\w*)\b|图片|图像|画",
}
# A follow-up that refers back to an earlier answer ("and that divided by 7?", "再平均分给 8 个班").
REFERS_BACK = re.compile(r"\b(?:that|it|this|those|these|the result|the answer|the total)\b|那|这|结果|再|上面",
                         re.IGNORECASE)
MATH_TOOLS = ("Calculate", "Solve")
STOP = ['")', '"\n']
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_VARIABLE = re.compile(r"(?<![A-Za-z])[a-zA-Z]\d?(?![A-Za-z(])")  # x, y1: the solver's variable names


@dataclass
class ToolPrompt:
    """One turn's question and the tools it needs (none: a turn answered without tools)."""
    trace_id: str
    tools: list[str]
    language: str
    question: str


@dataclass
class ToolConversation:
    trace_id: str
    language: str
    turns: list[ToolPrompt]
    enabled: list[str] = field(default_factory=list)  # tools in the meta instruction that no turn needs

    @property
    def tools(self) -> list[str]:
        """Every tool the meta instruction enables (the turns' and the extra ones), in a fixed order."""
        wanted = set(self.enabled).union(*(t.tools for t in self.turns))
        return [t for t in TOOLS if t in wanted]

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(inner_thoughts=True, **{CAPABILITY[t]: True for t in self.tools})

    def to_item(self) -> dict:
        return {"trace_id": self.trace_id, "language": self.language, "enabled": self.enabled,
                "turns": [{"tools": t.tools, "question": t.question} for t in self.turns]}

    @classmethod
    def from_item(cls, item: dict) -> "ToolConversation":
        turns = [ToolPrompt(item["trace_id"], t["tools"], item["language"], t["question"]) for t in item["turns"]]
        return cls(item["trace_id"], item["language"], turns, item.get("enabled", []))


@dataclass
class Example:
    language: str
    question: str
    argument: str
    reply: str | None = None
    thought: str | None = None  # the inner thought before the call (the thought step's shots)
    results: str = ""  # filled by running the command (load_examples)


def load_tool_prompts(path: Path) -> list[ToolConversation]:
    conversations = []
    for i, line in enumerate(path.read_bytes().splitlines()):
        if not line.strip():
            continue
        item = orjson.loads(line)
        raw_turns = item.get("turns") or [{"tools": item.get("tools") or [item["tool"]], "prompt": item["prompt"]}]
        named = [t for turn in raw_turns for t in turn["tools"]] + item.get("enabled", [])
        unknown = [t for t in named if t not in TOOLS]
        if unknown:
            raise ValueError(f"{path}:{i + 1}: unknown tool {unknown}; tools are {', '.join(TOOLS)}")
        if not named:
            raise ValueError(f"{path}:{i + 1}: no tool is needed or enabled; a tool conversation enables one at least")
        needed = [t for turn in raw_turns for t in turn["tools"]]
        shape = "+".join(dict.fromkeys(needed)).lower() or "none"
        trace_id = f"tool-{item['language']}-{shape}-{len(raw_turns)}t-{i:04d}"
        turns = [ToolPrompt(trace_id, turn["tools"], item["language"], turn["prompt"]) for turn in raw_turns]
        conversations.append(ToolConversation(trace_id, item["language"], turns, item.get("enabled", [])))
    return conversations


def load_examples(path: Path) -> dict[str, list[Example]]:
    """The worked examples, with their results computed by the real executors and their replies checked."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    examples = {tool: [Example(**e) for e in raw.get(tool, [])] for tool in TOOLS}
    for tool, items in examples.items():
        registry = ToolRegistry(Capabilities(**{CAPABILITY[tool]: True}))
        for ex in items:
            if ex.thought is not None and (reason := check_thought(ex.thought, ToolPrompt("", [tool], ex.language,
                                                                                          ex.question))):
                raise ValueError(f"{path}: the {tool} example {ex.question!r} has a thought that fails its own "
                                 f"check ({reason}): fix the example's thought")
            if ex.reply is None:
                continue
            results = registry.execute(f'{tool}("{ex.argument}")')
            ex.results = results.text
            turn = Turn(ex.question, ex.reply, "None", parse_commands(f'{tool}("{ex.argument}")'), results.text)
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


def in_context(question: str, history: list[Turn]) -> str:
    """A follow-up question with the conversation so far in front (earlier results stay out: MOSS may replace them
    with ``None`` in history, and the replies carry what matters)."""
    if not history:
        return question
    lines = [line for t in history for line in (f"User: {t.human}", f"Assistant: {t.moss}")]
    return "Conversation so far:\n" + "\n".join(lines) + f"\n\nNew question: {question}"


def thought_request(p: ToolPrompt, template: str, history: list[Turn],
                    examples: dict[str, list[Example]] | None = None) -> list[dict]:
    """The inner thought's request: the tools named, worked examples of the turn's tools in the conversation's
    language, the opener prefilled in that language."""
    system = template.format(language_name=LANGUAGE_NAMES[p.language], tools=", ".join(API[t] for t in p.tools))
    messages = [{"role": "system", "content": system}]
    for ex in (e for t in p.tools for e in (examples or {}).get(t, []) if e.thought and e.language == p.language):
        messages += [{"role": "user", "content": ex.question}, {"role": "assistant", "content": ex.thought}]
    return messages + [{"role": "user", "content": in_context(p.question, history)},
                       {"role": "assistant", "content": THOUGHT_OPENER[p.language]}]


def command_request(p: ToolPrompt, tool: str, template: str, examples: dict[str, list[Example]],
                    history: list[Turn] = ()) -> list[dict]:
    messages = [{"role": "system", "content": template.format(tool=tool, api=API[tool])}]
    for ex in shots(examples[tool], p.language):
        messages += [{"role": "user", "content": ex.question}, {"role": "assistant", "content": f'{tool}("{ex.argument}")'}]
    return messages + [{"role": "user", "content": in_context(p.question, list(history))},
                       {"role": "assistant", "content": f'{tool}("'}]


def reply_request(p: ToolPrompt, results: str, template: str, examples: dict[str, list[Example]],
                  history: list[Turn] = ()) -> list[dict]:
    messages = [{"role": "system", "content": template.format(language_name=LANGUAGE_NAMES[p.language])}]
    with_replies = [e for t in p.tools for e in examples[t] if e.reply and e.language == p.language]
    for ex in with_replies:
        messages += [{"role": "user", "content": f"Question: {ex.question}\nResults:\n{ex.results}"},
                     {"role": "assistant", "content": ex.reply}]
    question = in_context(p.question, list(history))
    return messages + [{"role": "user", "content": f"Question: {question}\nResults:\n{results}"}]


def check_thought(thought: str, p: ToolPrompt, history: list[Turn] = ()) -> str:
    """'' if the inner thought is usable: it names what it will do with one of the turn's tools, and states no
    number that the question and the conversation so far do not hold (it comes before any result)."""
    if not any(re.search(TOOL_WORDS[t], thought, re.IGNORECASE) for t in p.tools):
        return "thought_misses_tool"
    known = numbers(p.question).union(*(numbers(f"{t.human} {t.moss} {t.results}") for t in history))
    if numbers(thought) - known:
        return "thought_invents_numbers"
    return ""


def found_numbers(turn: Turn) -> set[float]:
    """Numbers a turn found: its tools' outputs and its reply's numbers that its question did not give."""
    outputs = " ".join(line.split("=>", 1)[1] for line in turn.results.splitlines() if "=>" in line)
    return numbers(outputs) | (numbers(turn.moss) - numbers(turn.human))


def check_command(p: ToolPrompt, arguments: dict[str, str], examples: dict[str, list[Example]],
                  history: list[Turn] = ()) -> str:
    """'' if the generated arguments are usable, else the reason."""
    for tool, argument in arguments.items():
        if not argument.strip():
            return "empty_command"
        if any(argument.strip() == ex.argument for ex in examples[tool]):
            return "command_copies_example"
    if all(t in MATH_TOOLS for t in p.tools):
        # Every number of the question must reach the calls ("What is (12/2)*3?" answered with Calculate("12/2")
        # is wrong however well the reply reads). Mixed turns with search carry numbers for one tool only.
        used = set().union(*(numbers(a) for a in arguments.values()))
        if not numbers(p.question) <= used:
            return "command_misses_numbers"
        # A math follow-up that refers back ("and that divided by 7?") works on an earlier answer: a number an
        # earlier turn found (not one its question gave) must reach the call, or it answered another question.
        earlier = set().union(*(found_numbers(t) for t in history)) - numbers(p.question)
        if history and earlier and REFERS_BACK.search(p.question) and not used & earlier:
            return "command_ignores_context"
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
            return "tool_failed"  # traces teach a working tool; where it cannot run, none are made
    return ""


def check_toolless_reply(reply: str, caps: Capabilities) -> str:
    """A turn that needs no tool: its reply must not pretend to call one."""
    if re.search(r"\b(?:%s)\(" % "|".join(caps.enabled_commands() or TOOLS), reply):
        return "command_in_toolless_reply"
    return ""


def tool_context(prompts_dir: str, search_corpus: str | None, sampling: dict, attempts: int,
                 text_to_image_model: str | None = None) -> dict:
    """What every tool-trace rollout of a task shares (built once per task): templates, checked examples, the
    offline search index, the text-to-image tool."""
    from loguru import logger

    prompts_dir = Path(prompts_dir)
    index = None
    if search_corpus is not None and Path(search_corpus).exists():
        index = SearchIndex.from_shards(Path(search_corpus))
    else:
        logger.warning(f"tool traces: no search corpus at {search_corpus} (run `just demo`); Search finds nothing")
    return {"command_template": (prompts_dir / "tool_command.txt").read_text(encoding="utf-8"),
            "reply_template": (prompts_dir / "tool_reply.txt").read_text(encoding="utf-8"),
            "thought_template": (prompts_dir / "tool_thought.txt").read_text(encoding="utf-8"),
            "examples": load_examples(prompts_dir / "tool_examples.json"), "search_index": index,
            "text_to_image": TextToImage(Path(text_to_image_model) if text_to_image_model else None),
            "params": SamplingParams(**sampling), "attempts": attempts, "router": LanguageIdentifier()}


class TurnFailed(Exception):
    def __init__(self, reason: str, raw: str):
        self.reason, self.raw = reason, raw


def _count(usage: Counter, gen) -> None:
    usage["requests"] += 1
    usage["completion_tokens"] += gen.completion_tokens


async def tool_turn(p: ToolPrompt, conv: ToolConversation, history: list[Turn], llm, params: SamplingParams,
                    ctx: dict, usage: Counter) -> Turn:
    """One tool turn: thought, commands (sent together), the tools run in a worker thread, the reply; checked."""
    import asyncio

    gen = await llm.chat(thought_request(p, ctx["thought_template"], history, ctx["examples"]),
                         params.model_copy(update={"stop": THOUGHT_STOP, "max_new_tokens": 64}))
    _count(usage, gen)
    thought = f"{THOUGHT_OPENER[p.language]}{gen.text.rstrip().rstrip('.。:：,，')}{THOUGHT_END[p.language]}"
    if reason := check_output(type(gen)(thought, gen.finish_reason, error=gen.error), "thought", p.language,
                              ctx["router"]) or check_thought(thought, p, history):
        raise TurnFailed(reason, thought)
    command_params = params.model_copy(update={"stop": STOP})
    commands = await asyncio.gather(*(llm.chat(command_request(p, tool, ctx["command_template"], ctx["examples"],
                                                               history), command_params) for tool in p.tools))
    for gen in commands:
        _count(usage, gen)
    truncated = [(t, g) for t, g in zip(p.tools, commands) if g.finish_reason != "stop"]
    if truncated:
        tool, gen = truncated[0]
        raise TurnFailed("truncated_command", f'{tool}("{gen.text or gen.error}')
    # the model's arguments go back into Commands and later prompts: no format marker may pass through
    arguments = {tool: neutralize_markers(gen.text.strip()) for tool, gen in zip(p.tools, commands)}
    command_text = ", ".join(f'{t}("{a}")' for t, a in arguments.items())
    if reason := check_command(p, arguments, ctx["examples"], history):
        raise TurnFailed(reason, command_text)
    registry = ToolRegistry(conv.capabilities, ctx["search_index"], text_to_image=ctx["text_to_image"])
    try:
        parsed, results = await asyncio.to_thread(lambda: (parse_commands(command_text),
                                                           registry.execute(command_text)))
    except CommandSyntaxError as e:
        raise TurnFailed("bad_command", f"{e}: {command_text}") from None
    gen = await llm.chat(reply_request(p, results.text, ctx["reply_template"], ctx["examples"], history),
                         params.model_copy(update={"stop": []}))
    _count(usage, gen)
    turn = Turn(p.question, gen.text.strip(), thought, parsed, results.text)
    reason = check_output(gen, "reply", p.language, ctx["router"]) or await asyncio.to_thread(
        check_trace, turn, conv.capabilities, registry)
    if reason:
        raise TurnFailed(reason, turn.serialize())
    return turn


async def toolless_turn(p: ToolPrompt, conv: ToolConversation, history: list[Turn], llm, params: SamplingParams,
                        ctx: dict, usage: Counter) -> Turn:
    """A turn that needs no tool, answered as MOSS with the tools enabled in its meta instruction."""
    system = meta_instruction(conv.capabilities)
    messages = [{"role": "system", "content": system}]
    for t in history:
        messages += [{"role": "user", "content": t.human}, {"role": "assistant", "content": t.moss}]
    gen = await llm.chat(messages + [{"role": "user", "content": p.question}],
                         params.model_copy(update={"stop": [], "max_new_tokens": 2 * params.max_new_tokens}))
    _count(usage, gen)
    reply = gen.text.strip()
    reason = check_output(gen, "reply", p.language, ctx["router"], p.question) or check_toolless_reply(
        reply, conv.capabilities)
    if reason:
        raise TurnFailed(reason, reply or gen.error)
    return Turn(p.question, reply)


async def tool_trace_rollout(item: dict, llm, *, params: SamplingParams, attempts: int, **ctx) -> dict:
    """One tool conversation, each turn tried up to ``attempts`` times (new seeds each): kept as a MOSS record, or
    quarantined with the last reason. ``tries`` lists each turn's attempts' outcomes."""
    conv = ToolConversation.from_item(item)
    tries: list[list[str]] = []
    usage: Counter = Counter()
    history: list[Turn] = []
    for t, p in enumerate(conv.turns):
        tries.append([])
        make = tool_turn if p.tools else toolless_turn
        for attempt in range(attempts):
            turn_params = params.model_copy(update={"seed": params.seed + 1000 * attempt + 17 * t})
            try:
                turn = await make(p, conv, history, llm, turn_params, ctx, usage)
            except TurnFailed as failed:
                tries[-1].append(failed.reason)
                if attempt + 1 == attempts:
                    return {"status": "quarantine", "reason": failed.reason, "raw": failed.raw, "tries": tries,
                            "usage": dict(usage)}
                continue
            tries[-1].append("kept")
            history.append(turn)
            break
    conversation = Conversation(conv.trace_id, "tool", history, conv.capabilities)
    return {"status": "kept", "record": conversation.to_record(), "tries": tries, "usage": dict(usage)}
