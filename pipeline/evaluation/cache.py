"""Reranker scores kept on disk, so that suites sharing systems never score a pair twice.

A score is stored under a digest of everything that decides it: the reranker's settings
(its config, model id and every knob; the media and embedder configs beside it), the
request's instruction, fps, max_frames and image preprocessing, and the query's and the
document's content: their text and a digest of the *bytes* of every image and video file
(a file replaced under the same name misses). Failed documents are never stored (the
next run tries again). The store is one SQLite file (WAL, so two evaluations may share
it); :class:`CachingReranker` puts it in front of any ``Reranker``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.schema import Content, Frame
from rerankers.base import (
    DocumentFailure,
    Progress,
    Reranker,
    RerankerBase,
    ScoreReport,
    no_progress,
)
from rerankers.preprocessing import ImagePreprocessing

CACHE_FILE = "rerank-scores.sqlite"
KEY_VERSION = 1  # bumped when the key's recipe changes: old entries then simply miss
_CHUNK = 500  # ids per SELECT ... IN (...): below SQLite's variable limit
_READ_BLOCK = 1 << 20


def default_cache_path() -> Path:
    """``$VLSEARCH_CACHE`` or the user cache folder (``$XDG_CACHE_HOME/vlsearch``, else
    ``~/.cache/vlsearch``), ``rerank-scores.sqlite``."""
    from pipeline.models import cache_home

    return cache_home() / CACHE_FILE


class ScoreCache:
    """key -> score, in SQLite. Safe to use from several threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL NOT NULL)"
            )

    def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, score FROM scores WHERE key IN ({marks})", chunk
                )
                found.update(rows)
        return found

    def put_many(self, items: dict[str, float]) -> None:
        if not items:
            return
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO scores (key, score) VALUES (?, ?)", items.items()
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachingReranker(RerankerBase):
    """``inner`` with its scores cached in ``cache`` under ``settings`` (a string naming
    the reranker and every setting that changes its scores). ``hits`` and ``misses``
    count the pairs served from the cache and those scored by ``inner``."""

    def __init__(self, inner: Reranker, cache: ScoreCache, settings: str) -> None:
        self.inner = inner
        self.cache = cache
        self.settings = settings
        self.hits = 0
        self.misses = 0
        self._digests = _FileDigests()

    def score_report(
        self,
        query: Content,
        documents: Sequence[Content],
        instruction: str | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        progress: Progress | None = None,
        *,
        image: ImagePreprocessing | None = None,
    ) -> ScoreReport:
        progress = progress or no_progress
        if not documents:
            return ScoreReport(scores=[])
        request = {
            "instruction": instruction,
            "fps": fps,
            "max_frames": max_frames,
            "image": image.model_dump(mode="json") if image is not None else None,
        }
        keys = self._keys(query, documents, request)
        cached = self.cache.get_many([key for key in keys if key is not None])
        todo = [i for i, key in enumerate(keys) if key is None or key not in cached]
        scores = [cached[key] if key is not None and key in cached else math.nan for key in keys]
        failures: list[DocumentFailure] = []
        tokens = None
        done_before = len(documents) - len(todo)
        if todo:
            report = self.inner.score_report(
                query,
                [documents[i] for i in todo],
                instruction=instruction,
                fps=fps,
                max_frames=max_frames,
                progress=lambda done, _total: progress(done_before + done, len(documents)),
                image=image,
            )
            failed = {failure.index for failure in report.failures}
            fresh: dict[str, float] = {}
            for position, i in enumerate(todo):
                score = report.scores[position]
                scores[i] = score
                key = keys[i]
                if key is not None and position not in failed and not math.isnan(score):
                    fresh[key] = score
            failures = [
                DocumentFailure(index=todo[failure.index], reason=failure.reason)
                for failure in report.failures
            ]
            self.cache.put_many(fresh)
            tokens = report.tokens if not done_before else None
        self.hits += done_before
        self.misses += len(todo)
        progress(len(documents), len(documents))
        return ScoreReport(scores=scores, failures=failures, tokens=tokens)

    def _keys(
        self, query: Content, documents: Sequence[Content], request: dict[str, Any]
    ) -> list[str | None]:
        """Each pair's key; None where a file cannot be read (that pair is scored, not
        cached, and the reranker reports why it failed)."""
        query_digest = self._content(query)
        if query_digest is None:
            return [None] * len(documents)
        head = {"v": KEY_VERSION, "reranker": self.settings, **request, "query": query_digest}
        keys: list[str | None] = []
        for document in documents:
            digest = self._content(document)
            if digest is None:
                keys.append(None)
                continue
            payload = json.dumps({**head, "document": digest}, sort_keys=True)
            keys.append(hashlib.sha256(payload.encode()).hexdigest())
        return keys

    def _content(self, content: Content) -> dict[str, Any] | None:
        try:
            return {
                "text": content.text,
                "image": self._media(content.image),
                "video": self._media(content.video),
                "fps": content.fps,
            }
        except OSError:
            return None

    def _media(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Path):
            return self._digests.of(value)
        if isinstance(value, Image.Image):
            return _image_digest(value)
        if isinstance(value, Frame):
            return [value.timestamp, _image_digest(value.image)]
        if isinstance(value, list):
            return [self._media(item) for item in value]
        return self._digests.of(Path(value))


class _FileDigests:
    """sha256 of a file's bytes, remembered while its size and mtime stay the same: a
    video is read once per run, not once per query it is a candidate for."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def of(self, path: Path) -> str:
        resolved = Path(path).resolve()
        stat = resolved.stat()
        key = (str(resolved), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        digest = hashlib.sha256()
        with resolved.open("rb") as handle:
            while block := handle.read(_READ_BLOCK):
                digest.update(block)
        value = digest.hexdigest()
        with self._lock:
            self._known[key] = value
        return value


def _image_digest(image: Image.Image) -> str:
    digest = hashlib.sha256(f"{image.mode}|{image.size}|".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
