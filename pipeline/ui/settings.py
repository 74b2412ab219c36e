"""The ``ui:`` config section: the web page of ``vlsearch ui`` and of ``serve``'s ``/ui``.

It has no Gradio import, so the config loads without the ``ui`` extra.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class UiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Address `vlsearch ui` binds.")
    port: int = Field(default=7860, ge=1, le=65535, description="TCP port of `vlsearch ui`.")
    max_documents: int = Field(
        default=20,
        ge=1,
        description="Candidates the Rerank tab takes at most (files, PDF pages and snippets).",
    )
    in_serve: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Mount the page at /ui in `vlsearch serve`: 'auto' when Gradio is "
        "installed (extra 'ui'), 'on' always (an error without Gradio), 'off' never.",
    )
    queue: bool = Field(
        default=True,
        description="Run the page's events through Gradio's queue (progress bars); off "
        "answers each over plain HTTP, for proxies that break server-sent events.",
    )
