"""Every failure a client can cause becomes a 4xx JSON body naming the field and the
reason (``ErrorResponse``); only the server's own faults may answer 5xx, and the 503/504
of a saturated or slow model stage."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from pipeline.api.gate import Saturated, StageTimeout
from pipeline.api.problems import NotFound, NotReady, Refused
from pipeline.filters import FilterError
from pipeline.media import MediaError

logger = logging.getLogger(__name__)


class BadBody(Exception):
    """A body that is not JSON, not a readable form, or of an unsupported type."""

    def __init__(self, detail: str, field: str | None = None, status: int = 422) -> None:
        self.detail, self.field, self.status = detail, field, status
        super().__init__(detail)


def invalid_body(exc: ValidationError) -> RequestValidationError:
    """A body read by hand, refused as FastAPI refuses the bodies it reads."""
    return RequestValidationError(
        [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
    )


def error(
    status: int,
    detail: str,
    field: str | None = None,
    limit: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"detail": detail, "field": field, "limit": limit}
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    handlers: dict[Any, Any] = {
        RequestValidationError: _invalid,
        BadBody: lambda _, e: error(e.status, e.detail, e.field),
        HTTPException: _http,
        Refused: lambda _, e: error(e.status, str(e), e.field, e.limit),
        NotFound: lambda _, e: error(404, str(e)),
        NotReady: lambda _, e: error(503, str(e), headers={"Retry-After": "1"}),
        Saturated: lambda _, e: error(503, str(e), headers={"Retry-After": str(e.retry_after_s)}),
        StageTimeout: lambda _, e: error(504, str(e), limit="serve.request_timeout_s"),
        FilterError: lambda _, e: error(422, str(e), "filter"),
        MediaError: lambda _, e: error(422, str(e)),
        ValueError: lambda _, e: error(422, str(e)),
        Exception: _internal,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, _on_loop(handler))


def _on_loop(handler: Any) -> Any:
    """An async form of a plain handler. Starlette runs plain handlers in its thread pool:
    a thread round trip for each refusal, which under model load (the GIL) makes a 503
    slow; these only build a response."""
    if inspect.iscoroutinefunction(handler):
        return handler

    async def handle(request: Request, exc: Exception) -> Any:
        return handler(request, exc)

    return handle


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    """A fault of the server's own: logged with its traceback, answered without it."""
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error(500, f"internal error ({type(exc).__name__}); the server log has the details")


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = exc.errors()
    parts = [f"{_where(p['loc'])}: {p['msg']}" for p in problems]
    first = _where(problems[0]["loc"]) if problems else None
    response = error(422, "; ".join(parts) or "invalid request", first)
    return response


async def _http(_: Request, exc: HTTPException) -> JSONResponse:
    return error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "documents", 2, "image")`` -> ``documents[2].image``."""
    # Only the first part says where (a field may be named "query" too).
    where = ("body", "query", "path", "header", "form")
    parts = list(loc[1:] if loc and loc[0] in where else loc)
    # A union's errors name the member tried ("MediaItem", "str"): not a field.
    parts = [p for p in parts if not (isinstance(p, str) and (p == "str" or p[:1].isupper()))]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"
