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

Modules: :mod:`~pipeline.filters.syntax` (the AST and its kinds),
:mod:`~pipeline.filters.parser` (text to AST), :mod:`~pipeline.filters.filter` (the
parsed :class:`Filter`), one evaluator each: :mod:`~pipeline.filters.python`,
:mod:`~pipeline.filters.sql`, :mod:`~pipeline.filters.milvus`, and
:mod:`~pipeline.filters.fields` (a filter's fields that no asset has).
"""

from pipeline.filters.filter import Filter
from pipeline.filters.parser import MAX_DEPTH, MAX_LENGTH, parse_filter
from pipeline.filters.syntax import And, Compare, FilterError, In, Node, Not, Or, kind_of

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
