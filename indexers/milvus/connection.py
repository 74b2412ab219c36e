"""Reaching Milvus: pymilvus imported on first use (the ``milvus`` extras are optional),
the URI of a server or of a Milvus Lite folder inside the index directory, the token, and
clearing away an empty collection left by a failed build."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from indexers.manifest import IndexExistsError, IndexNotFoundError
from pipeline.settings import MilvusConfig

DEFAULT_LITE_PATH = "milvus.db"
TOKEN_ENV = "MILVUS_TOKEN"

_SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "unix:")


def import_pymilvus() -> Any:
    """The pymilvus module, or an ImportError that says which extra to install."""
    try:
        import pymilvus
    except ImportError:
        raise ImportError(
            "index.backend 'milvus' needs pymilvus (and milvus-lite for a local folder): "
            "pip install 'vlsearch[milvus]'"
        ) from None
    return pymilvus


def connect(settings: MilvusConfig, directory: Path, token: str | None) -> Any:
    """A ``MilvusClient`` for the index in ``directory``."""
    pymilvus = import_pymilvus()
    uri = resolved_uri(settings, directory)
    if not uri.startswith(_SERVER_SCHEMES):
        try:
            import milvus_lite  # noqa: F401  (pymilvus needs it for a local folder)
        except ImportError:
            raise ImportError(
                f"a local Milvus index ({uri}) needs milvus-lite: pip install 'vlsearch[milvus]'"
            ) from None
    try:
        return pymilvus.MilvusClient(uri=uri, token=token or "")
    except pymilvus.MilvusException as exc:
        raise IndexNotFoundError(f"{directory}: cannot reach Milvus at {uri} ({exc})") from None


def resolved_uri(settings: MilvusConfig, directory: Path) -> str:
    """A server URL as given; a local Milvus Lite folder inside the index directory unless
    it is absolute."""
    uri = settings.uri or DEFAULT_LITE_PATH
    if uri.startswith(_SERVER_SCHEMES):
        return uri
    return str(directory / uri)  # an absolute uri stays absolute under `/`


def configured_token(settings: MilvusConfig) -> str | None:
    """The token of the config, else of the ``MILVUS_TOKEN`` environment variable."""
    if settings.token is not None:
        return settings.token.get_secret_value()
    return os.environ.get(TOKEN_ENV) or None  # an empty variable (compose) means none


def replace_empty_collection(client: Any, name: str, directory: Path) -> None:
    """Drop a collection with no assets (e.g. from a build that failed early); refuse one
    that holds assets."""
    if not client.has_collection(name):
        return
    client.load_collection(name)
    rows = client.query(name, filter="", output_fields=["count(*)"])
    count = int(rows[0]["count(*)"])
    if count:
        raise IndexExistsError(
            f"{directory}: Milvus collection {name!r} already holds {count} vectors; open it "
            "to add to it, or drop the collection to start over"
        )
    client.drop_collection(name)
