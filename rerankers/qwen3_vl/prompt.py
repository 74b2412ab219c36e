"""The reranker's chat prompt, laid out as the published reference lays it out.

One system message, then one user message whose content is, in order:
``<Instruct>: {instruction}``, ``<Query>:``, the query's items, ``\\n<Document>:``,
the document's items. Within a side, videos come first, then images, then text; an
empty side is the text ``NULL``. The chat template renders items back to back, so the
user turn reads ``<Instruct>: ...<Query>:...\\n<Document>:...``.
"""

from __future__ import annotations

from typing import Any

from pipeline.schema import Content

SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
DEFAULT_INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."
EMPTY_SIDE = "NULL"


def side_content(prefix: str, side: Content) -> list[dict[str, Any]]:
    """One side's message items: its prefix, then video, image, text (or NULL)."""
    items: list[dict[str, Any]] = [{"type": "text", "text": prefix}]
    if side.is_empty:
        items.append({"type": "text", "text": EMPTY_SIDE})
        return items
    if side.video is not None:
        items.append({"type": "video", "video": side.video})
    if side.image is not None:
        items.append({"type": "image", "image": side.image})
    if side.text is not None:
        items.append({"type": "text", "text": side.text})
    return items


def build_messages(
    instruction: str | None, query: Content, document: Content
) -> list[dict[str, Any]]:
    """The chat messages for one (query, document) pair, in transformers' multimodal format."""
    user_items: list[dict[str, Any]] = [
        {"type": "text", "text": f"<Instruct>: {instruction or DEFAULT_INSTRUCTION}"}
    ]
    user_items += side_content("<Query>:", query)
    user_items += side_content("\n<Document>:", document)
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": user_items},
    ]


def visual_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The image and video items in the order their placeholders appear in the prompt."""
    return [
        item
        for message in messages
        for item in message["content"]
        if item["type"] in ("image", "video")
    ]
