"""Packing pairs into forward passes, and surviving out-of-memory by splitting.

Pairs are sorted longest first and packed while rows x longest row stays within a
token budget, so padding stays small and the largest batch runs first (an
out-of-memory shows up before any work is wasted). A batch that runs out of memory
is halved and retried; a pair that cannot run alone is reported, not raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

logger = logging.getLogger(__name__)

OUT_OF_MEMORY: tuple[type[BaseException], ...] = (
    getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
)


def pack_by_token_budget(
    lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int
) -> list[list[int]]:
    """Indices grouped into batches, longest first; a pair over budget goes alone."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        fits = (len(current) + 1) * longest <= max_batch_tokens
        if current and (not fits or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


@dataclass
class BatchOutcome:
    scores: dict[int, float] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)


def score_in_batches(
    lengths: Sequence[int],
    forward: Callable[[list[int]], list[float]],
    max_batch_tokens: int,
    max_batch_size: int,
    release_memory: Callable[[], None] = lambda: None,
    on_batch: Callable[[BatchOutcome], None] = lambda outcome: None,
) -> BatchOutcome:
    """Run ``forward`` (indices -> scores, same order) over packed batches; ``on_batch``
    sees the outcome so far after each batch that ran or failed for good."""
    outcome = BatchOutcome()
    pending = pack_by_token_budget(lengths, max_batch_tokens, max_batch_size)
    while pending:
        batch = pending.pop(0)
        error = _try_forward(batch, forward, outcome)
        if error is None:
            on_batch(outcome)
            continue
        # Retry outside the except block, so the failed attempt's tensors are freed first.
        release_memory()
        if len(batch) == 1:
            index = batch[0]
            outcome.failures[index] = (
                f"out of memory even alone ({lengths[index]} tokens); lower max_pixels, "
                f"max_frames or max_length ({error})"
            )
            on_batch(outcome)
            continue
        half = len(batch) // 2
        logger.warning(
            "out of memory on %d pairs; retrying as %d + %d", len(batch), half, len(batch) - half
        )
        pending[:0] = [batch[:half], batch[half:]]
    return outcome


def _try_forward(
    batch: list[int], forward: Callable[[list[int]], list[float]], outcome: BatchOutcome
) -> str | None:
    try:
        scores = forward(batch)
    except OUT_OF_MEMORY as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    outcome.scores.update(zip(batch, scores, strict=True))
    return None
