"""Plain text files: UTF-8 (or a UTF-16/32 file that says so with a byte-order mark)."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from pipeline.media._files import os_error_reason, read_head, require_content
from pipeline.media.errors import MediaError

SNIFF_BYTES = 64 * 1024

# Longest marks first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# C0 controls other than tab, newlines, vertical tab and form feed do not occur in
# text people write; NUL in particular marks binary data or UTF-16 without a BOM.
_BINARY_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def read_text(path: Path) -> str:
    """The text of ``path``, without its byte-order mark; MediaError if it is not text."""
    require_content(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(path, os_error_reason(exc)) from None
    encoding, body = _split_bom(data)
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise MediaError(
            path, f"not valid {encoding} text (byte 0x{body[exc.start]:02x} at {exc.start})"
        ) from None
    if _BINARY_CONTROLS.search(text):
        raise MediaError(path, "contains control bytes such as NUL: binary data, not text")
    return text


def is_text(path: Path) -> bool:
    """Whether the first SNIFF_BYTES of ``path`` decode as text with no binary controls."""
    encoding, body = _split_bom(read_head(path, SNIFF_BYTES))
    # An incremental decoder tolerates a character cut in half at the sniff boundary.
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        text = decoder.decode(body, final=False)
    except UnicodeDecodeError:
        return False
    return bool(text) and not _BINARY_CONTROLS.search(text)


def _split_bom(data: bytes) -> tuple[str, bytes]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, data[len(bom) :]
    return "utf-8", data
