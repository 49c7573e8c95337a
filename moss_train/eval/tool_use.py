"""Tool use on held-out questions (``tools.jsonl`` of the eval sets, English and Chinese), through the chat loop
with the calculator, the equation solver and the offline search all enabled, so choosing among them counts.

Per question, three nested figures:
- ``right_tool``: the turn calls the tool the question needs.
- ``valid_args``: ... and every call parses and runs (the tool returned a result, not an error).
- ``grounded``: ... and the reply rests on what the tools returned: for the calculator and the solver a number of
  their output appears in the reply (within 0.5%: "about 9,396" for 9396.0); for a search the reply shares a word
  3-gram (Chinese: 4 characters) with the snippets, and every ``<|k|>`` it cites is a snippet that was returned.
"""

from __future__ import annotations

import re
import unicodedata

from moss_data.formats import Capabilities
from moss_data.llm import SamplingParams
from moss_data.tools.chat_loop import MossChat
from moss_data.tools.registry import ToolRegistry

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_CITATION = re.compile(r"<\|(\d+)\|>")
_SNIPPET = re.compile(r"^<\|(\d+)\|>:", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z0-9]+|[\u3400-\u9fff]")


def numbers(text: str) -> list[float]:
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return [float(n) for n in _NUMBER.findall(text)]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 0.005 * abs(b) + 1e-9


def _grams(text: str) -> set[tuple[str, ...]]:
    tokens = [t.lower() for t in _WORD.findall(text)]
    out = set()
    for i in range(len(tokens)):
        n = 4 if "\u3400" <= tokens[i][0] <= "\u9fff" else 3
        if i + n <= len(tokens):
            out.add(tuple(tokens[i: i + n]))
    return out


def grounded(tool: str, reply: str, outputs: list[str], results_text: str) -> bool:
    if tool in ("Calculate", "Solve"):
        found = [n for out in outputs for n in numbers(out)]
        return any(_close(r, f) for r in numbers(reply) for f in found)
    returned = set(_SNIPPET.findall(results_text))
    cited = set(_CITATION.findall(reply))
    return bool(_grams(reply) & _grams(results_text)) and cited <= returned


def tool_rows(backend, questions: list[dict], search_index, max_new_tokens: int, quality: int | None,
              repetition_penalty: float = 1.1) -> list[dict]:
    caps = Capabilities(calculator=True, equation_solver=True, web_search=search_index is not None)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0, repetition_penalty=repetition_penalty)
    from tqdm import tqdm

    rows = []
    for q in tqdm(questions, desc="tool questions", leave=False):
        chat = MossChat(backend, caps, ToolRegistry(caps, search_index), params, quality=quality)
        out = chat.send(q["prompt"])
        calls = out.results.calls
        right = any(c.command.name == q["tool"] for c in calls) or any(c.name == q["tool"] for c in out.turn.commands)
        valid = right and bool(calls) and all(c.ok for c in calls)
        outputs = [c.output for c in calls if c.ok and c.command.name == q["tool"]]
        rows.append({"id": q["id"], "language": q["language"], "tool": q["tool"], "prompt": q["prompt"],
                     "commands": [c.render() for c in out.turn.commands], "results": out.turn.results,
                     "reply": out.turn.moss, "problems": out.problems, "right_tool": right, "valid_args": valid,
                     "grounded": valid and grounded(q["tool"], out.turn.moss, outputs, out.turn.results)})
    return rows


def tool_figures(rows: list[dict]) -> dict:
    from moss_train.eval.stats import wilson

    figures = {}
    for lang in ["all", *sorted({r["language"] for r in rows})]:
        part = [r for r in rows if lang == "all" or r["language"] == lang]
        figures[lang] = {"n": len(part), **{key: {"rate": sum(r[key] for r in part) / max(len(part), 1),
                                                  "ci": wilson(sum(r[key] for r in part), len(part))}
                                            for key in ("right_tool", "valid_args", "grounded")}}
    return figures
