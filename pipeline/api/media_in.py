"""Request media to files: base64, data URIs, uploads, URLs and server paths.

The models read files, so every item a request carries is written to a file first, its
kind judged from its bytes (never from a name or a client's Content-Type), and checked
against the serving limits before any model sees it. Strings are read as: a ``data:``
URI; an ``http(s)://`` URL (only with ``serve.allow_urls``); base64 when it decodes to an
image or video; otherwise a path on the server, allowed only under ``serve.media_roots``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from PIL import Image

from pipeline.api.problems import Refused
from pipeline.api.remote import UrlPolicy, fetch_url
from pipeline.api.server_paths import resolve_server_path
from pipeline.api.settings import ServeConfig
from pipeline.media import MediaError, detect_kind, load_image, probe_video
from pipeline.settings import MediaConfig

Wanted = Literal["image", "video"]
UPLOAD_PREFIX = "upload:"
_DATA_URI = re.compile(
    r"^data:(?P<type>[\w.+/-]*)(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,"
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Strings this long that decode as base64 are taken for data, not a path: a real path
# has a dot, a dash or an underscore long before (base64 has none of them).
_SHORTEST_DATA = 64
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}\s*$")


class MediaRefused(Refused):
    """A media item the server will not use (see ``Refused`` for the statuses)."""


class MediaInputs:
    """Writes one request's media into ``folder`` (the caller removes it afterwards, or
    keeps it: an upsert's media live in the index). ``uploads`` are the request's
    multipart file parts, which media strings name as ``upload:PART``."""

    def __init__(
        self,
        serve: ServeConfig,
        media: MediaConfig,
        folder: Path,
        uploads: Mapping[str, bytes] | None = None,
    ) -> None:
        self.serve = serve
        self.media = media
        self.folder = Path(folder)
        self.uploads = uploads or {}

    # -- strings -------------------------------------------------------------------------

    def from_string(self, value: str, field: str, wanted: Wanted) -> Path:
        if value.startswith(UPLOAD_PREFIX):
            part = value.removeprefix(UPLOAD_PREFIX)
            if part not in self.uploads:
                raise MediaRefused(422, field, f"no uploaded file part named {part!r}")
            return self.from_bytes(self.uploads[part], field, wanted)
        if value.startswith("data:"):
            return self.from_bytes(_data_uri_bytes(value, field, self.serve), field, wanted)
        if _SCHEME.match(value):
            return self.from_bytes(self._fetch(value, field), field, wanted)
        data = _base64_or_none(value, self.serve.max_upload_bytes, field)
        if data is not None and (path := self._sniffed(data)) is not None:
            return self.checked(path, field, wanted)
        if data is not None and len(value) >= _SHORTEST_DATA:
            raise MediaRefused(422, field, "base64 data that is not an image or a video")
        return self._server_path(value, field, wanted)

    def frames(self, values: list[str], field: str) -> list[Path]:
        """A video given as frame images, in order."""
        if not values:
            raise MediaRefused(422, field, "a video given as frames has no frames")
        if len(values) > self.serve.max_video_frames:
            raise MediaRefused(
                413,
                field,
                f"{len(values)} frames; serve.max_video_frames is {self.serve.max_video_frames}",
                "serve.max_video_frames",
            )
        return [self.from_string(v, f"{field}[{i}]", "image") for i, v in enumerate(values)]

    # -- bytes ---------------------------------------------------------------------------

    def from_bytes(self, data: bytes, field: str, wanted: Wanted) -> Path:
        if len(data) > self.serve.max_upload_bytes:
            raise _too_large(field, len(data), self.serve.max_upload_bytes)
        path = self._sniffed(data)
        if path is None:
            raise MediaRefused(422, field, f"not an image or a video (expected {wanted})")
        return self.checked(path, field, wanted)

    def _sniffed(self, data: bytes) -> Path | None:
        """The bytes in a file named by their hash and kind (the same upload twice is one
        file), or None when they are neither an image nor a video."""
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()[:32]
        known = sorted(self.folder.glob(f"{digest}.*"))
        if known:
            return known[0]
        unsorted = self.folder / f".{digest}.new"
        _write_durably(unsorted, data)
        try:
            kind = detect_kind(unsorted)
        except MediaError:
            kind = None
        if kind not in ("image", "video"):
            unsorted.unlink(missing_ok=True)
            return None
        path = self.folder / f"{digest}.{_extension(unsorted, kind)}"
        os.replace(unsorted, path)
        return path

    def checked(self, path: Path, field: str, wanted: Wanted) -> Path:
        """``path`` itself, once it holds the wanted kind within the limits (else
        MediaRefused: 413 over a limit, 422 unreadable or of another kind)."""
        kind = detect_kind(path)
        if kind != wanted:
            raise MediaRefused(422, field, f"expected {_a(wanted)}, got {_a(kind or 'other')}")
        if kind == "image":
            self._check_image(path, field)
        else:
            self._check_video(path, field)
        return path

    def _check_image(self, path: Path, field: str) -> None:
        try:
            load_image(path, max_pixels=self.media.max_image_pixels)
        except MediaError as exc:
            if "decompression bomb" in exc.reason:
                raise MediaRefused(413, field, exc.reason, "media.max_image_pixels") from None
            raise MediaRefused(422, field, exc.reason) from None

    def _check_video(self, path: Path, field: str) -> None:
        try:
            info = probe_video(path)
        except MediaError as exc:
            raise MediaRefused(422, field, exc.reason) from None
        limit = self.serve.max_video_seconds
        if info.duration > limit:
            raise MediaRefused(
                413,
                field,
                f"the video lasts {info.duration:.1f} s; serve.max_video_seconds is {limit}",
                "serve.max_video_seconds",
            )

    # -- elsewhere -----------------------------------------------------------------------

    def _fetch(self, url: str, field: str) -> bytes:
        from pipeline.api.remote import UrlFetchFailed, UrlRefused, UrlTooLarge

        if not url.lower().startswith(("http://", "https://")):
            raise MediaRefused(403, field, "only http(s) URLs can be fetched")
        if not self.serve.allow_urls:
            raise MediaRefused(
                403, field, "URLs are not fetched (serve.allow_urls is off); send the bytes"
            )
        policy = UrlPolicy(
            allow_hosts=frozenset(self.serve.allow_hosts),
            max_bytes=self.serve.max_upload_bytes,
            timeout_s=self.serve.url_timeout_s,
        )
        try:
            return fetch_url(url, policy)
        except UrlRefused as exc:
            raise MediaRefused(403, field, str(exc)) from None
        except UrlTooLarge as exc:
            raise MediaRefused(413, field, str(exc), "serve.max_upload_bytes") from None
        except UrlFetchFailed as exc:
            raise MediaRefused(422, field, str(exc)) from None

    def _server_path(self, value: str, field: str, wanted: Wanted) -> Path:
        from pipeline.api.server_paths import ServerPathRefused

        try:
            path = resolve_server_path(value, self.serve.media_roots)
        except ServerPathRefused as exc:
            raise MediaRefused(403, field, str(exc)) from None
        if not path.is_file():
            raise MediaRefused(422, field, f"{value}: no such file under serve.media_roots")
        size = path.stat().st_size
        if size > self.serve.max_upload_bytes:
            raise _too_large(field, size, self.serve.max_upload_bytes)
        return self.checked(path, field, wanted)


def _data_uri_bytes(value: str, field: str, serve: ServeConfig) -> bytes:
    match = _DATA_URI.match(value)
    if match is None or match.group("b64") is None:
        raise MediaRefused(422, field, "a data URI must be 'data:<type>;base64,<data>'")
    data = _base64_or_none(value[match.end() :], serve.max_upload_bytes, field)
    if data is None:
        raise MediaRefused(422, field, "the data URI's payload is not valid base64")
    return data


def _base64_or_none(text: str, max_bytes: int, field: str) -> bytes | None:
    """The decoded bytes, or None when ``text`` is not base64 (then it may be a path)."""
    if len(text) < 8 or not _BASE64.match(text):
        return None
    if len(text) * 3 // 4 > max_bytes + 3:
        raise _too_large(field, len(text) * 3 // 4, max_bytes)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _too_large(field: str, size: int, limit: int) -> MediaRefused:
    return MediaRefused(
        413,
        field,
        f"{size} bytes; serve.max_upload_bytes is {limit}",
        "serve.max_upload_bytes",
    )


def _write_durably(path: Path, data: bytes) -> None:
    """Whole or absent: an upsert's media must be on disk before the asset is committed."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _extension(path: Path, kind: str) -> str:
    """A file name extension for the sniffed format, so the media route can name the
    Content-Type (browsers need it to play a video)."""
    if kind == "image":
        with Image.open(path) as image:
            name = (image.format or "img").lower()
        return {"jpeg": "jpg", "mpo": "jpg", "tiff": "tif"}.get(name, name)
    import av

    with av.open(str(path)) as container:
        names = container.format.name.split(",")
    for name in ("mp4", "webm", "mov", "avi", "mkv"):
        if name in names:
            return name
    return "mkv" if "matroska" in names else names[0]


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
