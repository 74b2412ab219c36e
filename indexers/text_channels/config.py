"""Settings of the text recall channels, one pydantic model per backend.

They import nothing heavy, so ``pipeline.config`` can compose them (e.g. as a list of
:data:`TextChannelConfig`) without pulling in bm25s or sentence-transformers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pipeline.settings import _Strict

PACKAGED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"


class Bm25ChannelConfig(_Strict):
    """Lexical recall with bm25s. Tokens: lower-cased words of two or more characters,
    stop words dropped, then stemmed."""

    backend: Literal["bm25"] = "bm25"
    k1: float = Field(default=1.5, ge=0.0, description="Term-frequency saturation.")
    b: float = Field(default=0.75, ge=0.0, le=1.0, description="Document-length normalisation.")
    method: Literal["robertson", "lucene", "atire", "bm25l", "bm25+"] = Field(
        default="lucene", description="The BM25 variant (see bm25s)."
    )
    delta: float = Field(default=0.5, ge=0.0, description="Only for bm25l and bm25+.")
    lower: bool = Field(default=True, description="Lower-case text before tokenising.")
    stopwords: str | list[str] | None = Field(
        default="en",
        description="A bm25s stop-word language ('en', 'de', 'fr', ...), a word list, or none.",
    )
    stemmer: str | None = Field(
        default="english",
        description="A PyStemmer algorithm ('english', 'porter', 'german', ...), or none.",
    )


class DenseTextChannelConfig(_Strict):
    """Semantic recall with a sentence-transformers model (passages up to its max length,
    where CLIP's text tower stops at 77 tokens)."""

    backend: Literal["text_dense"] = "text_dense"
    model: str = Field(
        default=PACKAGED_MINILM,
        description="A Hugging Face model id, a local folder, or 'local-dir:PATH'.",
    )
    device: str = Field(default="auto", description="'auto' picks CUDA when present.")
    batch_size: int = Field(default=64, ge=1, description="Texts per forward pass.")
    normalize: bool = Field(
        default=True, description="L2-normalise vectors, so scores are cosine similarities."
    )


TextChannelConfig = Annotated[
    Bm25ChannelConfig | DenseTextChannelConfig, Field(discriminator="backend")
]
"""Any text channel's settings, told apart by ``backend``."""
