"""One HTTP GET with every limit a hostile server needs, for every source type.

- an overall deadline around the whole exchange, body included (a server trickling one byte a
  second cannot hold a poll hostage; per-read timeouts alone would never fire);
- a cap on *decoded* bytes, enforced inside the decompressor (``max_length``), so a 10 KB gzip
  bomb stops at the cap instead of inflating to gigabytes;
- a bounded redirect chain, http(s) only;
- conditional GET (ETag / Last-Modified); ``429``/``503`` with ``Retry-After`` surfaced,
  clamped to a sane range.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.request import getproxies_environment

import aiohttp

from . import __version__
from .sanitize import one_line

if TYPE_CHECKING:
    # The JSON APIs' client is imported where it is used: a poll of feeds alone never needs
    # it, and it is ~10 ms of every CLI start.
    import httpx

__all__ = ["FetchError", "FetchResult", "JsonResult", "fetch", "fetch_json", "make_client",
           "make_feed_session", "parse_retry_after", "proxy_configured", "rate_limit_wait"]

USER_AGENT = (f"cm-console/{__version__} (community inbox poller; "
              "+https://github.com/cm-console/cm-console)")


@dataclass(slots=True)
class FetchResult:
    status: int  # 200 (body present) or 304 (not modified)
    body: bytes
    url: str  # final URL after redirects (the base for relative links)
    etag: str = ""
    last_modified: str = ""


class FetchError(Exception):
    """The fetch failed; ``retry_after`` is set when the server asked us to wait."""

    def __init__(self, message: str, *, status: int = 0, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float, cap: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta or HTTP date), within [1 s, cap]."""
    if not value:
        return None
    value = value.strip()[:64]
    seconds: float | None
    try:
        seconds = float(value)
        if math.isnan(seconds) or math.isinf(seconds):
            seconds = cap
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return float(min(max(seconds, 1.0), cap))


def make_client(*, concurrency: int, max_redirects: int, timeout: float) -> httpx.AsyncClient:
    """The shared client for a poll cycle (connection pooling across sources)."""
    import httpx

    return httpx.AsyncClient(
        follow_redirects=True,
        max_redirects=max_redirects,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={"User-Agent": USER_AGENT},
    )


class _Decoder:
    """Incremental gzip/deflate/identity decoding with a hard output cap."""

    def __init__(self, encoding: str, cap: int):
        self.cap = cap
        self.size = 0
        self.parts: list[bytes] = []
        enc = encoding.strip().lower()
        if enc in ("", "identity"):
            self.z = None
        elif enc in ("gzip", "x-gzip"):
            self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self.z = zlib.decompressobj()
            self.raw_deflate = True
        else:
            raise FetchError(f"unsupported Content-Encoding {one_line(encoding, 40)!r}")
        self.first = True

    def feed(self, chunk: bytes) -> None:
        if self.z is None:
            self._add(chunk)
            return
        if self.first and getattr(self, "raw_deflate", False):
            self.first = False
            if chunk and (chunk[0] & 0x0F) != 8:  # no zlib header: raw deflate
                self.z = zlib.decompressobj(-zlib.MAX_WBITS)
        data = chunk
        try:
            while data:
                out = self.z.decompress(data, self.cap - self.size + 1)
                self._add(out)
                data = self.z.unconsumed_tail
        except zlib.error as exc:
            raise FetchError(f"corrupt compressed body ({exc})") from None

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.cap:
            raise FetchError(f"response larger than {self.cap:,} bytes (decoded); refused")
        self.parts.append(data)

    def body(self) -> bytes:
        if self.z is not None:
            try:
                self._add(self.z.flush())
            except zlib.error:
                pass
        return b"".join(self.parts)


def make_feed_session(*, concurrency: int, timeout: float,
                      trust_env: bool = False) -> aiohttp.ClientSession:
    """The shared session for a poll cycle's feed fetches.

    Feeds go through aiohttp rather than httpx: a conditional GET answered 304 costs ~0.13 ms
    of client CPU here against ~1.1 ms (measured on 1000 feeds, bench/README.md), which is
    most of a warm poll. Bodies arrive undecoded (``auto_decompress=False``) so _Decoder can
    cap them; connection limits and header sizes are bounded.

    ``trust_env`` (proxies from http_proxy/https_proxy/no_proxy, chosen again for every
    redirect hop) only when the environment names a proxy (:func:`proxy_configured`): aiohttp
    does that lookup, and a ~/.netrc read, in a thread for every request, two thread hops
    per feed that doubled a warm 200-feed cycle (67 ms against 32 ms, measured in-process).
    """
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector, auto_decompress=False, trust_env=trust_env,
        headers={"User-Agent": USER_AGENT},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 10.0)),
        max_line_size=16_384, max_field_size=16_384,
    )


def proxy_configured() -> bool:
    """True when the environment names a proxy (no_proxy alone names none)."""
    return any(scheme != "no" for scheme in getproxies_environment())


async def fetch(session: aiohttp.ClientSession, url: str, *, etag: str = "",
                last_modified: str = "", timeout: float = 30.0, max_bytes: int = 10_000_000,
                max_redirects: int = 5, max_retry_after: float = 86400.0,
                headers: dict[str, str] | None = None,
                accept: str = "application/rss+xml, application/atom+xml, "
                              "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
                ) -> FetchResult:
    """GET ``url`` within ``timeout`` seconds overall. Raises FetchError with a short reason."""
    request_headers = {"Accept": accept, "Accept-Encoding": "gzip, deflate"}
    if etag:
        request_headers["If-None-Match"] = etag
    if last_modified:
        request_headers["If-Modified-Since"] = last_modified
    if headers:
        request_headers.update(headers)
    try:
        async with asyncio.timeout(timeout):
            # aiohttp raises on the Nth redirect; the config means "follow up to N".
            async with session.get(url, headers=request_headers, allow_redirects=True,
                                   max_redirects=max_redirects + 1) as resp:
                status = resp.status
                final_url = str(resp.url)
                reason = one_line(resp.reason or "", 60)
                if status == 304:
                    return FetchResult(304, b"", final_url, etag, last_modified)
                if status in (429, 503):
                    wait = parse_retry_after(resp.headers.get("retry-after"), time.time(),
                                             max_retry_after)
                    note = f" (Retry-After {wait:.0f}s)" if wait else ""
                    raise FetchError(f"HTTP {status} {reason}{note}", status=status,
                                     retry_after=wait)
                if not 200 <= status < 300:
                    raise FetchError(f"HTTP {status} {reason}", status=status)
                length = resp.headers.get("content-length", "")
                if length.isdigit() and int(length) > max_bytes:
                    raise FetchError(f"response is {int(length):,} bytes; the limit is "
                                     f"{max_bytes:,}", status=status)
                decoder = _Decoder(resp.headers.get("content-encoding", ""), max_bytes)
                async for chunk in resp.content.iter_chunked(65_536):
                    decoder.feed(chunk)
                return FetchResult(
                    200, decoder.body(), final_url,
                    one_line(resp.headers.get("etag", ""), 512),
                    one_line(resp.headers.get("last-modified", ""), 128),
                )
    except TimeoutError:
        raise FetchError(f"no complete response within {timeout:.0f}s") from None
    except aiohttp.TooManyRedirects:
        raise FetchError("too many redirects") from None
    except (aiohttp.InvalidURL, aiohttp.RedirectClientError,
            aiohttp.NonHttpUrlClientError) as exc:  # redirects to file:, data:, ftp: ...
        raise FetchError(f"unsupported redirect or URL scheme ({one_line(exc, 120)})") from None
    except aiohttp.ClientConnectorError as exc:
        raise FetchError(f"cannot connect ({one_line(exc.os_error, 160) or 'refused'})"
                         ) from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"{type(exc).__name__}: {one_line(exc, 160)}") from None
    except (ValueError, UnicodeError) as exc:  # malformed URLs/headers from redirects
        raise FetchError(f"bad response: {one_line(exc, 160)}") from None


# --------------------------------------------------------------------------- JSON APIs


@dataclass(slots=True)
class JsonResult:
    """A decoded JSON answer plus what a connector needs from the headers."""

    status: int
    data: Any
    url: str
    links: dict[str, str]  # RFC 8288 Link header: rel -> URL (Mastodon pagination)
    rate_wait: float | None = None  # X-RateLimit-Remaining hit 0: seconds until the reset


def rate_limit_wait(headers: httpx.Headers, now: float, cap: float) -> float | None:
    """Seconds until the rate-limit window resets, when the server says none are left.

    Reads ``X-RateLimit-Remaining``/``-Reset`` (Mastodon: an ISO 8601 reset time; others
    epoch seconds) and the IETF draft's ``RateLimit-Remaining``/``-Reset`` (Bluesky: epoch
    seconds; the draft: delta seconds). None while requests remain.
    """
    for prefix in ("x-ratelimit-", "ratelimit-"):
        remaining = headers.get(prefix + "remaining", "").strip()
        if not remaining:
            continue
        try:
            if float(remaining) > 0:
                return None
        except ValueError:
            return None
        reset = headers.get(prefix + "reset", "").strip()[:64]
        seconds: float | None = None
        try:
            value = float(reset)
            seconds = value - now if value > 1e9 else value  # epoch, else a delta
        except ValueError:
            try:
                when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                seconds = when.timestamp() - now
            except ValueError:
                seconds = None
        if seconds is None or math.isnan(seconds):
            seconds = 60.0
        return float(min(max(seconds, 1.0), cap))
    return None


def _error_detail(body: bytes) -> str:
    """The server's own words from a JSON error body (Mastodon ``error``, Bluesky
    ``error``/``message``, Discourse ``errors``), sanitized and short."""
    try:
        data = json.loads(body[:65_536])
    except (ValueError, UnicodeError):
        return ""
    if not isinstance(data, dict):
        return ""
    parts = []
    for key in ("error", "message", "error_description"):
        if isinstance(data.get(key), str):
            parts.append(data[key])
    errors = data.get("errors")
    if isinstance(errors, list):
        parts.extend(e for e in errors[:3] if isinstance(e, str))
    return one_line(": ".join(dict.fromkeys(parts)), 200)


async def fetch_json(client: httpx.AsyncClient, url: str, *, method: str = "GET",
                     params: dict[str, Any] | list[tuple[str, Any]] | None = None,
                     json_body: Any = None, headers: dict[str, str] | None = None,
                     timeout: float = 30.0, max_bytes: int = 10_000_000,
                     max_retry_after: float = 86400.0) -> JsonResult:
    """One JSON API request with the same limits as :func:`fetch` (deadline around the whole
    exchange, decoded-byte cap, Retry-After), for the API connectors.

    Differences that matter for APIs: redirects are *not* followed (a redirect would carry
    our ``Api-Key``/``Authorization`` headers to wherever it points; httpx only strips
    ``Authorization`` across hosts), 401/403 name the credentials, the server's error text
    is kept, and a body that is not complete JSON is an error (a truncated answer must never
    be half-stored). Raises FetchError.
    """
    import httpx

    request_headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
    if headers:
        request_headers.update(headers)
    try:
        async with asyncio.timeout(timeout):
            async with client.stream(method, url, params=params, json=json_body,
                                     headers=request_headers, follow_redirects=False) as resp:
                status = resp.status_code
                if status in (429, 503):
                    wait = parse_retry_after(resp.headers.get("retry-after"), time.time(),
                                             max_retry_after)
                    if wait is None:
                        wait = rate_limit_wait(resp.headers, time.time(), max_retry_after)
                    note = f" (Retry-After {wait:.0f}s)" if wait else ""
                    raise FetchError(f"HTTP {status} {one_line(resp.reason_phrase, 60)}{note}",
                                     status=status, retry_after=wait)
                if 300 <= status < 400:
                    where = one_line(resp.headers.get("location", ""), 200)
                    raise FetchError(f"HTTP {status}: the API redirects to {where or '?'}; "
                                     "configure the final address", status=status)
                if status >= 400 or status < 200:
                    detail = _error_detail(await _read_capped(resp, 65_536, lenient=True))
                    what = {401: "credentials rejected", 403: "access denied"}.get(status)
                    message = f"HTTP {status} {one_line(resp.reason_phrase, 60)}"
                    if what:
                        message += f" ({what}: check the token/key and its scopes)"
                    if detail:
                        message += f": {detail}"
                    raise FetchError(message, status=status)
                body = await _read_capped(resp, max_bytes)
                final_url = str(resp.url)
                links = {}
                for link in resp.links.values():
                    rel, target = link.get("rel", ""), link.get("url", "")
                    if rel and target:
                        links[rel] = target
                rate_wait = rate_limit_wait(resp.headers, time.time(), max_retry_after)
    except TimeoutError:
        raise FetchError(f"no complete response within {timeout:.0f}s") from None
    except httpx.UnsupportedProtocol as exc:
        raise FetchError(f"unsupported URL scheme ({one_line(exc, 120)})") from None
    except httpx.InvalidURL as exc:
        raise FetchError(f"bad URL ({one_line(exc, 120)})") from None
    except httpx.ConnectError as exc:
        raise FetchError(f"cannot connect ({one_line(exc, 160) or 'refused'})") from None
    except httpx.TimeoutException:
        raise FetchError(f"timed out after {timeout:.0f}s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {one_line(exc, 160)}") from None
    except (ValueError, UnicodeError) as exc:
        raise FetchError(f"bad response: {one_line(exc, 160)}") from None
    if status == 204 or not body.strip():
        data: Any = None
    else:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeError, RecursionError) as exc:
            raise FetchError(f"malformed JSON from the API (truncated or not JSON: "
                             f"{one_line(exc, 100)})", status=status) from None
    return JsonResult(status, data, final_url, links, rate_wait)


async def _read_capped(resp: httpx.Response, cap: int, *, lenient: bool = False) -> bytes:
    """The decoded body, refusing more than ``cap`` bytes (``lenient``: cut instead)."""
    length = resp.headers.get("content-length", "")
    if not lenient and length.isdigit() and int(length) > cap:
        raise FetchError(f"response is {int(length):,} bytes; the limit is {cap:,}")
    decoder = _Decoder(resp.headers.get("content-encoding", ""), cap)
    try:
        async for chunk in resp.aiter_raw():
            decoder.feed(chunk)
    except FetchError:
        if not lenient:
            raise
    return decoder.body()
