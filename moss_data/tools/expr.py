"""A whitelist arithmetic parser: model text -> a small AST, never ``eval``.

Grammar (precedence low to high)::

    expr   := term (('+' | '-') term)*
    term   := unary (('*' | '/' | '%' | implicit) unary)*   implicit: '2x', '3(x+1)', '(a+b)c' as in math text
    unary  := ('+' | '-') unary | power
    power  := atom (('**' | '^') unary)?          right-associative
    atom   := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'

Names are a fixed set of functions and constants (plus, for the equation solver, single-letter variables); any
other character, attribute access, string, lambda or keyword is a :class:`ExprError` at the position where it
appears. Size limits (length, tokens, nesting) are checked while parsing, so a hostile input costs little.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_CHARS = 500
MAX_TOKENS = 300
MAX_DEPTH = 40

FUNCTIONS = frozenset({"sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "log", "ln", "log10", "log2", "exp",
                       "abs", "floor", "ceil", "round", "factorial", "min", "max"})
CONSTANTS = frozenset({"pi", "e"})


class ExprError(ValueError):
    """The text is not an expression this parser accepts; the message says where and why."""


@dataclass(frozen=True)
class Num:
    value: int | float


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


_TOKEN = re.compile(r"\s*(?:(\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)|([A-Za-z_]\w*)|(\*\*|[-+*/%^(),]))")


def tokenize(text: str) -> list[tuple[str, str, int]]:
    # NFKC folds full-width digits and operators (１＋２) to ASCII; other look-alikes stay and are rejected.
    text = unicodedata.normalize("NFKC", text).replace("×", "*").replace("÷", "/")
    if len(text) > MAX_CHARS:
        raise ExprError(f"expression longer than {MAX_CHARS} characters")
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].isspace():
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExprError(f"unexpected character {text[pos]!r} at position {pos}")
        number, name, op = m.groups()
        kind = "num" if number else "name" if name else "op"
        tokens.append((kind, number or name or op, m.start(m.lastindex)))
        pos = m.end()
        if len(tokens) > MAX_TOKENS:
            raise ExprError(f"expression has more than {MAX_TOKENS} tokens")
    return tokens


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
            return Num(float(value) if any(c in value for c in ".eE") else int(value))
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
