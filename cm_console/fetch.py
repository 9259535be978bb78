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
import math
import time
import zlib
from dataclasses import dataclass

import httpx

from . import __version__
from .sanitize import one_line

__all__ = ["FetchError", "FetchResult", "fetch", "make_client", "parse_retry_after"]

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


async def fetch(client: httpx.AsyncClient, url: str, *, etag: str = "",
                last_modified: str = "", timeout: float = 30.0, max_bytes: int = 10_000_000,
                max_retry_after: float = 86400.0, headers: dict[str, str] | None = None,
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
            async with client.stream("GET", url, headers=request_headers) as resp:
                status = resp.status_code
                final_url = str(resp.url)
                if status == 304:
                    return FetchResult(304, b"", final_url, etag, last_modified)
                if status in (429, 503):
                    wait = parse_retry_after(resp.headers.get("retry-after"), time.time(),
                                             max_retry_after)
                    note = f" (Retry-After {wait:.0f}s)" if wait else ""
                    raise FetchError(f"HTTP {status} {one_line(resp.reason_phrase, 60)}{note}",
                                     status=status, retry_after=wait)
                if status >= 400 or status < 200 or status >= 300:
                    raise FetchError(f"HTTP {status} {one_line(resp.reason_phrase, 60)}",
                                     status=status)
                length = resp.headers.get("content-length", "")
                if length.isdigit() and int(length) > max_bytes:
                    raise FetchError(f"response is {int(length):,} bytes; the limit is "
                                     f"{max_bytes:,}", status=status)
                decoder = _Decoder(resp.headers.get("content-encoding", ""), max_bytes)
                async for chunk in resp.aiter_raw():
                    decoder.feed(chunk)
                return FetchResult(
                    200, decoder.body(), final_url,
                    one_line(resp.headers.get("etag", ""), 512),
                    one_line(resp.headers.get("last-modified", ""), 128),
                )
    except TimeoutError:
        raise FetchError(f"no complete response within {timeout:.0f}s") from None
    except httpx.TooManyRedirects:
        raise FetchError("too many redirects") from None
    except httpx.UnsupportedProtocol as exc:
        raise FetchError(f"unsupported redirect or URL scheme ({one_line(exc, 120)})") from None
    except httpx.InvalidURL as exc:  # e.g. a redirect to "data:text/xml,..."; not an HTTPError
        raise FetchError(f"bad redirect or URL ({one_line(exc, 120)})") from None
    except httpx.ConnectError as exc:
        raise FetchError(f"cannot connect ({one_line(exc, 160) or 'refused'})") from None
    except httpx.TimeoutException:
        raise FetchError(f"timed out after {timeout:.0f}s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {one_line(exc, 160)}") from None
    except (ValueError, UnicodeError) as exc:  # malformed URLs/headers from redirects
        raise FetchError(f"bad response: {one_line(exc, 160)}") from None
