"""The reader stage: turns a folder or a manifest into a stream of assets.

Every input item becomes either an ``Asset`` or a ``SourceProblem`` naming the
item and the reason, so one bad row or file never stops a build.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from pipeline.schema import Asset

MANIFEST_SUFFIXES = {".jsonl", ".csv"}
MEDIA_FIELDS = ("image", "video")
CONTENT_FIELDS = {"id", "text", *MEDIA_FIELDS}
# Files with these suffixes were meant as media or text: if their content is not,
# that is a failure to report, not an unsupported file to skip.
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm"}
EXPECTED_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".txt", ".md",
    *VIDEO_SUFFIXES,
}  # fmt: skip


@dataclass(frozen=True)
class SourceProblem:
    item: str
    reason: str
    outcome: Literal["failed", "skipped"]


SourceItem = Asset | SourceProblem


def iter_source(path: Path) -> Iterator[SourceItem]:
    """Assets from a folder (walked recursively, sorted) or a JSONL/CSV manifest."""
    path = Path(path)
    if path.is_dir():
        yield from _iter_folder(path)
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        yield from _iter_manifest(path)
    elif path.exists():
        raise ValueError(f"{path}: input must be a folder or a .jsonl/.csv manifest")
    else:
        raise FileNotFoundError(f"{path}: input not found")


def count_source(path: Path) -> int:
    """How many items ``iter_source`` will yield (for progress bars); cheap."""
    path = Path(path)
    if path.is_dir():
        return sum(1 for _ in _walk(path))
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if path.suffix.lower() == ".csv" else lines


def _walk(root: Path) -> Iterator[Path]:
    # Hidden files and folders (.git, .DS_Store) are never content.
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            yield path


def _iter_folder(root: Path) -> Iterator[SourceItem]:
    from pipeline.media import MediaError, detect_kind, read_text

    for path in _walk(root):
        asset_id = path.relative_to(root).as_posix()
        metadata = {"path": asset_id}
        try:
            if path.stat().st_size == 0:
                yield SourceProblem(asset_id, "empty file (0 bytes)", "failed")
                continue
            kind = detect_kind(path)
            if kind is None:
                yield _unrecognised(asset_id, path)
            elif kind == "text":
                yield Asset(id=asset_id, text=read_text(path), metadata=metadata)
            else:
                yield Asset(id=asset_id, metadata=metadata, **{kind: path})
        except MediaError as exc:
            yield SourceProblem(asset_id, exc.reason, "failed")
        except (OSError, ValidationError) as exc:
            yield SourceProblem(asset_id, _short(exc), "failed")


def _unrecognised(asset_id: str, path: Path) -> SourceProblem:
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


def _iter_manifest(manifest: Path) -> Iterator[SourceItem]:
    rows = _jsonl_rows(manifest) if manifest.suffix.lower() == ".jsonl" else _csv_rows(manifest)
    seen: set[str] = set()
    for line_no, row in rows:
        item = f"{manifest.name}:{line_no}"
        if isinstance(row, str):
            yield SourceProblem(item, row, "failed")
            continue
        problem_or_asset = _row_to_asset(row, manifest.parent, item)
        if isinstance(problem_or_asset, Asset):
            if problem_or_asset.id in seen:
                yield SourceProblem(item, f"duplicate id {problem_or_asset.id!r}", "failed")
                continue
            seen.add(problem_or_asset.id)
        yield problem_or_asset


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
    extra = row.pop("metadata", {})
    metadata = {**(extra if isinstance(extra, dict) else {"metadata": extra}), **row}
    try:
        return Asset(**fields, metadata=metadata)
    except ValidationError as exc:
        return SourceProblem(f"{item} (id {fields['id']!r})", _short(exc), "failed")


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
