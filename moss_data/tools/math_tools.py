"""Calculator and equation solver on the whitelist parser, each call in a child process with a time limit.

Calculator: exact arithmetic. Integers and number literals are exact (``6.626e-34`` is the fraction 6626/10**37),
``+ - * / % **`` on them stay exact (Python ``Fraction``); functions, ``pi``, ``e`` and irrational powers are
computed with ``mpmath`` at ``WORK_DIGITS`` digits. Each value keeps the type Python would give it, which decides the
shape of the result as in MOSS's ``Calculate("(12/2)*3") => '18.0'``:

* an int (integer literals under ``+ - * % **`` with a non-negative exponent, ``factorial``, ``floor``, ``ceil``,
  one-argument ``round``) is written exactly: ``'1024'``, ``'-9'``;
* anything else is a float: ``SIGNIFICANT_DIGITS`` (12) significant digits, correctly rounded, trailing zeros
  dropped, ``.0`` on a whole number; positional from 1e-4 up to 1e11 (and up to 1e16 while exact: ``10**15/1`` is
  ``'1000000000000000.0'``), scientific as Python writes it otherwise (``'1.9878e-25'``, ``'3.33333333333e-07'``,
  ``'1e+20'``, ``'1.23456789012e+11'``). A non-zero result is never written as 0.

Limits, checked before each operation from its operands' sizes, so a hostile input costs little: an exact value
may not exceed ``MAX_DIGITS`` digits in its numerator or denominator (``9**9**9``, ``10**10**10`` and
``(10**4000)*(10**4000)`` are refused before anything is computed), nor an approximate one the magnitude 1e±5000;
a float result must lie in Python's float range (``1e308*10`` is an error, as in Python); an int result is written
with at most ``MAX_RESULT_DIGITS`` digits; ``factorial`` takes 0..``MAX_FACTORIAL``. ``sin(pi)``-style results
(approximate values that cancel to below the working precision) are exactly 0.

Solver: the parsed AST is turned into sympy objects node by node (sympy's ``sympify`` evaluates Python, so model
text never reaches it), systems are separated by ``;``, and ``sympy.solve`` runs under the time limit. Before
anything reaches sympy, each equation's degree is computed from the AST (nested powers multiply, products add, a
denominator counts: ``((x**12)**12)**12`` is degree 1728, ``x**2**3**2`` 512) and refused above
``MAX_SOLVER_DEGREE``; exponents must be constant and constant parts pass the calculator's limits. No solution, or
any error, is ``No result.``.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from fractions import Fraction

import mpmath
from mpmath.libmp import to_str

from moss_data.tools.expr import CONSTANTS, Binary, Call, ExprError, Num, Unary, Var, normalize_math, parse

MAX_DIGITS = 5000  # an exact intermediate's numerator / denominator; an approximate one's magnitude (1e±5000)
MAX_RESULT_DIGITS = 1000  # an int result, written out
MAX_FACTORIAL = 1000
MAX_ROUND_DIGITS = 100
MAX_ROOT_INDEX = 1000  # a**(p/q) is tried exactly (perfect q-th powers) up to this q
MAX_EQUATIONS = 6
MAX_SOLVER_DEGREE = 64
SIGNIFICANT_DIGITS = 12
WORK_DIGITS = 60  # mpmath precision of approximate values
ZERO_BELOW = 10.0 ** -(WORK_DIGITS - 15)  # an approximate sum/trig value this far below its inputs' size is 0
FLOAT_MAX = Fraction(1.7976931348623157e308)
TIMEOUT_S = 3.0


@dataclass
class ToolResult:
    ok: bool
    text: str  # what goes after "=>" in the Results segment
    error: str = ""


@dataclass(frozen=True)
class Value:
    """A calculator value: ``x`` is an exact ``Fraction`` or an approximate ``mpmath.mpf``; ``is_int`` is whether
    Python would type the result as an int (it decides how the result is written)."""

    x: Fraction | mpmath.mpf
    is_int: bool = False

    @property
    def exact(self) -> bool:
        return isinstance(self.x, Fraction)


def _digits(n: int) -> float:
    """log10|n| (0 for 0 and ±1): the size that caps compare against (math.log10 takes ints of any size)."""
    return math.log10(abs(n)) if n else 0.0


def _about(size: float) -> str:
    return f"{size:.0f}" if size < 1e9 else f"{size:.3g}"


def _height(q: Fraction) -> float:
    """Digits of the larger of numerator and denominator: what exact arithmetic on ``q`` costs."""
    return max(_digits(q.numerator), _digits(q.denominator))


def _mpf(x) -> mpmath.mpf:
    if isinstance(x, Fraction):
        return mpmath.mpf(x.numerator) / x.denominator
    return mpmath.mpf(x)


def _log10_abs(x) -> float:
    """log10|x| (x != 0), cheap for exact values of any size."""
    if isinstance(x, Fraction):
        return _digits(abs(x.numerator)) - _digits(x.denominator)
    return float(mpmath.log10(abs(x)))


def _check(v: Value) -> Value:
    if v.exact:
        if _height(v.x) > MAX_DIGITS:
            raise ExprError(f"a value would have about {_about(_height(v.x))} digits (limit {MAX_DIGITS})")
        return v
    if not mpmath.isfinite(v.x):
        raise ExprError("result is not a finite number")
    if v.x != 0 and abs(_log10_abs(v.x)) > MAX_DIGITS:
        raise ExprError(f"a value is beyond 1e±{MAX_DIGITS}")
    return v


def _snap(result, *scale) -> mpmath.mpf:
    """An approximate result that cancelled to below the working precision of its inputs is exactly 0."""
    size = max([abs(_mpf(s)) for s in scale] + [mpmath.mpf(0)])
    return mpmath.mpf(0) if size and abs(result) < size * ZERO_BELOW else result


def _iroot(n: int, k: int) -> int:
    """floor(n ** (1/k)) for n >= 0 (Newton on integers)."""
    if n < 2:
        return n
    x = 1 << -(-n.bit_length() // k)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _exact_root(q: Fraction, k: int) -> Fraction | None:
    """q ** (1/k) when it is rational (q >= 0), else None."""
    if k > MAX_ROOT_INDEX:
        return None
    a, b = _iroot(q.numerator, k), _iroot(q.denominator, k)
    return Fraction(a, b) if a**k == q.numerator and b**k == q.denominator else None


def _power(a: Value, b: Value) -> Value:
    if a.x == 0:
        if b.x < 0:
            raise ExprError("division by zero (0 to a negative power)")
        return Value(Fraction(1) if b.x == 0 else Fraction(0), a.is_int and b.is_int)
    integer_exponent = b.exact and b.x.denominator == 1
    if integer_exponent and a.exact:
        n = int(b.x)
        if abs(a.x) != 1 and abs(n) * _height(a.x) > MAX_DIGITS:
            raise ExprError(f"result would have about {_about(abs(n) * _height(a.x))} digits (limit {MAX_DIGITS})")
        return Value(a.x**n, a.is_int and b.is_int and n >= 0)
    size = _mpf(b.x) * _log10_abs(a.x)
    if abs(size) > MAX_DIGITS:
        raise ExprError(f"result would be about 1e{float(size):.4g} (limit 1e±{MAX_DIGITS})")
    if integer_exponent:
        return Value(_mpf(a.x) ** int(b.x))
    if a.x < 0:
        raise ExprError("complex result (a negative number to a non-integer power)")
    if a.exact and b.exact:
        root = _exact_root(a.x, b.x.denominator)
        if root is not None and abs(b.x.numerator) * _height(root) <= MAX_DIGITS:
            return Value(root**b.x.numerator)
    return Value(_approximate(mpmath.power, a, b))


def _nonzero(b: Value, what: str) -> None:
    if b.x == 0:
        raise ExprError(what)


def _binary(op: str, a: Value, b: Value) -> Value:
    both_int = a.is_int and b.is_int
    if op == "**":
        return _power(a, b)
    if op in ("/", "%"):
        _nonzero(b, "division by zero" if op == "/" else "modulo by zero")
    if a.exact and b.exact:  # operands hold at most MAX_DIGITS digits each: the operation is cheap, _check caps it
        if op == "+":
            return Value(a.x + b.x, both_int)
        if op == "-":
            return Value(a.x - b.x, both_int)
        if op == "*":
            return Value(a.x * b.x, both_int)
        if op == "/":
            return Value(a.x / b.x)
        return Value(a.x % b.x, both_int)  # Python's sign rule: the result takes the divisor's sign
    x, y = _mpf(a.x), _mpf(b.x)
    if op == "+":
        return Value(_snap(x + y, x, y))
    if op == "-":
        return Value(_snap(x - y, x, y))
    if op == "*":
        return Value(x * y)
    if op == "/":
        return Value(x / y)
    quotient = x / y
    if abs(quotient) > 1 / ZERO_BELOW:
        raise ExprError("modulo of numbers too far apart for the working precision")
    return Value(_snap(x - y * mpmath.floor(quotient), x))


def _as_int(v: Value, name: str) -> int:
    if not v.is_int:
        raise ExprError(f"{name} needs an integer")
    return int(v.x)


def _to_int(v: Value, how: str) -> int:
    """floor / ceil / nearest (half to even, as Python's round) of a value, exact where the value is."""
    if v.exact:
        return {"floor": math.floor, "ceil": math.ceil, "round": round}[how](v.x)
    if abs(v.x) > 1 / ZERO_BELOW:
        raise ExprError(f"{how}() of a number too large for the working precision")
    return int({"floor": mpmath.floor, "ceil": mpmath.ceil, "round": mpmath.nint}[how](v.x))


def _log(x: Value, base: Value | None) -> Value:
    if x.x <= 0 or (base is not None and (base.x <= 0 or base.x == 1)):
        raise ExprError("math domain error (log of a number <= 0, or base 1)")
    if x.x == 1:
        return Value(Fraction(0))
    if base is None:
        return Value(_approximate(mpmath.log, x))
    if x.exact and base.exact:  # log(8, 2) is exactly 3
        k = round(float(_log10_abs(x.x) / _log10_abs(base.x)))
        if k and abs(k) * _height(base.x) <= MAX_DIGITS and base.x**k == x.x:
            return Value(Fraction(k))
    return Value(_approximate(mpmath.log, x) / _approximate(mpmath.log, base))


def _approximate(fn, *args: Value):
    """``fn`` on the arguments as mpf; an exact argument is converted with all its digits plus the working
    precision, so log(1 + 1e-100) or sin(10**4000) are right, not the log or sine of a rounded argument."""
    extra = max([int(_height(a.x)) for a in args if a.exact] + [0])
    with mpmath.workdps(WORK_DIGITS + extra + 10):
        return fn(*[_mpf(a.x) for a in args])


def _trig(name: str, v: Value) -> Value:
    if name in ("asin", "acos") and abs(v.x) > 1:
        raise ExprError(f"math domain error ({name} of a number outside [-1, 1])")
    if not v.exact and abs(v.x) > 1 / ZERO_BELOW:
        raise ExprError(f"{name}() of a number too large for the working precision")
    if name not in ("sin", "cos", "tan"):
        return Value(_approximate(getattr(mpmath, name), v))
    sin, cos = _approximate(mpmath.sin, v), _approximate(mpmath.cos, v)
    if not v.exact:  # sin(pi): an approximate argument cancels to the working precision, not to 1e-61
        sin, cos = _snap(sin, 1, v.x), _snap(cos, 1, v.x)
    if name == "tan":
        if cos == 0:
            raise ExprError("math domain error (tan at a pole)")
        return Value(sin / cos)
    return Value(sin if name == "sin" else cos)


def _call(name: str, args: list[Value]) -> Value:
    arity = {"log": (1, 2), "round": (1, 2), "min": (1, 99), "max": (1, 99)}.get(name, (1, 1))
    if not arity[0] <= len(args) <= arity[1]:
        raise ExprError(f"{name} takes {arity[0]} argument" if arity[0] == arity[1] else f"wrong number of arguments to {name}")
    v = args[0]
    if name == "factorial":
        n = _as_int(v, "factorial")
        if not 0 <= n <= MAX_FACTORIAL:
            raise ExprError(f"factorial needs an integer between 0 and {MAX_FACTORIAL}")
        return Value(Fraction(math.factorial(n)), True)
    if name in ("min", "max"):
        best = args[0]  # the first of equal values, as Python's min() / max()
        for other in args[1:]:
            x, y = (other.x, best.x) if other.exact and best.exact else (_mpf(other.x), _mpf(best.x))
            if (x > y) if name == "max" else (x < y):
                best = other
        return best
    if name == "abs":
        return Value(abs(v.x), v.is_int)
    if name in ("floor", "ceil"):
        return Value(Fraction(_to_int(v, name)), True)
    if name == "round":
        if len(args) == 1:
            return Value(Fraction(_to_int(v, "round")), True)
        n = _as_int(args[1], "round's second argument")
        if abs(n) > MAX_ROUND_DIGITS:
            raise ExprError(f"round() to at most {MAX_ROUND_DIGITS} digits")
        scaled = _binary("*", v, Value(Fraction(10) ** n))
        return Value(Fraction(_to_int(scaled, "round")) / Fraction(10) ** n, v.is_int)
    if name == "sqrt":
        if v.x < 0:
            raise ExprError("math domain error (sqrt of a negative number)")
        root = _exact_root(v.x, 2) if v.exact else None
        return Value(root) if root is not None else Value(_approximate(mpmath.sqrt, v))
    if name in ("log", "ln"):
        return _log(v, args[1] if len(args) == 2 else None)
    if name in ("log10", "log2"):
        return _log(v, Value(Fraction(10 if name == "log10" else 2)))
    if name == "exp":
        if v.x == 0:
            return Value(Fraction(1))
        if _mpf(v.x) / math.log(10) > MAX_DIGITS:
            raise ExprError(f"exp() result beyond 1e{MAX_DIGITS}")
        return Value(_approximate(mpmath.exp, v))
    return _trig(name, v)


def _evaluate(node) -> Value:
    if isinstance(node, Num):
        return _check(Value(Fraction(node.value), isinstance(node.value, int)))
    if isinstance(node, Var):
        if node.name not in CONSTANTS:
            raise ExprError(f"unknown name {node.name!r}")
        return Value(+mpmath.pi if node.name == "pi" else mpmath.e())
    if isinstance(node, Unary):
        v = _evaluate(node.operand)
        return Value(-v.x, v.is_int) if node.op == "-" else v
    if isinstance(node, Binary):
        return _check(_binary(node.op, _evaluate(node.left), _evaluate(node.right)))
    if isinstance(node, Call):
        return _check(_call(node.name, [_evaluate(a) for a in node.args]))
    raise ExprError(f"cannot evaluate {type(node).__name__}")


def evaluate(node) -> Value:
    """The value of a parsed expression (limits checked before each operation)."""
    with mpmath.workdps(WORK_DIGITS):
        return _check(_evaluate(node))


_DECIMAL = Context(prec=SIGNIFICANT_DIGITS, rounding=ROUND_HALF_EVEN, Emax=10**6, Emin=-(10**6))


def format_number(v: Value) -> str:
    """A value as MOSS's calculator writes it (see the module doc): ints exact, floats in 12 significant digits."""
    if v.is_int and v.exact and v.x.denominator == 1:
        if _digits(v.x.numerator) > MAX_RESULT_DIGITS:
            raise ExprError(f"result has about {_digits(v.x.numerator):.0f} digits (limit {MAX_RESULT_DIGITS})")
        return str(v.x.numerator)
    if v.x == 0:
        return "0.0"
    if (abs(v.x) > FLOAT_MAX) if v.exact else (abs(v.x) > mpmath.mpf(FLOAT_MAX.numerator)):
        raise ExprError("result is too large for a float (above 1.8e308)")
    if v.exact:
        d = _DECIMAL.divide(Decimal(v.x.numerator), Decimal(v.x.denominator))
    else:
        d = _DECIMAL.create_decimal(to_str(v.x._mpf_, SIGNIFICANT_DIGITS))
    d = d.normalize(_DECIMAL)
    exponent = d.adjusted()
    # Positional as Python writes floats (1e-4 <= |x| < 1e16), but only while the units digit is not rounded away:
    # 123456789012.5 is '1.23456789012e+11', never '123456789012.0'; 10**15/1 is exact, '1000000000000000.0'.
    whole = v.x if v.exact else (Fraction(int(v.x)) if mpmath.isint(v.x) else None)
    if -4 <= exponent < 16 and (exponent < SIGNIFICANT_DIGITS - 1 or Fraction(d) == whole):
        text = format(d, "f")
        return text if "." in text else text + ".0"
    sign, digits, _ = d.as_tuple()
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{exponent:+03d}"


def _calculate(expression: str) -> ToolResult:
    try:
        return ToolResult(True, f"'{format_number(evaluate(parse(expression)))}'")
    except (ExprError, ValueError, OverflowError, ZeroDivisionError, TypeError) as e:
        return ToolResult(False, "No result.", f"{type(e).__name__}: {e}")


def _has_variables(node) -> bool:
    if isinstance(node, Var):
        return node.name not in CONSTANTS
    if isinstance(node, Unary):
        return _has_variables(node.operand)
    if isinstance(node, Binary):
        return _has_variables(node.left) or _has_variables(node.right)
    if isinstance(node, Call):
        return any(_has_variables(a) for a in node.args)
    return False


def degree(node) -> tuple[int, int]:
    """(numerator degree, denominator degree) of an equation side, from the AST and before any algebra: nested
    powers multiply (``((x**12)**12)**12`` -> 1728), products add, sums take the larger after a common denominator.
    Constant parts are evaluated with the calculator's limits (``2**10**10`` fails here); exponents must be constant;
    a degree above ``MAX_SOLVER_DEGREE`` anywhere is an :class:`ExprError`."""
    if not _has_variables(node):
        evaluate(node)  # raises past the calculator's size limits
        return 0, 0
    if isinstance(node, Var):
        return 1, 0
    if isinstance(node, Unary):
        return degree(node.operand)
    if isinstance(node, Call):
        n, d = 0, 0
        for a in node.args:
            an, ad = degree(a)
            n, d = max(n, an + ad), 0  # sqrt(p), sin(p), ...: not a polynomial; count p's size
        result = (n, d)
    elif node.op == "**":
        if _has_variables(node.right):
            raise ExprError("the solver takes constant exponents only")
        e = evaluate(node.right).x
        n, d = degree(node.left)
        k = abs(float(e))
        if k * max(n, d) > MAX_SOLVER_DEGREE:
            raise ExprError(f"a power of degree {k * max(n, d):.6g} (the solver takes degree up to {MAX_SOLVER_DEGREE})")
        n, d = math.ceil(n * k), math.ceil(d * k)
        result = (n, d) if e >= 0 else (d, n)
    else:
        (n1, d1), (n2, d2) = degree(node.left), degree(node.right)
        result = {"+": (max(n1 + d2, n2 + d1), d1 + d2), "-": (max(n1 + d2, n2 + d1), d1 + d2),
                  "*": (n1 + n2, d1 + d2), "/": (n1 + d2, d1 + n2), "%": (n1 + d1 + n2 + d2, 0)}[node.op]
    if max(result) > MAX_SOLVER_DEGREE:
        raise ExprError(f"degree {max(result)} (the solver takes degree up to {MAX_SOLVER_DEGREE})")
    return result


def _to_sympy(node, symbols: dict):
    import sympy

    if isinstance(node, Num):
        return sympy.Integer(node.value) if isinstance(node.value, int) else sympy.Rational(node.value.numerator, node.value.denominator)
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
            if not b.is_number:
                raise ExprError("the solver takes constant exponents only")
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
        parts = [p for p in split_equations(normalize_math(system)) if p.strip()]
        if not parts or len(parts) > MAX_EQUATIONS:
            raise ExprError(f"give 1 to {MAX_EQUATIONS} equations separated by ';'")
        symbols: dict = {}
        equations = []
        for part in parts:
            if part.count("=") != 1:
                raise ExprError(f"each equation needs exactly one '=': {part.strip()!r}")
            lhs, rhs = (parse(side, variables=True) for side in part.split("="))
            degree(Binary("-", lhs, rhs))  # raises above MAX_SOLVER_DEGREE, before sympy sees the equation
            equations.append(_to_sympy(lhs, symbols) - _to_sympy(rhs, symbols))
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
