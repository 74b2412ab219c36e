"""The rerank request file (the published reranker's JSON input) and its response.

A request reads::

    {"instruction": "...",                        # optional
     "query": {"text": "...", "image": "q.jpg"},
     "documents": [{"text": "..."}, {"image": "a.png"},
                   {"video": "clip.mp4", "fps": 2.0},
                   {"video": ["f0.jpg", "f1.jpg"]}],
     "fps": 1.0,                   # optional: for videos without their own fps
     "max_frames": 64,             # optional: frames per video at most
     "top_k": 10}                  # optional: cuts the ranked list only

Relative media paths are resolved against the request file's folder. Unknown
keys are errors. Files are not opened here: a document whose file is missing or
unreadable fails on its own when scored, and the others are still ranked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from pipeline.schema import Content, Query
from rerankers.base import DocumentFailure, Progress, Reranker, rank_report


class RequestError(ValueError):
    """A request that cannot be used; the message names the file and the field."""


class RequestItem(BaseModel):
    """A query or a document as the request file spells it."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    image: str | None = None
    video: str | list[str] | None = Field(
        default=None, description="A video file, or its frames as image files in order."
    )
    fps: float | None = Field(default=None, gt=0.0)

    @field_validator("image", "video")
    @classmethod
    def _local_files(cls, value: str | list[str] | None, info: ValidationInfo) -> Any:
        """Refuse URLs and blanks; resolve relative paths against ``context["base_dir"]``."""
        if value is None:
            return None
        paths = [value] if isinstance(value, str) else value
        if not paths:
            raise ValueError("a video given as frames needs at least one frame")
        for path in paths:
            if "://" in path:
                raise ValueError(
                    f"{path!r}: URLs are not fetched; download the file, give its path"
                )
            if not path.strip():
                raise ValueError("empty path")
        base_dir = (info.context or {}).get("base_dir")
        resolved = [str(_resolve(path, Path(base_dir))) if base_dir else path for path in paths]
        return resolved[0] if isinstance(value, str) else resolved

    def content_fields(self) -> dict[str, Any]:
        """Keyword arguments for a ``Content`` (or ``Query``) holding this item."""
        video: Path | list[Path] | None = None
        if isinstance(self.video, list):
            video = [Path(p) for p in self.video]
        elif self.video is not None:
            video = Path(self.video)
        image = Path(self.image) if self.image is not None else None
        return {"text": self.text, "image": image, "video": video, "fps": self.fps}


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruction: str | None = None
    query: RequestItem
    documents: list[RequestItem]
    fps: float | None = Field(default=None, gt=0.0)
    max_frames: int | None = Field(default=None, ge=1)
    top_k: int | None = Field(default=None, ge=1)

    def query_content(self) -> Query:
        return Query(**self.query.content_fields())

    def document_contents(self) -> list[Content]:
        return [Content(**item.content_fields()) for item in self.documents]


class RankedItem(BaseModel):
    index: int
    score: float
    document: RequestItem
    error: str | None = None


class RerankResponse(BaseModel):
    """``scores`` in document order (failures are NaN, written as null in JSON);
    ``ranking`` best first, failures last, cut to ``top_k``."""

    model_config = ConfigDict(ser_json_inf_nan="null")

    scores: list[float]
    ranking: list[RankedItem]
    failures: list[DocumentFailure]


def parse_request(
    data: Any, base_dir: Path | None = None, source: str = "<request>"
) -> RerankRequest:
    """Validate a request already parsed from JSON (e.g. a REST body)."""
    if not isinstance(data, dict):
        raise RequestError(f"{source}: top level must be a JSON object, got {type(data).__name__}")
    context = {"base_dir": base_dir} if base_dir is not None else None
    try:
        return RerankRequest.model_validate(data, context=context)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise RequestError(f"{source}: {problems}") from None


def load_request(path: str | Path) -> RerankRequest:
    """Read a request file; relative media paths resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RequestError(f"{path}: request file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RequestError(f"{path}: cannot read the request file ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return parse_request(data, base_dir=path.resolve().parent, source=str(path))


def run_request(
    reranker: Reranker, request: RerankRequest, progress: Progress | None = None
) -> RerankResponse:
    """Score every document once, then rank from those scores."""
    documents = request.document_contents()
    report = reranker.score_report(
        request.query_content(),
        documents,
        instruction=request.instruction,
        fps=request.fps,
        max_frames=request.max_frames,
        progress=progress,
    )
    ranked = rank_report(report, documents, request.top_k)
    return RerankResponse(
        scores=report.scores,
        ranking=[
            RankedItem(
                index=r.index, score=r.score, document=request.documents[r.index], error=r.error
            )
            for r in ranked
        ],
        failures=report.failures,
    )


def _resolve(path: str, base_dir: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base_dir / candidate


__all__ = [
    "RankedItem",
    "RequestError",
    "RequestItem",
    "RerankRequest",
    "RerankResponse",
    "load_request",
    "parse_request",
    "run_request",
]
