"""Filter text to AST: a hand-written tokenizer and recursive-descent parser (user text
is never evaluated), with limits on length and nesting."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.filters.filter import Filter
from pipeline.filters.syntax import (
    And,
    Compare,
    CompareOp,
    FilterError,
    In,
    Kind,
    Node,
    Not,
    Or,
    Scalar,
    kind_of,
)

MAX_LENGTH = 4096
"""Longest filter accepted, in UTF-8 bytes."""
MAX_DEPTH = 32
"""Deepest nesting of parentheses and ``not`` accepted."""

_INT64 = 2**63

# -- tokenizer ---------------------------------------------------------------------------

TokenType = Literal["(", ")", "[", "]", ",", "op", "string", "number", "name", "keyword", "end"]
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
# JSON's escapes plus \' for single-quoted strings.
_SIMPLE_ESCAPES = {
    '"': '"',
    "'": "'",
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[\w.]+")
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")


@dataclass(frozen=True)
class _Token:
    type: TokenType
    text: str
    value: Any
    column: int  # 1-based


class _Tokenizer:
    def __init__(self, expression: str) -> None:
        self._text = expression
        self._pos = 0

    def tokens(self) -> Iterator[_Token]:
        text = self._text
        while True:
            while self._pos < len(text) and text[self._pos].isspace():
                self._pos += 1
            if self._pos >= len(text):
                yield _Token("end", "", None, len(text) + 1)
                return
            yield self._next()

    def _next(self) -> _Token:
        text, start = self._text, self._pos
        char = text[start]
        if char in "()[],":
            self._pos += 1
            return _Token(char, char, None, start + 1)  # type: ignore[arg-type]
        for op in _OPERATORS:
            if text.startswith(op, start):
                self._pos += len(op)
                return _Token("op", op, op, start + 1)
        if char in "\"'":
            return self._string()
        number = _NUMBER.match(text, start)
        if number and not _continues_word(text, number.end()):
            self._pos = number.end()
            return _Token("number", number.group(), self._number(number.group()), start + 1)
        name = _NAME.match(text, start)
        if name and not _continues_word(text, name.end()):
            self._pos = name.end()
            word = name.group()
            if word.lower() in _KEYWORDS:
                return _Token("keyword", word, word.lower(), start + 1)
            return _Token("name", word, tuple(word.split(".")), start + 1)
        if char == "=":
            raise self._error("expected '==' (a single '=' is not an operator)", start)
        word = _WORD.match(text, start)
        if word:
            raise self._error(f"{word.group()!r} is neither a field name nor a value", start)
        raise self._error(f"unexpected character {char!r}", start)

    def _string(self) -> _Token:
        text, start = self._text, self._pos
        quote = text[start]
        pos = start + 1
        chars: list[str] = []
        while pos < len(text) and text[pos] != quote:
            if text[pos] != "\\":
                chars.append(text[pos])
                pos += 1
                continue
            escaped, pos = self._escape(pos)
            chars.append(escaped)
        if pos >= len(text):
            raise self._error(f"unterminated string (expected a closing {quote})", len(text))
        self._pos = pos + 1
        return _Token("string", text[start : pos + 1], "".join(chars), start + 1)

    def _escape(self, pos: int) -> tuple[str, int]:
        """Decode the escape at ``pos`` (a backslash); return it and the position after."""
        text = self._text
        code = text[pos + 1 : pos + 2]
        if code in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[code], pos + 2
        digits = text[pos + 2 : pos + 6]
        if code == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", digits):
            character = chr(int(digits, 16))
            if 0xD800 <= ord(character) <= 0xDFFF:
                raise self._error("\\u escape of a surrogate is not a character", pos)
            return character, pos + 6
        raise self._error(
            "unknown escape (use \\\\, \\', \\\", \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX)", pos
        )

    def _number(self, literal: str) -> int | float:
        if re.fullmatch(r"-?\d+", literal):
            value = int(literal)
            if not -_INT64 <= value < _INT64:
                raise self._error("integer out of the 64-bit range", self._pos - len(literal))
            return value
        number = float(literal)
        if not math.isfinite(number):
            raise self._error("number out of range", self._pos - len(literal))
        return number

    def _error(self, reason: str, offset: int) -> FilterError:
        return FilterError(self._text, reason, offset + 1)


def _continues_word(text: str, end: int) -> bool:
    """True when a number or name runs straight into more word characters (``5abc``)."""
    return end < len(text) and (text[end].isalnum() or text[end] in "_.")


# -- parser ------------------------------------------------------------------------------

_ORDERING = frozenset({"<", "<=", ">", ">="})
_FLIPPED: dict[str, CompareOp] = {
    "==": "==",
    "!=": "!=",
    "<": ">",
    "<=": ">=",
    ">": "<",
    ">=": "<=",
}


class _Parser:
    def __init__(self, expression: str) -> None:
        self._text = expression
        self._tokens = list(_Tokenizer(expression).tokens())
        self._index = 0
        self._depth = 0

    def parse(self) -> Node:
        node = self._or()
        if self._peek().type != "end":
            raise self._expected("'and', 'or' or the end of the filter")
        return node

    # Each level gathers a flat n-ary node, so long 'a or b or c' chains never recurse.
    def _or(self) -> Node:
        operands = [self._and()]
        while self._accept_keyword("or"):
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self) -> Node:
        operands = [self._unary()]
        while self._accept_keyword("and"):
            operands.append(self._unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _unary(self) -> Node:
        token = self._peek()
        if self._accept_keyword("not"):
            with self._nested(token):
                return Not(self._unary())
        if token.type == "(":
            self._index += 1
            with self._nested(token):
                node = self._or()
            self._expect(")", "')'")
            return node
        return self._predicate()

    def _predicate(self) -> Node:
        token = self._peek()
        if token.type == "name":
            self._index += 1
            return self._field_predicate(token.value)
        if _is_value(token):
            return self._value_first_predicate()
        raise self._expected("a field name, a value or '('")

    def _field_predicate(self, path: tuple[str, ...]) -> Node:
        if self._accept_keyword("not"):
            if not self._accept_keyword("in"):
                raise self._expected("'in'")
            return Not(In(path, self._list()))
        if self._accept_keyword("in"):
            return In(path, self._list())
        op = self._expect("op", "a comparison operator or 'in'").value
        return self._comparison(path, op, self._value())

    def _value_first_predicate(self) -> Node:
        low_token = self._peek()
        low = self._value()
        op = self._expect("op", "a comparison operator").value
        path = self._expect("name", "a field name").value
        first = self._comparison(path, _FLIPPED[op], low, low_token)
        if self._peek().type != "op":
            return first
        op2_token = self._peek()
        self._index += 1
        same_direction = {op, op2_token.value} <= {"<", "<="} or {op, op2_token.value} <= {
            ">",
            ">=",
        }
        if not same_direction:
            raise self._error(
                "a range needs two '<'/'<=' or two '>'/'>=' comparisons", op2_token.column
            )
        return And((first, self._comparison(path, op2_token.value, self._value())))

    def _comparison(
        self, path: tuple[str, ...], op: CompareOp, value: Scalar, token: _Token | None = None
    ) -> Compare:
        token = token or self._tokens[self._index - 1]
        if op in _ORDERING and kind_of(value) in ("boolean", "null"):
            raise self._error(f"{token.text} can only be compared with == or !=", token.column)
        return Compare(path, op, value)

    def _list(self) -> tuple[Scalar, ...]:
        self._expect("[", "'['")
        values: list[Scalar] = []
        kinds: set[Kind | None] = set()
        while True:
            token = self._peek()
            value = self._value()
            kinds.add(kind_of(value))
            if value is None:
                raise self._error("null is not allowed in a list (use == null)", token.column)
            if len(kinds) > 1:
                raise self._error(
                    "list values must all be strings, numbers or booleans", token.column
                )
            values.append(value)
            if not self._accept(","):
                break
        self._expect("]", "',' or ']'")
        return tuple(values)

    def _value(self) -> Scalar:
        token = self._peek()
        if not _is_value(token):
            raise self._expected("a value")
        self._index += 1
        if token.type == "keyword":
            return {"true": True, "false": False, "null": None}[token.value]
        return token.value

    # -- token helpers ---------------------------------------------------------------

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _accept(self, token_type: TokenType) -> bool:
        if self._peek().type == token_type:
            self._index += 1
            return True
        return False

    def _accept_keyword(self, word: str) -> bool:
        token = self._peek()
        if token.type == "keyword" and token.value == word:
            self._index += 1
            return True
        return False

    def _expect(self, token_type: TokenType, description: str) -> _Token:
        token = self._peek()
        if token.type != token_type:
            raise self._expected(description)
        self._index += 1
        return token

    def _nested(self, token: _Token) -> _Depth:
        return _Depth(self, token)

    def _expected(self, description: str) -> FilterError:
        return self._error(f"expected {description}", self._peek().column)

    def _error(self, reason: str, column: int) -> FilterError:
        return FilterError(self._text, reason, column)


class _Depth:
    """Counts nesting while parsing one parenthesised group or ``not`` operand."""

    def __init__(self, parser: _Parser, token: _Token) -> None:
        self._parser = parser
        self._token = token

    def __enter__(self) -> None:
        self._parser._depth += 1
        if self._parser._depth > MAX_DEPTH:
            raise self._parser._error(f"nested deeper than {MAX_DEPTH} levels", self._token.column)

    def __exit__(self, *exc: object) -> None:
        self._parser._depth -= 1


def _is_value(token: _Token) -> bool:
    return token.type in ("string", "number") or (
        token.type == "keyword" and token.value in ("true", "false", "null")
    )


def parse_filter(text: str) -> Filter:
    """Parse a filter expression; raises :class:`FilterError` saying where and why."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_LENGTH:
        raise FilterError(text[:60] + "...", f"longer than {MAX_LENGTH} bytes")
    return Filter(text, _Parser(text).parse())
