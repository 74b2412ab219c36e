"""What the page's buttons do: turn the widgets' values into one ``Service`` or
``Pipeline`` call and its answer into HTML. Searching, scoring and ranking stay there.

Every action runs in the same model stages as the REST API's requests (``Service``), so
the page and the API share one concurrency limit and one set of serving limits. Errors
reach the page as messages (``gr.Error``), never as a stack trace.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar
from urllib.parse import quote

import gradio as gr
from pydantic import ValidationError

from pipeline.api.gate import Saturated, StageTimeout
from pipeline.api.problems import NotFound, NotReady, Refused
from pipeline.api.schemas import MediaItem, SearchRequest
from pipeline.api.service import Service, ensure_loaded
from pipeline.media import MediaError
from pipeline.model_pool import RerankerStatus
from pipeline.ui import cards
from pipeline.ui.settings import UiConfig
from pipeline.ui.uploads import Candidate, UploadReader, check_size, describe_upload
from rerankers.base import best_first
from rerankers.breakdown import Breakdown
from rerankers.preprocessing import ImagePreprocessing

logger = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
ADMIN_USER = "admin"
"""The page's login name that asks for the admin token (Load and Unload need it when an
admin token is set); any other name logs in with the API token."""


def shown_errors(action: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Known failures become a message in the page; anything else is logged with its
    trace on the server and shown as one line."""

    @functools.wraps(action)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await action(*args, **kwargs)
        except gr.Error:
            raise
        except Refused as exc:
            limit = f" (setting {exc.limit})" if exc.limit else ""
            raise gr.Error(f"{exc.field}: {exc.reason}{limit}", print_exception=False) from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
            raise gr.Error(problems, print_exception=False) from None
        except (NotFound, NotReady, Saturated, StageTimeout, MediaError, ValueError) as exc:
            raise gr.Error(str(exc) or type(exc).__name__, print_exception=False) from None
        except Exception as exc:
            logger.exception("page action %s failed", action.__name__)
            raise gr.Error(
                f"{type(exc).__name__}: {exc} (the server log has the details)",
                print_exception=False,
            ) from None

    return guarded


class PageActions:
    """The page's callbacks over one ``Service``. ``pages_dir`` keeps PDF pages rendered
    for the Rerank tab while the server runs (the page shows them after the request)."""

    def __init__(self, service: Service, settings: UiConfig, pages_dir: Path) -> None:
        self.service = service
        self.settings = settings
        self.pages_dir = Path(pages_dir)

    @property
    def index_names(self) -> list[str]:
        return list(self.service.indexes)

    @property
    def is_tiny(self) -> bool:
        """Whether any model on the page is a tiny random-weight one."""
        pipelines = [self.service.pipeline, *(s.pipeline for s in self.service.indexes.values())]
        return any(p.config.profile == "tiny" for p in pipelines)

    # -- models --------------------------------------------------------------------------

    def status(self) -> str:
        models = self.service.models()
        lines = [_reranker_line(status) for status in models.rerankers]
        for embedder in models.embedders:
            state = "loaded" if embedder.loaded else "not loaded"
            lines.append(f"**CLIP** `{embedder.model}` (index {embedder.index}): {state}")
        return "  \n".join(lines)

    @shown_errors
    async def load(self, request: gr.Request) -> str:
        self._require_admin(request, "Load model")
        await self.service.in_stage("rerank", lambda _: self.service.load_models(), False)
        return self.status()

    @shown_errors
    async def unload(self, request: gr.Request) -> str:
        self._require_admin(request, "Unload")
        await self.service.in_stage("rerank", lambda _: self.service.unload_rerankers(), False)
        return self.status()

    def _require_admin(self, request: gr.Request, button: str) -> None:
        tokens = self.service.tokens
        if tokens.admin is not None and getattr(request, "username", None) != ADMIN_USER:
            raise gr.Error(
                f"{button} needs the admin token: log in as user '{ADMIN_USER}' with it",
                print_exception=False,
            )

    # -- search --------------------------------------------------------------------------

    @shown_errors
    async def search(
        self,
        index: str | None,
        text: str,
        image: str | None,
        video: str | None,
        filter_text: str,
        top_k: float,
        rerank: bool,
        fps: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's own idiom)
    ) -> str:
        if not index:
            raise gr.Error("no index is open: start with --index NAME=DIR", print_exception=False)
        uploads: dict[str, bytes] = {}
        for part, path in (("image", image), ("video", video)):
            if path:
                check_size(Path(path), f"query {part}", self.service.serve)
                uploads[part] = Path(path).read_bytes()
        request = SearchRequest(
            query=MediaItem(
                text=text or None,
                image="upload:image" if image else None,
                video="upload:video" if video else None,
            ),
            top_k=int(top_k),
            filter=filter_text.strip() or None,
            rerank=rerank,
            fps=fps,
        )
        if request.query.text is None and not uploads:
            raise gr.Error("give a query: text, an image or a video", print_exception=False)
        progress(0, desc="searching")
        response = await self.service.search(index, request, uploads, progress=_scoring(progress))
        ids = [result.id for result in response.results]
        # The texts the cards show; a read off the event loop, as every index read is.
        assets = await asyncio.to_thread(self.service.session(index).index.get_many, ids)
        return cards.search_cards(response.results, assets, self.media_url)

    def media_url(self, path: str) -> str:
        """An API media path the browser may open: signed when tokens are set."""
        return self.service.tokens.signed(path)

    # -- rerank --------------------------------------------------------------------------

    @shown_errors
    async def describe(self, files: Sequence[str] | None) -> str:
        # Probing a video or a PDF reads the file: off the event loop.
        infos = await asyncio.to_thread(lambda: [describe_upload(Path(f)) for f in files or []])
        return cards.uploads_table(infos)

    @shown_errors
    async def rerank(
        self,
        instruction: str,
        text: str,
        image: str | None,
        video: str | None,
        files: Sequence[str] | None,
        snippets: str,
        fps: float,
        max_frames: float,
        width: float,
        height: float,
        resize_mode: str,
        resample: str,
        blur_sigma: float,
        parts: bool,
        frames: bool,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's own idiom)
    ) -> str:
        preprocessing = _preprocessing(width, height, resize_mode, resample, blur_sigma)
        pipeline = self.service.pipeline
        config = pipeline.config
        reader = UploadReader(
            self.service.serve,
            config.media,
            config.documents,
            self.pages_dir,
            self.settings.max_documents,
        )

        def work(_: Path) -> list[tuple[Candidate, Breakdown | None]]:
            progress(0, desc="preparing media")
            query = reader.query(text or None, image, video)
            candidates = reader.candidates(list(files or []), snippets or "")
            readable = [c for c in candidates if c.content is not None]
            if pipeline.reranker_status().state != "loaded":
                progress(0, desc="loading the model")
                ensure_loaded(pipeline)
            breakdowns = pipeline.explain_all(
                query,
                [c.content for c in readable if c.content is not None],
                instruction=instruction.strip() or None,
                fps=fps,
                max_frames=int(max_frames),
                image=preprocessing,
                parts=parts,
                frames=frames,
                progress=_scoring(progress),
            )
            return _ranked(readable, breakdowns, [c for c in candidates if c.content is None])

        ranked = await self.service.in_stage("rerank", work)
        return cards.rerank_cards(ranked, self.file_url)

    def file_url(self, path: Path) -> str:
        """A local file (an upload, a rendered PDF page) through Gradio's file route,
        relative to the page."""
        return f"gradio_api/file={quote(str(Path(path).resolve()))}"


def _ranked(
    readable: list[Candidate], breakdowns: list[Breakdown], unreadable: list[Candidate]
) -> list[tuple[Candidate, Breakdown | None]]:
    """Best first by the whole document's score, failures after, unreadable files last."""
    scores = [math.nan if b.whole is None else b.whole for b in breakdowns]
    ordered: list[tuple[Candidate, Breakdown | None]] = [
        (readable[i], breakdowns[i]) for i in best_first(scores)
    ]
    return ordered + [(candidate, None) for candidate in unreadable]


def _preprocessing(
    width: float, height: float, resize_mode: str, resample: str, blur_sigma: float
) -> ImagePreprocessing:
    size = (int(width), int(height)) if width and height else None
    return ImagePreprocessing(
        target_size=size,
        resize_mode=resize_mode,  # type: ignore[arg-type]  # validated by the model
        resample=resample,  # type: ignore[arg-type]
        blur_sigma=blur_sigma or None,
    )


def _scoring(progress: gr.Progress) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        progress((done, total), desc=f"scoring {done} of {total}", unit="pairs")

    return report


def _reranker_line(status: RerankerStatus) -> str:
    name = f"**Reranker** `{status.model}` ({status.backend})"
    if status.state == "loading":
        return f"{name}: loading… {status.loading_for_s or 0:.0f} s"
    if status.state == "loaded":
        where = f" on {status.device} in {status.dtype}" if status.device else ""
        return f"{name}: loaded{where}"
    return f"{name}: not loaded"


def login(service: Service) -> Callable[[str, str], bool]:
    """Gradio's login check: the password is a token; the user name ``admin`` asks for
    the admin token, any other for the API token (or the admin token)."""

    def check(username: str, password: str) -> bool:
        return service.tokens.allows(password, admin=username == ADMIN_USER)

    return check


__all__ = ["ADMIN_USER", "PageActions", "login", "shown_errors"]
