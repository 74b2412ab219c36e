"""The SQLite store: the source of truth of an index, vectors included.

Assets keep their string id and get an integer ordinal; each asset owns one or more
vector rows (one per text, image or sampled video frame). Row ids and ordinals come from
AUTOINCREMENT, so they are never reused: a FAISS file can always be reconciled with the
store by comparing row ids. Every write method is one transaction, so a process killed at
any instant leaves whole assets or nothing. Metadata is stored as JSON text so it can be
filtered with SQLite's JSON functions later.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_args

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, field_validator

from indexers.media_paths import MediaPaths
from pipeline.schema import Asset, Modality

STORE_FILE = "meta.sqlite"
SCHEMA_VERSION = "1"
MODALITIES: tuple[Modality, ...] = get_args(Modality)
"""Modality names in code order: a row's modality code indexes this tuple."""

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS assets (
    ordinal    INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    text       TEXT,
    image      TEXT,
    video      TEXT,
    fps        REAL,
    modalities TEXT NOT NULL,
    metadata   TEXT
);
CREATE TABLE IF NOT EXISTS vectors (
    row_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    ordinal   INTEGER NOT NULL REFERENCES assets(ordinal),
    modality  TEXT NOT NULL CHECK (modality IN ('text', 'image', 'video')),
    timestamp REAL,
    vector    BLOB NOT NULL
);
-- Covers everything but the vector, so loading the row map never reads the blobs.
CREATE INDEX IF NOT EXISTS vectors_by_asset ON vectors(ordinal, modality, timestamp);
CREATE TABLE IF NOT EXISTS failures (
    item        TEXT PRIMARY KEY,
    stage       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO kv(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
COMMIT;
"""

_MODALITY_CODE = (
    "CASE modality "
    + " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(MODALITIES))
    + " END"
)
_VECTOR_DTYPE = np.dtype("<f4")  # little-endian float32 on every platform
_PAGE_SIZE = 16_384
_CACHE_KIB = 128 * 1024

# Large id lists go to SQLite as one JSON array (json_each) instead of thousands of
# bound parameters; chunks keep each statement's text and result set moderate.
_ID_CHUNK = 50_000


class EmbeddedVector(BaseModel):
    """One vector of an asset: its text, its image, or one sampled video frame."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    modality: Modality
    vector: np.ndarray
    timestamp: float | None = None

    @field_validator("vector", mode="before")
    @classmethod
    def _float32_row(cls, value: Any) -> np.ndarray:
        array = np.ascontiguousarray(value, dtype=np.float32)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"expected a 1-D vector, got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("vector has NaN or infinite values")
        return array


@dataclass(frozen=True)
class RowTable:
    """Vector rows without their vectors, as parallel arrays."""

    row_ids: np.ndarray  # int64
    ordinals: np.ndarray  # int64
    modalities: np.ndarray  # int8 codes into MODALITIES
    timestamps: np.ndarray  # float64, NaN where a row has none


class MetadataStore:
    """One SQLite database file. Not safe for two writing processes at once."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path, create: bool = False) -> MetadataStore:
        if not create and not path.is_file():
            raise FileNotFoundError(f"{path}: index store is missing")
        # Searches may run on server worker threads; the Index serialises access.
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Only takes effect on a new file. With 4 KiB pages a 512-d float32 row (2 KiB +
        # header) gets a page to itself, doubling the file; 16 KiB pages hold seven.
        connection.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        connection.execute("PRAGMA journal_mode=WAL")
        # NORMAL is atomic and consistent under WAL; a power cut may drop the last commits
        # (the FAISS sync then treats their rows as never written), never corrupt the file.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        # Filtered searches scan the assets table; a larger page cache keeps its pages (a
        # few dozen bytes per asset) in memory between searches.
        connection.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        connection.executescript(_SCHEMA)
        store = cls(connection, path)
        found = store.get_value("schema_version")
        if found != SCHEMA_VERSION:
            connection.close()
            raise ValueError(
                f"{path}: store schema version {found} is not {SCHEMA_VERSION}; "
                "this vlsearch cannot read it"
            )
        return store

    def close(self) -> None:
        self._db.close()

    # -- assets and vectors ----------------------------------------------------------

    def upsert(
        self, items: Sequence[tuple[Asset, Sequence[EmbeddedVector]]]
    ) -> tuple[int, np.ndarray]:
        """Insert or replace assets with all their vectors, in one transaction. Returns how
        many assets are new and the row ids of the vectors replaced (gone from the store)."""
        replaced: list[int] = []
        added = 0
        with self._transaction():
            for asset, vectors in items:
                ordinal, old_rows = self._upsert_asset(asset)
                if old_rows is None:
                    added += 1
                else:
                    replaced.extend(old_rows)
                self._db.executemany(
                    "INSERT INTO vectors(ordinal, modality, timestamp, vector) VALUES (?,?,?,?)",
                    [(ordinal, v.modality, v.timestamp, _blob(v.vector)) for v in vectors],
                )
        return added, np.asarray(replaced, dtype=np.int64)

    def delete(self, ids: Sequence[str]) -> tuple[int, np.ndarray]:
        """Delete assets by id; returns how many existed and the row ids removed."""
        removed_rows: list[int] = []
        deleted = 0
        with self._transaction():
            for chunk in _chunks(list(dict.fromkeys(ids))):
                ordinals = [
                    row[0]
                    for row in self._db.execute(
                        "SELECT ordinal FROM assets WHERE id IN (SELECT value FROM json_each(?))",
                        (json.dumps(chunk),),
                    )
                ]
                deleted += len(ordinals)
                removed_rows.extend(self._delete_vectors_of(ordinals))
                self._db.execute(
                    "DELETE FROM assets WHERE ordinal IN (SELECT value FROM json_each(?))",
                    (json.dumps(ordinals),),
                )
        return deleted, np.asarray(removed_rows, dtype=np.int64)

    def asset_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM assets").fetchone()[0]

    def vector_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def asset_ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT id FROM assets")}

    def contains(self, asset_id: str) -> bool:
        found = self._db.execute("SELECT 1 FROM assets WHERE id = ?", (asset_id,)).fetchone()
        return found is not None

    def get(self, asset_id: str, paths: MediaPaths) -> Asset | None:
        row = self._db.execute(f"{_ASSET_COLUMNS} WHERE id = ?", (asset_id,)).fetchone()
        return _asset_of(row, paths) if row is not None else None

    def get_many(self, asset_ids: Sequence[str], paths: MediaPaths) -> dict[str, Asset]:
        """The assets of ``asset_ids`` the store holds (others are left out), in one query
        per chunk of ids rather than one per id; media paths read through ``paths``."""
        found: dict[str, Asset] = {}
        for chunk in _chunks(list(dict.fromkeys(asset_ids))):
            rows = self._db.execute(
                f"{_ASSET_COLUMNS} WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(chunk),),
            )
            found.update((row[0], _asset_of(row, paths)) for row in rows)
        return found

    def has_metadata_path(self, keys: Sequence[str]) -> bool:
        """Whether any asset's metadata holds a value (not null) at ``keys``, nested in
        that order: SQLite stops at the first asset that does."""
        path = "$." + ".".join('"' + key.replace('"', '\\"') + '"' for key in keys)
        found = self._db.execute(
            "SELECT 1 FROM assets WHERE coalesce(json_type(metadata, ?), 'null') != 'null' LIMIT 1",
            (path,),
        ).fetchone()
        return found is not None

    def metadata_sample(self, limit: int) -> Iterator[dict[str, Any]]:
        """The metadata of up to ``limit`` assets, in storage order."""
        rows = self._db.execute(
            "SELECT metadata FROM assets WHERE metadata IS NOT NULL LIMIT ?", (limit,)
        )
        for (text,) in rows:
            yield json.loads(text)

    def hit_fields(
        self, ordinals: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, list[str], list[str]]]:
        """Per asset (all, or the given ordinals), its id, and its id and metadata as the
        end of a JSON object (``"id":..,"metadata":{..}}``), in chunks of (ordinals, ids,
        texts). SQLite writes the JSON, so nothing is decoded in Python."""
        select = (
            "SELECT ordinal, id, substr(json_object('id', id, 'metadata', "
            "json(coalesce(metadata, '{}'))), 2) FROM assets"
        )
        if ordinals is None:
            yield from _column_chunks(self._db.execute(select))
            return
        for chunk in _chunks([int(o) for o in ordinals]):
            yield from _column_chunks(
                self._db.execute(
                    f"{select} WHERE ordinal IN (SELECT value FROM json_each(?))",
                    (json.dumps(chunk),),
                )
            )

    def ordinals_where(self, where: str, parameters: Sequence[Any]) -> np.ndarray:
        """Ordinals of the assets whose metadata satisfy a ``WHERE`` fragment (from
        :meth:`pipeline.filters.Filter.to_sqlite`)."""
        rows = self._db.execute(f"SELECT ordinal FROM assets WHERE {where}", list(parameters))
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def row_table(self, after_row_id: int = 0) -> RowTable:
        """Vector rows with a row id above ``after_row_id`` (in no particular order),
        without their vectors."""
        columns = f"SELECT row_id, ordinal, {_MODALITY_CODE}, timestamp FROM vectors"
        query, parameters = (
            (columns, ()) if after_row_id == 0 else (f"{columns} WHERE row_id > ?", (after_row_id,))
        )
        # One float64 conversion in C: exact for ids below 2**53; NULL timestamps become NaN.
        table = np.array(self._db.execute(query, parameters).fetchall(), dtype=np.float64)
        table = table.reshape(-1, 4)
        return RowTable(
            row_ids=table[:, 0].astype(np.int64),
            ordinals=table[:, 1].astype(np.int64),
            modalities=table[:, 2].astype(np.int8),
            timestamps=table[:, 3].copy(),
        )

    def vectors(self, row_ids: np.ndarray, dim: int) -> np.ndarray:
        """The vectors of the given rows, in the order given."""
        out = np.empty((len(row_ids), dim), dtype=np.float32)
        position = {int(row_id): i for i, row_id in enumerate(row_ids)}
        for chunk in _chunks([int(r) for r in row_ids]):
            for row_id, blob in self._db.execute(
                "SELECT row_id, vector FROM vectors "
                "WHERE row_id IN (SELECT value FROM json_each(?))",
                (json.dumps(chunk),),
            ):
                out[position[row_id]] = np.frombuffer(blob, dtype=_VECTOR_DTYPE)
        return out

    def iter_vectors(
        self, after_row_id: int = 0, chunk_size: int = _ID_CHUNK
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream (row ids, vectors) of all rows above ``after_row_id`` in row-id order."""
        cursor = after_row_id
        while True:
            rows = self._db.execute(
                "SELECT row_id, vector FROM vectors WHERE row_id > ? ORDER BY row_id LIMIT ?",
                (cursor, chunk_size),
            ).fetchall()
            if not rows:
                return
            row_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            blob = b"".join(r[1] for r in rows)
            vectors = np.frombuffer(blob, dtype=_VECTOR_DTYPE).reshape(len(rows), -1)
            yield row_ids, vectors.astype(np.float32, copy=False)
            cursor = int(row_ids[-1])

    # -- failures ----------------------------------------------------------------------

    def record_failures(self, failures: Sequence[tuple[str, str, str]]) -> None:
        now = datetime.now(timezone.utc).isoformat()
        with self._transaction():
            self._db.executemany(
                "INSERT INTO failures(item, stage, reason, recorded_at) VALUES (?,?,?,?) "
                "ON CONFLICT(item) DO UPDATE SET stage=excluded.stage, reason=excluded.reason, "
                "recorded_at=excluded.recorded_at",
                [(item, stage, reason, now) for item, stage, reason in failures],
            )

    def failures(self) -> list[dict[str, str]]:
        rows = self._db.execute("SELECT item, stage, reason FROM failures ORDER BY item")
        return [{"item": item, "stage": stage, "reason": reason} for item, stage, reason in rows]

    def clear_failure(self, item: str) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM failures WHERE item = ?", (item,))

    # -- key/value -----------------------------------------------------------------------

    def get_value(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_value(self, key: str, value: str) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO kv(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    # -- internals -----------------------------------------------------------------------

    def _upsert_asset(self, asset: Asset) -> tuple[int, list[int] | None]:
        """The asset's ordinal and its replaced rows (None when the asset is new)."""
        existing = self._db.execute(
            "SELECT ordinal FROM assets WHERE id = ?", (asset.id,)
        ).fetchone()
        old_rows = self._delete_vectors_of([existing[0]]) if existing else None
        columns = _asset_columns(asset)
        ordinal = self._db.execute(
            "INSERT INTO assets(id, text, image, video, fps, modalities, metadata) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET text=excluded.text, "
            "image=excluded.image, video=excluded.video, fps=excluded.fps, "
            "modalities=excluded.modalities, metadata=excluded.metadata RETURNING ordinal",
            columns,
        ).fetchone()[0]
        return ordinal, old_rows

    def _delete_vectors_of(self, ordinals: list[int]) -> list[int]:
        if not ordinals:
            return []
        selector = (json.dumps(ordinals),)
        row_ids = [
            row[0]
            for row in self._db.execute(
                "SELECT row_id FROM vectors WHERE ordinal IN (SELECT value FROM json_each(?))",
                selector,
            )
        ]
        self._db.execute(
            "DELETE FROM vectors WHERE ordinal IN (SELECT value FROM json_each(?))", selector
        )
        return row_ids

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (including Ctrl-C)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def asset_storage_problem(asset: Asset) -> str | None:
    """Why ``asset`` cannot be stored, or None. The store keeps references to media files
    (the reranker reads them later), so media held only in memory cannot be stored."""
    if isinstance(asset.image, Image.Image):
        return "its image is an in-memory picture; give a file path instead"
    if isinstance(asset.video, list) and any(not isinstance(f, Path) for f in asset.video):
        return "its video is a list of in-memory frames; give a video file or frame files"
    try:
        # NaN/Infinity are not JSON: SQLite's JSON functions (filters) fail on them.
        json.dumps(asset.metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"its metadata is not JSON-serialisable ({exc})"
    return None


def _asset_columns(asset: Asset) -> tuple[Any, ...]:
    return (
        asset.id,
        asset.text,
        str(asset.image) if asset.image is not None else None,
        _video_to_json(asset.video),
        asset.fps,
        json.dumps(asset.modalities()),
        json.dumps(asset.metadata, allow_nan=False) if asset.metadata else None,
    )


def _video_to_json(video: object) -> str | None:
    if video is None:
        return None
    if isinstance(video, list):
        return json.dumps([str(path) for path in video])
    return json.dumps(str(video))


def _blob(vector: np.ndarray) -> bytes:
    return vector.astype(_VECTOR_DTYPE, copy=False).tobytes()


def _column_chunks(cursor: sqlite3.Cursor) -> Iterator[tuple[np.ndarray, list[str], list[str]]]:
    """(ordinal, id, text) rows of ``cursor`` as (ordinals, ids, texts), a chunk at a time."""
    while rows := cursor.fetchmany(_ID_CHUNK):
        ordinals, ids, texts = zip(*rows, strict=True)
        yield np.asarray(ordinals, dtype=np.int64), list(ids), list(texts)


_ASSET_COLUMNS = "SELECT id, text, image, video, fps, metadata FROM assets"


def _asset_of(row: tuple[Any, ...], paths: MediaPaths) -> Asset:
    asset_id, text, image, video, fps, metadata = row
    return Asset(
        id=asset_id,
        text=text,
        image=paths.opened(image) if image is not None else None,
        video=paths.opened_video(json.loads(video)) if video is not None else None,
        fps=fps,
        metadata=json.loads(metadata) if metadata is not None else {},
    )


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _ID_CHUNK):
        yield values[start : start + _ID_CHUNK]
