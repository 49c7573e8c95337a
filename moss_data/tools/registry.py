"""The tool registry: runs a turn's MOSS commands with the executors its meta instruction enables, and formats
the Results segment exactly as MOSS does (DESIGN.md):

    Search("q") =>  then numbered snippets <|1|>: "..." (numbering continues across searches in a turn)
    Calculate("(12/2)*3") => '18.0'          Solve("x+y=5;x-y=1") => then lines x = 3 / y = 2
    Text2Image("desc") => Image generated successfully.        any failure: => No result.

A disabled or unknown tool is never run (``=> This tool is disabled.``); commands that do not parse raise
:class:`CommandSyntaxError` for the caller to quarantine; at most ``max_calls`` commands run per turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moss_data.formats import Capabilities, Command, parse_commands
from moss_data.tools.math_tools import TIMEOUT_S, calculate, solve
from moss_data.tools.search import SearchIndex
from moss_data.tools.text_to_image import TextToImage


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
                 timeout_s: float = TIMEOUT_S, text_to_image: TextToImage | None = None):
        self.capabilities = capabilities
        self.text_to_image = text_to_image or TextToImage()
        self.search_index = search_index
        self.max_calls = max_calls
        self.timeout_s = timeout_s

    def execute(self, commands_text: str) -> TurnResults:
        commands = parse_commands(commands_text, max_commands=self.max_calls)
        if not commands:
            return TurnResults("None")
        enabled = self.capabilities.enabled_commands()
        blocks, calls, snippet_number = [], [], 1
        for cmd in commands:
            head = f"{cmd.render()} =>"
            if cmd.name not in enabled:
                calls.append(CallRecord(cmd, False, "This tool is disabled.", "disabled or unknown tool"))
                blocks.append(f"{head} This tool is disabled.")
                continue
            if cmd.name == "Search":
                hits = self.search_index.search(cmd.argument) if self.search_index else []
                lines = [f'<|{snippet_number + i}|>: "{hit}"' for i, hit in enumerate(hits)]
                snippet_number += len(hits)
                output = "\n".join(lines) if lines else "No result."
                calls.append(CallRecord(cmd, bool(lines), output, "" if lines else "no hits"))
                blocks.append(f"{head}\n{output}" if lines else f"{head} No result.")
                continue
            result = {"Calculate": calculate, "Solve": solve}.get(cmd.name)
            res = result(cmd.argument, self.timeout_s) if result else self.text_to_image(cmd.argument)
            calls.append(CallRecord(cmd, res.ok, res.text, res.error))
            blocks.append(f"{head}\n{res.text}" if cmd.name == "Solve" and res.ok else f"{head} {res.text}")
        return TurnResults("\n".join(blocks), calls)
