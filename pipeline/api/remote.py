"""Fetches the URLs that REST clients give for images and videos without letting a client aim
the server at its own network (SSRF): loopback, private ranges, cloud metadata and the like.

Every hop is checked the same way before anything is sent: the scheme, the absence of
credentials, and every address the host resolves to. The request then goes to the address
that was checked, not to the name, so a second DNS answer cannot swap in another address
(DNS rebinding). Redirects are followed here, one checked hop at a time, and the body is read
as a stream so that a large or endless answer stops at the limit instead of filling memory.
"""

from __future__ import annotations

import concurrent.futures
import functools
import ipaddress
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Letters, digits, hyphens (and the underscores some real names have), 63 per label: what a
# DNS name may be, so that nothing stranger (a percent-encoded space) reaches the resolver.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# Instance metadata services (AWS, GCP, Azure, OpenStack share 169.254.169.254; AWS also has
# an IPv6 one). They hand out credentials, so only an exact address in allow_hosts lets them
# through: a broad CIDR or a host name that happens to resolve there does not.
_METADATA = frozenset(map(ipaddress.ip_address, ("169.254.169.254", "fd00:ec2::254")))
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT; not global, not "private"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the last 32 bits are IPv4
# Checked in this order, so an address gets its most telling name (127.0.0.1 is also private).
_FLAGS = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_reserved", "reserved"),
    ("is_private", "private"),
)


@dataclass(frozen=True)
class UrlPolicy:
    """What a URL fetch may reach and how much it may cost.

    allow_hosts lists host names, IP addresses or CIDR networks that may be fetched although
    they are private or loopback (an internal media server, a test server). Entries are
    normalised (lower case, no trailing dot), and any iterable of strings is accepted so that
    a list from a config file can be passed as is.
    """

    allow_hosts: frozenset[str] = frozenset()
    max_bytes: int = 50 * 2**20
    timeout_s: float = 10.0
    max_redirects: int = 3
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.timeout_s <= 0 or self.max_redirects < 0:
            raise ValueError(
                "UrlPolicy needs max_bytes > 0, timeout_s > 0 and max_redirects >= 0, got "
                f"{self.max_bytes}, {self.timeout_s} and {self.max_redirects}"
            )
        hosts = frozenset(_normal_host(entry) for entry in self.allow_hosts)
        object.__setattr__(self, "allow_hosts", hosts)
        object.__setattr__(self, "_networks", _parse_networks(hosts))


class UrlRefused(PermissionError):
    """The URL is not one this server may fetch (the REST server answers 403)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class UrlTooLarge(ValueError):
    """The answer is larger than the policy's max_bytes (the REST server answers 413)."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(f"{url}: larger than the limit of {limit} bytes")
        self.url = url
        self.limit = limit


class UrlFetchFailed(ValueError):
    """The URL could not be fetched: a bad status, a timeout, no connection, no such host,
    too many redirects, a malformed URL (the REST server answers 422)."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status


def fetch_url(url: str, policy: UrlPolicy) -> bytes:
    """The body of url, fetched under policy; raises UrlRefused, UrlTooLarge or UrlFetchFailed.

    The timeout covers the whole fetch, redirects included. It is checked before each step
    and after every chunk of the body; a single network wait never outlasts the time that was
    left when its request started.
    """
    deadline = time.monotonic() + policy.timeout_s
    try:
        return _follow(url, policy, deadline)
    except httpx.TimeoutException:
        raise UrlFetchFailed(url, f"timed out (limit {policy.timeout_s} s)") from None
    except httpx.HTTPError as exc:
        raise UrlFetchFailed(url, f"fetch failed: {exc}") from None


def _follow(url: str, policy: UrlPolicy, deadline: float) -> bytes:
    """Fetches url hop by hop, each hop checked as if a client had given it."""
    current = _parse(url)
    for hop in range(policy.max_redirects + 1):
        result = _fetch_once(current, policy, deadline, origin=url if hop else None)
        if isinstance(result, bytes):
            return result
        logger.debug("%s redirects to %s", current, result)
        current = result
    raise UrlFetchFailed(url, f"more than {policy.max_redirects} redirects")


def _parse(raw: str) -> httpx.URL:
    """The URL parsed once, by the same parser that builds the request, so that the host
    checked is the host contacted; refuses schemes other than http(s) and credentials."""
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UrlFetchFailed(str(raw), f"not a valid URL: {exc}") from None
    if url.scheme not in _SCHEMES:
        scheme = url.scheme or "(none)"
        raise _refused(raw, f"scheme {scheme!r} is not allowed: only http and https")
    if url.userinfo:
        # Never echo the password back to the client or into the logs.
        shown = str(url.copy_with(username="***", password=None))
        raise _refused(shown, "credentials in the URL are not allowed")
    if not url.raw_host:
        raise UrlFetchFailed(raw, "the URL has no host")
    return url


def _fetch_once(
    url: httpx.URL, policy: UrlPolicy, deadline: float, origin: str | None
) -> bytes | httpx.URL:
    """One hop: the body of a 2xx answer, or the URL a redirect points to (not yet checked).

    Each hop has a client of its own: a pooled connection to the same address, verified for
    the previous hop's host name, must not carry a request for another name. The client
    ignores the environment (a proxy would make its own DNS lookup) except for the CA files.
    """
    addresses = _checked_addresses(url, policy, deadline, origin)
    with httpx.Client(trust_env=False, follow_redirects=False, verify=_tls()) as client:
        response = _send(client, url, addresses, policy, deadline)
        try:
            return _answer(response, url, policy, deadline)
        finally:
            response.close()


def _answer(
    response: httpx.Response, url: httpx.URL, policy: UrlPolicy, deadline: float
) -> bytes | httpx.URL:
    """The body of a 2xx answer, or the URL a redirect points to; other statuses fail."""
    if response.status_code in _REDIRECTS and "location" in response.headers:
        return _redirect_target(url, response.headers["location"])
    if not response.is_success:
        reason = f"the server answered {response.status_code} {response.reason_phrase}"
        raise UrlFetchFailed(str(url), reason.rstrip(), status=response.status_code)
    return _read_body(response, str(url), policy, deadline)


def _redirect_target(url: httpx.URL, location: str) -> httpx.URL:
    """The absolute URL a Location header points to, parsed and refused like a client's."""
    try:
        target = url.join(location)
    except httpx.InvalidURL as exc:
        raise UrlFetchFailed(str(url), f"redirects to an invalid URL: {exc}") from None
    return _parse(str(target))


def _checked_addresses(
    url: httpx.URL, policy: UrlPolicy, deadline: float, origin: str | None
) -> list[IPAddress]:
    """Every address the URL's host resolves to, once each of them has been allowed; one
    forbidden address refuses the URL, whichever address a connection would have picked."""
    host = _normal_host(url.raw_host.decode("ascii"))
    port = url.port or _DEFAULT_PORTS[url.scheme]
    addresses = _resolve(host, port, str(url), policy, deadline)
    for address in addresses:
        kind = _forbidden_kind(address)
        if kind is not None and not _allowed(host, address, policy):
            via = f" (reached by a redirect from {origin})" if origin else ""
            named = "" if _ip_or_none(host) == address else f"{host} resolves to {address}, "
            reason = f"{named}a {kind} address not in serve.allow_hosts{via}"
            raise _refused(str(url), reason)
    return addresses


def _resolve(host: str, port: int, url: str, policy: UrlPolicy, deadline: float) -> list[IPAddress]:
    """The host's addresses, in resolver order without repeats; an IP literal is taken as is,
    without a lookup. getaddrinfo has no timeout of its own, so it runs in a thread that the
    fetch stops waiting for at the deadline."""
    literal = _ip_or_none(host)
    if literal is not None:
        return [literal]
    if len(host) > 253 or not _HOST_NAME.fullmatch(host):
        raise UrlFetchFailed(url, f"{host!r} is not a valid host name")
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="url-dns")
    try:
        future = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        infos = future.result(timeout=_time_left(deadline, url, policy))
    except concurrent.futures.TimeoutError:
        raise UrlFetchFailed(url, f"resolving {host} timed out") from None
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlFetchFailed(url, f"cannot resolve {host}: {exc}") from None
    finally:
        pool.shutdown(wait=False)
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise UrlFetchFailed(url, f"{host} resolves to no address")
    return list(dict.fromkeys(addresses))


def _forbidden_kind(address: IPAddress) -> str | None:
    """Why the address is off limits by default (a short name of its range), or None for a
    public one. IPv4 addresses carried inside IPv6 ones are judged as the IPv4 address."""
    if address in _METADATA:
        return "cloud metadata"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        kind = _forbidden_kind(embedded)
        return f"{kind} (IPv4 inside IPv6)" if kind else None
    for flag, kind in _FLAGS:
        if getattr(address, flag):
            return kind
    if address in _SHARED:
        return "shared (100.64.0.0/10)"
    if not address.is_global:
        return "non-global"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, 6to4, NAT64), if any: those
    reach the IPv4 host on a dual-stack machine or through a gateway."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _allowed(host: str, address: IPAddress, policy: UrlPolicy) -> bool:
    """Whether allow_hosts lets a forbidden address through: by the host name as written in
    the URL, by the exact address or by a network containing it (or the IPv4 it carries)."""
    if address in _METADATA:
        return any(net.num_addresses == 1 and address in net for net in policy._networks)
    if host in policy.allow_hosts:
        return True
    candidates = [address, _embedded_ipv4(address)]
    return any(ip in net for ip in candidates if ip is not None for net in policy._networks)


def _send(
    client: httpx.Client,
    url: httpx.URL,
    addresses: list[IPAddress],
    policy: UrlPolicy,
    deadline: float,
) -> httpx.Response:
    """Sends the GET to each checked address in turn until one accepts the connection (a name
    may resolve to ::1 and 127.0.0.1 while the server listens on one of them only)."""
    failure: httpx.ConnectError | None = None
    for address in addresses:
        request = _request(client, url, address, _time_left(deadline, str(url), policy))
        logger.debug("fetching %s from %s", url, address)
        try:
            return client.send(request, stream=True)
        except httpx.ConnectError as exc:
            failure = exc
    raise UrlFetchFailed(str(url), f"cannot connect: {failure}")


def _request(
    client: httpx.Client, url: httpx.URL, address: IPAddress, timeout: float
) -> httpx.Request:
    """A GET for url sent to the IP literal address: the Host header keeps the name for the
    server, and for https the SNI name makes TLS check the certificate against the host name
    rather than the address. Identity encoding, so the size limit applies to what is sent."""
    host = url.raw_host.decode("ascii")
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    headers = {"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity"}
    target = url.copy_with(host=str(address))
    return client.build_request(
        "GET", target, headers=headers, extensions=extensions, timeout=timeout
    )


def _read_body(response: httpx.Response, url: str, policy: UrlPolicy, deadline: float) -> bytes:
    """The body, read chunk by chunk so that it stops as soon as it passes max_bytes (a
    Content-Length above the limit stops it before reading anything) or the deadline."""
    declared = _content_length(response)
    if declared is not None and declared > policy.max_bytes:
        raise UrlTooLarge(url, policy.max_bytes)
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > policy.max_bytes:
            raise UrlTooLarge(url, policy.max_bytes)
        _time_left(deadline, url, policy)
    return bytes(body)


def _content_length(response: httpx.Response) -> int | None:
    """The declared body length, or None when there is none or it is not a number."""
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _time_left(deadline: float, url: str, policy: UrlPolicy) -> float:
    """Seconds left before the deadline; past it, the fetch fails."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise UrlFetchFailed(url, f"timed out (limit {policy.timeout_s} s)")
    return left


def _refused(url: str, reason: str) -> UrlRefused:
    """A UrlRefused, logged: refusals are how SSRF attempts show up in the server's log."""
    logger.info("refused to fetch %s: %s", url, reason)
    return UrlRefused(url, reason)


def _normal_host(host: str) -> str:
    """The host as compared with allow_hosts: lower case, without a trailing dot, without
    the brackets of an IPv6 literal."""
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def _ip_or_none(text: str) -> IPAddress | None:
    """text as an IP address, or None when it is a host name."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The allow_hosts entries that are addresses or networks (the others are host names);
    an entry with a slash that is not a valid network is an error, not a host name."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            if "/" in entry:
                raise ValueError(f"allow_hosts: {entry!r} is not a valid network") from None
    return tuple(networks)


@functools.lru_cache(maxsize=1)
def _tls_for(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """A verifying TLS context, built once: loading the CA bundle for every fetch is slow."""
    del cafile, capath  # cache keys only: create_ssl_context reads them from the environment
    return httpx.create_ssl_context()


def _tls() -> ssl.SSLContext:
    """The TLS context for the CA settings in force: SSL_CERT_FILE and SSL_CERT_DIR apply,
    as they do for httpx by default, so that a private CA can be trusted."""
    return _tls_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
