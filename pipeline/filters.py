"""Metadata filter expressions: one parser, one meaning, three evaluators.

A filter such as ``category == "dress" and 10 <= price < 50`` is parsed by a small
hand-written tokenizer and recursive-descent parser (user text is never evaluated) into a
typed AST, which can then be evaluated in Python (:meth:`Filter.matches`), compiled to a
SQLite JSON1 ``WHERE`` fragment (:meth:`Filter.to_sqlite`) or to a Milvus boolean
expression over a JSON field (:meth:`Filter.to_milvus`).

Grammar (keywords are case-insensitive; ``not`` binds tighter than ``and``, ``and``
tighter than ``or``)::

    filter     := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | "(" or_expr ")" | predicate
    predicate  := field op value | value op field
                | value ("<" | "<=") field ("<" | "<=") value      # a range
                | value (">" | ">=") field (">" | ">=") value
                | field ["not"] "in" "[" value ("," value)* "]"
    op         := "==" | "!=" | "<" | "<=" | ">" | ">="
    field      := identifier ("." identifier)*                      # dims.width
    value      := string | number | "true" | "false" | "null"

Semantics, identical on every backend (the differential tests hold Python and SQLite to
it; :meth:`Filter.to_milvus` is written to it):

* Values have four kinds: string, number (int or float; JSON ``true`` is *not* 1),
  boolean and null. Arrays and objects are of no kind that a literal can have.
* A comparison is UNKNOWN when the field is missing or its value's kind differs from the
  literal's (``price < 50`` on ``"cheap"``, ``flag == true`` on ``1``, ``x == 1`` on
  ``true``). Otherwise it is TRUE or FALSE. ``x == null`` is TRUE when ``x`` is present
  and null and FALSE when it is present and anything else; ``x != null`` the reverse.
* Booleans and null only support ``==`` and ``!=``; ordering a number against a string
  is UNKNOWN, never an error. Strings order by code point.
* ``x in [a, b]`` means ``x == a or x == b``; its values must share one kind (null is
  not allowed: use ``== null``). ``x not in [...]`` means ``not (x in [...])``.
* ``and``/``or``/``not`` follow SQL's three-valued logic (``not UNKNOWN`` is UNKNOWN,
  ``FALSE and UNKNOWN`` is FALSE, ``TRUE or UNKNOWN`` is TRUE), and an item matches only
  when the whole filter is TRUE. So ``not (brand == "acme")`` excludes items with no
  ``brand`` (or a non-string one), exactly as SQL's ``WHERE NOT (brand = 'acme')`` does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "And",
    "Compare",
    "Filter",
    "FilterError",
    "In",
    "Node",
    "Not",
    "Or",
    "kind_of",
    "parse_filter",
]

MAX_LENGTH = 4096
"""Longest filter accepted, in UTF-8 bytes."""
MAX_DEPTH = 32
"""Deepest nesting of parentheses and ``not`` accepted."""

Scalar: TypeAlias = "str | int | float | bool | None"
CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]
Kind = Literal["string", "number", "boolean", "null"]

_INT64 = 2**63
_SQL_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")
_MILVUS_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class FilterError(ValueError):
    """A filter that cannot be parsed (with the 1-based column where it went wrong) or
    cannot be expressed on a backend."""

    def __init__(self, expression: str, reason: str, column: int | None = None) -> None:
        where = f" at column {column}" if column is not None else ""
        super().__init__(f"filter {expression!r}: {reason}{where}")
        self.expression = expression
        self.reason = reason
        self.column = column


# -- AST ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    path: tuple[str, ...]
    op: CompareOp
    value: Scalar


@dataclass(frozen=True)
class In:
    path: tuple[str, ...]
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node: TypeAlias = "Compare | In | Not | And | Or"


def kind_of(value: object) -> Kind | None:
    """The filter kind of a JSON value; None for arrays, objects and anything else."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass in Python
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


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


# -- the filter and its evaluators -------------------------------------------------------

Truth = bool | None  # None is UNKNOWN
_MISSING = object()


@dataclass(frozen=True)
class Filter:
    """A parsed filter: the text the user wrote and its AST."""

    expression: str
    root: Node

    def __str__(self) -> str:
        return self.expression

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        """Whether an item with this metadata passes (the filter is TRUE, not UNKNOWN)."""
        return _evaluate(self.root, metadata or {}) is True

    def to_sqlite(self, column: str = "metadata") -> tuple[str, list[Any]]:
        """A ``WHERE`` fragment over a JSON text column, and its bound parameters. The
        fragment is NULL where the filter is UNKNOWN, so ``WHERE`` drops those rows."""
        if not _SQL_COLUMN.match(column):
            raise ValueError(f"{column!r} is not a column name")
        parameters: list[Any] = []
        return _to_sql(self.root, column, parameters), parameters

    def to_milvus(self, field: str = "metadata") -> str:
        """A Milvus boolean expression over the JSON field ``field``, true exactly where
        :meth:`matches` is (see ``_milvus_true``)."""
        if not _MILVUS_FIELD.match(field):
            raise ValueError(f"{field!r} is not a Milvus field name")
        try:
            return _milvus_true(self.root, field)
        except _Unsupported as exc:
            raise FilterError(self.expression, f"{exc} cannot be expressed in Milvus") from None


# Python ------------------------------------------------------------------------------------


def _evaluate(node: Node, metadata: Mapping[str, Any]) -> Truth:
    if isinstance(node, Compare):
        return _compare(_lookup(metadata, node.path), node.op, node.value)
    if isinstance(node, In):
        return _kleene_or(_compare(_lookup(metadata, node.path), "==", v) for v in node.values)
    if isinstance(node, Not):
        inner = _evaluate(node.operand, metadata)
        return None if inner is None else not inner
    if isinstance(node, And):
        return _kleene_and(_evaluate(operand, metadata) for operand in node.operands)
    return _kleene_or(_evaluate(operand, metadata) for operand in node.operands)


def _lookup(metadata: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metadata
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


_PYTHON_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(actual: Any, op: CompareOp, literal: Scalar) -> Truth:
    if actual is _MISSING:
        return None
    if literal is None:
        return (actual is None) == (op == "==")
    if kind_of(actual) != kind_of(literal):
        return None
    return _PYTHON_OPS[op](actual, literal)


def _kleene_and(values: Iterator[Truth]) -> Truth:
    result: Truth = True
    for value in values:
        if value is False:
            return False
        if value is None:
            result = None
    return result


def _kleene_or(values: Iterator[Truth]) -> Truth:
    result: Truth = False
    for value in values:
        if value is True:
            return True
        if value is None:
            result = None
    return result


# SQLite ------------------------------------------------------------------------------------

# json_type() names per filter kind; CASE ... END without ELSE is NULL (UNKNOWN) otherwise.
_SQL_TYPES: dict[Kind, str] = {
    "number": "('integer', 'real')",
    "string": "('text')",
    "boolean": "('true', 'false')",
}
_SQL_OPS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _to_sql(node: Node, column: str, parameters: list[Any]) -> str:
    if isinstance(node, Compare | In):
        return _sql_predicate(node, column, parameters)
    if isinstance(node, Not):
        return f"(NOT {_to_sql(node.operand, column, parameters)})"
    joiner = " AND " if isinstance(node, And) else " OR "
    return _balanced(joiner, [_to_sql(operand, column, parameters) for operand in node.operands])


def _balanced(joiner: str, parts: Sequence[str]) -> str:
    """Group n-ary AND/OR as a balanced tree: SQLite caps expression depth at 1000."""
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({_balanced(joiner, parts[:middle])}{joiner}{_balanced(joiner, parts[middle:])})"


def _sql_predicate(node: Compare | In, column: str, parameters: list[Any]) -> str:
    # Field names are identifiers (checked by the tokenizer), so the path is safe inline.
    path = "'$." + ".".join(node.path) + "'"
    json_type = f"json_type({column}, {path})"
    if isinstance(node, Compare) and node.value is None:
        return (
            f"(CASE WHEN {json_type} IS NOT NULL THEN {json_type} {_SQL_OPS[node.op]} 'null' END)"
        )
    values = node.values if isinstance(node, In) else (node.value,)
    kind = kind_of(values[0])
    assert kind is not None and kind != "null"
    # Booleans are compared through json_type: json_extract turns JSON true into 1.
    operand = json_type if kind == "boolean" else f"json_extract({column}, {path})"
    bound = [("true" if v else "false") if kind == "boolean" else v for v in values]
    parameters.extend(bound)
    if isinstance(node, In):
        test = f"{operand} IN ({', '.join('?' * len(bound))})"
    else:
        test = f"{operand} {_SQL_OPS[node.op]} ?"
    return f"(CASE WHEN {json_type} IN {_SQL_TYPES[kind]} THEN {test} END)"


# Milvus ------------------------------------------------------------------------------------
#
# Milvus does its own thing with missing keys under NOT and has no json_type(), so the
# expression is built in negation normal form from two two-valued views of each node:
# _milvus_true(n) holds exactly where n is TRUE, _milvus_false(n) exactly where n is FALSE.
# Each leaf is then a *positive* comparison, which Milvus evaluates as false on a missing
# key or a value of another type, and ``x != v`` becomes ``x < v or x > v`` so that it too
# needs x present and of v's kind.


class _Unsupported(Exception):
    pass


def _milvus_true(node: Node, field: str) -> str:
    if isinstance(node, Compare):
        return _milvus_compare(node, field, negated=False)
    if isinstance(node, In):
        ref = _milvus_ref(field, node.path)
        return f"{ref} in [{', '.join(_milvus_literal(v) for v in node.values)}]"
    if isinstance(node, Not):
        return _milvus_false(node.operand, field)
    joiner = " and " if isinstance(node, And) else " or "
    return "(" + joiner.join(_milvus_true(operand, field) for operand in node.operands) + ")"


def _milvus_false(node: Node, field: str) -> str:
    if isinstance(node, Compare):
        return _milvus_compare(node, field, negated=True)
    if isinstance(node, In):
        parts = [_milvus_false(Compare(node.path, "==", v), field) for v in node.values]
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"
    if isinstance(node, Not):
        return _milvus_true(node.operand, field)
    joiner = " or " if isinstance(node, And) else " and "
    return "(" + joiner.join(_milvus_false(operand, field) for operand in node.operands) + ")"


_NEGATED: dict[str, CompareOp] = {
    "==": "!=",
    "!=": "==",
    "<": ">=",
    "<=": ">",
    ">": "<=",
    ">=": "<",
}


def _milvus_compare(node: Compare, field: str, negated: bool) -> str:
    if node.value is None:
        raise _Unsupported("comparing with null")
    ref = _milvus_ref(field, node.path)
    op = _NEGATED[node.op] if negated else node.op
    if isinstance(node.value, bool):
        wanted = node.value if op == "==" else not node.value
        return f"{ref} == {_milvus_literal(wanted)}"
    literal = _milvus_literal(node.value)
    if op == "!=":
        return f"({ref} < {literal} or {ref} > {literal})"
    return f"{ref} {op} {literal}"


def _milvus_ref(field: str, path: tuple[str, ...]) -> str:
    return field + "".join(f"[{_milvus_literal(key)}]" for key in path)


def _milvus_literal(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # finite (the tokenizer refuses others); e.g. 1e-05, 2.5
    assert isinstance(value, str)
    return _milvus_string(value)


def _milvus_string(text: str) -> str:
    """A double-quoted Milvus string literal: backslash, quote and control characters
    escaped (Milvus's grammar refuses raw newlines in strings)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
