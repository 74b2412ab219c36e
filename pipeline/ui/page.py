"""The page's layout: a status line with Load and Unload, a Search tab and a Rerank tab.

Widgets only: each event calls one ``PageActions`` method. The page is mounted into the
REST API's FastAPI app (``mount_page``), so its media links reach the API's media routes
(Range requests: a player can seek) and one process serves both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr
from fastapi.responses import RedirectResponse

from pipeline.ui import cards
from pipeline.ui.actions import PageActions, login
from pipeline.ui.settings import UiConfig
from rerankers.qwen3_vl.prompt import DEFAULT_INSTRUCTION

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pipeline.api.service import Service

FILTER_HELP = """
Filters compare the assets' metadata: `category == "toys" and price < 50`,
`10 <= price < 50`, `brand in ["acme", "globex"]`, `not (color == "red")`,
`dims.width > 100`, `discontinued == null`. Operators: `== != < <= > >=`, `in`, `not in`,
`and`, `or`, `not`, parentheses. Strings in double quotes. An asset without the field
never matches a comparison on it.
"""
STATUS_POLL_S = 1.0
UPLOAD_CACHE_S = (1800, 3600)  # (how often, how old): Gradio deletes the page's old uploads
# System fonts: the default theme fetches Google's, which an offline site cannot reach.
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "sans-serif")
MONO_FONTS = ("ui-monospace", "monospace")


def build_page(actions: PageActions) -> gr.Blocks:
    queue = actions.settings.queue
    # Uploads are copied into Gradio's cache; an hour after their request they go.
    with gr.Blocks(title="vlsearch", analytics_enabled=False, delete_cache=UPLOAD_CACHE_S) as page:
        gr.Markdown("# vlsearch\nTwo-stage multimodal search: CLIP recall, Qwen3-VL rerank.")
        gr.Markdown(f"⚠️ {cards.TINY_NOTICE}", visible=actions.is_tiny, elem_id="vls-tiny")
        with gr.Row(equal_height=True):
            status = gr.Markdown(actions.status(), elem_id="vls-status")
            load = gr.Button("Load model", scale=0, elem_id="vls-load")
            unload = gr.Button("Unload", scale=0, elem_id="vls-unload")
        poll = gr.Timer(STATUS_POLL_S, active=False)
        with gr.Tabs():
            with gr.Tab("Search", id="search"):
                searched = _search_tab(actions)
            with gr.Tab("Rerank", id="rerank"):
                reranked = _rerank_tab(actions)
        # The status line counts the seconds of a load while it runs, then stops polling.
        load.click(lambda: gr.Timer(active=True), outputs=poll, queue=False).then(
            actions.load, outputs=status, queue=queue
        ).then(lambda: gr.Timer(active=False), outputs=poll, queue=False)
        unload.click(actions.unload, outputs=status, queue=queue)
        poll.tick(actions.status, outputs=status, queue=False)
        for event in (searched, reranked):
            event.then(actions.status, outputs=status, queue=False)
        page.load(actions.status, outputs=status, queue=False)
    return page


def _search_tab(actions: PageActions) -> gr.events.Dependency:
    names = actions.index_names
    queue = actions.settings.queue
    if not names:
        gr.Markdown("No index is open: start with `--index NAME=DIR` to search one.")
    with gr.Row():
        with gr.Column(scale=2):
            index = gr.Dropdown(
                names, value=names[0] if names else None, label="Index", interactive=bool(names)
            )
            text = gr.Textbox(
                label="Query text",
                placeholder="a red dress with long sleeves",
                elem_id="vls-search-text",
            )
            with gr.Row():
                image = gr.Image(
                    label="Query image",
                    type="filepath",
                    sources=["upload"],
                    image_mode=None,
                    elem_id="vls-search-image",
                )
                video = gr.Video(
                    label="Query video", sources=["upload"], elem_id="vls-search-video"
                )
        with gr.Column(scale=1):
            filter_text = gr.Textbox(
                label="Metadata filter", placeholder="price < 50", elem_id="vls-filter"
            )
            with gr.Accordion("Filter syntax", open=False):
                gr.Markdown(FILTER_HELP)
            top_k = gr.Slider(1, 100, value=10, step=1, label="Top k")
            rerank = gr.Checkbox(value=True, label="Rerank (stage two)")
            fps = gr.Slider(0.1, 5.0, value=1.0, step=0.1, label="FPS for video documents")
            run = gr.Button("Search", variant="primary", elem_id="vls-search")
    results = gr.HTML(elem_id="vls-search-results", js_on_load=cards.SEEK_SCRIPT)
    inputs = [index, text, image, video, filter_text, top_k, rerank, fps]
    return run.click(actions.search, inputs=inputs, outputs=results, queue=queue)


def _rerank_tab(actions: PageActions) -> gr.events.Dependency:
    reranker = actions.service.pipeline.config.reranker
    queue = actions.settings.queue
    instruction = gr.Textbox(
        label="Instruction", value=getattr(reranker, "instruction", DEFAULT_INSTRUCTION)
    )
    with gr.Row():
        text = gr.Textbox(label="Query text", elem_id="vls-rerank-text")
        image = gr.Image(
            label="Query image",
            type="filepath",
            sources=["upload"],
            image_mode=None,
            elem_id="vls-rerank-image",
        )
        video = gr.Video(label="Query video", sources=["upload"], elem_id="vls-rerank-video")
    limit = actions.settings.max_documents
    with gr.Row():
        with gr.Column():
            files = gr.File(
                label=f"Candidates: images, videos, PDFs, text files (up to {limit} in all)",
                file_count="multiple",
                type="filepath",
                elem_id="vls-candidates",
            )
            described = gr.HTML(elem_id="vls-upload-info")
        snippets = gr.Textbox(
            label="Text candidates, one per line", lines=6, elem_id="vls-snippets"
        )
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            fps = gr.Slider(0.1, 5.0, value=1.0, step=0.1, label="FPS for videos")
            max_frames = gr.Slider(
                2, 256, value=getattr(reranker, "max_frames", 64), step=2, label="Max frames"
            )
        with gr.Row(visible=reranker.backend == "qwen3_vl"):
            width = gr.Number(0, label="Target width (0: none)", precision=0, minimum=0)
            height = gr.Number(0, label="Target height (0: none)", precision=0, minimum=0)
            mode = gr.Radio(["none", "fit", "crop"], value="none", label="Resize mode")
            resample = gr.Dropdown(
                ["bicubic", "bilinear", "nearest"], value="bicubic", label="Resampling"
            )
            blur = gr.Slider(0.0, 5.0, value=0.0, step=0.1, label="Blur sigma (0: none)")
        with gr.Row():
            parts = gr.Checkbox(True, label="Score each part of a text+image document alone")
            frames = gr.Checkbox(
                False,
                label="Find each video's best moment (scores every sampled frame)",
                elem_id="vls-frames",
            )
    run = gr.Button("Rerank", variant="primary", elem_id="vls-rerank")
    results = gr.HTML(elem_id="vls-rerank-results", js_on_load=cards.SEEK_SCRIPT)
    files.change(actions.describe, inputs=files, outputs=described, queue=False)
    inputs = [instruction, text, image, video, files, snippets, fps, max_frames]
    inputs += [width, height, mode, resample, blur, parts, frames]
    return run.click(actions.rerank, inputs=inputs, outputs=results, queue=queue)


def mount_page(app: FastAPI, service: Service, settings: UiConfig, path: str = "/ui") -> None:
    """Mount the page at ``path`` of the API's app, behind the API's tokens when set
    (a login form whose password is the token)."""
    pages_dir = service.scratch / "ui-pages"
    pages_dir.mkdir(parents=True, exist_ok=True)
    actions = PageActions(service, settings, pages_dir)
    theme = gr.themes.Default(font=list(SYSTEM_FONTS), font_mono=list(MONO_FONTS))
    gr.mount_gradio_app(
        app,
        build_page(actions),
        path=path,
        auth=login(service) if service.tokens.required else None,
        auth_message="The password is the API token (user 'admin': the admin token).",
        allowed_paths=[str(pages_dir)],
        css=cards.CSS,
        theme=theme,
        ssr_mode=False,
        footer_links=["gradio"],
    )
    if path not in ("", "/"):
        app.add_api_route("/", lambda: RedirectResponse(f"{path}/"), include_in_schema=False)
