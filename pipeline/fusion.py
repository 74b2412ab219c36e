"""Fusing the ranked lists of stage one's recall channels into one list.

Each channel (``clip_image``, ``clip_text``, ``text_dense``, ``bm25``, ...) returns its own
best-first list of :class:`ChannelHit`. A :class:`Fuser` merges them by id:

* ``rrf``: reciprocal rank fusion, ``sum_c weight_c / (k + rank_c)``; only ranks matter.
* ``weighted``: ``sum_c weight_c * norm_c(score)``. With ``minmax`` normalisation a
  channel's scores map onto [0, 1] and a hit the channel did not return contributes 0.
  With ``z`` normalisation scores become z-scores, and a missing hit contributes the
  channel's *lowest* z-score: absent from a list is never better than its last entry.
  With ``dbsf`` (distribution-based score fusion, as Qdrant computes it) a channel's
  scores map linearly from [mean - 3 sd, mean + 3 sd] (sample standard deviation) onto
  [0, 1], not clipped (a score beyond 3 sd lands a little outside, as in Qdrant), and a
  missing hit contributes 0: unlike min-max, one outlying score does not squash the rest
  of the list.
* ``max``: ``max_c weight_c * norm_c(score)``, with missing hits valued as for ``weighted``.

Shared rules:

* A channel's rank of an id is its 1-based position in the list; if an id is listed twice
  only its first (best) entry counts.
* A channel whose scores are all equal (one hit, say) normalises them to 1 (``minmax``),
  0 (``z``) or 0.5 (``dbsf``, the middle of its range): it still tells ``rrf`` the order
  but carries no score information.
* A NaN or infinite score is unusable: for ``weighted`` and ``max`` that hit counts as
  missing from the channel (it still has its rank, which ``rrf`` uses).
* A channel of weight 0 has no influence at all: it changes no score and breaks no tie.
  An id only such channels returned still appears, scored as missing everywhere.
* Ties break by the best rank over influential channels, then by id, so results never
  depend on dict or set order. The fused hit's timestamp, page, modality and metadata
  come from its best-ranked channel hit that has them.

:func:`fold` groups one channel's hits into their parents (pages into documents, frames
into videos) before fusion.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

logger = logging.getLogger(__name__)

Normalization = Literal["minmax", "z", "dbsf"]
DBSF_SPREAD = 3.0  # dbsf's range is mean +- this many standard deviations (Qdrant's)

__all__ = [
    "FUSERS",
    "ChannelHit",
    "FusedHit",
    "Fuser",
    "FusionConfig",
    "MaxFuser",
    "Normalization",
    "RrfFuser",
    "WeightedFuser",
    "create_fuser",
    "fold",
    "parent_by",
]


class ChannelHit(BaseModel):
    """One hit of one recall channel."""

    model_config = ConfigDict(frozen=True)

    id: str
    score: float
    modality: str | None = None
    best_timestamp: float | None = None
    page: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class FusedHit(BaseModel):
    """One hit of the fused list, with what each channel said about it."""

    id: str
    score: float
    channel_scores: dict[str, float]
    channel_ranks: dict[str, int]  # 1-based
    best_timestamp: float | None = None
    page: int | None = None
    modality: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class FusionConfig(BaseModel):
    """``fusion:`` in the config file."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["rrf", "weighted", "max"] = Field(
        default="rrf",
        description="rrf: reciprocal rank fusion; weighted: a weighted sum of normalised "
        "scores; max: the best weighted normalised score.",
    )
    k: int = Field(default=60, ge=0, description="RRF's rank constant.")
    normalization: Normalization = Field(
        default="minmax",
        description="For weighted and max: minmax onto [0, 1], z-scores, or dbsf (mean +- 3 "
        "standard deviations onto [0, 1], as Qdrant's distribution-based score fusion).",
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="Per channel name; channels not named weigh 1.0."
    )
    native: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Let the index fuse the channels itself (Milvus hybrid_search): auto "
        "does when it gives the same results as fusing here, on whenever the query allows "
        "(the config must allow it), off never.",
    )

    @field_validator("weights")
    @classmethod
    def _finite_non_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        for channel, weight in weights.items():
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of channel {channel!r} must be >= 0, got {weight}")
        return weights

    def weight(self, channel: str) -> float:
        return self.weights.get(channel, 1.0)


class Fuser(Protocol):
    def fuse(self, results: Mapping[str, Sequence[ChannelHit]], top_n: int) -> list[FusedHit]: ...


# -- the channels' view of each id --------------------------------------------------------


@dataclass
class _Candidate:
    """Everything the channels said about one id: channel -> (rank, hit)."""

    id: str
    seen: dict[str, tuple[int, ChannelHit]] = field(default_factory=dict)


def _gather(results: Mapping[str, Sequence[ChannelHit]]) -> dict[str, _Candidate]:
    candidates: dict[str, _Candidate] = {}
    for channel in sorted(results):
        for rank, hit in enumerate(results[channel], start=1):
            candidate = candidates.setdefault(hit.id, _Candidate(hit.id))
            candidate.seen.setdefault(channel, (rank, hit))  # a repeated id keeps its best
    return candidates


def _assemble(
    candidates: Mapping[str, _Candidate],
    scores: Mapping[str, float],
    influential: set[str],
    top_n: int,
) -> list[FusedHit]:
    """Sort by score, then best influential rank, then id, and build the fused hits."""
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")

    def best_rank(candidate: _Candidate) -> int:
        ranks = [rank for channel, (rank, _) in candidate.seen.items() if channel in influential]
        return min(ranks, default=math.inf)  # type: ignore[arg-type]

    ordered = sorted(candidates.values(), key=lambda c: (-scores[c.id], best_rank(c), c.id))
    return [_fused_hit(candidate, scores[candidate.id]) for candidate in ordered[:top_n]]


def _fused_hit(candidate: _Candidate, score: float) -> FusedHit:
    by_rank = sorted(candidate.seen.items(), key=lambda item: (item[1][0], item[0]))
    hits = [hit for _, (_, hit) in by_rank]
    return FusedHit(
        id=candidate.id,
        score=score,
        channel_scores={channel: hit.score for channel, (_, hit) in by_rank},
        channel_ranks={channel: rank for channel, (rank, _) in by_rank},
        best_timestamp=_first(hit.best_timestamp for hit in hits),
        page=_first(hit.page for hit in hits),
        modality=_first(hit.modality for hit in hits),
        metadata=_first(hit.metadata or None for hit in hits) or {},
    )


def _first(values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _influential(config: FusionConfig, results: Mapping[str, Sequence[ChannelHit]]) -> set[str]:
    return {channel for channel in results if config.weight(channel) > 0}


# -- fusers -------------------------------------------------------------------------------


class RrfFuser:
    """Reciprocal rank fusion (Cormack et al., 2009): robust to incomparable scores."""

    def __init__(self, config: FusionConfig) -> None:
        self.config = config

    def fuse(self, results: Mapping[str, Sequence[ChannelHit]], top_n: int) -> list[FusedHit]:
        candidates = _gather(results)
        influential = _influential(self.config, results)
        k = self.config.k
        scores = {
            candidate.id: math.fsum(
                self.config.weight(channel) / (k + rank)
                for channel, (rank, _) in candidate.seen.items()
                if channel in influential
            )
            for candidate in candidates.values()
        }
        return _assemble(candidates, scores, influential, top_n)


class _NormalisedFuser:
    """Shared by ``weighted`` and ``max``: per-channel normalised scores."""

    def __init__(self, config: FusionConfig) -> None:
        self.config = config

    def _combine(self, values: list[float]) -> float:
        raise NotImplementedError

    def fuse(self, results: Mapping[str, Sequence[ChannelHit]], top_n: int) -> list[FusedHit]:
        candidates = _gather(results)
        influential = _influential(self.config, results)
        tables = {
            channel: _normalise(channel, results[channel], self.config.normalization)
            for channel in sorted(influential)
        }
        scores = {
            candidate.id: self._combine(
                [
                    self.config.weight(channel) * table.value(candidate.id)
                    for channel, table in tables.items()
                ]
            )
            for candidate in candidates.values()
        }
        return _assemble(candidates, scores, influential, top_n)


class WeightedFuser(_NormalisedFuser):
    def _combine(self, values: list[float]) -> float:
        return math.fsum(values)


class MaxFuser(_NormalisedFuser):
    def _combine(self, values: list[float]) -> float:
        return max(values, default=0.0)


@dataclass(frozen=True)
class _Normalised:
    """One channel's normalised score per id, and what an id it lacks is worth."""

    by_id: dict[str, float]
    missing: float

    def value(self, hit_id: str) -> float:
        return self.by_id.get(hit_id, self.missing)


def _normalise(channel: str, hits: Sequence[ChannelHit], method: Normalization) -> _Normalised:
    raw: dict[str, float] = {}
    for hit in hits:
        if hit.id in raw:
            continue  # a repeated id keeps its first (best-ranked) entry
        if math.isfinite(hit.score):
            raw[hit.id] = hit.score
        else:
            raw.setdefault(hit.id, math.nan)
    usable = [score for score in raw.values() if not math.isnan(score)]
    if len(usable) < len(raw):
        logger.warning(
            "channel %s: %d hits without a finite score count as missing",
            channel,
            len(raw) - len(usable),
        )
    if not usable:
        return _Normalised({}, 0.0)
    normalise = _NORMALISERS[method](usable)
    by_id = {hit_id: normalise(score) for hit_id, score in raw.items() if not math.isnan(score)}
    missing = min(by_id.values()) if method == "z" else 0.0
    return _Normalised(by_id, missing)


def _minmax(scores: list[float]) -> Callable[[float], float]:
    low, high = min(scores), max(scores)
    if high == low:
        return lambda score: 1.0
    return lambda score: (score - low) / (high - low)


def _zscore(scores: list[float]) -> Callable[[float], float]:
    mean = math.fsum(scores) / len(scores)
    spread = math.sqrt(math.fsum((score - mean) ** 2 for score in scores) / len(scores))
    if spread == 0:
        return lambda score: 0.0
    return lambda score: (score - mean) / spread


def _dbsf(scores: list[float]) -> Callable[[float], float]:
    if len(scores) < 2:
        return lambda score: 0.5  # no spread to measure: the middle, as Qdrant does
    mean = math.fsum(scores) / len(scores)
    deviation = math.sqrt(math.fsum((score - mean) ** 2 for score in scores) / (len(scores) - 1))
    if deviation == 0:
        return lambda score: 0.5
    low, width = mean - DBSF_SPREAD * deviation, 2 * DBSF_SPREAD * deviation
    return lambda score: (score - low) / width


_NORMALISERS: dict[str, Callable[[list[float]], Callable[[float], float]]] = {
    "minmax": _minmax,
    "z": _zscore,
    "dbsf": _dbsf,
}


FUSERS: dict[str, Callable[[FusionConfig], Fuser]] = {
    "rrf": RrfFuser,
    "weighted": WeightedFuser,
    "max": MaxFuser,
}


def create_fuser(config: FusionConfig) -> Fuser:
    return FUSERS[config.method](config)


# -- folding children into parents --------------------------------------------------------


def parent_by(metadata_key: str) -> Callable[[ChannelHit], str]:
    """A :func:`fold` key: the hit's ``metadata[metadata_key]`` (``doc_id``, ``video_id``),
    or its own id when it has none (it is its own parent)."""

    def key(hit: ChannelHit) -> str:
        parent = hit.metadata.get(metadata_key)
        return hit.id if parent is None else str(parent)

    return key


def fold(hits: Sequence[ChannelHit], key: Callable[[ChannelHit], str]) -> list[ChannelHit]:
    """Group one channel's hits by ``key`` (their parent's id) into one hit per parent,
    best first. A parent keeps its best-scoring child's score, timestamp, page, modality
    and metadata; equal scores go to the child listed first, and unusable (NaN) scores
    lose to any number. Repeated ids fold the same way (``key=lambda hit: hit.id``)."""
    best: dict[str, tuple[int, ChannelHit]] = {}
    for position, hit in enumerate(hits):
        try:
            parent = key(hit)
        except Exception as exc:
            raise ValueError(f"hit {hit.id!r}: cannot find its parent ({exc!r})") from exc
        if not isinstance(parent, str) or not parent:
            raise ValueError(
                f"hit {hit.id!r}: parent id must be a non-empty string, got {parent!r}"
            )
        held = best.get(parent)
        if held is None or _beats(hit.score, held[1].score):
            best[parent] = (position if held is None else held[0], hit)
    ordered = sorted(best.items(), key=lambda item: (_sort_score(item[1][1].score), item[1][0]))
    return [hit.model_copy(update={"id": parent}) for parent, (_, hit) in ordered]


def _beats(score: float, held: float) -> bool:
    return not math.isnan(score) and (math.isnan(held) or score > held)


def _sort_score(score: float) -> float:
    return math.inf if math.isnan(score) else -score
