"""Bearer tokens: one for every /v1 route, optionally another for writes and models.

Media links in a web page cannot carry a header, so the page links to media with a
signed URL instead: ``?exp=EXPIRY&sig=HMAC`` over the path and the expiry, keyed by a key
derived from the API token. A signature opens that one asset's media until it expires.

Tokens come from ``VLSEARCH_API_TOKEN`` / ``VLSEARCH_ADMIN_TOKEN`` or from the files that
``serve.token_file`` / ``serve.admin_token_file`` name (Docker secrets). They are compared
in constant time, so response timing says nothing about how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from pipeline.api.settings import ServeConfig
from pipeline.settings import ConfigError

API_TOKEN_ENV = "VLSEARCH_API_TOKEN"
ADMIN_TOKEN_ENV = "VLSEARCH_ADMIN_TOKEN"


@dataclass(frozen=True)
class Tokens:
    api: str | None
    admin: str | None

    @classmethod
    def from_settings(cls, serve: ServeConfig) -> Tokens:
        api = _token(API_TOKEN_ENV, serve.token_file, "serve.token_file")
        admin = _token(ADMIN_TOKEN_ENV, serve.admin_token_file, "serve.admin_token_file")
        return cls(api=api, admin=admin)

    @property
    def required(self) -> bool:
        return self.api is not None or self.admin is not None

    def allows(self, token: str | None, admin: bool) -> bool:
        """Whether a bearer token grants a route. An admin route (writes, models) takes
        the admin token when one is set, else the API token; any other route takes the
        API token or the admin token, and is open when no API token is set."""
        if admin:
            accepted = [t for t in (self.admin or self.api,) if t is not None]
            open_route = not accepted
        else:
            accepted = [t for t in (self.api, self.admin) if t is not None]
            open_route = self.api is None
        if open_route:
            return True
        given = (token or "").encode()
        # Every candidate is compared, each in constant time: timing says nothing.
        matches = [hmac.compare_digest(given, wanted.encode()) for wanted in accepted]
        return any(matches)

    def signed(self, url: str, ttl_s: float = 3600.0) -> str:
        """``url`` (a path, maybe with a query) with an expiry and a signature of its path;
        ``url`` itself when no token is set."""
        if not self.required:
            return url
        path, separator, query = url.partition("?")
        expires = int(time.time() + ttl_s)
        # Signed as the server will decode it: an id's escapes (%23, %3D...) come back
        # resolved in the request's path.
        signing = f"exp={expires}&sig={self._signature(unquote(path), expires)}"
        return f"{path}?{query}&{signing}" if separator else f"{path}?{signing}"

    def allows_signed(self, path: str, expires: str | None, signature: str | None) -> bool:
        """Whether ``signature`` signs ``path`` (as the server decoded it: the ASGI
        scope's ``path``) until ``expires``, which is still ahead."""
        if not self.required or expires is None or signature is None:
            return not self.required
        try:
            deadline = int(expires)
        except ValueError:
            return False
        wanted = self._signature(path, deadline)
        return deadline >= time.time() and hmac.compare_digest(signature.encode(), wanted.encode())

    def _signature(self, path: str, expires: int) -> str:
        secret = self.api or self.admin or ""
        # A key of its own: a leaked link must not reveal anything usable as a token.
        key = hashlib.sha256(b"vlsearch media links\0" + secret.encode()).digest()
        return hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def _token(variable: str, path: Path | None, key: str) -> str | None:
    value = os.environ.get(variable)
    if value is None and path is not None:
        try:
            value = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path} ({exc.strerror or exc})") from None
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise ConfigError(f"{variable if path is None else key}: the token is empty")
    return value
