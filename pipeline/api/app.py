"""The FastAPI app: routes that parse HTTP and call one ``Service`` method each."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from pipeline.api import errors
from pipeline.api.limits import BodyLimit
from pipeline.api.metrics import RequestMetrics
from pipeline.api.schemas import (
    CohereRerankRequest,
    CohereRerankResponse,
    ErrorResponse,
    IndexList,
    ModelsResponse,
    RerankRequest,
    RerankResponse,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
)
from pipeline.api.service import Service
from pipeline.pipeline import DeleteReport
from pipeline.session import IndexInfo, UpsertReport

Body = TypeVar("Body", bound=BaseModel)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 415, 422, 503, 504)
}
# Checked by the routes themselves (a 401 of ours, not FastAPI's 403), named in the schema.
BEARER = HTTPBearer(auto_error=False, description="VLSEARCH_API_TOKEN, or the admin token")
# Form fields of a multipart search: the JSON body's, flat, with files for the media.
SEARCH_FORM = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "image": {"type": "string", "format": "binary"},
        "video": {"type": "string", "format": "binary"},
        "top_k": {"type": "integer", "minimum": 1},
        "filter": {"type": "string"},
        "rerank": {"type": "boolean"},
        "fps": {"type": "number", "exclusiveMinimum": 0},
        "instruction": {"type": "string"},
    },
    "additionalProperties": False,
}
UPSERT_FORM = {
    "type": "object",
    "required": ["assets"],
    "properties": {
        "assets": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/components/schemas/AssetIn"},
            "description": "The JSON body's assets list, as JSON.",
        },
    },
    "additionalProperties": {"type": "string", "format": "binary"},
}


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Indexes open in the background: /healthz answers at once, /readyz once open.
        opener = threading.Thread(target=service.open_indexes, name="open-indexes", daemon=True)
        opener.start()
        yield
        await run_in_threadpool(opener.join)
        await run_in_threadpool(service.close)

    app = FastAPI(
        title="vlsearch",
        summary="Two-stage multimodal search: CLIP recall, Qwen3-VL rerank.",
        lifespan=lifespan,
    )
    app.state.service = service
    errors.install(app)
    app.include_router(_health_routes(service))
    reader = [Depends(_auth(service, False))]
    app.include_router(_search_routes(service), dependencies=reader)
    app.include_router(_media_routes(service), dependencies=[Depends(_media_auth(service))])
    app.include_router(_cohere_routes(service), dependencies=reader)
    app.include_router(_write_routes(service), dependencies=[Depends(_auth(service, True))])
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=service.serve.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=service.metrics)
    return app


def _auth(service: Service, admin: bool) -> Any:
    # async: a plain def would run in the thread pool, a thread round trip per request.
    async def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        token = credentials.credentials if credentials is not None else None
        if not service.tokens.allows(token, admin=admin):
            which = "an admin" if admin and service.tokens.admin else "the API"
            raise HTTPException(
                401,
                f"this route needs {which} token: Authorization: Bearer TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def _media_auth(service: Service) -> Any:
    """The API token, or a signed link (``exp``, ``sig``: see ``pipeline.api.auth``)."""
    reader = _auth(service, False)

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
        exp: Annotated[str | None, Query(description="Expiry of a signed link.")] = None,
        sig: Annotated[str | None, Query(description="Signature of a signed link.")] = None,
    ) -> None:
        path = request.scope["path"]  # decoded once, as the link was signed
        if credentials is None and service.tokens.allows_signed(path, exp, sig):
            return
        await reader(credentials)

    return check


def _media_routes(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1", responses=ERRORS)

    @router.get(
        "/indexes/{name}/assets/{asset_id:path}/media",
        tags=["media"],
        response_class=FileResponse,
        responses={200: _binary("image/*", "video/*")},
    )
    def media(name: str, asset_id: str, frame: Annotated[int, Query(ge=0)] = 0) -> FileResponse:
        """The asset's image, PDF page or video (Range requests: a player can seek);
        for a video stored as frames, frame number ``frame``."""
        return FileResponse(service.media_file(name, asset_id, frame))

    @router.get(
        "/indexes/{name}/assets/{asset_id:path}/thumbnail",
        tags=["media"],
        response_class=Response,
        responses={200: _binary("image/jpeg")},
    )
    async def thumbnail(
        name: str, asset_id: str, t: Annotated[float | None, Query(ge=0, le=1e7)] = None
    ) -> Response:
        """A small JPEG: the image, the page, or the video's frame at ``t`` seconds."""
        data = await run_in_threadpool(service.thumbnail, name, asset_id, t)
        return Response(data, media_type="image/jpeg")

    return router


def _health_routes(service: Service) -> APIRouter:
    # async: probes are answered on the event loop, never queued behind busy threads.
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"description": "An index is not open (yet)."}})
    async def readyz() -> JSONResponse:
        """Ready: every served index is open."""
        state = service.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _search_routes(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1", responses=ERRORS)

    @router.post(
        "/indexes/{name}/search",
        response_model=SearchResponse,
        tags=["search"],
        openapi_extra=_either_body("SearchRequest", SEARCH_FORM),
    )
    async def search(name: str, request: Request) -> SearchResponse:
        """Both stages over one index. JSON (media as base64 or data URIs), or
        multipart/form-data with the media as files."""
        body, uploads = await _read(request, SearchRequest, _search_from_form)
        return await service.search(name, body, uploads)

    @router.post("/rerank", response_model=RerankResponse, tags=["rerank"])
    async def rerank(body: RerankRequest) -> RerankResponse:
        """Jina's and vLLM's rerank API (documents may be text, images or videos)."""
        return await service.rerank(body)

    @router.get("/indexes", response_model=IndexList, tags=["indexes"])
    def indexes() -> IndexList:
        return service.list_indexes()

    @router.get("/indexes/{name}", response_model=IndexInfo, tags=["indexes"])
    def index_info(name: str) -> IndexInfo:
        """The figures of `vlsearch index info`."""
        return service.info(name)

    @router.get("/models", response_model=ModelsResponse, tags=["models"])
    def models() -> ModelsResponse:
        return service.models()

    return router


def _write_routes(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1", responses=ERRORS)

    @router.post(
        "/indexes/{name}/assets",
        response_model=UpsertReport,
        tags=["indexes"],
        openapi_extra=_either_body("UpsertRequest", UPSERT_FORM),
    )
    async def upsert(name: str, request: Request) -> UpsertReport:
        """Add or replace assets by id; committed before the answer (durable). Media as in
        a search, or multipart file parts named by 'upload:PART' in the assets JSON."""
        body, uploads = await _read(request, UpsertRequest, _upsert_from_form)
        return await service.upsert(name, body.assets, uploads)

    @router.delete(
        "/indexes/{name}/assets/{asset_id:path}", response_model=DeleteReport, tags=["indexes"]
    )
    async def delete(name: str, asset_id: str) -> DeleteReport:
        return await run_in_threadpool(service.delete, name, asset_id)

    @router.post("/models/reranker/load", response_model=ModelsResponse, tags=["models"])
    async def load() -> ModelsResponse:
        """Load the reranker(s) now instead of at the first request that needs one."""
        await run_in_threadpool(service.load_rerankers)
        return service.models()

    @router.post("/models/reranker/unload", response_model=ModelsResponse, tags=["models"])
    async def unload() -> ModelsResponse:
        """Free the reranker(s); the next request that needs one loads it again."""
        await run_in_threadpool(service.unload_rerankers)
        return service.models()

    return router


def _cohere_routes(service: Service) -> APIRouter:
    # The Cohere SDK posts to BASE/v2/rerank, outside the /v1 prefix.
    router = APIRouter(responses=ERRORS)

    @router.post("/v2/rerank", response_model=CohereRerankResponse, tags=["rerank"])
    async def cohere_rerank(body: CohereRerankRequest) -> CohereRerankResponse:
        """Cohere's rerank API (v2), for its SDK: text documents."""
        return await service.cohere_rerank(body)

    return router


async def _read(
    request: Request, model: type[Body], from_form: Any
) -> tuple[Body, Mapping[str, bytes]]:
    """The body as ``model`` from JSON or multipart/form-data, and the uploaded files."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    uploads: dict[str, bytes] = {}
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raw, uploads = await _form(request, from_form)
    elif kind in ("application/json", ""):
        try:
            raw = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise errors.BadBody(f"the body is not valid JSON ({exc})") from None
    else:
        raise errors.BadBody(
            f"unsupported Content-Type {kind!r}: send application/json or a form "
            "(multipart/form-data)",
            status=415,
        )
    try:
        return model.model_validate(raw), uploads
    except ValidationError as exc:
        raise errors.invalid_body(exc) from None


async def _form(request: Request, from_form: Any) -> tuple[Any, dict[str, bytes]]:
    service: Service = request.app.state.service
    limit = service.serve.max_upload_bytes
    try:
        form = await request.form(max_part_size=limit)
    except Exception as exc:  # python-multipart's and Starlette's parse errors
        raise errors.BadBody(f"the multipart body cannot be read ({exc})") from None
    fields: dict[str, str] = {}
    uploads: dict[str, bytes] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields[key] = value
        else:
            data = await value.read()
            if len(data) > limit:
                raise errors.BadBody(
                    f"file part {key!r} is over serve.max_upload_bytes = {limit} bytes", status=413
                )
            uploads[key] = data
    return from_form(fields, uploads), uploads


def _search_from_form(fields: dict[str, str], uploads: dict[str, bytes]) -> dict[str, Any]:
    query: dict[str, Any] = {"text": fields.pop("text", None)}
    for media in ("image", "video"):
        if media in uploads:
            query[media] = f"upload:{media}"
    body: dict[str, Any] = {"query": query}
    for key, value in fields.items():
        body[key] = value
    return body


def _upsert_from_form(fields: dict[str, str], _: dict[str, bytes]) -> dict[str, Any]:
    try:
        assets = json.loads(fields.get("assets", "null"))
    except json.JSONDecodeError as exc:
        raise errors.BadBody(f"form field 'assets' is not valid JSON ({exc})", "assets") from None
    return {"assets": assets}


def _binary(*media_types: str) -> dict[str, Any]:
    """A 200 response of raw bytes (not FastAPI's default JSON)."""
    schema = {"type": "string", "format": "binary"}
    content = {media_type: {"schema": schema} for media_type in media_types}
    return {"description": "The file's bytes.", "content": content}


def _either_body(schema: str, form: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}},
                "multipart/form-data": {"schema": form},
            },
        }
    }


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the bodies that routes read themselves (JSON or multipart)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version="1", summary=app.summary, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (SearchRequest, UpsertRequest):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        app.openapi_schema = schema
    return app.openapi_schema
