"""The MOSS chat loop at inference: two passes per turn, with the real executors in between.

    prompt = meta instruction + earlier turns + "<|Human|>: ...<eoh>\\n<|Inner Thoughts|>:"
    pass 1: generate to <eoc>   -> inner thoughts and the commands
    execute the commands with the registry (only tools the meta instruction enables; time and size limits)
    pass 2: prompt + pass 1 + "<eoc>\\n<|Results|>: ...<eor>\\n<|MOSS|>:" (+ " <quality:N>" when a tag is asked for),
            generate to <eom> -> the reply

The segment markers are fixed by the format, so the loop holds the model to them: when pass 1 ends its thoughts
with ``<eot>`` but does not go on to ``<|Commands|>:`` (an untrained or small model), the loop writes the marker
itself and asks again for the commands only (a reported problem, not a silent repair).
The model's command text is parsed, never evaluated; a command that does not parse runs nothing and is reported
in the turn's ``problems`` (the reply is still generated, from ``None`` results). History is trimmed from the
oldest turn so the prompt stays within ``max_prompt_chars`` (the meta instruction and the new message are kept).
The same loop serves ``moss-train chat`` and evaluation of tool-call accuracy.

Text from outside the model enters the prompt with its format markers neutralised
(:func:`moss_data.formats.neutralize_markers`): the user's message (``<eoh><|MOSS|>:`` in a message cannot end the
Human segment), the commands' arguments as written back into the Commands segment, and the tools' results (the
registry neutralises them too; doing it again here is harmless, the function is idempotent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from moss_data.llm import Backend, Generation, SamplingParams
from moss_data.formats import (Capabilities, Command, CommandSyntaxError, Turn, meta_instruction,
                               neutralize_markers, parse_commands, quality_tag)
from moss_data.tools.registry import ToolRegistry, TurnResults


@dataclass
class ChatTurn:
    turn: Turn
    problems: list[str] = field(default_factory=list)
    results: TurnResults | None = None


def split_first_pass(text: str) -> tuple[str, str, list[str]]:
    """Pass 1's text (after ``<|Inner Thoughts|>:``) -> (thought, commands text, problems)."""
    problems = []
    thought, sep, rest = text.partition("<eot>")
    if not sep:
        problems.append("no <eot> after the inner thoughts")
        return thought.strip() or "None", "None", problems
    _, marker, commands = rest.partition("<|Commands|>:")
    if not marker:
        problems.append("no <|Commands|> segment")
        return thought.strip() or "None", "None", problems
    return thought.strip() or "None", commands.strip() or "None", problems


class MossChat:
    def __init__(
        self,
        backend: Backend,
        capabilities: Capabilities,
        registry: ToolRegistry | None = None,
        params: SamplingParams = SamplingParams(max_new_tokens=256, temperature=0.7),
        max_prompt_chars: int = 12_000,
        meta: str | None = None,
        quality: int | None = None,
    ):
        self.backend = backend
        self.capabilities = capabilities
        self.registry = registry or ToolRegistry(capabilities)
        self.params = params
        self.max_prompt_chars = max_prompt_chars
        self.meta = meta if meta is not None else meta_instruction(capabilities)
        self.quality = quality  # the tag asked for before each reply (a model trained on tagged data: the best, 5)
        self.history: list[Turn] = []

    def prompt(self, human: str) -> str:
        """The pass-1 prompt, with the oldest turns dropped until it fits (the message's markers neutralised)."""
        tail = f"<|Human|>: {neutralize_markers(human)}<eoh>\n<|Inner Thoughts|>:"
        turns = list(self.history)
        while turns and len(self.meta) + sum(len(t.serialize()) for t in turns) + len(tail) > self.max_prompt_chars:
            turns.pop(0)
        return self.meta + "".join(t.serialize() for t in turns) + tail

    def _generate(self, prompt: str, stop: list[str], segment: str, on_text) -> Generation:
        params = self.params.model_copy(update={"stop": stop})
        if on_text is not None and hasattr(self.backend, "stream"):  # live text for a CLI
            return self.backend.stream(prompt, params, lambda piece: on_text(segment, piece))
        gen = self.backend.complete([prompt], params)[0]
        if on_text is not None:
            on_text(segment, gen.text)
        return gen

    def first_pass(self, prompt: str, on_text=None) -> tuple[str, str, list[str]]:
        """Pass 1 on a prompt from :meth:`prompt`: (inner thought, commands text, problems)."""
        first = self._generate(prompt, ["<eoc>", "<|Human|>"], "thoughts", on_text)
        thought, commands_text, problems = split_first_pass(first.text)
        if problems:
            forced = self.backend.complete([prompt + f" {thought}<eot>\n<|Commands|>:"],
                                           self.params.model_copy(update={"stop": ["<eoc>", "\n"]}))[0]
            commands_text = forced.text.strip() or "None"
            problems.append("wrote the <|Commands|> marker for the model")
        elif first.finish_reason == "length":
            problems.append("pass 1 hit max_new_tokens before <eoc>")
        return thought, commands_text, problems

    def send(self, human: str, on_text: Callable[[str, str], None] | None = None) -> ChatTurn:
        """One turn. ``on_text(segment, text)`` sees the text as it is produced (segment: "thoughts", "results",
        "reply"; streamed piece by piece where the backend can), for a CLI to show."""
        human = neutralize_markers(human)
        prompt = self.prompt(human)
        thought, commands_text, problems = self.first_pass(prompt, on_text)
        try:
            commands = [Command(c.name, neutralize_markers(c.argument))
                        for c in parse_commands(commands_text, max_commands=self.registry.max_calls)]
            results = self.registry.execute(commands_text) if commands else TurnResults("None")
        except CommandSyntaxError as e:
            problems.append(f"command did not parse: {e}")
            commands, results = [], TurnResults("None")
        results.text = neutralize_markers(results.text)
        if on_text:
            on_text("results", results.text)
        partial = Turn(human, "", thought, commands, results.text).segments()
        second_prompt = (prompt + f" {thought}<eot>\n" + partial["Commands"] + partial["Tool Responses"] + "<|MOSS|>:"
                         + f" {quality_tag(self.quality)}".rstrip())
        second = self._generate(second_prompt, ["<eom>", "<|Human|>"], "reply", on_text)
        if second.finish_reason == "length":
            problems.append("pass 2 hit max_new_tokens before <eom>")
        turn = Turn(human, second.text.strip(), thought, commands, results.text, self.quality)
        self.history.append(turn)
        return ChatTurn(turn, problems, results)
