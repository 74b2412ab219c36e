"""Client for a vLLM server running Qwen3-VL-Reranker with the pooling runner.

Start the server as vLLM's docs show for this model, e.g.::

    vllm serve Qwen/Qwen3-VL-Reranker-2B --runner pooling \\
        --hf_overrides '{"architectures": ["Qwen3VLForSequenceClassification"],
                         "classifier_from_token": ["no", "yes"],
                         "is_original_qwen3_reranker": true}' \\
        --chat-template examples/pooling/score/template/qwen3_vl_reranker.jinja

Each batch of documents is one ``POST {url}/v1/rerank`` (the Jina/Cohere-style
endpoint)::

    {"model": ..., "query": {"content": [parts]},
     "documents": [{"content": [parts]}, ...], "top_n": <all>,
     "chat_template_kwargs": {"instruction": ...}, "use_activation": true,
     "mm_processor_kwargs": {"fps": ..., "max_frames": ...}}  # only with a video

A side's parts come in the order our local prompt lays them out: video
(``video_url``), image (``image_url``), text; an empty side is the text ``NULL``.
vLLM puts a side's image/video placeholders before its text, in the order sent,
and the template renders ``<Instruct>: {instruction}<Query>:{query}\\n<Document>:
{document}`` with the reference system prompt, so the prompt matches the local
Qwen3-VL backend. The score is sigmoid(logit_yes - logit_no), as locally.

Media travel inline as data URLs: images decoded here (so unreadable files fail
with their own reason before anything is sent) and re-encoded as lossless PNG, so
the server starts from exactly the pixels the local backend decodes; videos as
their file bytes, sampled by the server as ``mm_processor_kwargs`` asks.

Server versions matter: the prompt matches the local backend only on a vLLM that
includes vllm-project/vllm#38617 (no line break between a side's placeholders and
its text; older ones add one) and #42412 (``chat_template_kwargs`` honoured on
/v1/rerank; older ones silently use the template's default instruction). The
server's own processor settings decide image and frame resolution and which
frames are sampled, so video scores can differ slightly from the local backend's.
A request's image preprocessing is ignored: images are sent as decoded, and the
server resizes them its own way. Videos given as frame lists cannot be sent.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import mimetypes
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.media import MediaError, load_image
from pipeline.schema import Content
from rerankers.base import DocumentFailure, RerankerBase, ScoreOptions, ScoreReport
from rerankers.config import VllmRerankerConfig

logger = logging.getLogger(__name__)

RERANK_PATH = "/v1/rerank"
EMPTY_SIDE = "NULL"
_VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
}


class VllmRerankerError(RuntimeError):
    """The server could not be used: unreachable, refusing, or answering nonsense."""


class _Rejected(Exception):
    """The server refused one batch as bad input (4xx): retrying the same batch is useless."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")


@dataclass(frozen=True)
class _Batch:
    indices: list[int]
    documents: list[list[dict[str, Any]]]
    fps: float | None


class VllmReranker(RerankerBase):
    def __init__(self, config: VllmRerankerConfig) -> None:
        self.config = config
        self.endpoint = config.url.rstrip("/") + RERANK_PATH
        self._client: Any = None

    @property
    def loaded(self) -> bool:
        return self._client is not None

    def load(self) -> None:
        if self._client is not None:
            return
        try:
            import httpx
        except ImportError as exc:
            raise ImportError(
                "the vllm reranker needs httpx: pip install 'vlsearch[vllm]'"
            ) from exc
        headers = {"Accept": "application/json"}
        if self.config.api_key is not None:
            headers["Authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        self._client = httpx.Client(timeout=self.config.timeout_s, headers=headers)

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _score(
        self, query: Content, documents: Sequence[Content], options: ScoreOptions
    ) -> ScoreReport:
        self.load()
        encoder = _PartEncoder()
        try:
            query_parts = encoder.parts(query)
        except (MediaError, OSError, ValueError) as exc:
            raise ValueError(f"query cannot be used: {exc}") from exc
        scores = [math.nan] * len(documents)
        failures: list[DocumentFailure] = []
        encoded: dict[int, list[dict[str, Any]]] = {}
        for index, document in enumerate(documents):
            try:
                encoded[index] = encoder.parts(document)
            except (MediaError, OSError, ValueError) as exc:
                failures.append(DocumentFailure(index=index, reason=str(exc)))

        default_fps = options.fps or self.config.fps
        batches = self._batches(query, documents, encoded, default_fps)
        frame_cap = options.max_frames or self.config.max_frames
        payload_base = {
            "model": self.config.model,
            "query": {"content": query_parts},
            "chat_template_kwargs": {"instruction": options.instruction or self.config.instruction},
            "use_activation": True,
        }
        done = len(documents) - len(encoded)  # unreadable: settled already
        with ThreadPoolExecutor(max_workers=self.config.max_concurrency) as pool:
            outcomes = pool.map(lambda b: self._score_batch(payload_base, b, frame_cap), batches)
            for batch, (batch_scores, batch_failures) in zip(batches, outcomes, strict=True):
                for index, score in batch_scores.items():
                    scores[index] = score
                failures.extend(batch_failures)
                done += len(batch.indices)
                options.progress(done, len(documents))
        failures.sort(key=lambda failure: failure.index)
        return ScoreReport(scores=scores, failures=failures)

    def _batches(
        self,
        query: Content,
        documents: Sequence[Content],
        encoded: dict[int, list[dict[str, Any]]],
        default_fps: float,
    ) -> list[_Batch]:
        """Chunks of ``batch_size``; the fps is per HTTP request, so documents whose
        videos sample at different rates go in different requests."""
        groups: dict[float | None, list[int]] = {}
        for index in encoded:
            document = documents[index]
            if document.video is not None:
                key: float | None = document.fps or default_fps
            elif query.video is not None:
                key = query.fps or default_fps
            else:
                key = None
            groups.setdefault(key, []).append(index)
        size = self.config.batch_size
        return [
            _Batch(chunk, [encoded[i] for i in chunk], key)
            for key, indices in groups.items()
            for chunk in (indices[i : i + size] for i in range(0, len(indices), size))
        ]

    def _score_batch(
        self, payload_base: dict[str, Any], batch: _Batch, max_frames: int
    ) -> tuple[dict[int, float], list[DocumentFailure]]:
        """Score one batch; a batch the server rejects is halved until the rejected
        documents stand alone, so one bad document fails by itself."""
        payload = dict(payload_base)
        payload["documents"] = [{"content": parts} for parts in batch.documents]
        payload["top_n"] = len(batch.documents)
        if batch.fps is not None:
            payload["mm_processor_kwargs"] = {"fps": batch.fps, "max_frames": max_frames}
        try:
            body = self._post(payload)
        except _Rejected as exc:
            if len(batch.indices) == 1:
                reason = f"rejected by the vLLM server: {exc}"
                return {}, [DocumentFailure(index=batch.indices[0], reason=reason)]
            middle = len(batch.indices) // 2
            scores: dict[int, float] = {}
            failures: list[DocumentFailure] = []
            for half in (slice(None, middle), slice(middle, None)):
                part = _Batch(batch.indices[half], batch.documents[half], batch.fps)
                part_scores, part_failures = self._score_batch(payload_base, part, max_frames)
                scores.update(part_scores)
                failures.extend(part_failures)
            return scores, failures
        relevance = self._parse(body, len(batch.indices))
        return {batch.indices[i]: score for i, score in relevance.items()}, []

    def _post(self, payload: dict[str, Any]) -> Any:
        import httpx

        attempts = self.config.max_retries + 1
        problem = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.config.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.post(self.endpoint, json=payload)
            except httpx.TimeoutException:
                problem = f"no answer within timeout_s={self.config.timeout_s}"
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if status < 400:
                    return _json(response, self.endpoint)
                detail = _error_detail(response)
                if status == 429 or status >= 500:
                    problem = f"HTTP {status}: {detail}"
                elif status in (401, 403):
                    raise VllmRerankerError(
                        f"{self.endpoint}: HTTP {status}: {detail} (check reranker.api_key)"
                    )
                elif status in (404, 405):
                    raise VllmRerankerError(
                        f"{self.endpoint}: HTTP {status}: {detail} (is this a vLLM server "
                        f"serving {self.config.model!r} with the pooling runner?)"
                    )
                else:
                    raise _Rejected(status, detail)
            logger.warning(
                "%s: attempt %d/%d failed: %s", self.endpoint, attempt + 1, attempts, problem
            )
        raise VllmRerankerError(f"{self.endpoint}: gave up after {attempts} attempt(s): {problem}")

    def _parse(self, body: Any, expected: int) -> dict[int, float]:
        """``results[].index`` -> ``relevance_score``; every document exactly once."""
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise VllmRerankerError(f"{self.endpoint}: answer has no 'results' list")
        scores: dict[int, float] = {}
        for item in results:
            try:
                index, score = int(item["index"]), float(item["relevance_score"])
            except (KeyError, TypeError, ValueError):
                raise VllmRerankerError(
                    f"{self.endpoint}: malformed result {str(item)[:200]!r}"
                ) from None
            if not 0 <= index < expected or index in scores or not math.isfinite(score):
                raise VllmRerankerError(
                    f"{self.endpoint}: bad result index or score: {str(item)[:200]}"
                )
            scores[index] = score
        if len(scores) != expected:
            raise VllmRerankerError(
                f"{self.endpoint}: {len(scores)} results for {expected} documents"
            )
        return scores


class _PartEncoder:
    """Content -> vLLM content parts; each file is read and encoded once per call."""

    def __init__(self) -> None:
        self._urls: dict[tuple[str, Path], str] = {}

    def parts(self, content: Content) -> list[dict[str, Any]]:
        if content.is_empty:
            return [{"type": "text", "text": EMPTY_SIDE}]
        parts: list[dict[str, Any]] = []
        if content.video is not None:
            url = self._video_url(content.video)
            parts.append({"type": "video_url", "video_url": {"url": url}})
        if content.image is not None:
            parts.append(
                {"type": "image_url", "image_url": {"url": self._image_url(content.image)}}
            )
        if content.text is not None:
            parts.append({"type": "text", "text": content.text})
        return parts

    def _image_url(self, image: Path | Image.Image) -> str:
        if isinstance(image, Image.Image):
            return _png_data_url(image.convert("RGB"))
        key = ("image", Path(image))
        if key not in self._urls:
            self._urls[key] = _png_data_url(load_image(Path(image)))
        return self._urls[key]

    def _video_url(self, video: Any) -> str:
        if not isinstance(video, Path):
            raise ValueError(
                "the vllm reranker sends videos as files; a video given as a list of "
                "frames cannot be sent"
            )
        key = ("video", video)
        if key not in self._urls:
            if not video.is_file():
                raise MediaError(str(video), "file not found")
            data = video.read_bytes()
            if not data:
                raise MediaError(str(video), "empty file")
            mime = _VIDEO_TYPES.get(video.suffix.lower()) or (
                mimetypes.guess_type(video.name)[0] or "video/mp4"
            )
            self._urls[key] = _data_url(mime, data)
        return self._urls[key]


def _png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    # Lossless, so the server decodes exactly these pixels; level 1 trades size for speed.
    image.save(buffer, format="PNG", compress_level=1)
    return _data_url("image/png", buffer.getvalue())


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _json(response: Any, endpoint: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise VllmRerankerError(
            f"{endpoint}: answer is not JSON: {response.text[:200]!r}"
        ) from None


def _error_detail(response: Any) -> str:
    """vLLM answers errors as {"error": {"message": ...}} (older: {"message": ...})."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if body.get("message"):
            return str(body["message"])[:300]
        if body.get("detail"):
            return str(body["detail"])[:300]
    return str(body)[:300]


__all__ = ["RERANK_PATH", "VllmReranker", "VllmRerankerError"]
