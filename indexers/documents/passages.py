"""Text and Markdown documents split into passages with position-based, stable ids.

Splitting is deterministic. The text is cut into blocks first: paragraphs (separated
by blank lines); in Markdown, the paragraphs, list items, code blocks and tables that
markdown-it parses, with headings as section boundaries. Whole blocks are then packed
greedily, in order, into passages of at most ``passage_words`` words; a passage never
crosses a heading. A block longer than the budget becomes its own windows of
``passage_words`` words, each sharing ``passage_overlap`` words with the one before.

Ids are ``{doc_id}#p={n}``, n counting passages from 1 in document order, so the same
text always gives the same ids and texts. Editing one paragraph changes the texts of
the passages from its own to the end of its section at most (packing restarts at each
heading). It shifts the numbers of all later passages in the document only when it
changes how many passages come before them (a paragraph grows past the budget, a
section appears or disappears); then every later id names different text, so re-index
an edited document whole: delete its ``{doc_id}#`` ids, then add its passages.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from indexers.documents.config import DocumentsConfig
from indexers.sources import SourceItem, SourceProblem
from pipeline.media import MediaError, read_text
from pipeline.schema import Asset

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

MARKDOWN_SUFFIXES = {".md", ".markdown"}

_WORD = re.compile(r"\S+")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
# markdown-it numbers lines after turning CRLF and CR into LF; so do we.
_LINE_END = re.compile(r"\r\n?|\n")
# Block tokens whose source lines become one block. Lists and block quotes are not here:
# their paragraphs are, so a long list is cut between items, never inside one.
_LEAF_BLOCKS = {"paragraph_open", "fence", "code_block", "html_block", "table_open"}


@dataclass(frozen=True)
class _Block:
    words: list[tuple[int, int]]  # character spans into the original text
    section: str | None  # heading path, "Guide > Install"
    section_number: int  # tells apart two sections with the same heading path


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    section: str | None


def iter_text_passages(path: Path, doc_id: str, config: DocumentsConfig) -> Iterator[SourceItem]:
    """The passages of a text file (Markdown when its name ends in .md or .markdown), with
    the file's ``path`` added to their metadata; a ``SourceProblem`` naming ``doc_id`` when
    the file is not text or holds none."""
    path = Path(path)
    try:
        text = read_text(path)
    except MediaError as exc:
        yield SourceProblem(doc_id, exc.reason, "failed")
        return
    passages = split_passages(text, doc_id, config, markdown=_is_markdown(path))
    if not passages:
        yield SourceProblem(doc_id, "no text to index (only whitespace or markup)", "failed")
    for passage in passages:
        passage.metadata["path"] = str(path)
        yield passage


def split_passages(text: str, doc_id: str, config: DocumentsConfig, markdown: bool) -> list[Asset]:
    """Passages of ``text`` as assets ``{doc_id}#p={n}`` with metadata ``doc_id``,
    ``passage`` (n), ``section`` (heading path or None) and ``char_start``/``char_end``,
    the passage body's span in ``text`` (the section prefix is not part of it)."""
    blocks = _markdown_blocks(text) if markdown else _paragraph_blocks(text)
    spans = _pack(blocks, config.passage_words, config.passage_overlap)
    prefix = markdown and config.section_prefix
    return [_asset(text, span, doc_id, number, prefix) for number, span in enumerate(spans, 1)]


def _is_markdown(path: Path) -> bool:
    return path.suffix.lower() in MARKDOWN_SUFFIXES


def _asset(text: str, span: _Span, doc_id: str, number: int, prefix: bool) -> Asset:
    body = text[span.start : span.end]
    shown = f"{span.section}\n\n{body}" if prefix and span.section else body
    metadata = {
        "doc_id": doc_id,
        "passage": number,
        "section": span.section,
        "char_start": span.start,
        "char_end": span.end,
    }
    return Asset(id=f"{doc_id}#p={number}", text=shown, metadata=metadata)


def _paragraph_blocks(text: str) -> list[_Block]:
    blocks = []
    start = 0
    for separator in _BLANK_LINE.finditer(text):
        blocks.append(_block(text, start, separator.start(), None, 0))
        start = separator.end()
    blocks.append(_block(text, start, len(text), None, 0))
    return [block for block in blocks if block.words]


def _markdown_blocks(text: str) -> list[_Block]:
    tokens = _markdown_parser().parse(text)
    line_starts = [0, *(match.end() for match in _LINE_END.finditer(text))]
    headings: list[tuple[int, str]] = []
    section_number = 0
    blocks = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            level = int(token.tag[1:])
            title = tokens[index + 1].content.strip()
            headings = [(lvl, name) for lvl, name in headings if lvl < level] + [(level, title)]
            section_number += 1
        elif token.type in _LEAF_BLOCKS and token.map is not None:
            first, last = token.map
            start = line_starts[first]
            end = line_starts[last] if last < len(line_starts) else len(text)
            section = " > ".join(name for _, name in headings if name) or None
            blocks.append(_block(text, start, end, section, section_number))
    return [block for block in blocks if block.words]


@functools.lru_cache(maxsize=1)
def _markdown_parser() -> MarkdownIt:
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        raise ImportError(
            "Markdown passages need markdown-it-py: pip install markdown-it-py"
        ) from None
    return MarkdownIt("commonmark").enable("table")


def _block(text: str, start: int, end: int, section: str | None, section_number: int) -> _Block:
    words = [match.span() for match in _WORD.finditer(text, start, end)]
    return _Block(words, section, section_number)


def _pack(blocks: list[_Block], budget: int, overlap: int) -> list[_Span]:
    spans: list[_Span] = []
    group: list[_Block] = []
    group_words = 0
    for block in blocks:
        crosses_heading = bool(group) and block.section_number != group[0].section_number
        if group and (crosses_heading or group_words + len(block.words) > budget):
            spans.append(_group_span(group))
            group, group_words = [], 0
        if len(block.words) > budget:
            spans.extend(_windows(block, budget, overlap))
        else:
            group.append(block)
            group_words += len(block.words)
    if group:
        spans.append(_group_span(group))
    return spans


def _group_span(group: list[_Block]) -> _Span:
    return _Span(group[0].words[0][0], group[-1].words[-1][1], group[0].section)


def _windows(block: _Block, budget: int, overlap: int) -> Iterator[_Span]:
    words = block.words
    for first in range(0, len(words), budget - overlap):
        last = min(first + budget, len(words))
        yield _Span(words[first][0], words[last - 1][1], block.section)
        if last == len(words):
            return
