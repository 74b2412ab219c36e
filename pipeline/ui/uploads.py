"""The page's uploads made into a query and candidates, under the serving limits.

Gradio has already written each upload to a file. Here each file is judged by its bytes
(as the REST API judges its media), checked against the same limits, and read as the
index build reads files: an image, a video, a PDF (one candidate per page, rendered as
the build renders it) or a text file. A file over a limit refuses the whole request, as
the API's 413 does; a file that cannot be read becomes a candidate that says why, ranked
last, and the others are still scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict

from indexers.documents import DocumentsConfig, is_pdf, iter_pdf_pages, pdf_summary
from indexers.sources import unrecognised_file
from pipeline.api.media_in import MediaInputs, MediaRefused
from pipeline.api.settings import ServeConfig
from pipeline.media import MediaError, detect_kind, probe_video, read_text
from pipeline.schema import Asset, Content, Query
from pipeline.settings import MediaConfig

UploadKind = Literal["image", "video", "pdf", "text", "other"]
Badge = Literal["text", "image", "video", "PDF page", "unreadable"]
# Shown as names beside the exact ratio when within 1% of one.
_NAMED_RATIOS = {
    "1:1": 1.0,
    "4:3": 4 / 3,
    "3:4": 3 / 4,
    "3:2": 3 / 2,
    "2:3": 2 / 3,
    "16:9": 16 / 9,
    "9:16": 9 / 16,
    "21:9": 21 / 9,
}


class UploadInfo(BaseModel):
    """What the page shows of an upload before anything is scored."""

    name: str
    kind: UploadKind
    size_bytes: int
    width: int | None = None
    height: int | None = None
    aspect: str | None = None
    duration_s: float | None = None
    pages: int | None = None
    problem: str | None = None


class Candidate(BaseModel):
    """One document of the Rerank tab: scored when ``content`` is set, else listed last
    with ``error``. ``media`` is the file its card shows; ``upload`` the file it came from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    label: str
    badge: Badge
    content: Content | None = None
    error: str | None = None
    media: Path | None = None
    upload: UploadInfo | None = None


class UploadReader:
    """Reads one request's uploads; PDF pages are rendered under ``pages_dir``."""

    def __init__(
        self,
        serve: ServeConfig,
        media: MediaConfig,
        documents: DocumentsConfig,
        pages_dir: Path,
        max_documents: int,
    ) -> None:
        self.serve = serve
        self.documents = documents
        self.pages_dir = Path(pages_dir)
        self.max_documents = max_documents
        self.checks = MediaInputs(serve, media, self.pages_dir)

    # -- the query -----------------------------------------------------------------------

    def query(self, text: str | None, image: str | None, video: str | None) -> Query:
        """The query of text and/or an uploaded image and/or video; MediaRefused when a
        file is over a limit or unreadable (a query that cannot be read is no query)."""
        image_path = self._checked_file(image, "query image", "image") if image else None
        video_path = self._checked_file(video, "query video", "video") if video else None
        query = Query(text=text, image=image_path, video=video_path)
        if query.is_empty:
            raise MediaRefused(422, "query", "give a query: text, an image or a video")
        return query

    # -- candidates ----------------------------------------------------------------------

    def candidates(self, files: Sequence[str], snippets: str) -> list[Candidate]:
        """The uploaded files' candidates in upload order, then one per non-blank line of
        ``snippets``; MediaRefused when a file is over a limit or there are more
        candidates than ``ui.max_documents``."""
        found: list[Candidate] = []
        lines = [line.strip() for line in snippets.splitlines() if line.strip()]
        for path in files:
            for candidate in self._file_candidates(Path(path)):
                found.append(candidate)
                self._check_count(len(found) + len(lines))
        for number, line in enumerate(lines, 1):
            found.append(
                Candidate(label=f"snippet {number}", badge="text", content=Content(text=line))
            )
        self._check_count(len(found))
        if not found:
            raise MediaRefused(422, "candidates", "upload files or paste text snippets to rank")
        return found

    def _check_count(self, count: int) -> None:
        if count > self.max_documents:
            raise MediaRefused(
                413,
                "candidates",
                f"more than {self.max_documents} candidates (files, PDF pages and snippets "
                f"count one each); ui.max_documents is {self.max_documents}",
                "ui.max_documents",
            )

    def _file_candidates(self, path: Path) -> Iterator[Candidate]:
        info = describe_upload(path)
        check_size(path, info.name, self.serve)
        if info.kind == "pdf":
            yield from self._pdf_candidates(path, info)
        elif info.kind == "text":
            yield self._text_candidate(path, info)
        elif info.kind in ("image", "video"):
            yield self._media_candidate(path, info)
        else:
            reason = info.problem or "not an image, video, PDF or text file"
            yield Candidate(label=info.name, badge="unreadable", error=reason, upload=info)

    def _media_candidate(self, path: Path, info: UploadInfo) -> Candidate:
        kind: Literal["image", "video"] = "image" if info.kind == "image" else "video"
        try:
            checked = self.checks.checked(path, info.name, kind)
        except MediaRefused as exc:
            if exc.status != 422:
                raise
            return Candidate(label=info.name, badge="unreadable", error=exc.reason, upload=info)
        content = Content(image=checked) if kind == "image" else Content(video=checked)
        return Candidate(label=info.name, badge=kind, content=content, media=checked, upload=info)

    def _text_candidate(self, path: Path, info: UploadInfo) -> Candidate:
        try:
            content = Content(text=read_text(path))
        except MediaError as exc:
            return Candidate(label=info.name, badge="unreadable", error=exc.reason, upload=info)
        if content.is_empty:
            return Candidate(label=info.name, badge="unreadable", error="no text", upload=info)
        return Candidate(label=info.name, badge="text", content=content, upload=info)

    def _pdf_candidates(self, path: Path, info: UploadInfo) -> Iterator[Candidate]:
        for item in iter_pdf_pages(path, info.name, self.documents, self.pages_dir):
            if isinstance(item, Asset):
                page = item.metadata["page"]
                yield Candidate(
                    label=f"{info.name} p.{page}",
                    badge="PDF page",
                    content=Content(text=item.text, image=item.image),
                    media=Path(str(item.image)),
                    upload=info,
                )
            elif item.outcome == "failed":
                yield Candidate(label=item.item, badge="unreadable", error=item.reason, upload=info)

    def _checked_file(self, value: str, field: str, wanted: Literal["image", "video"]) -> Path:
        path = Path(value)
        check_size(path, field, self.serve)
        return self.checks.checked(path, field, wanted)


def check_size(path: Path, field: str, serve: ServeConfig) -> None:
    """MediaRefused (413) for a file over ``serve.max_upload_bytes``, before it is read."""
    size, limit = Path(path).stat().st_size, serve.max_upload_bytes
    if size > limit:
        raise MediaRefused(
            413,
            field,
            f"{size:,} bytes; serve.max_upload_bytes is {limit:,}",
            "serve.max_upload_bytes",
        )


def describe_upload(path: Path) -> UploadInfo:
    """Kind, pixel size, aspect ratio and file size (and a video's length, a PDF's pages),
    read from headers: nothing is decoded whole."""
    path = Path(path)
    info = UploadInfo(name=path.name, kind="other", size_bytes=path.stat().st_size)
    try:
        if is_pdf(path):
            return _pdf_info(path, info)
        kind = detect_kind(path)
        if kind == "image":
            return _image_info(path, info.model_copy(update={"kind": "image"}))
        if kind == "video":
            video = probe_video(path)
            sized = _sized(info.model_copy(update={"kind": "video"}), video.width, video.height)
            return sized.model_copy(update={"duration_s": round(video.duration, 3)})
    except MediaError as exc:
        return info.model_copy(update={"problem": exc.reason})
    if kind == "text":
        return info.model_copy(update={"kind": "text"})
    return info.model_copy(update={"problem": unrecognised_file(path.name, path).reason})


def _image_info(path: Path, info: UploadInfo) -> UploadInfo:
    """The pixel size from the header. PIL refuses a header of over twice its own pixel
    limit outright: that is a decompression bomb to show, not an error to raise (reading
    the candidate then refuses it under ``media.max_image_pixels``)."""
    try:
        with Image.open(path) as image:
            size = image.size
    except Image.DecompressionBombError as exc:
        return info.model_copy(update={"problem": f"a possible decompression bomb ({exc})"})
    return _sized(info, *size)


def _pdf_info(path: Path, info: UploadInfo) -> UploadInfo:
    """Pages, and the first page's size in points (1/72 inch), as PDFium reads them."""
    pdf = info.model_copy(update={"kind": "pdf"})
    try:
        pages, width, height = pdf_summary(path)
    except MediaError as exc:
        return pdf.model_copy(update={"problem": exc.reason})
    return _sized(pdf.model_copy(update={"pages": pages}), width, height)


def _sized(info: UploadInfo, width: int, height: int) -> UploadInfo:
    return info.model_copy(
        update={"width": width, "height": height, "aspect": aspect(width, height)}
    )


def aspect(width: int, height: int) -> str | None:
    """``1.50:1 (3:2)``: the ratio, and its common name when within 1% of one."""
    if width <= 0 or height <= 0:
        return None
    ratio = width / height
    text = f"{ratio:.2f}:1"
    for name, value in _NAMED_RATIOS.items():
        if math.isclose(ratio, value, rel_tol=0.01):
            return f"{text} ({name})"
    return text
