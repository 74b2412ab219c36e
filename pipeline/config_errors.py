"""Config validation errors as a user reads them: the key, where its value came from (the
file, or the ``--set`` override that wrote it), and for an unknown key the nearest one
that exists there."""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

Loc = tuple[int | str, ...]


def explain(exc: ValidationError, model: type[BaseModel], source_of: SourceOf) -> str:
    """One sentence per problem, joined with '; '."""
    return "; ".join(_explain_one(error, model, source_of) for error in exc.errors())


class SourceOf:
    """Where the value at a key came from: the override that set it or one under it,
    else the file, else the built-in defaults."""

    def __init__(self, path: str | None, overrides: Sequence[str]) -> None:
        self.path = path
        self.overrides = [(_key_path(item), item) for item in overrides]

    def __call__(self, loc: Loc) -> str:
        keys = _keys(loc)
        for path, item in reversed(self.overrides):  # the last override wins
            if keys[: len(path)] == path or path[: len(keys)] == keys:
                return f"--set {item}"
        return self.path or "<defaults>"


def dotted(loc: Loc) -> str:
    """``text_channels[0].k1`` style; a discriminated union's tag is left out."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "<root>"


def _explain_one(error: Any, model: type[BaseModel], source_of: SourceOf) -> str:
    loc, parents = _walk(model, tuple(error["loc"]))
    where = source_of(loc)
    if error["type"] != "extra_forbidden":
        return f"{where}: {dotted(loc)}: {error['msg']}"
    known = sorted({name for node in parents for name in _model_fields(node)})
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {dotted((*loc[:-1], close[0]))!r}?"
    else:
        hint = f"known keys there: {', '.join(known)}" if known else "no keys are allowed there"
    return f"{where}: unknown key {dotted(loc)!r}; {hint}"


def _walk(model: type[BaseModel], loc: Loc) -> tuple[Loc, list[Any]]:
    """``loc`` as the user wrote it, and the config models that hold its last key.

    pydantic puts a discriminated union's tag in the location (``reranker.clip.modle``,
    where the user wrote ``reranker.modle``): a tag is dropped, and narrows the union to
    the member it names."""
    kept: list[int | str] = []
    current: list[Any] = [model]
    parents = current
    for part in loc:
        tagged = [m for node in current for m in union_members(node) if _tag_of(m) == part]
        children = [child for node in current for child in _children(node, part)]
        if tagged and not children:
            current = tagged
        else:
            kept.append(part)
            parents, current = current, children
    return tuple(kept), parents


def _children(node: Any, part: int | str) -> Iterator[Any]:
    for alternative in union_members(node):
        origin = get_origin(alternative)
        if isinstance(part, int) and origin in (list, tuple, set, frozenset):
            for item in get_args(alternative)[:1]:
                yield from union_members(item)
        elif origin is dict and not isinstance(part, int):
            yield from union_members(get_args(alternative)[1])
        elif isinstance(alternative, type) and issubclass(alternative, BaseModel):
            field = alternative.model_fields.get(str(part))
            if field is not None:
                yield from union_members(field.annotation)


def union_members(annotation: Any) -> list[Any]:
    """A union's members (Annotated and Optional unwrapped), or the annotation itself."""
    if get_origin(annotation) is Annotated:
        return union_members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in union_members(arg)]
    return [annotation]


def _model_fields(node: Any) -> Iterator[str]:
    for alternative in union_members(node):
        if isinstance(alternative, type) and issubclass(alternative, BaseModel):
            yield from alternative.model_fields


def _tag_of(node: Any) -> Any:
    """The ``backend`` value that picks this member of a union, if it is one."""
    for alternative in union_members(node):
        if isinstance(alternative, type) and issubclass(alternative, BaseModel):
            field = alternative.model_fields.get("backend")
            if field is not None:
                return field.default
    return None


def _key_path(item: str) -> tuple[str, ...]:
    return tuple(item.partition("=")[0].strip().split("."))


def _keys(loc: Loc) -> tuple[str, ...]:
    return tuple(str(part) for part in loc)
