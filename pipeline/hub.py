"""Models that come from the Hugging Face hub: a one-line error, at once, when they can't.

Left to themselves the hub clients retry each file five times over about 25 seconds
when the hub is unreachable, and then fail in a chain of tracebacks that never says
what to do. So before a hub model loads, :func:`require_hub_model` asks once per
process whether the hub can be reached (``HF_HUB_OFFLINE`` counts as no; behind a proxy
we cannot tell, and assume yes). When it cannot: a model whose files are all in the
local cache loads from there, with the hub clients put in offline mode so they do not
retry; any other model raises :class:`ModelUnavailable`, naming the model, the cause
and the two ways out (the offline ``tiny`` profile, or a local folder).
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

CONNECT_TIMEOUT_S = 3.0
_DEFAULT_ENDPOINT = "https://huggingface.co"
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_TRUE = {"1", "true", "yes", "on"}

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
"""Any one of these holds a transformers or sentence-transformers model's weights."""


class ModelUnavailable(RuntimeError):
    """A hub model that is neither in the local cache nor downloadable now."""


def require_hub_model(
    role: str, repo_id: str, setting: str, files: Sequence[Sequence[str]]
) -> None:
    """Make sure the ``role`` model ``repo_id`` can load: nothing to do for a local folder
    or when the hub is reachable; from the cache when it is not and every group in
    ``files`` has a cached member (any one file of a group will do); else
    ModelUnavailable. ``setting`` is the config key that names the model, for the message."""
    if not is_hub_id(repo_id):
        return
    reason = hub_unreachable()
    if reason is None:
        return
    missing = [group for group in files if not any(_cached(repo_id, f) for f in group)]
    if not missing:
        _go_offline()
        return
    raise ModelUnavailable(
        f"cannot load the {role} model {repo_id!r}: not in the local cache, and the "
        f"Hugging Face hub is unreachable ({reason}). Offline, run with VLSEARCH_MODELS=tiny "
        f"(random-weight models: rankings are meaningless) or set {setting} to "
        "local-dir:PATH"
    )


def is_hub_id(name: str) -> bool:
    """Whether ``name`` names a hub repository rather than a local folder."""
    if name.startswith("local-dir:") or Path(name).expanduser().exists():
        return False
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


@contextmanager
def quiet_loading(name: str) -> Iterator[None]:
    """transformers' progress bars off while a model that needs no download loads: a
    "Loading weights" bar for reading local files is noise, a download's bar is not."""
    from transformers.utils import logging as hf_logging

    local = not is_hub_id(name) or any(_cached(name, f) for f in WEIGHT_FILES)
    shown = hf_logging.is_progress_bar_enabled()
    if local and shown:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if local and shown:
            hf_logging.enable_progress_bar()


@functools.cache
def hub_unreachable() -> str | None:
    """Why the hub cannot be reached, or None when it can (or we cannot tell)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None  # the proxy decides; a direct connection says nothing
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        detail = exc.strerror or str(exc) or type(exc).__name__
        return f"{host}: {detail}"


def _cached(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def _go_offline() -> None:
    """Hub clients read HF_HUB_OFFLINE once, when huggingface_hub is imported; the
    module constant is what they consult afterwards, so both are set."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
