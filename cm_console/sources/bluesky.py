"""Bluesky (AT Protocol): mentions and searches in; replies and chat messages out.

Session: ``com.atproto.server.createSession`` with the handle and an *app password*
(``${ENV}``), against ``service`` (the account's PDS or the ``https://bsky.social`` entryway,
which proxies ``app.bsky.*`` reads to the AppView). Sessions are kept per process and
renewed when the server says the token expired: createSession is rate-limited (30 per
5 minutes), so a poll every few minutes must not log in every time.

Streams:

- ``notifications``: ``app.bsky.notification.listNotifications`` (reasons mention, reply,
  quote), when ``mentions`` is true (the default);
- ``search:<q>``: ``app.bsky.feed.searchPosts?sort=latest&since=...`` for each ``search``.

Both answer newest first with an opaque ``cursor`` for *older* pages, so the cursor we keep
is a watermark: the newest ``indexedAt`` seen plus the URIs at that instant. A poll walks
pages until it reaches the watermark (first poll: one page), never storing a post twice.

Writes:

- reply: ``com.atproto.repo.createRecord`` of an ``app.bsky.feed.post`` whose
  ``reply.parent`` is the post answered and ``reply.root`` that post's own root (or the post
  itself when it starts the thread); links in the text get ``app.bsky.richtext.facet#link``
  facets (Bluesky shows bare URLs as plain text otherwise). The record key is a TID derived
  from the outbox entry (time + key), and a retry first asks ``com.atproto.repo.getRecord``
  for it: a first attempt that timed out after the PDS stored it is not posted again.
- private: ``chat.bsky.convo.getConvoForMembers`` + ``chat.bsky.convo.sendMessage`` through
  the PDS with ``atproto-proxy: did:web:api.bsky.chat#bsky_chat`` (the app password must be
  allowed to access DMs); a retry first looks for its text among the conversation's latest
  messages from us.

Why not the atproto SDK: it brings its own models and transport (pydantic + its own httpx
client, a synchronous one by default) and none of our limits (deadline, byte cap,
Retry-After); the handful of XRPC calls here are plain JSON over HTTP.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..config import SourceConfig
from ..models import Item, OutboxEntry, SourceState
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
    option_flag,
    option_list,
    option_text,
    parse_iso,
    secret,
    send_client,
    send_request,
)
from .links import thread_key

__all__ = ["can_send", "poll", "send", "tid"]

LABEL = "bluesky"
DEFAULT_SERVICE = "https://bsky.social"
CHAT_PROXY = "did:web:api.bsky.chat#bsky_chat"
PAGE = 50
REASONS = frozenset({"mention", "reply", "quote"})
SESSION_TTL = 45 * 60.0  # access tokens live ~2 h; renew well before


@dataclass(slots=True)
class Session:
    access: str
    did: str
    handle: str
    created: float


_sessions: dict[tuple[str, str, str], Session] = {}
_lock = threading.Lock()


def _service(src: SourceConfig) -> str:
    return base_url(option_text(src, "service") or src.url or DEFAULT_SERVICE,
                    f"{LABEL} service")


def _login(src: SourceConfig) -> tuple[str, str, tuple[str, str, str]]:
    handle = option_text(src, "handle").lstrip("@")
    if not handle:
        raise ApiError(f"{LABEL}: `handle:` is required (e.g. tessel.bsky.social)")
    password = secret(src, "app_password")
    key = (_service(src), handle.lower(), hashlib.sha256(password.encode()).hexdigest())
    return handle, password, key


def _cached(key: tuple[str, str, str]) -> Session | None:
    with _lock:
        session = _sessions.get(key)
        if session is not None and time.monotonic() - session.created < SESSION_TTL:
            return session
        _sessions.pop(key, None)
        return None


def _remember(key: tuple[str, str, str], data: Any, where: str) -> Session:
    shape = Shape(data, where, LABEL)
    session = Session(shape.text("accessJwt"), shape.text("did"), shape.text("handle", ""),
                      time.monotonic())
    with _lock:
        _sessions[key] = session
    return session


def _forget(key: tuple[str, str, str]) -> None:
    with _lock:
        _sessions.pop(key, None)


def _expired(exc: ApiError) -> bool:
    return exc.status in (400, 401) and ("ExpiredToken" in str(exc)
                                         or "InvalidToken" in str(exc))


# --------------------------------------------------------------------------- reading


async def poll(client: httpx.AsyncClient, src: SourceConfig, state: SourceState,
               limits: PollLimits, now: float) -> PollOutcome:
    handle, password, key = _login(src)
    api = Api(client, LABEL, _service(src), limits)
    streams: list[tuple[str, str, dict[str, Any]]] = []
    if option_flag(src, "mentions", True):
        streams.append(("notifications", "/xrpc/app.bsky.notification.listNotifications",
                        {"limit": PAGE}))
    for query in option_list(src, "search"):
        streams.append((f"search:{query}", "/xrpc/app.bsky.feed.searchPosts",
                        {"q": query, "sort": "latest", "limit": PAGE}))
    if not streams:
        raise ApiError(f"{LABEL}: nothing to watch: set `search:` or `mentions: true`")
    outcome = PollOutcome(cursor=dict(state.cursor))
    rows: list[Row] = []
    for attempt in (1, 2):
        session = _cached(key)
        if session is None:
            result = await api.request("POST", "/xrpc/com.atproto.server.createSession",
                                       json_body={"identifier": handle, "password": password})
            session = _remember(key, result.data, "createSession")
        api.headers["Authorization"] = f"Bearer {session.access}"
        try:
            for stream, path, params in streams:
                found, mark = await _walk(api, stream, path, params,
                                          outcome.cursor.get(stream), outcome)
                rows.extend(_row(src, entry, now) for entry in found)
                if mark:
                    outcome.cursor[stream] = mark
                if outcome.rate_wait:
                    break
            break
        except ApiError as exc:
            if attempt == 1 and _expired(exc):
                _forget(key)  # renew the session once, then poll again from the cursors
                rows.clear()
                outcome.cursor = dict(state.cursor)
                continue
            raise
    outcome.rows = dedupe(rows)
    outcome.rate_wait = outcome.rate_wait or api.rate_wait
    return outcome


def _mark(raw: Any) -> tuple[float, set[str], str]:
    if isinstance(raw, dict) and isinstance(raw.get("at"), str):
        at = parse_iso(raw["at"])
        uris = {u for u in raw.get("uris", []) if isinstance(u, str)}
        if at is not None:
            return at, uris, raw["at"]
    return 0.0, set(), ""


async def _walk(api: Api, stream: str, path: str, params: dict[str, Any], raw_mark: Any,
                outcome: PollOutcome) -> tuple[list[Shape], dict[str, Any] | None]:
    """Newest-first pages down to the watermark. Returns the new entries and watermark."""
    mark_at, mark_uris, mark_text = _mark(raw_mark)
    query = dict(params)
    if mark_text and stream.startswith("search:"):
        query["since"] = mark_text
    found: list[Shape] = []
    best_at, best_text, best_uris = mark_at, mark_text, set(mark_uris)
    pages = 0
    while True:
        try:
            result = await api.get(path, query)
        except BudgetExceeded:
            break
        except ApiError as exc:
            if pages == 0 or exc.status != 429:
                raise
            outcome.rate_wait, outcome.note = exc.retry_after, f"{stream}: rate limited"
            break
        pages += 1
        body = Shape(result.data, stream.split(":")[0], LABEL)
        entries = body.items("notifications" if stream == "notifications" else "posts")
        reached = False
        for entry in entries:
            uri = entry.text("uri")
            indexed_text = entry.text("indexedAt")
            indexed = entry.time("indexedAt")
            if mark_text and (indexed < mark_at or (indexed == mark_at and uri in mark_uris)):
                reached = True
                continue
            if indexed > best_at:
                best_at, best_text, best_uris = indexed, indexed_text, {uri}
            elif indexed == best_at:
                best_uris.add(uri)
            if stream == "notifications" and entry.text("reason", "") not in REASONS:
                continue
            found.append(entry)
        cursor = body.text("cursor", "")
        if (not mark_text or reached or not entries or not cursor
                or pages >= api.limits.max_pages):
            break
        query = {**params, "cursor": cursor}
    mark = {"at": best_text, "uris": sorted(best_uris)[:100]} if best_text else None
    return found, mark


def _row(src: SourceConfig, entry: Shape, now: float) -> Row:
    uri = entry.text("uri")
    cid = entry.text("cid")
    author = entry.obj("author")
    record = entry.obj("record")
    assert author is not None and record is not None
    handle = author.text("handle")
    reply = record.obj("reply", optional=True)
    root = reply.obj("root") if reply is not None else None
    parent = reply.obj("parent") if reply is not None else None
    root_uri = root.text("uri") if root is not None else uri
    link = ""
    embed = record.obj("embed", optional=True)
    external = embed.obj("external", optional=True) if embed is not None else None
    if external is not None:
        link = external.text("uri", "")
    published = parse_iso(record.text("createdAt", "")) or entry.time("indexedAt")
    rkey = uri.rsplit("/", 1)[-1]
    return make_row(
        src.id, src.type, uri, fetched=now,
        url=f"https://bsky.app/profile/{handle}/post/{rkey}",
        author=author.text("displayName", "") or handle, handle=f"@{handle}",
        published=published, text=record.text("text", ""),
        thread=(thread_key(link) if link and reply is None else "") or f"bsky:{root_uri}",
        parent_key=parent.text("uri") if parent is not None else "",
        extra={"uri": uri, "cid": cid, "did": author.text("did"), "handle": handle,
               "root_uri": root_uri,
               "root_cid": root.text("cid") if root is not None else cid,
               "reason": entry.text("reason", "") or None, "link": link},
    )


# --------------------------------------------------------------------------- writing


def can_send(item: Item, op: str) -> bool:
    if op == "private":
        return bool(item.extra.get("did"))
    return bool(item.extra.get("uri") and item.extra.get("cid"))


_B32 = "234567abcdefghijklmnopqrstuvwxyz"


def tid(created: float, key: str) -> str:
    """A record key in TID form (13 base32-sortable chars: microseconds, 10-bit clock id),
    the same for every attempt of one outbox entry."""
    micros = int(created * 1_000_000)
    clock = int(hashlib.sha256(key.encode()).hexdigest()[:4], 16) & 0x3FF
    value = (micros << 10) | clock
    return "".join(_B32[(value >> (5 * i)) & 31] for i in reversed(range(13)))


_URL = re.compile(r"https?://[^\s<>\"'`]+")


def facets(text: str) -> list[dict[str, Any]]:
    """Link facets with UTF-8 byte offsets (what the AppView expects)."""
    out = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?)]}")
        if not urlsplit(url).netloc:
            continue
        start = len(text[:match.start()].encode("utf-8"))
        out.append({"index": {"byteStart": start, "byteEnd": start + len(url.encode("utf-8"))},
                    "features": [{"$type": "app.bsky.richtext.facet#link", "uri": url}]})
    return out


def record_for(entry: OutboxEntry) -> dict[str, Any]:
    """The exact ``app.bsky.feed.post`` record of a reply (tests compare it)."""
    ids = entry.payload.get("ids") or {}
    text = str(entry.payload.get("text") or "")
    parent = {"uri": str(ids.get("uri", "")), "cid": str(ids.get("cid", ""))}
    root = {"uri": str(ids.get("root_uri") or parent["uri"]),
            "cid": str(ids.get("root_cid") or parent["cid"])}
    record: dict[str, Any] = {
        "$type": "app.bsky.feed.post", "text": text,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(entry.created))
        + f".{int(entry.created * 1000) % 1000:03d}Z",
        "reply": {"root": root, "parent": parent},
    }
    links = facets(text)
    if links:
        record["facets"] = links
    return record


def send(src: SourceConfig, entry: OutboxEntry, timeout: float) -> dict[str, Any]:
    label = f"{LABEL} {src.id}"
    try:
        handle, password, key = _login(src)
        service = _service(src)
    except ApiError as exc:
        raise delivery_error(str(exc)) from None
    with send_client(timeout) as client:
        for attempt in (1, 2):
            session = _cached(key)
            if session is None:
                _, data = send_request(client, "POST",
                                       f"{service}/xrpc/com.atproto.server.createSession",
                                       label, json_body={"identifier": handle,
                                                         "password": password})
                try:
                    session = _remember(key, data, "createSession")
                except ApiError as exc:
                    raise delivery_error(str(exc)) from None
            try:
                if entry.payload.get("op") == "private":
                    return _send_chat(client, service, session, label, entry)
                return _send_reply(client, service, session, label, entry)
            except Exception as exc:
                if attempt == 1 and ("ExpiredToken" in str(exc) or "InvalidToken" in str(exc)):
                    _forget(key)
                    continue
                raise
    raise delivery_error(f"{label}: could not renew the session")


def _send_reply(client: httpx.Client, service: str, session: Session, label: str,
                entry: OutboxEntry) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {session.access}"}
    rkey = tid(entry.created, entry.idempotency_key)
    if entry.attempts > 0:
        status, data = send_request(
            client, "GET", f"{service}/xrpc/com.atproto.repo.getRecord", label, headers=auth,
            params={"repo": session.did, "collection": "app.bsky.feed.post", "rkey": rkey},
            ok=lambda s: 200 <= s < 300 or s == 400)
        if status == 200 and isinstance(data, dict) and data.get("uri"):
            return {"uri": data["uri"], "cid": data.get("cid"), "already": True}
        if status == 400 and not (isinstance(data, dict)
                                  and data.get("error") == "RecordNotFound"):
            raise delivery_error(f"{label}: cannot check the earlier attempt: "
                                 f"{(data or {}).get('message', 'HTTP 400')}")
    _, data = send_request(
        client, "POST", f"{service}/xrpc/com.atproto.repo.createRecord", label, headers=auth,
        json_body={"repo": session.did, "collection": "app.bsky.feed.post", "rkey": rkey,
                   "record": record_for(entry)})
    if not isinstance(data, dict) or not data.get("uri"):
        raise delivery_error(f"{label}: the PDS accepted the post but its answer has no uri")
    return {"uri": data["uri"], "cid": data.get("cid")}


def _send_chat(client: httpx.Client, service: str, session: Session, label: str,
               entry: OutboxEntry) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {session.access}", "atproto-proxy": CHAT_PROXY}
    ids = entry.payload.get("ids") or {}
    text = str(entry.payload.get("text") or "")
    _, data = send_request(client, "GET", f"{service}/xrpc/chat.bsky.convo.getConvoForMembers",
                           label, headers=headers, params={"members": str(ids.get("did", ""))})
    convo = data.get("convo") if isinstance(data, dict) else None
    convo_id = convo.get("id") if isinstance(convo, dict) else None
    if not isinstance(convo_id, str) or not convo_id:
        raise delivery_error(f"{label}: getConvoForMembers answered without a conversation")
    if entry.attempts > 0:
        _, data = send_request(client, "GET", f"{service}/xrpc/chat.bsky.convo.getMessages",
                               label, headers=headers, params={"convoId": convo_id,
                                                               "limit": 30})
        messages = data.get("messages") if isinstance(data, dict) else None
        for message in messages if isinstance(messages, list) else []:
            if not isinstance(message, dict):
                continue
            sender = message.get("sender")
            sent = parse_iso(str(message.get("sentAt") or "")) or 0.0
            if (isinstance(sender, dict) and sender.get("did") == session.did
                    and message.get("text") == text and sent >= entry.created - 300):
                return {"convo": convo_id, "message": message.get("id"), "already": True}
    _, data = send_request(client, "POST", f"{service}/xrpc/chat.bsky.convo.sendMessage",
                           label, headers=headers,
                           json_body={"convoId": convo_id, "message": {"text": text}})
    if not isinstance(data, dict) or not data.get("id"):
        raise delivery_error(f"{label}: the chat service accepted the message but its answer "
                             "has no id")
    return {"convo": convo_id, "message": data["id"]}
