"""A whitelist arithmetic parser: model text -> a small AST, never ``eval``.

Grammar (precedence low to high)::

    expr   := term (('+' | '-') term)*
    term   := unary (('*' | '/' | '%' | implicit) unary)*   implicit: '2x', '3(x+1)', '(a+b)c' as in math text
    unary  := ('+' | '-') unary | power
    power  := atom (('**' | '^') unary)?          right-associative
    atom   := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'

Names are a fixed set of functions and constants (plus, for the equation solver, single-letter variables); any
other character, attribute access, string, lambda or keyword is a :class:`ExprError` at the position where it
appears. Size limits (length, tokens, nesting, number literals) are checked while parsing, so a hostile input costs
little. Numbers are exact: an integer literal is an ``int``, a decimal or exponent literal (``6.626e-34``) an exact
``Fraction`` (the calculator renders it as a float, as Python would type it).

Unicode (:func:`normalize_math`) is mapped character by character, before anything else, so that nothing changes
meaning: superscripts are powers (``3²`` -> ``3**(2)``, ``10⁻³`` -> ``10**(-3)``), subscript digits after a letter
are a variable's index (``x₁`` -> ``x1``), ``× ⋅ ∙`` are ``*``, ``÷ ∕`` are ``/``, ``− – ﹣`` are ``-``, ``π`` is
``(pi)``, a vulgar fraction alone is ``(1/2)``, full-width ASCII (``（１２）＋３``) is ASCII and Unicode spaces are
spaces. Every other non-ASCII character is an error that names it (NFKC would fold ``3²`` to ``32``, ``①`` to
``1`` and ``㎡`` to ``m2``: it is not applied).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction

MAX_CHARS = 500
MAX_TOKENS = 300
MAX_DEPTH = 40
MAX_LITERAL_EXPONENT = 5000  # 1e5000 is the largest (and 1e-5000 the smallest) number literal

FUNCTIONS = frozenset({"sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "log", "ln", "log10", "log2", "exp",
                       "abs", "floor", "ceil", "round", "factorial", "min", "max"})
CONSTANTS = frozenset({"pi", "e"})


class ExprError(ValueError):
    """The text is not an expression this parser accepts; the message says where and why."""


@dataclass(frozen=True)
class Num:
    value: int | Fraction  # int for an integer literal, an exact Fraction for a decimal / exponent literal


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str
    operand: object


@dataclass(frozen=True)
class Binary:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple


_TOKEN = re.compile(r"\s*(?:(\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)|([A-Za-z_]\w*)|(\*\*|[-+*/%^(),]))", re.ASCII)

_SUPERSCRIPTS = {"⁰": "0", "¹": "1", "²": "2", "³": "3", "⁴": "4", "⁵": "5", "⁶": "6", "⁷": "7", "⁸": "8", "⁹": "9",
                 "⁺": "+", "⁻": "-", "⁽": "(", "⁾": ")"}
_SUBSCRIPTS = {chr(0x2080 + d): str(d) for d in range(10)}
_OPERATORS = {"×": "*", "⋅": "*", "∙": "*", "÷": "/", "∕": "/", "−": "-", "–": "-", "﹣": "-", "π": "(pi)"}


def _describe(ch: str) -> str:
    return f"{ch!r} (U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')})"


def normalize_math(text: str) -> str:
    """Maps math look-alikes to ASCII without changing what the text means (see the module doc); a character it
    cannot map safely is an :class:`ExprError` naming it. ASCII text is returned unchanged."""
    if text.isascii():
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isascii():
            out.append(ch)
        elif ch in _SUPERSCRIPTS:  # a run of superscripts is one exponent: x²³ is x**(23), 10⁻¹ is 10**(-1)
            j = i
            while j < len(text) and text[j] in _SUPERSCRIPTS:
                j += 1
            out.append("**(" + "".join(_SUPERSCRIPTS[c] for c in text[i:j]) + ")")
            i = j
            continue
        elif ch in _SUBSCRIPTS:  # x₁ is the variable x1; a subscript after a number (2₃) has no arithmetic meaning
            j = i
            while j < len(text) and text[j] in _SUBSCRIPTS:
                j += 1
            if not (out and out[-1][-1:].isalpha()):
                raise ExprError(f"subscript digits only index a variable (x₁): {_describe(ch)} at position {i}")
            out.append("".join(_SUBSCRIPTS[c] for c in text[i:j]))
            i = j
            continue
        elif ch in _OPERATORS:
            out.append(_OPERATORS[ch])
        elif "\uff01" <= ch <= "\uff5e":  # full-width ASCII: the same character
            out.append(chr(ord(ch) - 0xFEE0))
        elif ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch) == "No" and "\u2044" in unicodedata.normalize("NFKC", ch):
            if out and out[-1][-1:].isdigit():  # 1½ is a mixed number, 1*(1/2) would be wrong
                raise ExprError(f"a fraction character after a digit is ambiguous ({text[max(0, i - 3):i + 1]!r}); "
                                f"write 1+1/2")
            num, den = unicodedata.normalize("NFKC", ch).split("\u2044")
            out.append(f"({num}/{den})")
        else:
            raise ExprError(f"unsupported character {_describe(ch)} at position {i}")
        i += 1
    return "".join(out)


def tokenize(text: str) -> list[tuple[str, str, int]]:
    if len(text) > MAX_CHARS:
        raise ExprError(f"expression longer than {MAX_CHARS} characters")
    text = normalize_math(text)
    if len(text) > MAX_CHARS + 100:  # superscripts grow by a few characters each
        raise ExprError(f"expression longer than {MAX_CHARS} characters")
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].isspace():
            break
        m = _TOKEN.match(text, pos)
        if not m:
            at = len(text) - len(text[pos:].lstrip())
            raise ExprError(f"unexpected character {_describe(text[at])} at position {at}")
        number, name, op = m.groups()
        kind = "num" if number else "name" if name else "op"
        tokens.append((kind, number or name or op, m.start(m.lastindex)))
        pos = m.end()
        if len(tokens) > MAX_TOKENS:
            raise ExprError(f"expression has more than {MAX_TOKENS} tokens")
    return tokens


def number_literal(text: str, pos: int = 0) -> int | Fraction:
    """An exact value for a number token; the exponent of ``1e5000`` is checked before the number is built."""
    mantissa, _, exponent = text.lower().partition("e")
    if exponent and abs(int(exponent)) > MAX_LITERAL_EXPONENT:
        raise ExprError(f"number {text!r} at position {pos} is beyond 1e±{MAX_LITERAL_EXPONENT}")
    if not exponent and "." not in mantissa:
        return int(text)
    return Fraction(text)


class Parser:
    def __init__(self, text: str, variables: bool = False):
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.variables = variables

    def parse(self):
        if not self.tokens:
            raise ExprError("empty expression")
        node = self.expr()
        if self.i != len(self.tokens):
            kind, value, pos = self.tokens[self.i]
            raise ExprError(f"unexpected {value!r} at position {pos}")
        return node

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str, int]:
        if self.i >= len(self.tokens):
            raise ExprError("expression ends too early")
        tok = self.tokens[self.i]
        if expected is not None and tok[1] != expected:
            raise ExprError(f"expected {expected!r} at position {tok[2]}, got {tok[1]!r}")
        self.i += 1
        return tok

    def nested(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"expression nested deeper than {MAX_DEPTH}")

    def expr(self):
        self.nested()
        node = self.term()
        while self.peek() in ("+", "-"):
            node = Binary(self.take()[1], node, self.term())
        self.depth -= 1
        return node

    def term(self):
        node = self.unary()
        while True:
            if self.peek() in ("*", "/", "%"):
                node = Binary(self.take()[1], node, self.unary())
            elif self.implicit_product():
                node = Binary("*", node, self.unary())
            else:
                return node

    def implicit_product(self) -> bool:
        """A number or ')' directly followed by a name or '(' multiplies, as people write equations."""
        if self.i == 0 or self.i >= len(self.tokens):
            return False
        before, after = self.tokens[self.i - 1], self.tokens[self.i]
        return (before[0] == "num" or before[1] == ")") and (after[0] == "name" or after[1] == "(")

    def unary(self):
        if self.peek() in ("+", "-"):
            self.nested()
            op = self.take()[1]
            node = Unary(op, self.unary())
            self.depth -= 1
            return node
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() in ("**", "^"):
            self.take()
            self.nested()
            exponent = self.unary()
            self.depth -= 1
            return Binary("**", base, exponent)
        return base

    def atom(self):
        kind, value, pos = self.take()
        if kind == "num":
            return Num(number_literal(value, pos))
        if kind == "name":
            if self.peek() == "(":
                if value not in FUNCTIONS:
                    raise ExprError(f"unknown function {value!r} at position {pos}")
                self.take("(")
                args = [self.expr()]
                while self.peek() == ",":
                    self.take()
                    args.append(self.expr())
                self.take(")")
                return Call(value, tuple(args))
            if value in CONSTANTS:
                return Var(value)
            if self.variables and re.fullmatch(r"[a-zA-Z]\d?", value):
                return Var(value)
            raise ExprError(f"unknown name {value!r} at position {pos}")
        if value == "(":
            node = self.expr()
            self.take(")")
            return node
        raise ExprError(f"unexpected {value!r} at position {pos}")


def parse(text: str, variables: bool = False):
    return Parser(text, variables).parse()
