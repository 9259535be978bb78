"""Mastodon: mentions, hashtags and search in; replies and direct messages out.

Streams (each with its own cursor, the newest id seen):

- ``mentions``: ``GET /api/v1/notifications?types[]=mention`` (needs ``token``);
- ``tag:<name>``: ``GET /api/v1/timelines/tag/:name`` for each of ``hashtags``;
- ``search``: ``GET /api/v2/search?type=statuses&q=...`` (full-text search must be enabled
  on the instance and the token is required).

Never re-fetching: the first poll takes the newest page only; later polls ask with
``min_id=<cursor>``, which returns the page *immediately* newer than the cursor, then follow
the ``Link: <...>; rel="prev"`` header (the next newer page) until a page comes back short,
the page budget runs out, or the server rate-limits us; what was read is kept and the cursor
moves exactly to it. Only same-origin Link targets are followed (they get our token).

Writes (the outbox calls :func:`send`): ``POST /api/v1/statuses`` with ``in_reply_to_id``,
the author's ``@acct`` (so they are notified), a visibility never wider than the post we
answer (a public reply to someone's direct message would publish it), and an
``Idempotency-Key`` header carrying the outbox entry's key: Mastodon keeps the key an hour
and answers a repeat with the status it already created, so a retry after a timeout never
posts twice. Private = the same call with ``visibility: direct``.

Why not Mastodon.py: it is a synchronous ``requests`` client; our poller is asyncio with
per-request deadlines, byte caps and Retry-After handling in one place (fetch.py), and a
blocking client would stall every other source while one instance is slow.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx

from ..config import SourceConfig
from ..models import Item, OutboxEntry, SourceState
from ..sanitize import html_to_text, one_line
from .api import (
    Api,
    ApiError,
    BudgetExceeded,
    PollLimits,
    PollOutcome,
    Row,
    Shape,
    base_url,
    dedupe,
    delivery_error,
    make_row,
    newer,
    option_flag,
    option_list,
    option_text,
    secret,
    send_client,
    send_request,
    top_list,
)
from .links import thread_key

__all__ = ["can_send", "poll", "send"]

LABEL = "mastodon"
PAGE = 40  # the documented maximum for timelines (notifications allow 80)
_VISIBILITY = ("direct", "private", "unlisted", "public")  # narrowest first
# Mention and hashtag anchors: their text (@name, #tag) says it all; the profile/tag URL
# html_to_text would append is noise in a triage pane.
_TAG_ANCHOR = re.compile(r"<a\s[^>]*class=[\"'][^\"']*\b(?:mention|hashtag)\b[^>]*>",
                         re.IGNORECASE)


def _instance(src: SourceConfig) -> str:
    raw = option_text(src, "instance") or src.url
    if not raw:
        raise ApiError(f"{LABEL}: set `instance:` to your server, e.g. https://mastodon.social")
    return base_url(raw, f"{LABEL} instance")


async def poll(client: httpx.AsyncClient, src: SourceConfig, state: SourceState,
               limits: PollLimits, now: float) -> PollOutcome:
    """Every configured stream, each from its own cursor."""
    base = _instance(src)
    token = secret(src, "token", required=False)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    api = Api(client, LABEL, base, limits, headers)
    host = httpx.URL(base).host
    streams: list[tuple[str, str, list[tuple[str, Any]]]] = []
    if option_flag(src, "mentions", bool(token)):
        if not token:
            raise ApiError(f"{LABEL}: mentions need `token:` (an access token with "
                           "read:notifications)")
        streams.append(("mentions", "/api/v1/notifications",
                        [("types[]", "mention"), ("limit", PAGE)]))
    for tag in option_list(src, "hashtags"):
        name = tag.lstrip("#")
        streams.append((f"tag:{name.lower()}",
                        f"/api/v1/timelines/tag/{quote(name, safe='')}", [("limit", PAGE)]))
    query = option_text(src, "search")
    if query:
        if not token:
            raise ApiError(f"{LABEL}: search needs `token:`")
        streams.append(("search", "/api/v2/search",
                        [("q", query), ("type", "statuses"), ("resolve", "false"),
                         ("limit", PAGE)]))
    if not streams:
        raise ApiError(f"{LABEL}: nothing to watch: set `hashtags:`, `search:` or a `token:` "
                       "for mentions")
    outcome = PollOutcome(cursor=dict(state.cursor))
    rows: list[Row] = []
    for stream, path, params in streams:
        got, last = await _walk(api, stream, path, params, state.cursor.get(stream), outcome)
        for data in got:
            rows.extend(_rows(src, host, stream, data, now))
        if last:
            outcome.cursor[stream] = last
        if outcome.rate_wait:
            break  # the server asked us to stop; the other streams wait for the next poll
    await _instance_limit(api, outcome, now)
    limit = outcome.cursor.get("max_characters")
    if isinstance(limit, int):
        for doc, _text, _html in rows:
            doc.setdefault("extra", {})["max_chars"] = limit
    outcome.rows = dedupe(rows)
    outcome.rate_wait = outcome.rate_wait or api.rate_wait
    return outcome


async def _instance_limit(api: Api, outcome: PollOutcome, now: float) -> None:
    """The server's status length limit (GET /api/v2/instance), read at most once a day.

    Instances raise it (1,000 or 5,000 is common); replies are checked against it. A server
    that does not answer keeps the 500 default: this never fails the poll.
    """
    if outcome.rate_wait or now - float(outcome.cursor.get("max_chars_at") or 0) < 86400:
        return
    try:
        answer = await api.get("/api/v2/instance")
    except Exception:  # old servers 404 here; a limit is not worth a failed poll
        return
    data = answer.data if isinstance(answer.data, dict) else {}
    statuses = (data.get("configuration") or {}).get("statuses") or {}
    value = statuses.get("max_characters") if isinstance(statuses, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100_000:
        outcome.cursor["max_characters"] = value
    outcome.cursor["max_chars_at"] = now


async def _walk(api: Api, stream: str, path: str, params: list[tuple[str, Any]],
                last: Any, outcome: PollOutcome) -> tuple[list[Shape], str]:
    """Pages of one stream newer than ``last``; returns them and the newest id seen."""
    last = str(last) if isinstance(last, str | int) and not isinstance(last, bool) else ""
    query = params + ([("min_id", last)] if last else [])
    target: str = path
    found: list[Shape] = []
    newest = last
    pages = 0
    while True:
        try:
            result = await (api.get(target, query) if pages == 0 else api.get(target))
        except ApiError as exc:
            if pages == 0 or exc.status != 429:
                raise
            outcome.rate_wait = exc.retry_after
            outcome.note = f"{stream}: rate limited while paging"
            break
        except BudgetExceeded:
            break
        pages += 1
        if stream == "search":
            entries = Shape(result.data, "search", LABEL).items("statuses")
        else:
            entries = top_list(result.data, LABEL, stream)
        for entry in entries:
            entry_id = entry.ident("id")
            if last and not newer(entry_id, last):
                continue
            found.append(entry)
            if not newest or newer(entry_id, newest):
                newest = entry_id
        prev = result.links.get("prev", "")
        if (not last or len(entries) < PAGE or not prev or not api.same_origin(prev)
                or pages >= api.limits.max_pages):
            break
        target, query = prev, []
    return found, newest


def _rows(src: SourceConfig, host: str, stream: str, entry: Shape, now: float) -> list[Row]:
    if stream == "mentions":
        if entry.text("type", "mention") != "mention":
            return []  # a server too old for types[] sends everything
        status = entry.obj("status", optional=True)
        return [] if status is None else [_status_row(src, host, status, now, "mention")]
    return [_status_row(src, host, entry, now, stream)]


def _status_row(src: SourceConfig, host: str, status: Shape, now: float, via: str) -> Row:
    boosted = status.obj("reblog", optional=True)
    if boosted is not None:
        status = boosted
    status_id = status.ident("id")
    account = status.obj("account")
    assert account is not None
    acct = account.text("acct")
    name = account.text("display_name", "") or account.text("username", acct)
    content = status.text("content", "")
    spoiler = status.text("spoiler_text", "")
    text = html_to_text(_TAG_ANCHOR.sub("<a>", content), None)
    if spoiler:
        text = f"CW: {one_line(spoiler, 200)}\n\n{text}"
    in_reply = status.data.get("in_reply_to_id")
    in_reply = str(in_reply) if isinstance(in_reply, str | int) and \
        not isinstance(in_reply, bool) and str(in_reply) else ""
    card = status.obj("card", optional=True)
    link = card.text("url", "") if card is not None else ""
    thread = (thread_key(link) if link and not in_reply else "") or \
        f"mastodon:{host}:{in_reply or status_id}"
    return make_row(
        src.id, src.type, f"status:{status_id}", fetched=now,
        url=status.text("url", "") or status.text("uri", ""), author=name, handle=f"@{acct}",
        published=status.time("created_at"), html=content, text=text, thread=thread,
        parent_key=f"status:{in_reply}" if in_reply else "",
        extra={"status_id": status_id, "acct": acct, "account_id": account.ident("id"),
               "visibility": status.text("visibility", "public"), "uri": status.text("uri", ""),
               "via": via, "link": link},
    )


# --------------------------------------------------------------------------- writing


def can_send(item: Item, op: str) -> bool:
    """A reply needs the status id; a direct message also needs the author's acct."""
    return bool(item.extra.get("status_id")) and bool(item.extra.get("acct"))


def outgoing_text(ids: dict[str, Any], op: str, text: str) -> str:
    """The status text as posted: the author's ``@acct`` first unless the agent already
    wrote it (a direct message reaches only the accounts it mentions, and a reply without
    the mention does not notify). actions checks the length limit against this text."""
    acct = str(ids.get("acct") or "")
    mention = f"@{acct}"
    if acct and mention.lower() not in text.lower():
        return f"{mention} {text}"
    return text


def request_for(entry: OutboxEntry) -> dict[str, Any]:
    """The exact ``POST /api/v1/statuses`` body for an outbox entry (tests compare it)."""
    payload = entry.payload
    ids = payload.get("ids") or {}
    text = outgoing_text(ids, str(payload.get("op") or ""), str(payload.get("text") or ""))
    original = str(ids.get("visibility") or "public")
    if payload.get("op") == "private":
        visibility = "direct"
    else:
        visibility = original if original in _VISIBILITY else "public"
    body: dict[str, Any] = {"status": text, "visibility": visibility}
    if ids.get("status_id"):
        body["in_reply_to_id"] = str(ids["status_id"])
    return body


def send(src: SourceConfig, entry: OutboxEntry, timeout: float) -> dict[str, Any]:
    """Post the reply/DM once. The same ``Idempotency-Key`` on every attempt makes the
    server answer a repeat with the status it already created instead of a second one."""
    try:
        base = _instance(src)
        token = secret(src, "token")
    except ApiError as exc:
        raise delivery_error(str(exc)) from None
    with send_client(timeout) as client:
        _, data = send_request(
            client, "POST", f"{base}/api/v1/statuses", f"{LABEL} {src.id}",
            headers={"Authorization": f"Bearer {token}",
                     "Idempotency-Key": entry.idempotency_key},
            json_body=request_for(entry))
    if not isinstance(data, dict) or not isinstance(data.get("id"), str | int):
        raise delivery_error(f"{LABEL} {src.id}: the server accepted the status but its "
                             "answer has no id")
    return {"id": str(data["id"]), "url": one_line(data.get("url") or "", 500)}
