"""Uploads and HTML reading for the web page's tests (tests/test_ui*.py)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from tests.media_factory import make_bad_files, make_image, make_video

PDF_PAGE = (300, 200)
"""Width and height of write_pdf's pages, in PDF points (1/72 inch)."""


def write_pdf(path: Path, page_texts: list[str]) -> Path:
    """A PDF of one page per text (fpdf2, the dev extra)."""
    import fpdf

    pdf = fpdf.FPDF(unit="pt", format=PDF_PAGE)
    pdf.set_font("helvetica", size=14)
    for text in page_texts:
        pdf.add_page()
        pdf.text(20, 50, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def make_uploads(folder: Path) -> dict[str, Path]:
    """Good and bad files a user might upload, by name: media_factory's broken files,
    a 96x64 JPEG, a 160x90 PNG, a 2 s 64x48 MP4, a two-page PDF, a text file and a file
    of no supported type."""
    found = dict(make_bad_files(folder / "bad"))
    found["photo.jpg"] = make_image(folder / "photo.jpg", size=(96, 64))
    found["wide.png"] = make_image(folder / "wide.png", size=(160, 90))
    found["clip.mp4"] = folder / "clip.mp4"
    make_video(found["clip.mp4"], seconds=2.0, fps=10, size=(64, 48))
    found["two.pdf"] = write_pdf(folder / "two.pdf", ["alpha zebra", "beta giraffe"])
    found["notes.txt"] = folder / "notes.txt"
    found["notes.txt"].write_text("Returns within 30 days.\nFree shipping.\n")
    found["table.bin"] = folder / "table.bin"
    found["table.bin"].write_bytes(bytes(range(256)) * 8)
    return found


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser reads them."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def joined(self) -> str:
        return "".join(self.text)

    def find(self, tag: str, css: str | None = None) -> list[dict[str, str | None]]:
        """The attributes of each ``tag`` (of class ``css``, when given), in order."""
        return [
            attrs
            for name, attrs in self.tags
            if name == tag and (css is None or css in (attrs.get("class") or "").split())
        ]
