"""Calculator and equation solver on the whitelist parser, each call in a child process with a time limit.

Calculator: exact integer arithmetic where the inputs are integers (``/`` gives a float, as in MOSS's
``Calculate("(12/2)*3") => '18.0'``); powers whose result would exceed ``MAX_DIGITS`` digits and factorials above
``MAX_FACTORIAL`` are refused before they are computed. Solver: the parsed AST is turned into sympy objects node by
node (sympy's ``sympify`` evaluates Python, so model text never reaches it), systems are separated by ``;``, and
``sympy.solve`` runs under the time limit; no solution, or any error, is ``No result.``.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from dataclasses import dataclass

from moss_data.tools.expr import Binary, Call, ExprError, Num, Unary, Var, parse

MAX_DIGITS = 5000
MAX_FACTORIAL = 1000
MAX_EQUATIONS = 6
MAX_SOLVER_EXPONENT = 12
TIMEOUT_S = 3.0


@dataclass
class ToolResult:
    ok: bool
    text: str  # what goes after "=>" in the Results segment
    error: str = ""


def _check_int_power(base: int, exponent: int) -> None:
    if exponent < 0:
        return
    digits = exponent * math.log10(abs(base)) if abs(base) > 1 else 1
    if digits > MAX_DIGITS:
        raise ExprError(f"result would have about {digits:.0f} digits (limit {MAX_DIGITS})")


_FUNCS = {
    "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "log": math.log, "ln": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp,
    "abs": abs, "floor": math.floor, "ceil": math.ceil, "round": round, "min": min, "max": max,
}


def evaluate(node):
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Var):
        return {"pi": math.pi, "e": math.e}[node.name]
    if isinstance(node, Unary):
        value = evaluate(node.operand)
        return -value if node.op == "-" else value
    if isinstance(node, Binary):
        a, b = evaluate(node.left), evaluate(node.right)
        if node.op == "+":
            return a + b
        if node.op == "-":
            return a - b
        if node.op == "*":
            if isinstance(a, int) and isinstance(b, int) and (abs(a).bit_length() + abs(b).bit_length()) > MAX_DIGITS * 3.33:
                raise ExprError(f"result would exceed {MAX_DIGITS} digits")
            return a * b
        if node.op == "/":
            if b == 0:
                raise ExprError("division by zero")
            return a / b
        if node.op == "%":
            if b == 0:
                raise ExprError("modulo by zero")
            return a % b
        if node.op == "**":
            if isinstance(a, int) and isinstance(b, int):
                _check_int_power(a, b)
            elif abs(b) > 10_000:
                raise ExprError("exponent too large")
            result = a**b
            if isinstance(result, complex):
                raise ExprError("complex result")
            return result
    if isinstance(node, Call):
        args = [evaluate(a) for a in node.args]
        if node.name == "factorial":
            (n,) = args
            if not (isinstance(n, int) and 0 <= n <= MAX_FACTORIAL):
                raise ExprError(f"factorial needs an integer between 0 and {MAX_FACTORIAL}")
            return math.factorial(n)
        if node.name not in ("min", "max") and len(args) != 1 and not (node.name in ("log", "round") and len(args) == 2):
            raise ExprError(f"{node.name} takes one argument")
        return _FUNCS[node.name](*args)
    raise ExprError(f"cannot evaluate {type(node).__name__}")


def format_number(value) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ExprError("result is not a finite number")
        return repr(round(value, 12)) if abs(value) < 1e15 else repr(value)
    return str(value)


def _calculate(expression: str) -> ToolResult:
    try:
        return ToolResult(True, f"'{format_number(evaluate(parse(expression)))}'")
    except (ExprError, ValueError, OverflowError, ZeroDivisionError, TypeError) as e:
        return ToolResult(False, "No result.", f"{type(e).__name__}: {e}")


def _to_sympy(node, symbols: dict):
    import sympy

    if isinstance(node, Num):
        return sympy.Integer(node.value) if isinstance(node.value, int) else sympy.Float(node.value)
    if isinstance(node, Var):
        if node.name == "pi":
            return sympy.pi
        if node.name == "e":
            return sympy.E
        return symbols.setdefault(node.name, sympy.Symbol(node.name))
    if isinstance(node, Unary):
        value = _to_sympy(node.operand, symbols)
        return -value if node.op == "-" else value
    if isinstance(node, Binary):
        a, b = _to_sympy(node.left, symbols), _to_sympy(node.right, symbols)
        if node.op == "**":
            if not (b.is_number and abs(b) <= MAX_SOLVER_EXPONENT):
                raise ExprError(f"the solver takes constant exponents up to {MAX_SOLVER_EXPONENT}")
            return a**b
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "%": sympy.Mod(a, b)}[node.op]
    if isinstance(node, Call):
        funcs = {"sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "exp": sympy.exp,
                 "log": sympy.log, "ln": sympy.log, "abs": sympy.Abs}
        if node.name not in funcs or len(node.args) != 1:
            raise ExprError(f"the solver does not take {node.name}()")
        return funcs[node.name](_to_sympy(node.args[0], symbols))
    raise ExprError(f"cannot convert {type(node).__name__}")


def split_equations(system: str) -> list[str]:
    """MOSS separates equations with ';'; people (and models) also use ',' between them. A comma inside
    parentheses is a function's argument separator (max(x, 2)), not a break."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(system):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ";" or (ch == "," and depth == 0):
            parts.append(system[start:i])
            start = i + 1
    return parts + [system[start:]]


def _solve(system: str) -> ToolResult:
    import sympy

    try:
        parts = [p for p in split_equations(system) if p.strip()]
        if not parts or len(parts) > MAX_EQUATIONS:
            raise ExprError(f"give 1 to {MAX_EQUATIONS} equations separated by ';'")
        symbols: dict = {}
        equations = []
        for part in parts:
            if part.count("=") != 1:
                raise ExprError(f"each equation needs exactly one '=': {part.strip()!r}")
            lhs, rhs = part.split("=")
            equations.append(_to_sympy(parse(lhs, variables=True), symbols) - _to_sympy(parse(rhs, variables=True), symbols))
        unknowns = [symbols[name] for name in sorted(symbols)]
        if not unknowns:
            raise ExprError("no unknowns")
        solutions = sympy.solve(equations, unknowns, dict=True)
        if not solutions:
            return ToolResult(False, "No result.", "no solution")
        lines = []
        for sol in solutions[:4]:
            lines += [f"{s} = {sympy.nsimplify(sol[s]) if sol[s].is_Rational else sol[s]}" for s in unknowns if s in sol]
        return ToolResult(True, "\n".join(lines))
    except Exception as e:  # noqa: BLE001 - sympy raises many kinds; every one is "No result." with the reason kept
        return ToolResult(False, "No result.", f"{type(e).__name__}: {e}")


def _child(fn, arg, conn) -> None:
    try:
        conn.send(fn(arg))
    finally:
        conn.close()


def run_limited(fn, arg: str, timeout_s: float = TIMEOUT_S) -> ToolResult:
    """Runs ``fn(arg)`` in a forked child process; past ``timeout_s`` the child is killed and the call fails."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, arg, child), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(timeout_s):
            return parent.recv()
        return ToolResult(False, "No result.", f"timed out after {timeout_s:.0f} s")
    except EOFError:
        return ToolResult(False, "No result.", "the tool process died")
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(1)
        parent.close()


def calculate(expression: str, timeout_s: float = TIMEOUT_S) -> ToolResult:
    return run_limited(_calculate, expression, timeout_s)


def solve(system: str, timeout_s: float = TIMEOUT_S) -> ToolResult:
    import sympy  # noqa: F401 - imported here, before the fork, so the child does not pay for it on every call

    return run_limited(_solve, system, timeout_s)
