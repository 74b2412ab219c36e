"""The API's request and response bodies. The rerank ones follow Jina's and vLLM's
(``/v1/rerank``) and Cohere's (``/v2/rerank``) published schemas, so their clients work
unchanged; ours are the pipeline's own types with a media URL per result."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.model_pool import RerankerStatus
from pipeline.search import Result, SearchTimings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _unicode(cls, value: Any) -> Any:
        """JSON can escape a lone surrogate (``"\\ud800"``), which no tokenizer or store
        can take: refused here, naming the field."""
        if not _is_unicode(value):
            raise ValueError("not valid Unicode text (a lone surrogate)")
        return value


def _is_unicode(value: Any) -> bool:
    """Whether every string in ``value`` (lists and dicts walked, keys too) encodes as
    UTF-8; a loop, not recursion, so deep JSON is no RecursionError. Models inside are
    checked by their own validator."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return True


MediaString = Field(
    default=None,
    description="Base64, a data URI, an http(s) URL (serve.allow_urls) or a server path "
    "under serve.media_roots.",
)


class MediaItem(_Strict):
    """Text and/or one image and/or one video (a file, or its frames in order)."""

    text: str | None = None
    image: str | None = MediaString
    video: str | list[str] | None = MediaString


# -- search -----------------------------------------------------------------------------


class SearchRequest(_Strict):
    query: MediaItem
    top_k: int = Field(default=10, ge=1, description="Results wanted (serve.max_top_k at most).")
    filter: str | None = Field(
        default=None, description='Metadata filter, e.g. category == "toys" and price < 50.'
    )
    rerank: bool | None = Field(default=None, description="Stage two; null: as configured.")
    fps: float | None = Field(default=None, gt=0, description="Frames/s for video documents.")
    instruction: str | None = Field(default=None, description="The reranker's task statement.")


class SearchResult(Result):
    media_url: str | None = Field(
        default=None, description="The asset's image, PDF page or video (#t= best moment)."
    )
    thumbnail_url: str | None = None


class SearchResponse(BaseModel):
    index: str
    results: list[SearchResult]
    timings: SearchTimings


# -- /v1/rerank (Jina, vLLM) ------------------------------------------------------------


class RerankRequest(_Strict):
    model: str | None = Field(default=None, description="Accepted and echoed; one is served.")
    query: str | MediaItem
    documents: list[str | MediaItem] = Field(description="Strings are text documents.")
    top_n: int | None = Field(default=None, ge=1, description="Results returned; null: all.")
    return_documents: bool = True
    instruction: str | None = None
    fps: float | None = Field(default=None, gt=0)
    max_frames: int | None = Field(default=None, ge=1)


class RerankResult(BaseModel):
    index: int
    relevance_score: float | None = Field(description="null for a document that failed.")
    document: dict[str, Any] | None = Field(
        default=None, description="The document as sent; media only where sent as URLs."
    )
    error: str | None = Field(default=None, description="Why the document was not scored.")


class Usage(BaseModel):
    total_tokens: int
    prompt_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: Usage


# -- /v2/rerank (Cohere) ----------------------------------------------------------------


class CohereRerankRequest(_Strict):
    model: str
    query: str
    documents: list[str]
    top_n: int | None = Field(default=None, ge=1)
    max_tokens_per_doc: int | None = Field(
        default=None, ge=1, description="Accepted; documents are cut by reranker.max_length."
    )


class CohereResult(BaseModel):
    index: int
    relevance_score: float


class CohereApiVersion(BaseModel):
    version: str = "2"


class CohereBilledUnits(BaseModel):
    search_units: float = 1


class CohereMeta(BaseModel):
    api_version: CohereApiVersion = CohereApiVersion()
    billed_units: CohereBilledUnits = CohereBilledUnits()
    warnings: list[str] = Field(default_factory=list)


class CohereRerankResponse(BaseModel):
    id: str
    results: list[CohereResult]
    meta: CohereMeta


# -- index upkeep -----------------------------------------------------------------------


class AssetIn(_Strict):
    id: str = Field(min_length=1, max_length=1024)
    text: str | None = None
    image: str | None = Field(
        default=None,
        description="As in a search, or 'upload:NAME' for the multipart file part NAME.",
    )
    video: str | list[str] | None = Field(default=None, description="As image.")
    fps: float | None = Field(default=None, gt=0)
    metadata: dict[str, Any] = Field(default_factory=dict)


class UpsertRequest(_Strict):
    assets: list[AssetIn] = Field(min_length=1)


class IndexSummary(BaseModel):
    name: str
    ready: bool
    error: str | None = None
    assets: int | None = None


class IndexList(BaseModel):
    indexes: list[IndexSummary]


# -- models -----------------------------------------------------------------------------


class EmbedderStatus(BaseModel):
    index: str
    model: str
    loaded: bool


class ModelsResponse(BaseModel):
    reranker: RerankerStatus = Field(description="The reranker of /v1/rerank.")
    rerankers: list[RerankerStatus] = Field(
        description="That one, then any other that an index's own config names."
    )
    embedders: list[EmbedderStatus]


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong, naming the field.")
    field: str | None = Field(default=None, description="The request field at fault.")
    limit: str | None = Field(default=None, description="The setting a value went over.")
