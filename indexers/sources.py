"""The reader stage: turns a folder or a manifest into a stream of assets.

Every input item becomes either an ``Asset`` or a ``SourceProblem`` naming the
item and the reason, so one bad row or file never stops a build. Documents expand
into several assets: a PDF into its pages (``doc.pdf#page=1``), a text or Markdown
file into its passages (``notes.md#p=1``), see :mod:`indexers.documents`.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from pipeline.schema import Asset

if TYPE_CHECKING:
    from indexers.documents import DocumentsConfig

MANIFEST_SUFFIXES = {".jsonl", ".csv"}
MEDIA_FIELDS = ("image", "video")
PDF_FIELD = "pdf"
CONTENT_FIELDS = {"id", "text", PDF_FIELD, *MEDIA_FIELDS}
# Files with these suffixes were meant as media, text or PDF: content of another kind
# (a ".png" holding text, say) is a failure to report, not a file to index as whatever
# it holds, nor an unsupported file to skip.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm"}
TEXT_SUFFIXES = {".txt", ".md"}
KIND_OF_SUFFIX = {
    **dict.fromkeys(IMAGE_SUFFIXES, "image"),
    **dict.fromkeys(VIDEO_SUFFIXES, "video"),
    **dict.fromkeys(TEXT_SUFFIXES, "text"),
    ".pdf": "pdf",
}
EXPECTED_SUFFIXES = set(KIND_OF_SUFFIX)


@dataclass(frozen=True)
class SourceProblem:
    item: str
    reason: str
    outcome: Literal["failed", "skipped"]


SourceItem = Asset | SourceProblem


@dataclass(frozen=True)
class _Reading:
    """Where ``iter_source`` puts what it derives: document settings and page images."""

    documents: DocumentsConfig
    cache_dir: Path


def iter_source(
    path: Path, documents: DocumentsConfig | None = None, cache_dir: Path | None = None
) -> Iterator[SourceItem]:
    """Assets from a folder (walked recursively, sorted) or a JSONL/CSV manifest.

    PDFs become page assets whose rendered images are written under ``cache_dir``
    (by default a shared folder in the system temp dir; builds pass ``INDEX/pages``)."""
    for item, _ in iter_source_counted(path, documents, cache_dir):
        yield item


def iter_source_counted(
    path: Path, documents: DocumentsConfig | None = None, cache_dir: Path | None = None
) -> Iterator[tuple[SourceItem, int]]:
    """``iter_source``'s items, each with how many input items (files or manifest rows)
    it completes: 1 for the first item of a file or row, 0 for the other pages or
    passages of the same document, so the counts add up to ``count_source``."""
    from indexers.documents import DocumentsConfig

    path = Path(path)
    reading = _Reading(
        documents or DocumentsConfig(),
        Path(cache_dir) if cache_dir is not None else _default_cache_dir(),
    )
    if _check_input(path) == "folder":
        yield from _iter_folder(path, reading)
    else:
        yield from _iter_manifest(path, reading)


def count_source(path: Path) -> int:
    """How many input items ``iter_source`` reads (for progress bars); cheap. It counts
    files and manifest rows, not assets: a PDF or a Markdown file counts once however
    many pages or passages it yields, and builds advance their progress the same way."""
    path = Path(path)
    if _check_input(path) == "folder":
        return sum(1 for _ in _walk(path))
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if path.suffix.lower() == ".csv" else lines


def _check_input(path: Path) -> Literal["folder", "manifest"]:
    if path.is_dir():
        return "folder"
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return "manifest"
    if path.exists():
        raise ValueError(f"{path}: input must be a folder or a .jsonl/.csv manifest")
    raise FileNotFoundError(f"{path}: input not found")


def _default_cache_dir() -> Path:
    # Page images are keyed by the PDF's content, so one shared folder is safe.
    return Path(tempfile.gettempdir()) / "vlsearch-pages"


def _counted(items: Iterator[SourceItem]) -> Iterator[tuple[SourceItem, int]]:
    for position, item in enumerate(items):
        yield item, int(position == 0)


def _walk(root: Path) -> Iterator[Path]:
    # Hidden files and folders (.git, .DS_Store) are never content.
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            yield path


def _iter_folder(root: Path, reading: _Reading) -> Iterator[tuple[SourceItem, int]]:
    for path in _walk(root):
        asset_id = path.relative_to(root).as_posix()
        for item, count in _counted(_file_items(path, asset_id, reading)):
            if isinstance(item, Asset):
                # Relative, like every other folder asset's, whatever the document reader put.
                item.metadata["path"] = asset_id
            yield item, count


def _file_items(path: Path, asset_id: str, reading: _Reading) -> Iterator[SourceItem]:
    from indexers.documents import is_pdf, iter_pdf_pages, iter_text_passages
    from pipeline.media import MediaError, detect_kind

    try:
        if path.stat().st_size == 0:
            yield SourceProblem(asset_id, "empty file (0 bytes)", "failed")
            return
        # Before detect_kind: a PDF is text-like enough for it to misjudge.
        kind = "pdf" if is_pdf(path) else detect_kind(path)
        mismatch = _kind_mismatch(path, kind)
        if mismatch:
            yield SourceProblem(asset_id, mismatch, "failed")
        elif kind == "pdf":
            yield from iter_pdf_pages(path, asset_id, reading.documents, reading.cache_dir)
        elif kind is None:
            yield unrecognised_file(asset_id, path)
        elif kind == "text":
            yield from iter_text_passages(path, asset_id, reading.documents)
        else:
            yield Asset(id=asset_id, metadata={"path": asset_id}, **{kind: path})
    except MediaError as exc:
        yield SourceProblem(asset_id, exc.reason, "failed")
    except (OSError, ValidationError) as exc:
        yield SourceProblem(asset_id, _short(exc), "failed")


def _kind_mismatch(path: Path, kind: str | None) -> str | None:
    """Why a file whose name promises one kind but whose content is another is refused;
    None when they agree, or when the name promises nothing or the content is nothing."""
    expected = KIND_OF_SUFFIX.get(path.suffix.lower())
    if expected is None or kind is None or kind == expected:
        return None
    return f"named as {expected} ({path.suffix}) but its content is {kind}"


def unrecognised_file(asset_id: str, path: Path) -> SourceProblem:
    """Why a file of no known kind is left out: skipped when its name promised nothing we
    read, failed (with the decoder's reason) when it promised an image or a video."""
    suffix = path.suffix.lower()
    if suffix not in EXPECTED_SUFFIXES:
        return SourceProblem(asset_id, "unsupported file type", "skipped")
    return SourceProblem(asset_id, _why_unreadable(path), "failed")


def _why_unreadable(path: Path) -> str:
    """The loader's own reason for a file whose suffix promised media."""
    from pipeline.media import MediaError, load_image, probe_video

    loader = probe_video if path.suffix.lower() in VIDEO_SUFFIXES else load_image
    try:
        loader(path)
    except MediaError as exc:
        return exc.reason
    return f"content is not a readable {path.suffix.lower()} file"


def _iter_manifest(manifest: Path, reading: _Reading) -> Iterator[tuple[SourceItem, int]]:
    rows = _jsonl_rows(manifest) if manifest.suffix.lower() == ".jsonl" else _csv_rows(manifest)
    seen: set[str] = set()
    for line_no, row in rows:
        item = f"{manifest.name}:{line_no}"
        if isinstance(row, str):
            yield SourceProblem(item, row, "failed"), 1
            continue
        row_id = row.get("id")
        if row_id not in (None, "") and str(row_id) in seen:
            yield SourceProblem(item, f"duplicate id {str(row_id)!r}", "failed"), 1
        elif row.get(PDF_FIELD) not in (None, ""):
            if row_id not in (None, ""):
                seen.add(str(row_id))
            yield from _counted(_pdf_row_pages(row, manifest.parent, item, reading))
        else:
            asset = _row_to_asset(row, manifest.parent, item)
            if isinstance(asset, Asset):
                seen.add(asset.id)
            yield asset, 1


def _pdf_row_pages(
    row: dict[str, Any], base: Path, item: str, reading: _Reading
) -> Iterator[SourceItem]:
    """The pages of the PDF a row names, each with the row's metadata added."""
    from indexers.documents import iter_pdf_pages

    row = {key: value for key, value in row.items() if value not in (None, "")}
    if "id" not in row:
        yield SourceProblem(item, "row has no 'id'", "failed")
        return
    doc_id = str(row.pop("id"))
    pdf = _resolve(base, str(row.pop(PDF_FIELD)))
    if clash := [name for name in ("text", *MEDIA_FIELDS, "fps") if name in row]:
        reason = f"a '{PDF_FIELD}' row cannot also have {', '.join(repr(n) for n in clash)}"
        yield SourceProblem(f"{item} (id {doc_id!r})", reason, "failed")
        return
    metadata = _row_metadata(row)
    for page in iter_pdf_pages(pdf, doc_id, reading.documents, reading.cache_dir):
        if isinstance(page, Asset):
            # The page's own keys (doc_id, page, ...) win: filters and folding rely on them.
            page.metadata = {**metadata, **page.metadata}
        yield page


def _row_to_asset(row: dict[str, Any], base: Path, item: str) -> SourceItem:
    row = {key: value for key, value in row.items() if value not in (None, "")}
    if "id" not in row:
        return SourceProblem(item, "row has no 'id'", "failed")
    fields: dict[str, Any] = {"id": str(row.pop("id"))}
    if "text" in row:
        fields["text"] = str(row.pop("text"))
    for name in MEDIA_FIELDS:
        if name in row:
            fields[name] = _resolve(base, str(row.pop(name)))
    if "fps" in row:
        fields["fps"] = row.pop("fps")
    try:
        return Asset(**fields, metadata=_row_metadata(row))
    except ValidationError as exc:
        return SourceProblem(f"{item} (id {fields['id']!r})", _short(exc), "failed")


def _row_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """The row's fields other than content, with a ``metadata`` object flattened in."""
    extra = row.pop("metadata", {})
    return {**(extra if isinstance(extra, dict) else {"metadata": extra}), **row}


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _jsonl_rows(manifest: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with manifest.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, f"not valid JSON ({exc.msg})"
                continue
            yield line_no, row if isinstance(row, dict) else "row is not a JSON object"


def _csv_rows(manifest: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with manifest.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            if None in row:
                yield reader.line_num, "row has more fields than the header"
                continue
            yield (
                reader.line_num,
                {
                    key: value if key in CONTENT_FIELDS else _csv_value(value)
                    for key, value in row.items()
                },
            )


def _csv_value(text: str | None) -> Any:
    # CSV has no types; numbers are kept as numbers so filters can compare them.
    if text is None:
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc) or type(exc).__name__
