"""Bluesky through a loopback PDS: app-password sessions (kept, renewed on ExpiredToken),
notifications and search walked down to a watermark, 401/429/malformed; replies as
createRecord with the right root/parent refs and chat messages through the atproto-proxy
header, each made once even when the first attempt times out."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cm_console import delivery
from cm_console.actions import platform_can, reply, route_private
from cm_console.config import Config
from cm_console.feedserver import FeedServer
from cm_console.poller import Poller
from cm_console.sources import bluesky, item_id
from cm_console.store import Store

from .api_server import ApiServer, Reply, Request, payload

HANDLE = "tessel.bsky.social"
ME = "did:plc:tessel4example"
NOTES = payload("bluesky", "notifications.json")["notifications"]
POSTS = payload("bluesky", "search_posts.json")["posts"]


def later() -> float:
    return time.time() + 7200


class FakePds:
    """The XRPC endpoints we call, answering like a PDS (app.bsky.* proxied to an AppView,
    chat.bsky.* only with the atproto-proxy header)."""

    def __init__(self, api: ApiServer):
        self.api = api
        self.notes = NOTES[:3]
        self.posts = POSTS
        self.sessions = 0
        self.token = ""
        self.records: dict[str, dict[str, Any]] = {}  # rkey -> record
        self.messages: list[dict[str, Any]] = []
        self.delays: list[float] = []
        self.lock = threading.Lock()
        x = "/xrpc/"
        api.route(x + "com.atproto.server.createSession", self.session)
        api.route(x + "app.bsky.notification.listNotifications",
                  lambda r: self.auth(r) or self.page(r, self.notes, "notifications"))
        api.route(x + "app.bsky.feed.searchPosts", self.search)
        api.route(x + "com.atproto.repo.createRecord", self.create)
        api.route(x + "com.atproto.repo.getRecord", self.get_record)
        api.route(x + "chat.bsky.convo.getConvoForMembers", self.convo)
        api.route(x + "chat.bsky.convo.getMessages",
                  lambda r: self.chat_auth(r) or {"messages": self.messages[::-1]})
        api.route(x + "chat.bsky.convo.sendMessage", self.send_message)

    def session(self, req: Request) -> Reply:
        if req.json != {"identifier": HANDLE, "password": "app-pass-1234"}:
            return Reply(401, {"error": "AuthenticationRequired",
                               "message": "Invalid identifier or password"})
        self.sessions += 1
        self.token = f"ACCESS-{self.sessions}"
        data = payload("bluesky", "session.json")
        data["accessJwt"] = self.token
        return Reply(200, data)

    def auth(self, req: Request) -> Reply | None:
        got = req.headers.get("authorization", "")
        if not got:
            return Reply(401, {"error": "AuthenticationRequired",
                               "message": "Authentication Required"})
        if got != f"Bearer {self.token}":
            return Reply(400, {"error": "ExpiredToken", "message": "Token has expired"})
        return None

    def chat_auth(self, req: Request) -> Reply | None:
        if req.headers.get("atproto-proxy") != "did:web:api.bsky.chat#bsky_chat":
            return Reply(501, {"error": "MethodNotImplemented",
                               "message": "Method Not Implemented"})
        return self.auth(req)

    def page(self, req: Request, entries: list[dict[str, Any]], key: str) -> dict[str, Any]:
        rows = sorted(entries, key=lambda e: e["indexedAt"], reverse=True)
        if "since" in req.query:
            rows = [r for r in rows if r["indexedAt"] >= req.query["since"][0]]
        limit = int(req.query.get("limit", ["50"])[0])
        start = int(req.query.get("cursor", ["0"])[0])
        chunk = rows[start:start + limit]
        out: dict[str, Any] = {key: chunk}
        if start + limit < len(rows):
            out["cursor"] = str(start + limit)
        return out

    def search(self, req: Request) -> Reply | dict[str, Any]:
        denied = self.auth(req)
        if denied:
            return denied
        assert req.query["sort"] == ["latest"]
        return self.page(req, [p for p in self.posts
                               if req.query["q"][0] in p["record"]["text"].lower()], "posts")

    def create(self, req: Request) -> Reply:
        denied = self.auth(req)
        if denied:
            return denied
        body = req.json
        with self.lock:
            delay = self.delays.pop(0) if self.delays else 0.0
            if body["rkey"] in self.records:
                return Reply(400, {"error": "InvalidRequest", "message": "Record already exists"})
            self.records[body["rkey"]] = body["record"]
        uri = f"at://{ME}/app.bsky.feed.post/{body['rkey']}"
        return Reply(200, {"uri": uri, "cid": "bafyreinew", "validationStatus": "valid"},
                     delay=delay)

    def get_record(self, req: Request) -> Reply:
        denied = self.auth(req)
        if denied:
            return denied
        rkey = req.query["rkey"][0]
        if rkey not in self.records:
            return Reply(400, {"error": "RecordNotFound",
                               "message": f"Could not locate record: at://{ME}/"
                                          f"app.bsky.feed.post/{rkey}"})
        return Reply(200, {"uri": f"at://{ME}/app.bsky.feed.post/{rkey}", "cid": "bafyreinew",
                           "value": self.records[rkey]})

    def convo(self, req: Request) -> Reply | dict[str, Any]:
        denied = self.chat_auth(req)
        if denied:
            return denied
        return {"convo": {"id": "3lconvo0001", "rev": "1", "muted": False, "unreadCount": 0,
                          "members": [{"did": ME}, {"did": req.query["members"][0]}]}}

    def send_message(self, req: Request) -> Reply:
        denied = self.chat_auth(req)
        if denied:
            return denied
        with self.lock:
            delay = self.delays.pop(0) if self.delays else 0.0
            message = {"$type": "chat.bsky.convo.defs#messageView",
                       "id": f"msg{len(self.messages) + 1}", "rev": "2",
                       "text": req.json["message"]["text"], "sender": {"did": ME},
                       "sentAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
            self.messages.append(message)
        return Reply(200, message, delay=delay)


@pytest.fixture(autouse=True)
def fresh_sessions() -> Iterator[None]:
    bluesky._sessions.clear()
    yield
    bluesky._sessions.clear()


@pytest.fixture
def api(feed_server: FeedServer) -> ApiServer:
    return ApiServer(feed_server)


@pytest.fixture
def pds(api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> FakePds:
    monkeypatch.setenv("BSKY_APP_PASSWORD", "app-pass-1234")
    return FakePds(api)


def source(api: ApiServer, **extra: object) -> dict[str, object]:
    return {"id": "sky", "type": "bluesky", "service": api.base, "handle": HANDLE,
            "app_password": "${BSKY_APP_PASSWORD}", **extra}


def poll(config: Config, store: Store) -> Any:
    with Poller(config, store) as poller:
        return asyncio.run(poller.poll())


def key(n: int, did: str = "did:plc:ruth4example") -> str:
    return item_id("sky", f"at://{did}/app.bsky.feed.post/3lbn{n:08d}")


def test_notifications_walk_to_the_watermark_and_the_session_is_reused(
        api: ApiServer, pds: FakePds, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config([source(api)])
    store = Store(config.store)
    report = poll(config, store)
    assert report.results[0].status == "ok"
    # mention 1 and reply 3; the like (2) is not a conversation
    assert sorted(report.new_ids) == sorted([key(1), key(3, "did:plc:anon4example")])
    listed = api.made("GET", "/xrpc/app.bsky.notification.listNotifications")
    assert listed[0].headers["authorization"] == "Bearer ACCESS-1"
    assert store.source_state("sky").cursor["notifications"] == {
        "at": "2026-11-03T09:03:01.500Z", "uris": [NOTES[2]["uri"]]}

    monkeypatch.setattr(bluesky, "PAGE", 2)
    pds.notes = NOTES
    api.clear()
    report = poll(config, store)
    assert sorted(report.new_ids) == sorted([key(5), key(6, "did:plc:kenji4example"),
                                             key(7, "did:plc:anon4example")])
    cursors = [r.query.get("cursor") for r in
               api.made("GET", "/xrpc/app.bsky.notification.listNotifications")]
    assert cursors == [None, ["2"], ["4"]]  # stopped on the page holding the watermark
    assert pds.sessions == 1  # createSession is rate-limited: one login serves both polls


def test_posts_become_items_with_thread_refs_and_link_threads(
        api: ApiServer, pds: FakePds, make_config: Callable[..., Config]) -> None:
    pds.notes = NOTES
    config = make_config([source(api, search=["tessel"])])
    store = Store(config.store)
    assert poll(config, store).results[0].status == "ok"
    ruth = store.get_item(key(1))
    assert ruth is not None
    assert ruth.url == "https://bsky.app/profile/ruth.bsky.social/post/3lbn00000001"
    assert ruth.author == "Ruth 🌿" and ruth.author_handle == "@ruth.bsky.social"
    assert store.body(ruth.id)[0] == "@tessel.bsky.social sync ate my notes again"
    assert ruth.extra["uri"] == NOTES[0]["uri"] and ruth.extra["cid"] == NOTES[0]["cid"]
    nested = store.get_item(key(5))
    root = "at://did:plc:tessel4example/app.bsky.feed.post/3lbroot00001"
    assert nested is not None and nested.thread == f"bsky:{root}"
    assert nested.parent == key(3, "did:plc:anon4example")
    assert nested.extra["root_uri"] == root
    quiet = store.get_item(key(3, "did:plc:anon4example"))
    assert quiet is not None and quiet.author == "quiet.bsky.social"
    linked = store.get_item(item_id("sky", POSTS[0]["uri"]))
    assert linked is not None and linked.thread == "link:https://tessel.example/blog/sync"
    assert store.source_state("sky").cursor["search:tessel"]["at"] == "2026-11-03T08:30:01.000Z"
    api.clear()
    poll(config, store)
    search = api.made("GET", "/xrpc/app.bsky.feed.searchPosts")[0]
    assert search.query["since"] == ["2026-11-03T08:30:01.000Z"]


def test_an_expired_token_renews_the_session_once(api: ApiServer, pds: FakePds,
                                                  make_config: Callable[..., Config]) -> None:
    config = make_config([source(api)])
    store = Store(config.store)
    poll(config, store)
    pds.token = "rotated"  # the server no longer accepts ACCESS-1
    result = poll(config, store).results[0]
    assert result.status == "ok" and pds.sessions == 2


def test_wrong_app_password_429_and_malformed(api: ApiServer, pds: FakePds,
                                              make_config: Callable[..., Config],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BSKY_APP_PASSWORD", "wrong")
    config = make_config([source(api)])
    store = Store(config.store)
    result = poll(config, store).results[0]
    assert result.status == "error" and "credentials rejected" in result.error
    assert "Invalid identifier or password" in result.error
    monkeypatch.setenv("BSKY_APP_PASSWORD", "app-pass-1234")
    api.route("/xrpc/app.bsky.notification.listNotifications",
              Reply(429, {"error": "RateLimitExceeded"}, {"Retry-After": "90",
                                                          "RateLimit-Remaining": "0"}))
    result = poll(make_config([source(api, id="sky2")]), store).results[0]
    assert result.status == "error" and "429" in result.error
    assert store.source_state("sky2").retry_after_until > time.time() + 80
    broken = copy.deepcopy(NOTES[:1])
    del broken[0]["record"]
    api.route("/xrpc/app.bsky.notification.listNotifications", {"notifications": broken})
    result = poll(make_config([source(api, id="sky3")]), store).results[0]
    assert result.status == "error"
    assert "notifications[0].record: expected an object, got nothing" in result.error
    assert store.item_count() == 0


# --------------------------------------------------------------------------- writing


def polled(api: ApiServer, pds: FakePds,
           make_config: Callable[..., Config]) -> tuple[Config, Store]:
    pds.notes = NOTES
    config = make_config([source(api)])
    store = Store(config.store)
    poll(config, store)
    api.clear()
    return config, store


def test_reply_is_one_create_record_with_root_and_parent(
        api: ApiServer, pds: FakePds, make_config: Callable[..., Config]) -> None:
    config, store = polled(api, pds, make_config)
    item = store.get_item(key(5))  # a reply inside someone else's thread
    assert item is not None and platform_can(config, item, "reply")
    text = "Désolé, Ruth — on it: https://status.tessel.example/incidents/77 (sorry!)"
    sent = reply(store, config, item.id, text, "ann", delay=0.0)
    assert [r.ok for r in delivery.deliver_due(store, config)] == [True]
    creates = api.made("POST", "/xrpc/com.atproto.repo.createRecord")
    assert len(creates) == 1 and api.made("GET", "/xrpc/com.atproto.repo.getRecord") == []
    req = creates[0]
    assert req.headers["authorization"] == "Bearer ACCESS-1"
    entry = sent.outbox[0]
    body = req.json
    assert body["repo"] == ME and body["collection"] == "app.bsky.feed.post"
    assert body["rkey"] == bluesky.tid(entry.created, entry.idempotency_key)
    assert len(body["rkey"]) == 13
    record = body["record"]
    assert record["$type"] == "app.bsky.feed.post" and record["text"] == text
    assert record["reply"] == {
        "root": {"uri": "at://did:plc:tessel4example/app.bsky.feed.post/3lbroot00001",
                 "cid": "bafyreiroot0000000000000000000000000000000000000000000001"},
        "parent": {"uri": NOTES[4]["uri"], "cid": NOTES[4]["cid"]}}
    url = "https://status.tessel.example/incidents/77"
    start = len("Désolé, Ruth — on it: ".encode())  # bytes, not characters
    assert record["facets"] == [{"index": {"byteStart": start,
                                           "byteEnd": start + len(url)},
                                 "features": [{"$type": "app.bsky.richtext.facet#link",
                                               "uri": url}]}]
    assert record["createdAt"].endswith("Z")


def test_a_top_level_post_is_its_own_root_and_a_timed_out_create_is_not_repeated(
        api: ApiServer, pds: FakePds, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config, store = polled(api, pds, make_config)
    monkeypatch.setattr(delivery, "SEND_TIMEOUT", 0.3)
    pds.delays = [1.0]
    reply(store, config, key(1), "Sorry Ruth, looking into it.", "ann", delay=0.0)
    assert [r.ok for r in delivery.deliver_due(store, config)] == [False]
    time.sleep(0.8)
    second = delivery.deliver_due(store, config, now=later())
    assert [r.ok for r in second] == [True] and second[0].remote["already"] is True
    assert len(api.made("POST", "/xrpc/com.atproto.repo.createRecord")) == 1
    (record,) = pds.records.values()
    ref = {"uri": NOTES[0]["uri"], "cid": NOTES[0]["cid"]}
    assert record["reply"] == {"root": ref, "parent": ref}


def test_route_private_replies_then_chats_through_the_proxy_once(
        api: ApiServer, pds: FakePds, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config, store = polled(api, pds, make_config)
    item = store.get_item(key(7, "did:plc:anon4example"))
    assert item is not None and platform_can(config, item, "private")
    monkeypatch.setattr(delivery, "SEND_TIMEOUT", 0.3)
    sent = route_private(store, config, item.id, "ann", public_text="I've sent you a DM.",
                         private_text="Hi! Which export format do you need?", delay=0.0)
    chat_entry = next(e for e in sent.outbox if e.payload["op"] == "private")
    # The outbox sends in (created, id) order; make the chat message's POST the slow one.
    pds.delays = [1.0] if sorted(e.id for e in sent.outbox)[0] == chat_entry.id else [0, 1.0]
    first = {r.entry.id: r.ok for r in delivery.deliver_due(store, config)}
    assert first[chat_entry.id] is False
    time.sleep(0.8)
    second = delivery.deliver_due(store, config, now=later())
    assert [(r.entry.id, r.ok) for r in second] == [(chat_entry.id, True)]
    assert second[0].remote == {"convo": "3lconvo0001", "message": "msg1", "already": True}
    assert store.outbox(["pending", "failed"]) == []
    assert len(api.made("GET", "/xrpc/chat.bsky.convo.getMessages")) == 1
    convo = api.made("GET", "/xrpc/chat.bsky.convo.getConvoForMembers")
    assert convo and all(r.headers["atproto-proxy"] == "did:web:api.bsky.chat#bsky_chat"
                         for r in convo)
    assert convo[0].query["members"] == ["did:plc:anon4example"]
    sends = api.made("POST", "/xrpc/chat.bsky.convo.sendMessage")
    assert len(sends) == 1 and len(pds.messages) == 1
    assert sends[0].json == {"convoId": "3lconvo0001",
                             "message": {"text": "Hi! Which export format do you need?"}}
    assert sends[0].headers["authorization"] == "Bearer ACCESS-1"
    assert len(pds.records) == 1  # the public acknowledgement, once
