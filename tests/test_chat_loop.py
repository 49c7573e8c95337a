"""The two-pass MOSS chat loop: generate to <eoc>, run the executors, continue to <eom>."""

from __future__ import annotations

from pathlib import Path

import pytest

from moss_data.llm import Generation, SamplingParams
from moss_data.formats import Capabilities, Turn, parse_commands
from moss_data.tools.chat_loop import MossChat, split_first_pass
from moss_data.tools.registry import ToolRegistry

REPO = Path(__file__).resolve().parent.parent
CANARY = Path("/tmp/moss_chat_loop_canary")


class ScriptedCompletions:
    """Test double, and why: to check what the loop does with a given pass-1 text (a hostile command, a malformed
    segment) the model must write exactly that text; a sampled model cannot be made to. It records every prompt."""

    name = "scripted"

    def __init__(self, texts: list[str]):
        self.texts, self.prompts = list(texts), []

    def complete(self, prompts, params):
        self.prompts += prompts
        return [Generation(self.texts.pop(0), "stop", 10, 10) for _ in prompts]


def test_split_first_pass():
    assert split_first_pass(' I should calculate.<eot>\n<|Commands|>: Calculate("2+2")') == (
        "I should calculate.", 'Calculate("2+2")', [])
    assert split_first_pass(" None<eot>\n<|Commands|>: None") == ("None", "None", [])
    assert split_first_pass(" rambling without markers")[2] == ["no <eot> after the inner thoughts"]


def test_the_second_pass_sees_the_real_results():
    backend = ScriptedCompletions([' Need math.<eot>\n<|Commands|>: Calculate("36*24")', " 36 × 24 = 864."])
    chat = MossChat(backend, Capabilities(calculator=True))
    out = chat.send("What is 36 times 24?")
    assert out.problems == [] and out.turn.results == "Calculate(\"36*24\") => '864'"
    first, second = backend.prompts
    assert first.endswith("<|Human|>: What is 36 times 24?<eoh>\n<|Inner Thoughts|>:")
    assert second == first + (' Need math.<eot>\n<|Commands|>: Calculate("36*24")<eoc>\n'
                              "<|Results|>:\nCalculate(\"36*24\") => '864'<eor>\n<|MOSS|>:")
    assert out.turn.moss == "36 × 24 = 864." and chat.history == [out.turn]
    assert "Calculator: enabled" in first  # the meta instruction says which tools the model may call


@pytest.mark.parametrize("command", [
    'Calculate(__import__("os").system("touch /tmp/moss_chat_loop_canary"))',
    'Calculate("__import__(\'os\').system(\'touch /tmp/moss_chat_loop_canary\')")',
    'Solve("x=1")',  # a tool the meta instruction does not enable
])
def test_hostile_or_disabled_commands_run_nothing(command):
    CANARY.unlink(missing_ok=True)
    backend = ScriptedCompletions([f" t<eot>\n<|Commands|>: {command}", " Sorry."])
    out = MossChat(backend, Capabilities(calculator=True)).send("hi")
    assert not CANARY.exists()
    assert all(not call.ok for call in (out.results.calls if out.results else []))
    assert out.turn.results in ("None",) or "No result." in out.turn.results or "disabled" in out.turn.results


def test_a_skipped_commands_marker_is_written_for_the_model():
    backend = ScriptedCompletions([" Need math.<eot>\n<|MOSS|>: 5", ' Calculate("2+3")', " It is 5."])
    out = MossChat(backend, Capabilities(calculator=True)).send("2+3?")
    assert backend.prompts[1].endswith("<|Inner Thoughts|>: Need math.<eot>\n<|Commands|>:")
    assert out.turn.results == "Calculate(\"2+3\") => '5'" and out.turn.moss == "It is 5."
    assert out.problems == ["no <|Commands|> segment", "wrote the <|Commands|> marker for the model"]


def test_history_is_trimmed_from_the_oldest_turn():
    chat = MossChat(ScriptedCompletions([]), Capabilities(), max_prompt_chars=2500)
    chat.history = [Turn(f"question {i} " + "x" * 300, f"answer {i}") for i in range(10)]
    prompt = chat.prompt("newest")
    assert len(prompt) <= 2500 and prompt.startswith(chat.meta) and prompt.endswith("<|Inner Thoughts|>:")
    assert "question 9" in prompt and "question 0" not in prompt


def test_loop_with_the_small_model_calls_the_calculator():
    """SmolLM2 was never trained on MOSS's format; two real tool turns in the history (few-shot) are enough for it
    to write a calculator command, which the loop runs between the passes."""
    from moss_data.llm.transformers_backend import TransformersBackend
    from moss_data.llm.models import local_smollm2

    caps = Capabilities(calculator=True)
    registry = ToolRegistry(caps)
    backend = TransformersBackend(local_smollm2(REPO / "data" / "models" / "smollm2-135m-instruct"))
    chat = MossChat(backend, caps, registry, SamplingParams(max_new_tokens=48, temperature=0))
    for question, expression, reply in [("What is 12 plus 30?", "12+30", "12 + 30 = 42."),
                                        ("How much is 7 times 9?", "7*9", "7 × 9 = 63.")]:
        command = f'Calculate("{expression}")'
        chat.history.append(Turn(question, reply, "The user wants a calculation; I use the calculator.",
                                 parse_commands(command), registry.execute(command).text))
    out = chat.send("What is 36 times 24?")
    # It skips the Commands segment on its own (a trained MOSS model does not); the loop writes the marker for it.
    assert "wrote the <|Commands|> marker for the model" in out.problems
    assert [c.name for c in out.turn.commands] == ["Calculate"], out
    assert out.turn.results == registry.execute(", ".join(c.render() for c in out.turn.commands)).text
    assert out.turn.moss and "<eom>" not in out.turn.moss


def test_the_loop_asks_for_the_quality_tag_it_is_given():
    backend = ScriptedCompletions([" None<eot>\n<|Commands|>: None", " Hello!"])
    chat = MossChat(backend, Capabilities(), quality=5)
    out = chat.send("Hi")
    assert backend.prompts[1].endswith("<|Results|>: None<eor>\n<|MOSS|>: <quality:5>")
    assert out.turn.quality == 5 and out.turn.serialize().endswith("<|MOSS|>: <quality:5> Hello!<eom>\n")


def test_moss_train_chat_scripted_turn_calls_the_calculator(tmp_path):
    import json

    from typer.testing import CliRunner

    from moss_data.io.conversations import ShardStore
    from moss_data.formats import Conversation
    from moss_train.cli import app

    store = ShardStore(tmp_path / "shards")  # two real calculator traces seed the history (few-shot)
    registry = ToolRegistry(Capabilities(calculator=True))
    for i, (question, expression, reply) in enumerate([("What is 12 plus 30?", "12+30", "12 + 30 = 42."),
                                                       ("How much is 7 times 9?", "7*9", "7 × 9 = 63.")]):
        command = f'Calculate("{expression}")'
        turn = Turn(question, reply, "The user wants a calculation; I use the calculator.", parse_commands(command),
                    registry.execute(command).text)
        store.add_conversation(Conversation(f"t{i}", "tool", [turn], Capabilities(calculator=True)), "en", {})
    store.flush()
    result = CliRunner().invoke(app, ["chat", "--model", str(REPO / "data" / "models" / "smollm2-135m-instruct"),
                                      "--tools", "calculator", "--examples-from", str(tmp_path / "shards"),
                                      "--message", "What is 36 times 24?", "--max-new-tokens", "48"])
    assert result.exit_code == 0, result.output
    log = json.loads(result.output[result.output.index("[\n"):])
    assert log[0]["commands"] and log[0]["commands"][0].startswith("Calculate(")
    assert log[0]["results"].startswith(log[0]["commands"][0] + " =>")  # the executor really ran it
