"""Mastodon through a loopback instance: min_id cursors and Link pagination, 401/429,
malformed payloads; replies and DMs through the outbox with one Idempotency-Key, posted
once even when the first attempt times out."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from cm_console import delivery
from cm_console.actions import outgoing_text, platform_can, reply, route_private, undo_last
from cm_console.config import Config
from cm_console.feedserver import FeedServer
from cm_console.poller import Poller
from cm_console.sources import item_id, mastodon
from cm_console.store import Store

from .api_server import ApiServer, Reply, Request, payload
from .feeds import rss

TOKEN = "s3cret-token"
NOTES = payload("mastodon", "notifications.json")["notifications"]
TAG = payload("mastodon", "tag_tessel.json")["statuses"]


def later() -> float:
    return time.time() + 7200


class FakeMastodon:
    """Timelines the way Mastodon pages them: newest first; ``min_id`` = the page right
    after that id, ``max_id``/``since_id`` as documented; ``Link`` next/prev carrying the
    other query parameters; Bearer token required where the real server requires it; and
    ``POST /api/v1/statuses`` that honours ``Idempotency-Key`` (a repeat returns the status
    already created)."""

    def __init__(self, api: ApiServer, notes: list[dict[str, Any]],
                 tag: list[dict[str, Any]]):
        self.api = api
        self.notes = notes
        self.tag = tag
        self.created: dict[str, dict[str, Any]] = {}  # idempotency key -> status
        self.post_delays: list[float] = []  # seconds, consumed one per POST
        self.lock = threading.Lock()
        api.route("/api/v1/notifications", self.notifications)
        api.route("/api/v1/timelines/tag/tessel", self.timeline)
        api.route("/api/v1/statuses", self.post_status)

    def _auth(self, req: Request) -> Reply | None:
        if req.headers.get("authorization") != f"Bearer {TOKEN}":
            return Reply(401, {"error": "The access token is invalid"})
        return None

    def _page(self, req: Request, entries: list[dict[str, Any]], path: str) -> Reply:
        limit = int(req.query.get("limit", ["20"])[0])
        rows = sorted(entries, key=lambda e: int(e["id"]), reverse=True)
        q = {k: v[0] for k, v in req.query.items()}
        if "max_id" in q:
            rows = [r for r in rows if int(r["id"]) < int(q["max_id"])]
        if "since_id" in q:
            rows = [r for r in rows if int(r["id"]) > int(q["since_id"])]
        if "min_id" in q:
            rows = [r for r in rows if int(r["id"]) > int(q["min_id"])][-limit:]
        rows = rows[:limit]
        headers = {}
        if rows:
            keep = [(k, v) for k, vs in req.query.items() if k not in
                    ("max_id", "min_id", "since_id") for v in vs]
            nxt = self.api.base + path + "?" + urlencode([*keep, ("max_id", rows[-1]["id"])])
            prv = self.api.base + path + "?" + urlencode([*keep, ("min_id", rows[0]["id"])])
            headers["Link"] = f'<{nxt}>; rel="next", <{prv}>; rel="prev"'
        return Reply(200, rows, headers)

    def notifications(self, req: Request) -> Reply:
        denied = self._auth(req)
        if denied:
            return denied
        types = req.query.get("types[]", [])
        entries = [n for n in self.notes if not types or n["type"] in types]
        return self._page(req, entries, "/api/v1/notifications")

    def timeline(self, req: Request) -> Reply:
        return self._page(req, self.tag, "/api/v1/timelines/tag/tessel")

    def post_status(self, req: Request) -> Reply:
        denied = self._auth(req)
        if denied:
            return denied
        key = req.headers.get("idempotency-key", "")
        with self.lock:
            delay = self.post_delays.pop(0) if self.post_delays else 0.0
            if key and key in self.created:
                return Reply(200, self.created[key])
            status = copy.deepcopy(payload("mastodon", "status_created.json"))
            status["id"] = str(113530000000000001 + len(self.created))
            status["content"] = f"<p>{req.json['status']}</p>"
            status["visibility"] = req.json.get("visibility", "public")
            self.created[key or status["id"]] = status
        return Reply(200, status, delay=delay)


@pytest.fixture
def api(feed_server: FeedServer) -> ApiServer:
    return ApiServer(feed_server)


@pytest.fixture
def fake(api: ApiServer) -> FakeMastodon:
    return FakeMastodon(api, NOTES[:2], TAG)


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MASTO_TOKEN", TOKEN)
    return TOKEN


def source(api: ApiServer, **extra: object) -> dict[str, object]:
    return {"id": "masto", "type": "mastodon", "instance": api.base,
            "token": "${MASTO_TOKEN}", "hashtags": ["#tessel"], **extra}


def poll(config: Config, store: Store) -> Any:
    with Poller(config, store) as poller:
        return asyncio.run(poller.poll())


def sid(status_id: str) -> str:
    return item_id("masto", f"status:{status_id}")


def test_min_id_cursor_and_link_pagination_never_refetch(
        api: ApiServer, fake: FakeMastodon, token: str, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config([source(api)])
    store = Store(config.store)
    report = poll(config, store)
    assert [r.status for r in report.results] == ["ok"]
    # 2 mentions + 2 hashtag statuses (the boost is its original, once).
    assert len(report.new_ids) == 4
    first = api.made("GET", "/api/v1/notifications")[0]
    assert first.query["types[]"] == ["mention"] and "min_id" not in first.query
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    cursor = store.source_state("masto").cursor
    assert cursor == {"mentions": "2002", "tag:tessel": "113522009000000003"}

    monkeypatch.setattr(mastodon, "PAGE", 2)
    fake.notes = NOTES  # five new mentions: pages of 2, 2 and 1 from the cursor on
    api.clear()
    report = poll(config, store)
    assert sorted(report.new_ids) == sorted(sid(n["status"]["id"]) for n in NOTES[2:])
    asked = api.made("GET", "/api/v1/notifications")
    assert [r.query.get("min_id") for r in asked] == [["2002"], ["2004"], ["2006"]]
    assert all(r.query["types[]"] == ["mention"] for r in asked)
    tag_asked = api.made("GET", "/api/v1/timelines/tag/tessel")
    assert [r.query.get("min_id") for r in tag_asked] == [["113522009000000003"]]
    assert store.source_state("masto").cursor["mentions"] == "2007"

    api.clear()
    report = poll(config, store)
    assert report.new_ids == []
    assert api.made("GET", "/api/v1/notifications")[0].query["min_id"] == ["2007"]


def test_statuses_become_items_with_thread_handle_and_visibility(
        api: ApiServer, fake: FakeMastodon, token: str,
        make_config: Callable[..., Config]) -> None:
    fake.notes = NOTES
    config = make_config([source(api)])
    store = Store(config.store)
    poll(config, store)
    ruth = store.get_item(sid("113522001000000001"))
    assert ruth is not None
    assert ruth.author == "Ruth 🌿" and ruth.author_handle == "@ruth@hachyderm.example"
    assert ruth.url == "https://hachyderm.example/@ruth/113522001000000001"
    assert store.body(ruth.id)[0].startswith("@tessel third time this week")
    assert ruth.extra["status_id"] == "113522001000000001"
    assert ruth.extra["visibility"] == "public"
    follow_up = store.get_item(sid("113522001000000005"))
    assert follow_up is not None and follow_up.parent == ruth.id
    assert follow_up.thread == ruth.thread
    dm = store.get_item(sid("113522001000000003"))
    assert dm is not None and dm.extra["visibility"] == "direct"
    assert dm.author == "infosec_ally"  # no display name: the username
    cw = store.get_item(sid("113522001000000004"))
    assert cw is not None and store.body(cw.id)[0].startswith("CW: money, long\n\n")
    assert cw.author_handle == "@marta"
    linked = store.get_item(sid("113522001000000006"))
    assert linked is not None and linked.thread == "link:https://tessel.example/blog/sync"
    boosted = [i for i in store.items(store.item_ids()) if i.extra.get("via") == "tag:tessel"]
    assert sorted(i.extra["status_id"] for i in boosted) == ["113522009000000001",
                                                             "113522009000000002"]


def test_wrong_token_is_a_clear_per_source_error(api: ApiServer, fake: FakeMastodon,
                                                feed_server: FeedServer,
                                                make_config: Callable[..., Config],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTO_TOKEN", "revoked")
    blog = feed_server.add("/b.xml", rss([{"guid": "1", "title": "ok"}]))
    config = make_config([source(api), {"id": "blog", "type": "rss", "url": blog}])
    store = Store(config.store)
    results = {r.source: r for r in poll(config, store).results}
    assert results["masto"].status == "error"
    assert "401" in results["masto"].error and "credentials rejected" in results["masto"].error
    assert "The access token is invalid" in results["masto"].error
    assert results["blog"].status == "ok"
    assert store.source_state("masto").error_count == 1
    assert [i.source for i in store.items(store.item_ids())] == ["blog"]


def test_unset_token_variable_is_a_per_source_error(api: ApiServer, fake: FakeMastodon,
                                                    make_config: Callable[..., Config],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASTO_TOKEN", raising=False)
    config = make_config([source(api)])
    result = poll(config, Store(config.store)).results[0]
    assert result.status == "error" and "MASTO_TOKEN is not set" in result.error
    assert api.made() == []


def test_429_mid_pagination_keeps_what_was_read(api: ApiServer, fake: FakeMastodon,
                                                token: str, make_config: Callable[..., Config],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config([source(api, hashtags=[])])
    store = Store(config.store)
    poll(config, store)
    monkeypatch.setattr(mastodon, "PAGE", 2)
    fake.notes = NOTES
    calls = {"n": 0}
    normal = fake.notifications

    def limited(req: Request) -> Reply:
        calls["n"] += 1
        if calls["n"] == 2:  # the second page of this poll
            return Reply(429, {"error": "Too many requests"}, {"Retry-After": "300"})
        return normal(req)

    api.route("/api/v1/notifications", limited)
    before = time.time()
    result = poll(config, store).results[0]
    assert result.status == "ok" and result.new == 2 and "rate limited" in result.error
    state = store.source_state("masto")
    assert state.cursor["mentions"] == "2004"  # exactly what was stored
    assert state.retry_after_until >= before + 290


def test_malformed_status_stores_nothing(api: ApiServer, fake: FakeMastodon, token: str,
                                         make_config: Callable[..., Config]) -> None:
    broken = copy.deepcopy(NOTES[:2])
    del broken[1]["status"]["account"]
    fake.notes = broken
    config = make_config([source(api, hashtags=[])])
    store = Store(config.store)
    result = poll(config, store).results[0]
    assert result.status == "error"
    assert "mastodon: mentions[0].status.account: expected an object" in result.error
    assert store.item_count() == 0 and store.source_state("masto").cursor == {}


# --------------------------------------------------------------------------- writing


def polled(api: ApiServer, fake: FakeMastodon, make_config: Callable[..., Config],
           **extra: object) -> tuple[Config, Store]:
    fake.notes = NOTES
    config = make_config([source(api, hashtags=[])], **extra)
    store = Store(config.store)
    poll(config, store)
    api.clear()
    return config, store


def test_reply_posts_exactly_the_documented_request_once(
        api: ApiServer, fake: FakeMastodon, token: str,
        make_config: Callable[..., Config]) -> None:
    config, store = polled(api, fake, make_config)
    item = store.get_item(sid("113522001000000001"))
    assert item is not None and platform_can(config, item, "reply")
    sent = reply(store, config, item.id, "Sorry about that! Which iOS version?", "ann",
                 delay=0.0)
    assert sent.mode == "outbox" and len(sent.outbox) == 1
    entry = sent.outbox[0]
    assert entry.kind == "platform" and entry.target == "masto"
    assert store.get_item(item.id).state == "replied"  # type: ignore[union-attr]
    results = delivery.deliver_due(store, config)
    assert [r.ok for r in results] == [True]
    posts = api.made("POST", "/api/v1/statuses")
    assert len(posts) == 1
    req = posts[0]
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["idempotency-key"] == entry.idempotency_key
    assert req.headers["content-type"] == "application/json"
    assert req.json == {"status": "@ruth@hachyderm.example Sorry about that! Which iOS version?",
                        "visibility": "public", "in_reply_to_id": "113522001000000001"}
    delivered = [e for e in store.events(item=item.id) if e.action == "delivered"]
    assert delivered[0].data["remote"]["id"] == "113530000000000001"
    assert delivery.deliver_due(store, config, now=later()) == []  # nothing left


def test_first_attempt_times_out_then_the_retry_reuses_the_key_and_posts_once(
        api: ApiServer, fake: FakeMastodon, token: str, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config, store = polled(api, fake, make_config)
    monkeypatch.setattr(delivery, "SEND_TIMEOUT", 0.3)
    fake.post_delays = [1.0]  # the server stores the status, then answers too late
    sent = reply(store, config, sid("113522001000000002"), "Glad it helped!", "ann",
                 delay=0.0)
    first = delivery.deliver_due(store, config)
    assert [r.ok for r in first] == [False]
    assert "no answer in time" in first[0].error
    time.sleep(0.8)  # let the slow first request finish on the server
    second = delivery.deliver_due(store, config, now=later())
    assert [r.ok for r in second] == [True]
    posts = api.made("POST", "/api/v1/statuses")
    assert len(posts) == 2
    assert {p.headers["idempotency-key"] for p in posts} == {sent.outbox[0].idempotency_key}
    assert posts[0].body == posts[1].body
    assert len(fake.created) == 1  # the instance made one status


def test_route_private_acknowledges_publicly_then_sends_a_direct_message(
        api: ApiServer, fake: FakeMastodon, token: str,
        make_config: Callable[..., Config]) -> None:
    config, store = polled(api, fake, make_config)  # no support_email: not needed here
    item = store.get_item(sid("113522001000000004"))
    assert item is not None and platform_can(config, item, "private")
    sent = route_private(store, config, item.id, "ann", public_text="I've sent you a DM.",
                         private_text="Hi Marta, could you tell me the order number?",
                         delay=0.0)
    assert sent.mode == "outbox" and [e.payload["op"] for e in sent.outbox] == [
        "reply", "private"]
    assert store.get_item(item.id).state == "private"  # type: ignore[union-attr]
    assert all(r.ok for r in delivery.deliver_due(store, config))
    bodies = sorted((json.loads(p.body) for p in api.made("POST", "/api/v1/statuses")),
                    key=lambda b: b["visibility"])
    assert bodies == [
        {"status": "@marta Hi Marta, could you tell me the order number?",
         "visibility": "direct", "in_reply_to_id": "113522001000000004"},
        {"status": "@marta I've sent you a DM.", "visibility": "public",
         "in_reply_to_id": "113522001000000004"},
    ]
    log = [e for e in store.events(item=item.id) if e.action == "route_private"]
    assert log[0].data["channel"] == "direct"


def test_a_reply_to_a_direct_message_stays_direct(api: ApiServer, fake: FakeMastodon,
                                                  token: str,
                                                  make_config: Callable[..., Config]) -> None:
    config, store = polled(api, fake, make_config)
    reply(store, config, sid("113522001000000003"), "Thanks, looking now. @infosec_ally",
          "ann", delay=0.0)
    delivery.deliver_due(store, config)
    body = api.made("POST", "/api/v1/statuses")[0].json
    assert body["visibility"] == "direct"
    assert body["status"] == "@infosec_ally@infosec.example Thanks, looking now. @infosec_ally"


def test_the_length_limit_counts_the_mention_the_platform_will_get(
        api: ApiServer, fake: FakeMastodon, token: str,
        make_config: Callable[..., Config]) -> None:
    config, store = polled(api, fake, make_config)
    item = store.get_item(sid("113522001000000001"))
    assert item is not None
    assert outgoing_text(item, "reply", "Hi") == "@ruth@hachyderm.example Hi"
    with pytest.raises(ValueError, match="allows 500"):
        reply(store, config, item.id, "x" * 490, "ann", delay=0.0)
    with pytest.raises(ValueError, match="allows 500"):
        route_private(store, config, item.id, "ann", public_text="",
                      private_text="x" * 490, delay=0.0)
    assert store.outbox() == []
    sent = reply(store, config, item.id, "@ruth@hachyderm.example " + "x" * 470, "ann",
                 delay=0.0)  # already mentioned: nothing is added
    assert sent.mode == "outbox"


def test_undo_within_the_window_sends_nothing(api: ApiServer, fake: FakeMastodon, token: str,
                                              make_config: Callable[..., Config]) -> None:
    config, store = polled(api, fake, make_config)
    item_key = sid("113522001000000002")
    reply(store, config, item_key, "Thanks!", "ann")  # the config's 10 s undo window
    assert undo_last(store, "ann") is not None
    assert delivery.deliver_due(store, config, now=later()) == []
    assert api.made("POST") == []
    assert store.get_item(item_key).state == "new"  # type: ignore[union-attr]


def test_rejected_token_on_send_retries_later_with_a_clear_error(
        api: ApiServer, fake: FakeMastodon, token: str, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config, store = polled(api, fake, make_config)
    reply(store, config, sid("113522001000000002"), "Thanks!", "ann", delay=0.0)
    monkeypatch.setenv("MASTO_TOKEN", "revoked")
    result = delivery.deliver_due(store, config)[0]
    assert not result.ok and "HTTP 401 (credentials rejected)" in result.error
    assert store.outbox(["pending"])[0].attempts == 1


def test_the_instance_says_how_long_a_status_may_be(
        api: ApiServer, fake: FakeMastodon, token: str,
        make_config: Callable[..., Config]) -> None:
    """GET /api/v2/instance raises the 500 default; a server without it keeps 500 (above)."""
    api.route("/api/v2/instance", lambda req: Reply(
        200, {"configuration": {"statuses": {"max_characters": 1000}}}))
    config, store = polled(api, fake, make_config)
    item = store.get_item(sid("113522001000000001"))
    assert item is not None and item.extra["max_chars"] == 1000
    with pytest.raises(ValueError, match="allows 1000"):
        reply(store, config, item.id, "x" * 990, "ann", delay=0.0)
    sent = reply(store, config, item.id, "x" * 900, "ann", delay=0.0)
    assert sent.mode == "outbox"
    poll(config, store)  # read at most once a day
    assert api.made("GET", "/api/v2/instance") == []
