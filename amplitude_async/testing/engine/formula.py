"""The formula metric's parser and evaluator (``UNIQUES(A)/UNIQUES(B)``)."""

from __future__ import annotations

import re
from typing import Any, Final

from .errors import BadParameter
from .series import _Agg

_FORMULA_FUNCTIONS: Final = ("UNIQUES", "TOTALS", "PROPSUM", "PROPAVG")
_TOKEN: Final = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([A-Za-z_]+)|(.))")


class _Formula:
    """A parsed formula such as ``UNIQUES(A)/UNIQUES(B)``: arithmetic over metric calls."""

    def __init__(self, text: str, letters: int) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        for m in _TOKEN.finditer(text.strip()):
            number, name, other = m.groups()
            if number:
                self.tokens.append(("num", number))
            elif name:
                self.tokens.append(("name", name.upper()))
            elif other and not other.isspace():
                self.tokens.append(("op", other))
        self.pos = 0
        self.letters = letters
        self.calls: set[tuple[str, int]] = set()
        self.tree = self._expr()
        if self.pos != len(self.tokens):
            self._fail("unexpected text after the end of the formula")

    def _fail(self, message: str) -> None:
        raise BadParameter(f"{message} in {self.text!r}", field="formula")

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            self._fail("the formula ends too early")
            raise AssertionError  # unreachable: _fail raises
        self.pos += 1
        return token

    def _expr(self) -> Any:
        node = self._term()
        while (t := self._peek()) is not None and t[1] in "+-":
            self.pos += 1
            node = (t[1], node, self._term())
        return node

    def _term(self) -> Any:
        node = self._factor()
        while (t := self._peek()) is not None and t[1] in "*/":
            self.pos += 1
            node = (t[1], node, self._factor())
        return node

    def _factor(self) -> Any:
        kind, text = self._take()
        if kind == "num":
            return ("num", float(text))
        if text == "-":
            return ("-", ("num", 0.0), self._factor())
        if text == "(":
            node = self._expr()
            if self._take() != ("op", ")"):
                self._fail("a parenthesis is not closed")
            return node
        if kind == "name":
            if text not in _FORMULA_FUNCTIONS:
                self._fail(
                    f"unsupported function {text} (supported: {', '.join(_FORMULA_FUNCTIONS)})"
                )
            if self._take() != ("op", "("):
                self._fail(f"{text} needs an event letter in parentheses")
            kind2, letter = self._take()
            index = ord(letter) - ord("A") if kind2 == "name" and len(letter) == 1 else -1
            if not 0 <= index < self.letters:
                self._fail(f"{text} refers to {letter!r}, not to one of the query's events")
            if self._take() != ("op", ")"):
                self._fail(f"{text}({letter} is not closed")
            self.calls.add((text, index))
            return ("call", text, index)
        self._fail(f"unexpected {text!r}")
        raise AssertionError  # unreachable: _fail raises

    def metric(self, aggs: list[_Agg], _active: _Agg | None) -> float:
        """The formula's value given each event's aggregate."""
        return self.evaluate({call: _call_value(call[0], aggs[call[1]]) for call in self.calls})

    def evaluate(self, calls: dict[tuple[str, int], float]) -> float:
        def walk(node: Any) -> float:
            if node[0] == "num":
                return float(node[1])
            if node[0] == "call":
                return calls[node[1], node[2]]
            a, b = walk(node[1]), walk(node[2])
            if node[0] == "+":
                return a + b
            if node[0] == "-":
                return a - b
            if node[0] == "*":
                return a * b
            return a / b if b else 0.0

        return walk(self.tree)


def _call_value(name: str, agg: _Agg) -> float:
    if name == "UNIQUES":
        return float(len(agg.users))
    if name == "TOTALS":
        return float(agg.total)
    if name == "PROPSUM":
        return agg.vsum
    return agg.vsum / agg.vcount if agg.vcount else 0.0
