"""The tool registry: runs a turn's MOSS commands with the executors its meta instruction enables, and formats
the Results segment exactly as MOSS does (DESIGN.md):

    Search("q") =>  then numbered snippets <|1|>: "..." (numbering continues across searches in a turn)
    Calculate("(12/2)*3") => '18.0'          Solve("x+y=5;x-y=1") => then lines x = 3 / y = 2
    Text2Image("desc") => Image generated successfully.        any failure: => No result.

A disabled or unknown tool is never run (``=> This tool is disabled.``); commands that do not parse raise
:class:`CommandSyntaxError` for the caller to quarantine; at most ``max_calls`` commands run per turn.

Every call is bounded in time and size. Time: Calculate and Solve run in a child process killed after
``timeout_s``; Search stops after ``search_timeout_s``. Size: an argument longer than ``MAX_ARGUMENT_CHARS`` is not
run (its Results line echoes the argument cut there, ending in "…"); a search query is limited further by the index
(512 characters, see ``search.py``); one tool's output over ``MAX_OUTPUT_CHARS`` is ``No result.``; each snippet is
cut by the index, and the whole segment stays under ``MAX_RESULTS_CHARS`` (snippets or outputs past it become
``No result.``). Every refusal keeps its reason in the call's ``error``.

Format markers (``<eor>``, ``<|MOSS|>:``, ``<|1|>``, ...) in arguments and results are neutralised with
:func:`moss_data.formats.neutralize_markers` before anything runs or is written: a passage or an argument cannot
close the Results segment or open a role.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moss_data.formats import Capabilities, Command, neutralize_markers, parse_commands
from moss_data.tools.math_tools import TIMEOUT_S, calculate, solve
from moss_data.tools.search import SEARCH_TIMEOUT_S, SearchIndex, SearchLimitError
from moss_data.tools.text_to_image import TextToImage

MAX_ARGUMENT_CHARS = 1000
MAX_OUTPUT_CHARS = 1000
MAX_RESULTS_CHARS = 6000


@dataclass
class CallRecord:
    command: Command
    ok: bool
    output: str
    error: str = ""


@dataclass
class TurnResults:
    text: str  # the Results segment's content ("None" when there were no commands)
    calls: list[CallRecord] = field(default_factory=list)


class ToolRegistry:
    def __init__(self, capabilities: Capabilities, search_index: SearchIndex | None = None, max_calls: int = 4,
                 timeout_s: float = TIMEOUT_S, text_to_image: TextToImage | None = None,
                 search_timeout_s: float = SEARCH_TIMEOUT_S, search_k: int = 3):
        self.capabilities = capabilities
        self.text_to_image = text_to_image or TextToImage()
        self.search_index = search_index
        self.max_calls = max_calls
        self.timeout_s = timeout_s
        self.search_timeout_s = search_timeout_s
        self.search_k = search_k

    def execute(self, commands_text: str) -> TurnResults:
        commands = parse_commands(commands_text, max_commands=self.max_calls)
        if not commands:
            return TurnResults("None")
        enabled = self.capabilities.enabled_commands()
        blocks: list[str] = []
        calls: list[CallRecord] = []
        snippet_number, used = 1, 0
        cmds = [Command(c.name, neutralize_markers(c.argument)) for c in commands]
        heads = [(Command(c.name, c.argument[:MAX_ARGUMENT_CHARS] + "…") if len(c.argument) > MAX_ARGUMENT_CHARS
                  else c).render() + " =>" for c in cmds]
        # room kept for the calls still to come, so that each can at least say "No result." (or that it is disabled)
        reserve = [sum(len(h) + len(" This tool is disabled.") + 1 for h in heads[i + 1:]) for i in range(len(heads))]

        def add(cmd: Command, head: str, ok: bool, output: str, error: str, multiline: bool = False) -> None:
            nonlocal used
            block = f"{head}\n{output}" if multiline else f"{head} {output}"
            if used + len(block) + 1 + reserve[len(blocks)] > MAX_RESULTS_CHARS:  # full: this output is dropped
                ok, output, block = False, "No result.", f"{head} No result."
                error = f"Results segment over {MAX_RESULTS_CHARS} characters"
            used += len(block) + 1
            calls.append(CallRecord(cmd, ok, output, error))
            blocks.append(block)

        for cmd, head in zip(cmds, heads):
            if cmd.name not in enabled:
                add(cmd, head, False, "This tool is disabled.", "disabled or unknown tool")
                continue
            if len(cmd.argument) > MAX_ARGUMENT_CHARS:
                add(cmd, head, False, "No result.", f"argument has {len(cmd.argument)} characters (limit {MAX_ARGUMENT_CHARS})")
                continue
            if cmd.name == "Search":
                try:
                    hits = (self.search_index.search(cmd.argument, self.search_k, self.search_timeout_s)
                            if self.search_index else [])
                except SearchLimitError as e:
                    add(cmd, head, False, "No result.", str(e))
                    continue
                lines, dropped, size = [], 0, used + len(head) + 1 + reserve[len(blocks)]
                for hit in hits:
                    line = f'<|{snippet_number + len(lines)}|>: "{neutralize_markers(hit)}"'
                    if size + len(line) + 1 > MAX_RESULTS_CHARS:
                        dropped += 1
                        continue
                    lines.append(line)
                    size += len(line) + 1
                snippet_number += len(lines)
                error = "no hits" if not hits else f"{dropped} snippets dropped: Results segment full" if dropped else ""
                if lines:
                    add(cmd, head, True, "\n".join(lines), error, multiline=True)
                else:
                    add(cmd, head, False, "No result.", error)
                continue
            run = {"Calculate": calculate, "Solve": solve}.get(cmd.name)
            res = run(cmd.argument, self.timeout_s) if run else self.text_to_image(cmd.argument)
            output, ok, error = neutralize_markers(res.text), res.ok, res.error
            if len(output) > MAX_OUTPUT_CHARS:
                output, ok, error = "No result.", False, f"output has {len(output)} characters (limit {MAX_OUTPUT_CHARS})"
            add(cmd, head, ok, output, error, multiline=cmd.name == "Solve" and ok)
        return TurnResults("\n".join(blocks), calls)
