"""Shared by the reranker tests: tiny models built once per session, and a local
HTTP server that speaks vLLM's /v1/rerank by running our own Qwen3-VL backend."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import mimetypes
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.schema import Content

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_MEDIA = REPO / "examples" / "media"

_build_lock = threading.Lock()


def _cached_build(tmp_path_factory: pytest.TempPathFactory, name: str, build) -> Path:
    """Build a tiny model once per session, whichever test module asks first."""
    folder = tmp_path_factory.getbasetemp() / "reranker-models" / name
    with _build_lock:
        if not (folder / ".complete").exists():
            build(folder)
            (folder / ".complete").touch()
    return folder


def tiny_cross_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rerankers.tiny_cross_encoder import build_tiny_cross_encoder

    return _cached_build(tmp_path_factory, "cross-encoder", build_tiny_cross_encoder)


SMALL_VISUALS = {
    "max_pixels": 16 * 32 * 32,
    "frame_min_pixels": 4 * 32 * 32,
    "frame_max_pixels": 16 * 32 * 32,
}
"""Few vision tokens per image and frame: keeps the tiny model's tests fast."""


def tiny_qwen_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rerankers.qwen3_vl.tiny import build_tiny_qwen3_vl_reranker

    return _cached_build(tmp_path_factory, "qwen3-vl-reranker", build_tiny_qwen3_vl_reranker)


class FakeVllmServer:
    """vLLM's ``POST /v1/rerank`` for Qwen3-VL-Reranker, as vLLM documents it, answered
    by our local backend: so a client that sends everything right gets the local scores.

    It checks what a real server would act on: the model name, a Bearer key, content
    parts in the order vLLM lays out its placeholders (video, image, text), data URLs,
    ``chat_template_kwargs.instruction`` and ``mm_processor_kwargs.fps``. A document
    the backend cannot read gets HTTP 400, as vLLM answers a bad media item.
    """

    def __init__(self, backend: Any, media_dir: Path, model: str = "tiny-reranker") -> None:
        self.backend = backend
        self.media_dir = media_dir
        self.model = model
        self.api_key: str | None = None
        self.fail_next = 0  # answer this many requests with HTTP 500 first
        self.delay_s = 0.0
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeVllmServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                status, answer = server.answer(self.path, self.headers, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return 500, _error("engine is restarting")
        if path != "/v1/rerank":
            return 404, _error(f"no route {path}")
        if self.api_key and headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, _error("Unauthorized")
        payload = json.loads(body)
        with self._lock:
            self.payloads.append(payload)
        if payload.get("model") != self.model:
            return 404, _error(f"The model `{payload.get('model')}` does not exist.")
        try:
            query = self._content(payload["query"])
            documents = [self._content(d) for d in payload["documents"]]
        except ValueError as exc:
            return 400, _error(str(exc))
        instruction = (payload.get("chat_template_kwargs") or {}).get("instruction")
        sampling = payload.get("mm_processor_kwargs") or {}
        fps, max_frames = sampling.get("fps"), sampling.get("max_frames")
        with self._lock:  # one forward at a time, as one engine would
            try:
                report = self.backend.score_report(query, documents, instruction, fps, max_frames)
            except ValueError as exc:  # e.g. an unreadable query image
                return 400, _error(str(exc))
        if report.failures:
            return 400, _error(report.failures[0].reason)
        results = [
            {"index": i, "document": {"multi_modal": d["content"]}, "relevance_score": s}
            for i, (d, s) in enumerate(zip(payload["documents"], report.scores, strict=True))
        ]
        results.sort(key=lambda r: -r["relevance_score"])
        top_n = payload.get("top_n") or len(results)
        return 200, {
            "id": "rerank-test",
            "model": self.model,
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
            "results": results[:top_n],
        }

    def _content(self, item: dict[str, Any]) -> Content:
        parts = item["content"]
        order = [part["type"] for part in parts]
        canonical = [t for t in ("video_url", "image_url", "text") if t in order]
        if order != canonical:
            raise ValueError(f"parts {order} are not in placeholder order {canonical}")
        fields: dict[str, Any] = {}
        for part in parts:
            kind = part["type"]
            if kind == "text":
                fields["text"] = part["text"]
            elif kind == "image_url":
                fields["image"] = self._media_file(part["image_url"]["url"])
            else:
                fields["video"] = self._media_file(part["video_url"]["url"])
        return Content(**fields)

    def _media_file(self, url: str) -> Path:
        header, sep, encoded = url.partition(",")
        if not (header.startswith("data:") and header.endswith(";base64") and sep):
            raise ValueError("only base64 data URLs are accepted here")
        try:
            data = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"bad base64: {exc}") from None
        mime = header[len("data:") : -len(";base64")]
        suffix = mimetypes.guess_extension(mime) or ".bin"
        path = self.media_dir / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
        if not path.exists():  # concurrent requests may carry the same file: write it whole
            partial = path.with_name(f"{path.name}.{threading.get_ident()}.partial")
            partial.write_bytes(data)
            os.replace(partial, path)
        return path


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "BadRequestError", "code": 400}}
