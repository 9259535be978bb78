"""What every API connector shares: limits, a bounded request context, JSON shape checks,
the item-row builder, and the synchronous sender the outbox uses.

A connector module (``hackernews``, ``mastodon``, ``discourse``, ``bluesky``) provides::

    async def poll(client, src, state, limits, now) -> PollOutcome
    def send(src, entry, timeout) -> dict          # only where CAPABILITIES allows writes
    def can_send(item, op) -> bool                 # the item carries the ids ``op`` needs

``poll`` returns rows shaped exactly like :func:`cm_console.sources.parse_job`'s plus the new
cursor; the poller stores both in one commit, so a failed poll stores neither (the cursor
never moves past items that were not stored).

Why hand-written HTTP rather than the platforms' client libraries (Mastodon.py, the atproto
SDK): those are synchronous ``requests`` clients (Mastodon.py) or bring their own model and
transport layers (atproto: pydantic models over its own httpx client), and none of them
lets us put our limits around a request: one overall deadline including the body, a cap on
decoded bytes, no redirects with credentials, Retry-After surfaced to the poller's backoff.
Inside our asyncio poller a sync client would block the event loop for every source. The
endpoints we use are few and stable, and each is checked against the platform's documented
shapes by tests with a loopback server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..config import SourceConfig, resolve_secret
from ..fetch import USER_AGENT, FetchError, JsonResult, fetch_json
from ..models import (
    MAX_AUTHOR,
    MAX_GUID,
    MAX_HTML,
    MAX_SUMMARY,
    MAX_TEXT,
    MAX_TITLE,
    MAX_URL,
    Item,
    OutboxEntry,
)
from ..sanitize import html_to_text, one_line, safe_text, safe_url
from . import item_id
from .rss import FeedError, parse_date

__all__ = ["Api", "ApiError", "PollLimits", "PollOutcome", "Row", "Shape", "make_row",
           "send_request"]

Row = tuple[dict[str, Any], str, str]


class ApiError(FeedError):
    """This source's API poll failed; the message is shown for the source."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int = 0):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


@dataclass(slots=True)
class PollLimits:
    """Per-request limits from ``poll:`` plus how much one poll may walk."""

    timeout: float = 30.0
    max_bytes: int = 10_000_000
    max_retry_after: float = 86400.0
    max_pages: int = 5  # pages per stream per poll; the rest waits for the next poll
    max_requests: int = 30  # every request of one source's poll, all streams together


@dataclass(slots=True)
class PollOutcome:
    rows: list[Row] = field(default_factory=list)
    cursor: dict[str, Any] = field(default_factory=dict)
    rate_wait: float | None = None  # the server's rate limit says: not before this many s
    note: str = ""  # e.g. "stopped after 5 pages"


class Api:
    """One source's requests during one poll: base URL, auth headers, limits, counting.

    Every failure becomes an :class:`ApiError` naming the platform, so the poller records it
    for this source and goes on with the others.
    """

    def __init__(self, client: httpx.AsyncClient, label: str, base: str,
                 limits: PollLimits, headers: dict[str, str] | None = None):
        self.client = client
        self.label = label
        self.base = base.rstrip("/")
        self.limits = limits
        self.headers = dict(headers or {})
        self.requests = 0
        self.rate_wait: float | None = None

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base + path

    def same_origin(self, url: str) -> bool:
        """A pagination link we may follow with our credentials (never another host)."""
        try:
            a, b = httpx.URL(url), httpx.URL(self.base)
        except (httpx.InvalidURL, ValueError):
            return False
        return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)

    async def request(self, method: str, path: str, *,
                      params: dict[str, Any] | list[tuple[str, Any]] | None = None,
                      json_body: Any = None, headers: dict[str, str] | None = None
                      ) -> JsonResult:
        if self.requests >= self.limits.max_requests:
            raise _Budget()
        self.requests += 1
        try:
            result = await fetch_json(
                self.client, self.url(path), method=method, params=params,
                json_body=json_body, headers={**self.headers, **(headers or {})},
                timeout=self.limits.timeout, max_bytes=self.limits.max_bytes,
                max_retry_after=self.limits.max_retry_after)
        except FetchError as exc:
            raise ApiError(f"{self.label}: {exc}", retry_after=exc.retry_after,
                           status=exc.status) from None
        if result.rate_wait:
            self.rate_wait = max(self.rate_wait or 0.0, result.rate_wait)
        return result

    async def get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None,
                  headers: dict[str, str] | None = None) -> JsonResult:
        return await self.request("GET", path, params=params, headers=headers)


class _Budget(Exception):
    """The poll used its request budget; connectors stop paging and keep what they have."""


BudgetExceeded = _Budget


# --------------------------------------------------------------------------- config values


def secret(src: SourceConfig, key: str, *, required: bool = True) -> str:
    """A credential option, resolved from ``${ENV}`` now; a missing one is this source's
    error, never a crash."""
    raw = src.options.get(key)
    if raw is None or raw == "":
        if required:
            raise ApiError(f"{src.type}: `{key}` is not set for source {src.id}")
        return ""
    if not isinstance(raw, str):
        raise ApiError(f"{src.type}: `{key}` must be a string like ${{ENV_VAR}}")
    try:
        return resolve_secret(raw, f"{src.id}.{key}")
    except ValueError as exc:
        raise ApiError(f"{src.type}: {exc}") from None


def option_list(src: SourceConfig, key: str) -> list[str]:
    """A list-of-strings option (a single string is a one-element list)."""
    raw = src.options.get(key)
    if raw is None or raw == "" or raw is False:
        return []
    if isinstance(raw, str | int) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(v, str | int) and
                                            not isinstance(v, bool) for v in raw):
        raise ApiError(f"{src.type}: `{key}` must be a string or a list of strings")
    return [str(v).strip() for v in raw if str(v).strip()]


def option_text(src: SourceConfig, key: str, default: str = "") -> str:
    raw = src.options.get(key, default)
    if raw is None:
        return default
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise ApiError(f"{src.type}: `{key}` must be a string")
    return str(raw).strip()


def option_flag(src: SourceConfig, key: str, default: bool) -> bool:
    raw = src.options.get(key, default)
    if not isinstance(raw, bool):
        raise ApiError(f"{src.type}: `{key}` must be true or false")
    return raw


def base_url(value: str, what: str) -> str:
    """An http(s) base URL without a trailing slash (``mastodon.social`` gets https)."""
    text = (value or "").strip()
    if text and "://" not in text:
        text = "https://" + text
    if not safe_url(text):
        raise ApiError(f"{what} must be an http(s) URL, got {one_line(value, 80)!r}")
    return text.rstrip("/")


# --------------------------------------------------------------------------- JSON shapes


class Shape:
    """Typed access to an untrusted JSON object, with errors that name the path.

    ``Shape(data, "notifications[3]").text("id")`` returns the id or raises ApiError
    ("mastodon: notifications[3].id: expected a string, got a number"). Optional fields
    take a default; required ones make the whole poll fail (nothing half-stored).
    """

    _NAMES = {str: "a string", int: "a number", float: "a number", bool: "true/false",
              dict: "an object", list: "a list"}

    def __init__(self, data: Any, path: str, label: str):
        if not isinstance(data, dict):
            raise ApiError(f"{label}: {path}: expected an object, got {_kind(data)}")
        self.data = data
        self.path = path
        self.label = label

    def _fail(self, key: str, want: str, value: Any) -> ApiError:
        return ApiError(f"{self.label}: {self.path}.{key}: expected {want}, got {_kind(value)}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key)
        if value is None and default is not None:
            return default
        if isinstance(value, str):
            return value
        raise self._fail(key, "a string", value)

    def ident(self, key: str) -> str:
        """An id that platforms send as a string or a number; always returned as a string."""
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise self._fail(key, "an id", value)
        return str(value)

    def number(self, key: str, default: int | None = None) -> int:
        value = self.data.get(key)
        if value is None and default is not None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._fail(key, "a number", value)

    def obj(self, key: str, *, optional: bool = False) -> Shape | None:
        value = self.data.get(key)
        if value is None and optional:
            return None
        if isinstance(value, dict):
            return Shape(value, f"{self.path}.{key}", self.label)
        raise self._fail(key, "an object", value)

    def items(self, key: str, *, optional: bool = False) -> list[Shape]:
        value = self.data.get(key)
        if value is None and optional:
            return []
        if not isinstance(value, list):
            raise self._fail(key, "a list", value)
        return [Shape(v, f"{self.path}.{key}[{i}]", self.label) for i, v in enumerate(value)]

    def time(self, key: str) -> float:
        """An ISO 8601 timestamp as epoch seconds."""
        raw = self.text(key)
        when = parse_iso(raw)
        if when is None:
            raise ApiError(f"{self.label}: {self.path}.{key}: not a date: "
                           f"{one_line(raw, 40)!r}")
        return when


def top_list(data: Any, label: str, path: str) -> list[Shape]:
    """A top-level JSON array of objects (Mastodon's timelines and notifications)."""
    if not isinstance(data, list):
        raise ApiError(f"{label}: {path}: expected a list, got {_kind(data)}")
    return [Shape(v, f"{path}[{i}]", label) for i, v in enumerate(data)]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    for typ, name in Shape._NAMES.items():
        if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
            return name
    return type(value).__name__


def parse_iso(value: str) -> float | None:
    """Epoch seconds from an API timestamp (ISO 8601); the feeds' date parser does it."""
    return parse_date(value if isinstance(value, str) else "")


def newer(a: str, b: str) -> bool:
    """True when snowflake/serial id ``a`` is newer than ``b`` (numeric strings compare
    as numbers: "10" > "9")."""
    if a.isdigit() and b.isdigit():
        return int(a) > int(b)
    return (len(a), a) > (len(b), b)


# --------------------------------------------------------------------------- item rows


def make_row(source_id: str, source_type: str, key: str, *, fetched: float, url: str,
             title: str = "", author: str = "", handle: str = "",
             published: float | None = None, html: str = "", text: str | None = None,
             base_url: str | None = None, thread: str = "", parent_key: str = "",
             extra: dict[str, Any] | None = None) -> Row:
    """One ``(item_doc, text, html)`` row: every stranger-written field sanitized and capped
    exactly like a feed entry's, the date clamped to the fetch time (a post "from the future"
    cannot pin itself to the top)."""
    html = (html or "")[:MAX_HTML]
    body = safe_text(text, MAX_TEXT) if text is not None else html_to_text(html, base_url,
                                                                             MAX_TEXT)
    if published is None or published != published or published > fetched:
        published = fetched
    published = max(published, 0.0)
    clean_title = one_line(title, MAX_TITLE) or one_line(body, 120)
    item = Item(
        id=item_id(source_id, key), source=source_id, source_type=source_type,
        guid=one_line(key, MAX_GUID), url=safe_url(url, max_len=MAX_URL),
        title=clean_title, author=one_line(author, MAX_AUTHOR),
        published=published, fetched=fetched,
        summary=safe_text(body, MAX_SUMMARY, multiline=False),
        author_handle=one_line(handle, MAX_AUTHOR), thread=one_line(thread, MAX_URL + 64),
        parent=item_id(source_id, parent_key) if parent_key else "",
        extra={k: one_line(v, MAX_URL) if isinstance(v, str) else v
               for k, v in (extra or {}).items() if v not in (None, "")},
    )
    return item.to_doc(), body, html


def dedupe(rows: list[Row]) -> list[Row]:
    """Rows with distinct ids, first wins (a mention that also matched a hashtag)."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row[0]["id"] not in seen:
            seen.add(row[0]["id"])
            out.append(row)
    return out


# --------------------------------------------------------------------------- sending


def delivery_error(message: str) -> Exception:
    from ..delivery import DeliveryError

    return DeliveryError(message)


def send_request(client: httpx.Client, method: str, url: str, label: str, *,
                 headers: dict[str, str] | None = None, json_body: Any = None,
                 params: dict[str, Any] | None = None,
                 ok: Callable[[int], bool] = lambda s: 200 <= s < 300) -> tuple[int, Any]:
    """One request of an outbox delivery. Returns (status, JSON) when ``ok(status)``;
    raises DeliveryError otherwise, so the outbox retries with the same idempotency key.
    Redirects are refused (they would carry our credentials elsewhere)."""
    try:
        response = client.request(method, url, headers={"User-Agent": USER_AGENT,
                                                        "Accept": "application/json",
                                                        **(headers or {})},
                                  json=json_body, params=params, follow_redirects=False)
    except httpx.TimeoutException:
        raise delivery_error(f"{label}: no answer in time (it may have arrived; the retry "
                             "checks before posting again)") from None
    except httpx.HTTPError as exc:
        raise delivery_error(f"{label}: {type(exc).__name__}: {one_line(exc, 200)}") from None
    status = response.status_code
    data: Any = None
    content = response.content[:2_000_000]
    if content.strip():
        try:
            data = response.json()
        except ValueError:
            data = None
    if not ok(status):
        from ..fetch import _error_detail

        detail = _error_detail(content)
        what = {401: " (credentials rejected)", 403: " (access denied)",
                429: " (rate limited)"}.get(status, "")
        raise delivery_error(f"{label}: HTTP {status}{what}"
                             + (f": {detail}" if detail else ""))
    return status, data


def send_client(timeout: float) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                        follow_redirects=False)


def entry_age(entry: OutboxEntry) -> float:
    return time.time() - entry.created
