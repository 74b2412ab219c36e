"""``vlsearch ui``: the web page first, on the REST API's server (its media routes serve
the page's players), at ``/ui`` with ``/`` sending the browser there.

No model loads at start: the page answers at once and loads models when the user presses
Load model or a request first needs one. ``--share`` asks Gradio's share service for a
public link; without a network that fails with a message and the local page goes on.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from pathlib import Path

from pipeline.config import Config
from pipeline.pipeline import Pipeline

logger = logging.getLogger(__name__)
# uvicorn's own logger prints at info level whatever the CLI's level: where a user looks
# for the address.
server_log = logging.getLogger("uvicorn.error")


def serve_page(
    pipeline: Pipeline,
    indexes: Mapping[str, Path],
    index_configs: Mapping[str, Config] | None = None,
    share: bool = False,
) -> None:
    """Serve the page until Ctrl-C or SIGTERM (see ``pipeline.api.server.serve``)."""
    try:
        from pipeline.api.app import create_app
        from pipeline.api.server import run_app
        from pipeline.api.service import Service
        from pipeline.ui.page import mount_page
    except ImportError as exc:
        raise ImportError(
            f"vlsearch ui needs the ui extra: pip install 'vlsearch[ui]' ({exc})"
        ) from exc
    ui = pipeline.config.ui
    service = Service(pipeline, indexes, index_configs, preload=False)
    app = create_app(service)
    mount_page(app, service, ui, "/ui")
    run_app(app, service, ui.host, ui.port, when_started=_share if share else _announce)


def _announce(url: str) -> None:
    server_log.info("the page is at %s/ui/", url)


def _share(url: str) -> None:
    """A public link through Gradio's share service (its tunnel client, frpc)."""
    _announce(url)
    from gradio.networking import setup_tunnel

    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        public = setup_tunnel(host, int(port), secrets.token_urlsafe(32), None, None)
    except Exception as exc:  # any failure of the remote service leaves the local page up
        logger.error(
            "--share needs Gradio's share service (api.gradio.app and its tunnel), which "
            "could not be reached (%s); the page is still served at %s/ui/",
            exc,
            url,
        )
        return
    server_log.info("public link (open to anyone who has it): %s/ui/", public)
