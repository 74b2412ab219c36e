"""The start every pair of a request shares: computed once, its keys and values reused.

Every prompt begins with the system message, the instruction and the query (with the
query's images and videos); only the document part differs. A causal model's states for
those tokens do not depend on what follows them, so running them once and letting each
document attend to their cached keys and values gives the scores of full-prompt runs (up
to float rounding) while the model reads the shared start once per request instead of
once per document.

The shared start is found on token ids, not on text: the longest run of leading ids all
pairs have in common, cut back so that it never ends inside an image or video and never
takes a pair's last token (each pair needs one position of its own to score).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rerankers.qwen3_vl.encoding import EncodedPair
from rerankers.qwen3_vl.visual import VisualInput


@dataclass(frozen=True)
class SharedPrefix:
    length: int
    """Leading tokens every pair has."""
    visual_count: int
    """Images and videos inside them: the first ``visual_count`` of every pair."""


def find_shared_prefix(
    pairs: Sequence[EncodedPair], image_token_id: int, video_token_id: int, merge_length: int
) -> SharedPrefix | None:
    """The shared start of ``pairs``, or None when fewer than two pairs share one."""
    if len(pairs) < 2:
        return None
    first = pairs[0]
    length = min(len(pair) for pair in pairs) - 1
    for pair in pairs[1:]:
        length = _common_length(first.input_ids, pair.input_ids, length)
    spans = _visual_spans(first, image_token_id, video_token_id, merge_length)
    visual_count = 0
    for index, (start, end) in enumerate(spans):
        same_input = all(_same_visual(pair.visuals, first.visuals, index) for pair in pairs)
        if end <= length and same_input:
            visual_count += 1
            continue
        # Equal ids do not mean equal pixels (two images of one size give the same
        # placeholder run): a visual that is not the same input in every pair, or that
        # the shared ids would cut, starts the pairs' own parts.
        length = min(length, start)
        break
    return SharedPrefix(length, visual_count) if length > 0 else None


def _common_length(first: list[int], other: list[int], limit: int) -> int:
    if first[:limit] == other[:limit]:
        return limit
    differs = np.asarray(first[:limit]) != np.asarray(other[:limit])
    return int(np.argmax(differs))


def _visual_spans(
    pair: EncodedPair, image_token_id: int, video_token_id: int, merge_length: int
) -> list[tuple[int, int]]:
    """Per visual, in prompt order, [first placeholder, last placeholder + 1)."""
    ids = np.asarray(pair.input_ids)
    positions = {
        "image": np.flatnonzero(ids == image_token_id),
        "video": np.flatnonzero(ids == video_token_id),
    }
    used = {"image": 0, "video": 0}
    spans = []
    for visual in pair.visuals:
        t, h, w = visual.grid_thw
        count = t * h * w // merge_length
        taken = positions[visual.kind][used[visual.kind] : used[visual.kind] + count]
        used[visual.kind] += count
        spans.append((int(taken[0]), int(taken[-1]) + 1))
    return spans


def _same_visual(visuals: list[VisualInput], reference: list[VisualInput], index: int) -> bool:
    if index >= len(visuals):
        return False
    visual, expected = visuals[index], reference[index]
    return visual is expected or (visual.key is not None and visual.key == expected.key)
