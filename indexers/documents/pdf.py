"""PDF documents: one asset per page, holding the rendered page image and its text.

Page images are written as PNG files into a cache folder and the asset holds their
path, rather than a PIL image: pages are rendered one at a time and dropped, so memory
stays at one page whatever the page count (a 500-page PDF held as PIL images would
need gigabytes), and the files outlive the build, so the reranker and the user later see
the very image that was embedded. The cache folder is keyed by the file's content and
the render settings, so a resumed or repeated build reuses pages already rendered.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexers.atomic import atomic_write
from indexers.documents.config import DocumentsConfig
from indexers.sources import SourceItem, SourceProblem
from pipeline.media import MediaError
from pipeline.media._files import os_error_reason, read_head, require_content
from pipeline.schema import Asset

if TYPE_CHECKING:
    import pypdfium2

logger = logging.getLogger(__name__)

# Only at the very start, as libmagic checks it: PDFium would also accept the header
# later in the first KiB, but then a note that quotes "%PDF-1.7" would be taken for a
# broken PDF and lost as text.
PDF_MAGIC = b"%PDF-"
POINTS_PER_INCH = 72

# PDFium is not thread-safe; every call into it goes through this lock so two builds
# (or a build and a server) in one process cannot corrupt each other.
_PDFIUM_LOCK = threading.RLock()

# FPDF_GetLastError codes, as pypdfium2 reports them in PdfiumError.err_code.
_LOAD_REASONS = {
    2: "cannot open the file",
    3: "damaged, truncated or not a PDF (PDFium cannot parse it)",
    4: "encrypted: needs a password",
    5: "uses an unsupported security handler",
}


def is_pdf(path: Path) -> bool:
    """Whether ``path`` holds a PDF, judged by its ``%PDF-`` header, not its name."""
    try:
        return read_head(Path(path), len(PDF_MAGIC)) == PDF_MAGIC
    except MediaError:
        return False


def iter_pdf_pages(
    path: Path, doc_id: str, config: DocumentsConfig, cache_dir: Path
) -> Iterator[SourceItem]:
    """One ``Asset`` per page, id ``{doc_id}#page={n}`` (n from 1), or a ``SourceProblem``
    naming the document (it cannot be opened) or the page (only that page is lost).
    Page images are PNG files under ``cache_dir``."""
    path = Path(path)
    try:
        pages_dir = cache_dir / _render_key(path, config)
        document = _open(path)
    except _Unusable as exc:
        yield SourceProblem(doc_id, exc.reason, "failed")
        return
    try:
        yield from _iter_pages(document, path, doc_id, config, pages_dir)
    finally:
        with _PDFIUM_LOCK:
            document.close()


def pdf_summary(path: Path) -> tuple[int, int, int]:
    """Pages, and the first page's width and height in points (1/72 inch), read without
    rendering; MediaError naming the file when it cannot be opened."""
    try:
        document = _open(Path(path))
    except _Unusable as exc:
        raise MediaError(path, exc.reason) from None
    with _PDFIUM_LOCK:
        try:
            pages = len(document)
            width, height = document.get_page_size(0) if pages else (0.0, 0.0)
        finally:
            document.close()
    return pages, round(width), round(height)


class _Unusable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _render_key(path: Path, config: DocumentsConfig) -> str:
    """Content hash plus render settings: identical files share pages, edited ones don't."""
    try:
        require_content(path)
        if not is_pdf(path):
            raise _Unusable(f"not a PDF (no {PDF_MAGIC.decode()} header)")
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except MediaError as exc:
        raise _Unusable(exc.reason) from None
    except OSError as exc:
        raise _Unusable(os_error_reason(exc)) from None
    digest.update(f"|dpi={config.pdf_dpi}|max_pixels={config.max_page_pixels}".encode())
    return digest.hexdigest()[:32]


def _open(path: Path) -> pypdfium2.PdfDocument:
    pdfium = _import_pdfium()
    try:
        with _PDFIUM_LOCK:
            return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        raise _Unusable(_LOAD_REASONS.get(code, f"cannot open PDF ({exc})")) from None


def _import_pdfium() -> Any:
    try:
        import pypdfium2
    except ImportError:
        raise ImportError(
            "PDF ingestion needs pypdfium2: pip install 'vlsearch[documents]'"
        ) from None
    return pypdfium2


def _iter_pages(
    document: pypdfium2.PdfDocument,
    path: Path,
    doc_id: str,
    config: DocumentsConfig,
    pages_dir: Path,
) -> Iterator[SourceItem]:
    with _PDFIUM_LOCK:
        page_count = len(document)
    if page_count == 0:
        yield SourceProblem(doc_id, "PDF has no pages", "failed")
        return
    last = page_count if config.max_pages is None else min(page_count, config.max_pages)
    for number in range(1, last + 1):
        page_id = f"{doc_id}#page={number}"
        try:
            text, image_path, dpi = _read_page(document, number, pages_dir, config)
        except _Unusable as exc:
            yield SourceProblem(page_id, exc.reason, "failed")
            continue
        metadata = {
            "doc_id": doc_id,
            "page": number,
            "page_count": page_count,
            "path": str(path),
            "dpi": dpi,
        }
        yield Asset(id=page_id, text=text, image=image_path, metadata=metadata)
    if last < page_count:
        unread = (
            f"page {page_count}" if last + 1 == page_count else f"pages {last + 1}-{page_count}"
        )
        reason = f"{unread} of {page_count} not indexed (documents.max_pages={last})"
        yield SourceProblem(doc_id, reason, "skipped")


def _read_page(
    document: pypdfium2.PdfDocument, number: int, pages_dir: Path, config: DocumentsConfig
) -> tuple[str, Path, float]:
    """The page's text, its PNG (rendered unless cached) and the DPI it was rendered at."""
    pdfium = _import_pdfium()
    image_path = pages_dir / f"{number}.png"
    with _PDFIUM_LOCK:
        try:
            page = document[number - 1]
        except pdfium.PdfiumError as exc:
            raise _Unusable(f"cannot load page ({exc})") from None
        try:
            scale = _scale(page, config)
            text = _page_text(page)
            if not image_path.is_file():
                _render(page, scale, image_path)
        except pdfium.PdfiumError as exc:
            raise _Unusable(f"cannot render page ({exc})") from None
        except OSError as exc:
            raise _Unusable(f"cannot write page image ({os_error_reason(exc)})") from None
        finally:
            page.close()
    return text, image_path, round(scale * POINTS_PER_INCH, 2)


def _scale(page: pypdfium2.PdfPage, config: DocumentsConfig) -> float:
    """Pixels per point: the configured DPI, lowered for pages too large to render whole."""
    width, height = page.get_size()
    if width <= 0 or height <= 0:
        raise _Unusable(f"page has no area ({width:g} x {height:g} points)")
    scale = config.pdf_dpi / POINTS_PER_INCH
    fitting = math.sqrt(config.max_page_pixels / (width * height))
    if fitting < scale:
        dpi = fitting * POINTS_PER_INCH
        logger.info("%g x %g pt page rendered at %.0f DPI (max_page_pixels)", width, height, dpi)
    return min(scale, fitting)


def _page_text(page: pypdfium2.PdfPage) -> str:
    textpage = page.get_textpage()
    try:
        # PDFium ends lines with CRLF; the rest of the pipeline speaks "\n".
        return textpage.get_text_bounded().replace("\r\n", "\n").strip()
    finally:
        textpage.close()


def _render(page: pypdfium2.PdfPage, scale: float, image_path: Path) -> None:
    bitmap = page.render(scale=scale)
    try:
        image = bitmap.to_pil()
        image_path.parent.mkdir(parents=True, exist_ok=True)
        # Fast compression: the cache is re-creatable, build time is not.
        atomic_write(image_path, lambda temp: image.save(temp, "PNG", compress_level=1))
    finally:
        bitmap.close()
