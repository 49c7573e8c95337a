"""Tool executors: results in MOSS's format, and the hostile-input suite (each attack is an error result, within
the time limit, and nothing else happens)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from moss_data.formats import Capabilities, CommandSyntaxError
from moss_data.tools.math_tools import calculate, solve
from moss_data.tools.registry import ToolRegistry
from moss_data.tools.search import SearchIndex

CANARY = Path("/tmp/moss_tool_canary")


@pytest.mark.parametrize(
    "expression, expected",
    [("(12/2)*3", "'18.0'"), ("2**10", "'1024'"), ("1+2*3-4/2", "'5.0'"), ("sqrt(16)+factorial(5)", "'124.0'"),
     ("-3^2", "'-9'"), ("2^-1", "'0.5'"), ("10 % 4", "'2'"), ("１２×３", "'36'"), ("max(3, 7, 5)", "'7'"),
     ("log(8, 2)", "'3.0'"), ("2**200", f"'{2**200}'"), ("2(3+4)", "'14'"), ("(1+1)(2+3)", "'10'")],
)
def test_calculator_results(expression, expected):
    result = calculate(expression)
    assert result.ok and result.text == expected, result


@pytest.mark.parametrize(
    "system, expected",
    [("x+y=5;x-y=1", "x = 3\ny = 2"), ("2*x+3=7", "x = 2"), ("x**2=4", "x = -2\nx = 2"), ("a*2=b;b=10", "a = 5\nb = 10"),
     # as people write them: implicit products, and a comma between equations (not inside a call)
     ("2x + y = 7, x - y = 2", "x = 3\ny = 1"), ("3(x+1)=12", "x = 3"), ("max(x, 2) + x = 0; 1 = 1", None)],
)
def test_solver_results(system, expected):
    result = solve(system)
    if expected is None:  # max() is a calculator function only: the solver refuses, it does not split at its comma
        assert not result.ok and "max" in result.error, result
    else:
        assert result.ok and result.text == expected, result


def test_unsolvable_is_no_result():
    for system in ("x=1;x=2", "1=2", "x+1"):
        r = solve(system)
        assert not r.ok and r.text == "No result."


HOSTILE = [
    # code injection
    f"__import__('os').system('touch {CANARY}')", "open('/etc/passwd').read()", "().__class__.__bases__[0].__subclasses__()",
    "(lambda: 1)()", "globals()", "exec('1')", "eval('1+1')", "[x for x in range(10**9)]", "1 if True else 2",
    "import os", "x.__class__", "sqrt.__globals__", "'a'*10**9", "getattr(1, 'real')",
    # huge numbers
    "9**9**9", "2**2**2**2**2**2", "10**100000", "factorial(100000)", "factorial(-1)", "factorial(2.5)",
    "99999999999999999999**99999999", "(10**4000)*(10**4000)", "exp(1000000)", "1e308*10",
    # deep nesting and long input
    "(" * 500 + "1" + ")" * 500, "-" * 1000 + "1", "1+" * 5000 + "1", "9" * 100_000,
    # unicode look-alikes (Cyrillic а, е; Greek Ρ) and control characters
    "ехр(1)", "sqrt(4)\u202e", "\u0430bs(-1)", "1\x00+1",
    # nonsense
    "", "   ", "()", "1 +", "sqrt()", "nosuchfunction(1)", "1/0", "0**-1",
]

SYMPY_ATTACKS = [
    "Symbol('x')=1", "x.__class__=1", "S('1')=x", "sympify('x')=1", "Integral(x,x)=1", "x**(10**6)=1", "x**x**x=2",
    "x=__import__('os')", "exec('x')=1", "Lambda(x,x)=1", ";".join(f"x{i}=1" for i in range(50)), "x" + "+x" * 400 + "=1",
    "x**99999999999=1", "=", "x==1", "x=1=2", "x;y",
]


@pytest.mark.parametrize("expression", HOSTILE)
def test_hostile_calculator_inputs(expression):
    start = time.monotonic()
    result = calculate(expression, timeout_s=3)
    assert time.monotonic() - start < 3.5
    assert not result.ok and result.text == "No result." and result.error
    assert not CANARY.exists()


@pytest.mark.parametrize("system", SYMPY_ATTACKS)
def test_hostile_solver_inputs(system):
    start = time.monotonic()
    result = solve(system, timeout_s=3)
    assert time.monotonic() - start < 3.5
    assert not result.ok and result.text == "No result."
    assert not CANARY.exists()


def test_a_slow_solve_is_killed_at_the_time_limit():
    # a legal but expensive system: the child is killed, the caller gets No result. in time
    system = ";".join(f"x{i}**3+x{(i + 1) % 6}**2*x{i}=1" for i in range(6))
    start = time.monotonic()
    result = solve(system, timeout_s=1)
    assert time.monotonic() - start < 2
    assert not result.ok and ("timed out" in result.error or result.error)


@pytest.fixture(scope="module")
def registry(sample_run) -> ToolRegistry:
    index = SearchIndex.from_shards(sample_run.output_dir / "clean")
    return ToolRegistry(Capabilities(web_search=True, calculator=True, equation_solver=True), index)


def test_registry_formats_results_like_moss(registry):
    r = registry.execute('Search("apt-get install"), Calculate("(12/2)*3"), Solve("x+y=5;x-y=1"), Search("软件包")')
    lines = r.text.split("\n")
    assert lines[0] == 'Search("apt-get install") =>' and lines[1].startswith('<|1|>: "')
    assert 'Calculate("(12/2)*3") => \'18.0\'' in lines
    assert r.text.count("Solve(") == 1 and "x = 3\ny = 2" in r.text
    numbers = [int(line[2]) for line in lines if line.startswith("<|")]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) == 6  # numbering continues across searches
    assert [c.ok for c in r.calls] == [True, True, True, True]


def test_registry_never_runs_disabled_tools_and_limits_calls(registry):
    calc_only = ToolRegistry(Capabilities(calculator=True))
    r = calc_only.execute('Solve("x=1"), Calculate("1+1"), Text2Image("a cat")')
    assert r.text == 'Solve("x=1") => This tool is disabled.\nCalculate("1+1") => \'2\'\nText2Image("a cat") => This tool is disabled.'
    assert [c.ok for c in r.calls] == [False, True, False]
    with pytest.raises(CommandSyntaxError):
        registry.execute(", ".join(['Calculate("1")'] * 5))
    with pytest.raises(CommandSyntaxError):
        registry.execute('Calculate("1") ; rm -rf /')
    assert registry.execute("None").text == "None"


def test_text_to_image_says_not_available_without_a_gpu():
    r = ToolRegistry(Capabilities(text_to_image=True)).execute('Text2Image("a red bicycle")')
    assert r.text == 'Text2Image("a red bicycle") => Text-to-image is not available here.'
    assert not r.calls[0].ok


def test_search_ranks_the_matching_passage_first():
    index = SearchIndex(["The harbor at dawn was quiet.", "Python lists are mutable sequences.", "港口的清晨很安静。"])
    assert index.search("mutable python list", k=1) == ["Python lists are mutable sequences."]
    assert index.search("清晨 港口", k=1) == ["港口的清晨很安静。"]


def test_search_answers_in_the_query_language():
    index = SearchIndex(["apt-get install 命令用来安装软件包。", "Use apt-get install to install a package.",
                         "软件包列表用 apt-get update 更新。"])
    assert index.search("apt-get install package", k=2) == ["Use apt-get install to install a package."]
    assert index.search("apt-get 安装", k=1) == ["apt-get install 命令用来安装软件包。"]
    assert index.search("aptitude", k=1) == []  # nothing matches: no result rather than a random passage


def test_text_to_image_says_why_it_is_not_available(tmp_path):
    from moss_data.tools.text_to_image import NOT_AVAILABLE, TextToImage

    assert "no text-to-image model is configured" in TextToImage().unavailable
    no_model = TextToImage(tmp_path)  # a folder without model_index.json (or no diffusers / no GPU on this machine)
    result = no_model("a red bicycle")
    assert not result.ok and result.text == NOT_AVAILABLE and result.error.startswith("not available: ")
    assert not list(tmp_path.iterdir())  # nothing written: no fake image
