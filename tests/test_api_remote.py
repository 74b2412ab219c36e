"""URL fetching and server paths for the REST server: what a client may make the server read.

The URL tests talk to real HTTP(S) servers on 127.0.0.1 that this module starts; the
refusals that must happen before any connection run with the network switched off."""

from __future__ import annotations

import http.server
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline.api.remote import UrlFetchFailed, UrlPolicy, UrlRefused, UrlTooLarge, fetch_url
from pipeline.api.server_paths import ServerPathRefused, resolve_server_path

BODY = b"hello, media"
LOCAL = UrlPolicy(allow_hosts=frozenset({"127.0.0.1"}))


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /ok, /bytes/N (with Content-Length), /chunked/N (no length; N=0 never ends),
    /drip (a byte every 50 ms), /slow (answers after 2 s), /redirect?to=URL, /chain/N (N
    redirects, relative, then /ok) and /host (echoes the Host header); others are 404."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        route, _, arg = url.path.strip("/").partition("/")
        if route == "ok":
            self._send(BODY)
        elif route == "host":
            self._send(self.headers["Host"].encode())
        elif route == "bytes":
            self._send(b"x" * int(arg))
        elif route == "chunked":
            self._chunked(int(arg), pause=0.0)
        elif route == "drip":
            self._chunked(0, pause=0.05, size=1)
        elif route == "slow":
            time.sleep(2.0)
            self._send(BODY)
        elif route == "redirect":
            self._redirect(parse_qs(url.query)["to"][0])
        elif route == "chain":
            left = int(arg)
            self._redirect(f"/chain/{left - 1}" if left else "/ok")
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _chunked(self, total: int, pause: float, size: int = 4096) -> None:
        """Sends total bytes (0: until the client hangs up or 5 s pass) in chunks."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent, stop = 0, time.monotonic() + 5.0
        try:
            while (total == 0 or sent < total) and time.monotonic() < stop:
                chunk = b"x" * (size if total == 0 else min(size, total - sent))
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                sent += len(chunk)
                time.sleep(pause)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading, as it should past the limit

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DNS and no connections: a refusal that needs neither proves it came first."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)


def _resolves(host: str) -> bool:
    try:
        return bool(socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM))
    except (socket.gaierror, UnicodeError):
        return False


# -- what is refused by default --------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        *("127.0.0.1", "localhost", "[::1]", "0.0.0.0", "[::]"),
        *("127.1", "2130706433", "0x7f000001"),  # short forms, where getaddrinfo takes them
        *("[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[2002:7f00:1::]"),  # IPv4 inside IPv6
    ],
)
def test_loopback_is_refused_by_default(port: int, host: str) -> None:
    if not host.startswith("[") and not _resolves(host):
        pytest.skip(f"getaddrinfo does not accept {host}")
    with pytest.raises(UrlRefused) as refused:
        fetch_url(f"http://{host}:{port}/ok", UrlPolicy())
    assert refused.value.url == f"http://{host}:{port}/ok"
    assert "allow_hosts" in refused.value.reason
    assert str(refused.value) == f"{refused.value.url}: {refused.value.reason}"


def test_a_name_is_refused_when_any_of_its_addresses_is_forbidden(port: int) -> None:
    # localhost may resolve to 127.0.0.1 and ::1: allowing one address is not enough when
    # the name also resolves to the other.
    addresses = {info[4][0] for info in socket.getaddrinfo("localhost", port)}
    policy = UrlPolicy(allow_hosts=frozenset({"127.0.0.1"}))
    if addresses == {"127.0.0.1"}:
        assert fetch_url(f"http://localhost:{port}/ok", policy) == BODY
    else:
        with pytest.raises(UrlRefused, match="::1"):
            fetch_url(f"http://localhost:{port}/ok", policy)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("http://10.1.2.3/image.jpg", "private"),
        ("http://192.168.0.1/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://100.64.0.1/", "shared"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[64:ff9b::a00:1]/", "private"),
    ],
)
@pytest.mark.usefixtures("offline")
def test_forbidden_literals_are_refused_before_any_network_access(url: str, kind: str) -> None:
    with pytest.raises(UrlRefused, match=kind):
        fetch_url(url, UrlPolicy())


@pytest.mark.usefixtures("offline")
def test_metadata_is_allowed_only_by_its_exact_address() -> None:
    broad = UrlPolicy(allow_hosts=frozenset({"169.254.0.0/16", "0.0.0.0/0"}))
    with pytest.raises(UrlRefused, match="cloud metadata"):
        fetch_url("http://169.254.169.254/", broad)
    exact = UrlPolicy(allow_hosts=frozenset({"169.254.169.254"}))
    with pytest.raises(AssertionError, match="the network was used"):
        fetch_url("http://169.254.169.254/", exact)  # allowed: it goes on to connect


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("ftp://example.com/a.jpg", "scheme 'ftp'"),
        ("gopher://127.0.0.1:70/", "scheme 'gopher'"),
        ("example.com/a.jpg", "scheme '(none)'"),
        ("http://user:pw@example.com/a.jpg", "credentials"),
        ("https://user@example.com/a.jpg", "credentials"),
    ],
)
@pytest.mark.usefixtures("offline")
def test_other_schemes_and_credentials_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused, match=re.escape(reason)) as refused:
        fetch_url(url, UrlPolicy(allow_hosts=frozenset({"example.com"})))
    assert "pw" not in str(refused.value)  # the password is not echoed back


@pytest.mark.usefixtures("offline")
def test_malformed_urls_fail_without_network() -> None:
    for url in ("http://[::1/", "http:///nohost", "http://exa mple.com/"):
        with pytest.raises(UrlFetchFailed):
            fetch_url(url, UrlPolicy())


# -- allow_hosts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.0/8", "127.0.0.1"),
        ("127.0.0.0/8", "127.1"),
        ("localhost", "localhost"),
        ("LOCALHOST.", "localhost"),
        ("127.0.0.1", "[::ffff:127.0.0.1]"),
    ],
)
def test_allow_hosts_lets_listed_hosts_through(port: int, allow: str, host: str) -> None:
    if host == "127.1" and not _resolves(host):
        pytest.skip("getaddrinfo does not accept 127.1")
    url = f"http://{host}:{port}/ok"
    policy = UrlPolicy(allow_hosts=frozenset({allow}))
    if host.startswith("[::ffff:"):
        # Reaching 127.0.0.1 through the mapped address needs a dual-stack socket; the policy
        # must let it through either way, so a refusal to connect is the only failure allowed.
        try:
            assert fetch_url(url, policy) == BODY
        except UrlFetchFailed as failed:
            assert "cannot connect" in failed.reason
        return
    assert fetch_url(url, policy) == BODY


def test_the_request_keeps_the_host_name(port: int) -> None:
    policy = UrlPolicy(allow_hosts=frozenset({"localhost"}))
    body = fetch_url(f"http://localhost:{port}/host", policy)
    assert body == f"localhost:{port}".encode()


def test_an_invalid_network_in_allow_hosts_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        UrlPolicy(allow_hosts=frozenset({"10.0.0.0/33"}))
    with pytest.raises(ValueError, match="max_bytes"):
        UrlPolicy(max_bytes=0)


# -- redirects -------------------------------------------------------------------------------


def test_a_redirect_to_an_allowed_host_is_followed(port: int) -> None:
    target = f"http://localhost:{port}/ok"
    url = f"http://localhost:{port}/redirect?to={target}"
    assert fetch_url(url, UrlPolicy(allow_hosts=frozenset({"localhost"}))) == BODY


def test_a_redirect_to_a_forbidden_address_is_refused(port: int) -> None:
    # The name localhost is allowed, the address 127.0.0.1 is not: the same server reached
    # by its address is a different, forbidden, target.
    target = f"http://127.0.0.1:{port}/ok"
    url = f"http://localhost:{port}/redirect?to={target}"
    with pytest.raises(UrlRefused) as refused:
        fetch_url(url, UrlPolicy(allow_hosts=frozenset({"localhost"})))
    assert refused.value.url == target
    assert "loopback" in refused.value.reason
    assert "redirect from" in refused.value.reason


@pytest.mark.parametrize("target", ["file:///etc/passwd", "http://169.254.169.254/latest/"])
def test_a_redirect_out_of_http_or_to_metadata_is_refused(port: int, target: str) -> None:
    with pytest.raises(UrlRefused):
        fetch_url(f"http://127.0.0.1:{port}/redirect?to={target}", LOCAL)


def test_redirects_up_to_the_limit_are_followed_and_one_more_fails(port: int) -> None:
    policy = UrlPolicy(allow_hosts=frozenset({"127.0.0.1"}), max_redirects=3)
    assert fetch_url(f"http://127.0.0.1:{port}/chain/2", policy) == BODY  # 3 redirects
    with pytest.raises(UrlFetchFailed, match="more than 3 redirects"):
        fetch_url(f"http://127.0.0.1:{port}/chain/3", policy)
    no_redirects = UrlPolicy(allow_hosts=frozenset({"127.0.0.1"}), max_redirects=0)
    with pytest.raises(UrlFetchFailed, match="more than 0 redirects"):
        fetch_url(f"http://127.0.0.1:{port}/chain/0", no_redirects)


# -- size, time and status -------------------------------------------------------------------


def _policy(**limits: float) -> UrlPolicy:
    return UrlPolicy(allow_hosts=frozenset({"127.0.0.1"}), **limits)  # type: ignore[arg-type]


def test_a_body_at_the_limit_is_returned(port: int) -> None:
    assert fetch_url(f"http://127.0.0.1:{port}/bytes/1000", _policy(max_bytes=1000)) == b"x" * 1000
    body = fetch_url(f"http://127.0.0.1:{port}/chunked/10000", _policy(max_bytes=10000))
    assert body == b"x" * 10000


@pytest.mark.parametrize("route", ["bytes/1001", "chunked/100000", "chunked/0"])
def test_a_body_over_the_limit_is_too_large(port: int, route: str) -> None:
    start = time.monotonic()
    with pytest.raises(UrlTooLarge, match="1000 bytes") as large:
        fetch_url(f"http://127.0.0.1:{port}/{route}", _policy(max_bytes=1000))
    assert large.value.limit == 1000
    assert time.monotonic() - start < 2  # chunked/0 never ends: reading stopped at the limit


def test_a_slow_server_times_out(port: int) -> None:
    start = time.monotonic()
    with pytest.raises(UrlFetchFailed, match="timed out"):
        fetch_url(f"http://127.0.0.1:{port}/slow", _policy(timeout_s=0.3))
    assert time.monotonic() - start < 1.5


def test_the_deadline_covers_the_whole_body(port: int) -> None:
    # A byte every 50 ms keeps every single read short; the deadline still ends the fetch.
    start = time.monotonic()
    with pytest.raises(UrlFetchFailed, match="timed out"):
        fetch_url(f"http://127.0.0.1:{port}/drip", _policy(timeout_s=0.4))
    assert time.monotonic() - start < 1.5


def test_an_error_status_fails_naming_it(port: int) -> None:
    with pytest.raises(UrlFetchFailed, match="404") as failed:
        fetch_url(f"http://127.0.0.1:{port}/missing", LOCAL)
    assert failed.value.status == 404


def test_a_closed_port_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(UrlFetchFailed, match="cannot connect"):
        fetch_url(f"http://127.0.0.1:{closed}/ok", LOCAL)


def test_an_unknown_host_fails() -> None:
    with pytest.raises(UrlFetchFailed, match="cannot resolve"):
        fetch_url("http://no-such-host.invalid/a.jpg", UrlPolicy())


# -- https: the address is contacted, the name is verified ------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, list]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for the name localhost;
    yields its port, the certificate and the SNI names its clients sent."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for port in _serve(server):
        yield port, cert, names


def test_https_verifies_the_host_name_while_connecting_to_the_address(
    tls_server: tuple[int, Path, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, cert, names = tls_server
    policy = UrlPolicy(allow_hosts=frozenset({"localhost", "127.0.0.1"}))
    with pytest.raises(UrlFetchFailed, match="CERTIFICATE_VERIFY_FAILED"):
        fetch_url(f"https://localhost:{port}/ok", policy)  # self-signed: not trusted
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    names.clear()
    assert fetch_url(f"https://localhost:{port}/ok", policy) == BODY
    assert names == ["localhost"]
    # The certificate names localhost, not 127.0.0.1: asked by address, verification fails.
    with pytest.raises(UrlFetchFailed, match="CERTIFICATE_VERIFY_FAILED"):
        fetch_url(f"https://127.0.0.1:{port}/ok", policy)


# -- server paths ----------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    (media / "sub" / "cat.jpg").write_bytes(b"jpeg")
    (tmp_path / "secret.txt").write_text("key")
    return media


def test_a_file_under_a_root_is_accepted(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    real = root.resolve()
    assert resolve_server_path(str(root / "sub" / "cat.jpg"), [other, root]) == real / "sub/cat.jpg"
    # Existence is the media loaders' business: a missing file under a root is accepted.
    assert resolve_server_path(str(root / "sub" / ".." / "new.jpg"), [root]) == real / "new.jpg"


def test_a_symlinked_root_is_compared_by_its_real_path(root: Path, tmp_path: Path) -> None:
    link = tmp_path / "media-link"
    link.symlink_to(root)
    real = root.resolve() / "sub" / "cat.jpg"
    assert resolve_server_path(str(root / "sub" / "cat.jpg"), [link]) == real
    assert resolve_server_path(str(link / "sub" / "cat.jpg"), [root]) == real


@pytest.mark.parametrize(
    "raw",
    ["/etc/passwd", "{root}/../secret.txt", "{root}/sub/../../secret.txt", "{root}-sibling/x.jpg"],
)
def test_paths_outside_the_roots_are_refused(root: Path, raw: str) -> None:
    raw = raw.format(root=root)
    with pytest.raises(ServerPathRefused, match=r"not under any of serve\.media_roots") as refused:
        resolve_server_path(raw, [root])
    assert refused.value.path == raw
    assert str(refused.value).startswith(raw)


def test_a_symlink_that_leads_out_is_refused(root: Path, tmp_path: Path) -> None:
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "outside").symlink_to(tmp_path)
    for raw in (root / "escape.txt", root / "outside" / "secret.txt"):
        with pytest.raises(ServerPathRefused) as refused:
            resolve_server_path(str(raw), [root])
        assert "secret.txt" not in refused.value.reason  # the target is not revealed


def test_no_roots_means_server_paths_are_off(root: Path) -> None:
    with pytest.raises(ServerPathRefused, match=r"serve\.media_roots") as refused:
        resolve_server_path(str(root / "sub" / "cat.jpg"), [])
    assert "off" in refused.value.reason


@pytest.mark.parametrize("raw", ["sub/cat.jpg", "./sub/cat.jpg", "../x", "~/x", ""])
def test_relative_paths_are_refused(root: Path, raw: str) -> None:
    with pytest.raises(ServerPathRefused, match=r"absolute path under serve\.media_roots"):
        resolve_server_path(raw, [root])


def test_a_nul_byte_is_refused(root: Path) -> None:
    with pytest.raises(ServerPathRefused, match="NUL"):
        resolve_server_path(f"{root}/sub/cat.jpg\0.png", [root])
