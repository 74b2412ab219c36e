"""``configs/default.yaml``, written from the config models themselves: every setting with
its default and what it means, so the file cannot drift from the code (a test compares
them). ``vlsearch config defaults`` prints it.

A section is a mapping of its settings. Where a setting takes one of several backends
(``reranker``, ``text_channels``), the default backend is written out and the others
follow as commented-out blocks, every one of their settings included.
"""

from __future__ import annotations

import textwrap
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from pipeline.config_errors import union_members

WIDTH = 92
HEADER = """\
# vlsearch: every setting with its default. Generated from the config models by
# `vlsearch config defaults` (a test checks that this file matches them): edit the
# models, not this file. Every key is optional; `vlsearch config show FILE` prints a
# config as it resolves, and `--set key.sub=value` overrides any key.
"""


def render_defaults() -> str:
    from pipeline.config import Config

    lines = [HEADER.rstrip("\n")]
    for name, field in Config.model_fields.items():
        lines.append("")
        lines += _setting(name, field, indent=0)
    return "\n".join(lines) + "\n"


def _setting(name: str, field: FieldInfo, indent: int) -> list[str]:
    """A top-level setting, and after it the other backends it could take."""
    default = field.get_default(call_default_factory=True)
    members = _backend_members(field.annotation)
    about = _about(field)
    if members:
        tags = " | ".join(m.model_fields["backend"].default for m in members)
        about += f" backend: {tags}; the other backends' settings follow, commented out."
    lines = _entry(name, about.strip(), default, indent)
    for member in members:
        if not isinstance(default, member):
            lines += _alternative(name, member, indent, listed=isinstance(default, list))
    return lines


def _fields(model: BaseModel, indent: int) -> list[str]:
    return [
        line
        for name, field in type(model).model_fields.items()
        for line in _entry(name, _about(field), getattr(model, name), indent)
    ]


def _entry(name: str, about: str, value: Any, indent: int) -> list[str]:
    """``name: value`` under its comment; a section's settings nested below it."""
    pad = " " * indent
    if isinstance(value, BaseModel):
        return [*_comment(about, indent), f"{pad}{name}:", *_fields(value, indent + 2)]
    return [*_comment(about, indent), f"{pad}{name}: {_value(value)}"]


def _alternative(name: str, member: type[BaseModel], indent: int, listed: bool) -> list[str]:
    """Another backend's block, commented out: for a list setting, one list entry."""
    tag = member.model_fields["backend"].default
    title = " ".join((member.__doc__ or "").split("\n\n")[0].split())
    head = f"{name} with backend {tag}" + (f": {title}" if title else "")
    body = _fields(member(), 2)
    block = [f"{name}:", *(_as_list_entry(body) if listed else body)]
    pad = " " * indent
    return ["", *_comment(head, indent), *(pad + "# " + line for line in block)]


def _as_list_entry(lines: list[str]) -> list[str]:
    """Indented settings as the first entry of a YAML list (``- backend: ...``)."""
    entry: list[str] = []
    first = True
    for line in lines:
        if first and not line.lstrip().startswith("#"):
            entry.append("- " + line.lstrip())
            first = False
        else:
            entry.append(line)
    return entry


def _about(field: FieldInfo) -> str:
    text = (field.description or "").strip()
    choices = _choices(field.annotation)
    if choices and not all(c in text for c in choices):
        text = (text + " " if text else "") + "One of: " + " | ".join(choices) + "."
    return text


def _choices(annotation: Any) -> list[str]:
    literals = [m for m in union_members(annotation) if get_origin(m) is Literal]
    values = [str(value) for literal in literals for value in get_args(literal)]
    return values if len(values) > 1 else []  # a backend's own tag offers no choice


def _backend_members(annotation: Any) -> list[type[BaseModel]]:
    """The members of a union of backend models (also inside list[...]), or none."""
    if get_origin(annotation) in (list, tuple):
        annotation = get_args(annotation)[0]
    members = [
        m
        for m in union_members(annotation)
        if isinstance(m, type) and issubclass(m, BaseModel) and "backend" in m.model_fields
    ]
    return members if len(members) > 1 else []


def _comment(text: str, indent: int) -> list[str]:
    if not text:
        return []
    pad = " " * indent + "# "
    return textwrap.wrap(text, width=WIDTH, initial_indent=pad, subsequent_indent=pad)


def _value(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = "***"
    if isinstance(value, tuple):
        value = list(value)
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True)
    return dumped.strip().removesuffix("...").strip()
