"""SearchBatch: a batch search's results as arrays, one row per query, like FAISS gives.

Batch users (offline evaluation, TREC/ranx runs, bulk deduplication) want columns, not one
Python object per hit: making a pydantic ``SearchHit`` costs more per hit than the whole
FAISS search does at k=100. So a batch search returns these arrays, and hits are made only
when asked for (:meth:`SearchBatch.hits`, :meth:`SearchBatch.to_hits`).

Hits come from JSON text: each asset's id and metadata are kept as the end of a hit's JSON
(see ``indexers.hits.HitFields``), each hit prepends its score, modality and frame time,
and pydantic-core validates the lot in one call. Parsing gives every hit its own metadata
objects, so a caller editing a hit or a :meth:`SearchBatch.metadata` dict changes nothing
else.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import ConfigDict, TypeAdapter

from indexers.store import MODALITIES
from pipeline.schema import Modality, SearchHit

# Keys repeat, ids hardly ever: caching string values too only costs (~15 % of parsing).
_HITS = TypeAdapter(list[SearchHit], config=ConfigDict(cache_strings="keys"))
_HIT_LISTS = TypeAdapter(list[list[SearchHit]], config=ConfigDict(cache_strings="keys"))
_VIDEO = MODALITIES.index("video")
# Per modality code, a hit's JSON members after its score when it has no frame time.
_UNTIMED = np.array(
    [f'"modality":"{name}","best_timestamp":null,' for name in MODALITIES], dtype=object
)
# Queries validated per pydantic call, so the JSON text of a huge batch stays bounded.
_QUERIES_PER_PARSE = 1024
NO_MODALITY = -1


@dataclass(frozen=True, eq=False)
class SearchBatch:
    """The best ``k`` assets of ``n`` queries, best first; row ``i`` is query ``i``.

    Past ``found[i]`` a row is padding: id None, score and timestamp NaN, modality
    :data:`NO_MODALITY`. ``modalities`` holds small-int codes; ``MODALITY_NAMES[code]`` is
    the name (``"text"``, ``"image"``, ``"video"``). ``timestamps`` is the best frame's time
    in seconds for video hits that have one, NaN otherwise. The arrays are the caller's:
    nothing in the index refers to them.
    """

    ids: np.ndarray  # (n, k) object: str, None past found
    scores: np.ndarray  # (n, k) float32
    modalities: np.ndarray  # (n, k) int8 codes into MODALITY_NAMES
    timestamps: np.ndarray  # (n, k) float64
    found: np.ndarray  # (n,) int64
    # (n, k) object: each hit's JSON text after its frame time ('"id":..,"metadata":{..}}').
    _tails: np.ndarray = field(repr=False)

    MODALITY_NAMES: ClassVar[tuple[Modality, ...]] = MODALITIES

    @classmethod
    def from_hits(cls, hits: Sequence[Sequence[SearchHit]], k: int) -> SearchBatch:
        """The batch holding ``hits`` (at most ``k`` per query), for backends that make
        SearchHits first."""
        n = len(hits)
        ids = np.full((n, k), None, dtype=object)
        scores = np.full((n, k), np.nan, dtype=np.float32)
        modalities = np.full((n, k), NO_MODALITY, dtype=np.int8)
        timestamps = np.full((n, k), np.nan)
        tails = np.full((n, k), None, dtype=object)
        for i, query_hits in enumerate(hits):
            for j, hit in enumerate(query_hits[:k]):
                ids[i, j] = hit.id
                scores[i, j] = hit.score
                modalities[i, j] = MODALITIES.index(hit.modality)
                if hit.modality == "video" and hit.best_timestamp is not None:
                    timestamps[i, j] = hit.best_timestamp
                tails[i, j] = hit.model_dump_json(include={"id", "metadata"})[1:]
        found = np.asarray([min(k, len(h)) for h in hits], dtype=np.int64)
        return cls(ids, scores, modalities, timestamps, found, tails)

    @classmethod
    def concatenate(cls, batches: Sequence[SearchBatch]) -> SearchBatch:
        """The queries of ``batches`` (all of the same ``k``), in order, as one batch."""
        names = ("ids", "scores", "modalities", "timestamps", "found", "_tails")
        return cls(*(np.concatenate([getattr(b, name) for b in batches]) for name in names))

    def __len__(self) -> int:
        return len(self.found)

    def hits(self, i: int) -> list[SearchHit]:
        """Query ``i``'s SearchHits, best first."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"query {i} is out of range for a batch of {len(self)}")
        return _HITS.validate_json(self._query_json(i % len(self)))

    def to_hits(self) -> list[list[SearchHit]]:
        """Every query's SearchHits, best first."""
        hits: list[list[SearchHit]] = []
        with _gc_paused():
            for start in range(0, len(self), _QUERIES_PER_PARSE):
                queries = range(start, min(len(self), start + _QUERIES_PER_PARSE))
                text = "[" + ",".join(self._query_json(i) for i in queries) + "]"
                hits.extend(_HIT_LISTS.validate_json(text))
        return hits

    def metadata(self, i: int, j: int) -> dict[str, Any]:
        """The metadata of query ``i``'s hit ``j``, parsed now: a fresh dict each call."""
        if not (0 <= j < self.found[i]):
            raise IndexError(f"query {i} has {self.found[i]} hits; there is no hit {j}")
        return json.loads("{" + self._tails[i, j])["metadata"]

    def to_run(self, query_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """The batch as a ranx/TREC run: query id -> {asset id: score}, one query id per
        query of the batch, in order."""
        if len(query_ids) != len(self):
            raise ValueError(f"{len(query_ids)} query ids for a batch of {len(self)} queries")
        return {
            query_id: dict(zip(ids[:found], scores[:found], strict=True))
            for query_id, ids, scores, found in zip(
                query_ids,
                self.ids.tolist(),
                self.scores.tolist(),
                self.found.tolist(),
                strict=True,
            )
        }

    def _query_json(self, i: int) -> str:
        found = int(self.found[i])
        heads = _heads(self.modalities[i, :found], self.timestamps[i, :found])
        hits = [
            f'{{"score":{score!r},{head}{tail}'
            for score, head, tail in zip(
                self.scores[i, :found].tolist(), heads, self._tails[i, :found].tolist(), strict=True
            )
        ]
        return "[" + ",".join(hits) + "]"


def _heads(modalities: np.ndarray, timestamps: np.ndarray) -> list[str]:
    """Each hit's modality and frame time as JSON members (null when it has none)."""
    heads = _UNTIMED[modalities]
    timed = ~np.isnan(timestamps)
    if timed.any():
        heads[timed] = [
            f'"modality":"video","best_timestamp":{seconds!r},'
            for seconds in timestamps[timed].tolist()
        ]
    return heads.tolist()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects that all stay alive
    (thousands of hits per batch): otherwise its repeated passes over them cost as much as
    building them. The pause is short and this code makes no cyclic garbage."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
