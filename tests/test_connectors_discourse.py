"""Discourse through a loopback forum: latest posts with ``before`` paging and cursors,
category and search filters, notifications, 403/429/malformed answers; replies and private
messages through the outbox, posted once even when the first attempt times out (Discourse
has no idempotency key: the retry finds its marker in the account's recent posts)."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from cm_console import delivery
from cm_console.actions import platform_can, reply, route_private
from cm_console.config import Config
from cm_console.feedserver import FeedServer
from cm_console.poller import Poller
from cm_console.sources import discourse, item_id
from cm_console.store import Store

from .api_server import ApiServer, Reply, Request, payload

KEY = "forum-admin-key"
USER = "tessel_team"
POSTS = payload("discourse", "latest_posts.json")["latest_posts"]
DENIED = {"errors": ["You are not permitted to view the requested resource. The API "
                     "username or key is invalid."], "error_type": "invalid_access"}


def later() -> float:
    return time.time() + 7200


class FakeDiscourse:
    """The endpoints we use, answering like Discourse: ``/posts.json`` newest first in pages
    with ``before`` (ids below it), ``Api-Key``/``Api-Username`` or ``User-Api-Key`` auth
    (403 otherwise, where Discourse requires it), ``POST /posts.json`` creating posts that
    ``/user_actions.json`` and ``/posts/{id}.json`` then show, with their raw."""

    page = 3  # Discourse pages 50; small here so tests page

    def __init__(self, api: ApiServer, posts: list[dict[str, Any]]):
        self.api = api
        self.posts = posts
        self.created: list[dict[str, Any]] = []
        self.post_replies: list[Reply | None] = []  # per POST: an override answer
        self.lock = threading.Lock()
        api.route("/posts.json", self.posts_json)
        api.route("/categories.json", lambda r: self.auth(r, True) or
                  payload("discourse", "categories.json"))
        api.route("/notifications.json", lambda r: self.auth(r) or
                  payload("discourse", "notifications.json"))
        api.route("/search.json", lambda r: self.auth(r, True) or payload("discourse",
                                                                         "search.json"))
        api.route("/posts/611.json", lambda r: self.auth(r) or
                  payload("discourse", "post_611.json"))
        api.route("/posts/504.json", lambda r: self.auth(r) or self.single(504))
        api.route("/user_actions.json", self.user_actions)
        api.route("/session/current.json", lambda r: self.auth(r) or
                  {"current_user": {"id": 1, "username": USER}})

    def auth(self, req: Request, public: bool = False) -> Reply | None:
        h = req.headers
        if h.get("user-api-key") == "user-key":
            return None
        if "api-key" in h or "user-api-key" in h:
            if h.get("api-key") == KEY and h.get("api-username") == USER:
                return None
            return Reply(403, DENIED)
        return None if public else Reply(403, DENIED)

    def single(self, post_id: int) -> dict[str, Any]:
        post = next(p for p in self.posts + self.created if p["id"] == post_id)
        return {k: v for k, v in post.items() if k not in ("topic_title", "category_id")}

    def posts_json(self, req: Request) -> Reply | dict[str, Any]:
        if req.method == "POST":
            return self.create(req)
        denied = self.auth(req, public=True)
        if denied:
            return denied
        rows = sorted(self.posts, key=lambda p: p["id"], reverse=True)
        if "before" in req.query:
            rows = [p for p in rows if p["id"] < int(req.query["before"][0])]
        return {"latest_posts": rows[:self.page]}

    def create(self, req: Request) -> Reply:
        denied = self.auth(req)
        if denied:
            return denied
        body = req.json
        with self.lock:
            override = self.post_replies.pop(0) if self.post_replies else None
            if override is not None and override.status >= 400:
                return override
            post = copy.deepcopy(payload("discourse", "post_created.json"))
            post["id"] = 900 + len(self.created)
            post["raw"] = body["raw"]
            post["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            if body.get("archetype") == "private_message":
                post.update(topic_id=9990 + len(self.created), post_number=1,
                            reply_to_post_number=None)
            else:
                post.update(topic_id=body["topic_id"], post_number=10 + len(self.created),
                            reply_to_post_number=body.get("reply_to_post_number"))
            self.created.append(post)
            self.api.route(f"/posts/{post['id']}.json",
                           lambda r, p=post: self.auth(r) or p)
        if override is not None:  # e.g. stored, then answered too late
            return Reply(200, post, delay=override.delay)
        return Reply(200, post)

    def user_actions(self, req: Request) -> Reply | dict[str, Any]:
        denied = self.auth(req)
        if denied:
            return denied
        assert req.query["username"] == [USER]
        template = payload("discourse", "user_action.json")["user_action"]
        actions = []
        for post in reversed(self.created):
            actions.append({**template, "post_id": post["id"], "topic_id": post["topic_id"],
                            "post_number": post["post_number"],
                            "created_at": post["created_at"],
                            "action_type": 12 if post["post_number"] == 1 else 5})
        return {"user_actions": actions}


@pytest.fixture
def api(feed_server: FeedServer) -> ApiServer:
    return ApiServer(feed_server)


@pytest.fixture
def forum(api: ApiServer) -> FakeDiscourse:
    return FakeDiscourse(api, POSTS[:4])


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FORUM_KEY", KEY)
    return KEY


def source(api: ApiServer, **extra: object) -> dict[str, object]:
    return {"id": "forum", "type": "discourse", "url": api.base, "api_key": "${FORUM_KEY}",
            "api_username": USER, "notifications": False, **extra}


def poll(config: Config, store: Store) -> Any:
    with Poller(config, store) as poller:
        return asyncio.run(poller.poll())


def post_id(topic: int, number: int) -> str:
    return item_id("forum", f"{topic}/{number}")


def test_latest_posts_page_back_to_the_cursor_once(
        api: ApiServer, forum: FakeDiscourse, key: str,
        make_config: Callable[..., Config]) -> None:
    config = make_config([source(api)])
    store = Store(config.store)
    report = poll(config, store)
    assert len(report.new_ids) == 3  # the newest page only on a first poll
    assert api.made("GET", "/posts.json")[0].headers["api-key"] == KEY
    assert store.source_state("forum").cursor == {"posts": 504}
    forum.posts = POSTS  # three newer posts: one page covers them (505 follows 504)
    api.clear()
    report = poll(config, store)
    assert sorted(report.new_ids) == sorted(post_id(t, n) for t, n in
                                            ((9907, 2), (9912, 4), (9907, 3)))
    assert [r.query.get("before") for r in api.made("GET", "/posts.json")] == [None]
    assert store.source_state("forum").cursor == {"posts": 507}
    api.clear()
    assert poll(config, store).new_ids == []
    assert len(api.made("GET", "/posts.json")) == 1


def test_more_new_posts_than_a_page_walk_back_with_before(
        api: ApiServer, forum: FakeDiscourse, key: str,
        make_config: Callable[..., Config]) -> None:
    forum.posts = POSTS[:2]
    config = make_config([source(api)])
    store = Store(config.store)
    poll(config, store)
    assert store.source_state("forum").cursor == {"posts": 502}
    forum.posts = POSTS
    api.clear()
    report = poll(config, store)
    assert sorted(report.new_ids) == sorted(post_id(p["topic_id"], p["post_number"])
                                            for p in POSTS[2:])
    assert [r.query.get("before") for r in api.made("GET", "/posts.json")] == [None, ["505"]]
    assert store.source_state("forum").cursor == {"posts": 507}


def test_posts_become_items_threaded_by_topic(api: ApiServer, forum: FakeDiscourse,
                                               key: str,
                                               make_config: Callable[..., Config]) -> None:
    forum.page = 50
    forum.posts = POSTS
    config = make_config([source(api)])
    store = Store(config.store)
    poll(config, store)
    first = store.get_item(post_id(9912, 1))
    answer = store.get_item(post_id(9912, 3))
    assert first is not None and answer is not None
    assert first.title == "Plugin API: webhooks fire twice since 4.2"
    assert answer.title == "Re: Plugin API: webhooks fire twice since 4.2"
    assert first.url == f"{api.base}/t/plugin-api-webhooks-fire-twice-since-4-2/9912/1"
    assert first.thread == answer.thread == f"link:{api.base.replace('http:', 'https:')}/t/9912"
    assert answer.parent == post_id(9912, 2)  # reply_to_post_number
    assert answer.author == "Gwen" and answer.author_handle == "@dev_gwen"
    assert store.body(answer.id)[0] == (
        "@ops_lee yes, see the incident <https://status.tessel.example/incidents/77>.")
    assert answer.extra["topic_id"] == 9912 and answer.extra["post_number"] == 3
    assert [i.extra["post_number"] for i in store.thread_items(first.thread)] == [1, 2, 3, 4]
    sam = store.get_item(post_id(9907, 1))
    assert sam is not None and sam.author == "sam_k"  # no name: the username


def test_categories_by_slug_and_search_instead_of_latest(
        api: ApiServer, forum: FakeDiscourse, key: str,
        make_config: Callable[..., Config]) -> None:
    forum.page = 50
    forum.posts = POSTS
    config = make_config([source(api, categories=["feature-requests"]),
                          source(api, id="forum_search", query="webhooks twice")])
    store = Store(config.store)
    report = poll(config, store)
    assert [r.status for r in report.results] == ["ok", "ok"]
    kept = [i for i in store.items(store.item_ids()) if i.source == "forum"]
    assert sorted(i.extra["topic_id"] for i in kept) == [9907, 9907, 9907]
    assert store.source_state("forum").cursor["category_slugs"] == {
        "support": 4, "feature-requests": 5}
    search = api.made("GET", "/search.json")[0]
    assert search.query["q"] == ["webhooks twice order:latest"]
    found = [i for i in store.items(store.item_ids()) if i.source == "forum_search"]
    assert sorted(i.extra["post_number"] for i in found) == [1, 4]
    eta = next(i for i in found if i.extra["post_number"] == 4)
    assert eta.title == "Re: Plugin API: webhooks fire twice since 4.2"
    assert store.body(eta.id)[0] == "Any ETA on a fix? The webhooks still fire twice."
    assert store.source_state("forum_search").cursor == {"search": 506}


def test_notifications_fetch_their_posts_and_mark_private_messages(
        api: ApiServer, forum: FakeDiscourse, key: str,
        make_config: Callable[..., Config]) -> None:
    config = make_config([source(api, notifications=True)])
    store = Store(config.store)
    report = poll(config, store)
    assert report.results[0].status == "ok"
    pm = store.get_item(post_id(9950, 1))
    assert pm is not None
    assert pm.extra["archetype"] == "private_message" and pm.title == "Question about AI training"
    assert "ACME-4411" in store.body(pm.id)[0]
    # 504 came through two notifications and /posts.json: one item, one fetch.
    assert len(api.made("GET", "/posts/504.json")) == 1
    assert api.made("GET", "/posts/400.json") == []  # already read on the web: not news
    assert store.source_state("forum").cursor["notifications"] == 8803


def test_invalid_key_is_a_clear_error_and_other_sources_go_on(
        api: ApiServer, forum: FakeDiscourse, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORUM_KEY", "wrong")
    config = make_config([source(api), source(api, id="anon", api_key=None)])
    store = Store(config.store)
    results = {r.source: r for r in poll(config, store).results}
    assert results["forum"].status == "error"
    assert "HTTP 403" in results["forum"].error and "key is invalid" in results["forum"].error
    assert results["anon"].status == "ok" and results["anon"].new == 3  # public, read-only


def test_429_and_malformed_answers(api: ApiServer, forum: FakeDiscourse, key: str,
                                   make_config: Callable[..., Config]) -> None:
    config = make_config([source(api)])
    store = Store(config.store)
    api.route("/posts.json", Reply(429, {"errors": ["You've performed this action too many "
                                                    "times."], "error_type": "rate_limit",
                                         "extras": {"wait_seconds": 40}},
                                   {"Retry-After": "40"}))
    result = poll(config, store).results[0]
    assert result.status == "error" and "429" in result.error
    assert store.source_state("forum").retry_after_until > time.time() + 30
    broken = copy.deepcopy(POSTS[:2])
    broken[1]["created_at"] = 1793606400  # a number where a date string belongs
    api.route("/posts.json", {"latest_posts": broken})
    config2 = make_config([source(api, id="forum2")])
    result = poll(config2, store).results[0]
    assert result.status == "error"
    assert "latest_posts[1].created_at: expected a string, got a number" in result.error
    assert store.item_count() == 0


# --------------------------------------------------------------------------- writing


def polled(api: ApiServer, forum: FakeDiscourse, make_config: Callable[..., Config],
           **src: object) -> tuple[Config, Store]:
    forum.page = 50
    config = make_config([source(api, **src)])
    store = Store(config.store)
    poll(config, store)
    api.clear()
    return config, store


def test_reply_posts_the_documented_request_once(api: ApiServer, forum: FakeDiscourse,
                                                 key: str,
                                                 make_config: Callable[..., Config]) -> None:
    config, store = polled(api, forum, make_config)
    item = store.get_item(post_id(9912, 3))
    assert item is not None and platform_can(config, item, "reply")
    sent = reply(store, config, item.id, "Thanks Gwen, a fix ships tomorrow.", "ann",
                 delay=0.0)
    assert sent.mode == "outbox"
    assert [r.ok for r in delivery.deliver_due(store, config)] == [True]
    posts = api.made("POST", "/posts.json")
    assert len(posts) == 1
    req = posts[0]
    assert req.headers["api-key"] == KEY and req.headers["api-username"] == USER
    assert req.headers["content-type"] == "application/json"
    key24 = sent.outbox[0].idempotency_key[:24]
    assert req.json == {"raw": f"Thanks Gwen, a fix ships tomorrow.\n\n<!-- cm-console:{key24} -->",
                        "topic_id": 9912, "reply_to_post_number": 3}
    assert api.made("GET", "/user_actions.json") == []  # a first attempt just posts


def test_timed_out_first_attempt_is_found_and_not_posted_twice(
        api: ApiServer, forum: FakeDiscourse, key: str, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config, store = polled(api, forum, make_config)
    monkeypatch.setattr(delivery, "SEND_TIMEOUT", 0.3)
    forum.post_replies = [Reply(200, delay=1.0)]  # stored, then answered too late
    reply(store, config, post_id(9912, 2), "Thanks Lee!", "ann", delay=0.0)
    first = delivery.deliver_due(store, config)
    assert [r.ok for r in first] == [False] and "no answer in time" in first[0].error
    time.sleep(0.8)
    second = delivery.deliver_due(store, config, now=later())
    assert [r.ok for r in second] == [True]
    assert second[0].remote == {"id": 900, "topic_id": 9912, "post_number": 10,
                                "already": True}
    assert len(api.made("POST", "/posts.json")) == 1
    assert len(forum.created) == 1
    looked = api.made("GET", "/user_actions.json")[0]
    assert looked.query["filter"] == ["4,5,12"] and looked.headers["api-key"] == KEY


def test_failed_first_attempt_posts_on_the_retry(api: ApiServer, forum: FakeDiscourse,
                                                 key: str, make_config: Callable[..., Config]
                                                 ) -> None:
    config, store = polled(api, forum, make_config)
    forum.post_replies = [Reply(502, {"errors": ["upstream"]})]
    reply(store, config, post_id(9912, 2), "Thanks Lee!", "ann", delay=0.0)
    assert [r.ok for r in delivery.deliver_due(store, config)] == [False]
    assert [r.ok for r in delivery.deliver_due(store, config, now=later())] == [True]
    assert len(api.made("POST", "/posts.json")) == 2 and len(forum.created) == 1
    assert len(api.made("GET", "/user_actions.json")) == 1  # checked before posting again


def test_route_private_sends_a_private_message_with_a_user_api_key(
        api: ApiServer, forum: FakeDiscourse, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORUM_USER_KEY", "user-key")
    config, store = polled(api, forum, make_config, api_key=None,
                           user_api_key="${FORUM_USER_KEY}")
    item = store.get_item(post_id(9912, 1))
    assert item is not None and platform_can(config, item, "private")
    sent = route_private(store, config, item.id, "ann", public_text="",
                         private_text="Hi Gwen, could you share a delivery id?", delay=0.0)
    assert [e.payload["op"] for e in sent.outbox] == ["private"]  # no public text: none
    assert all(r.ok for r in delivery.deliver_due(store, config))
    req = api.made("POST", "/posts.json")[0]
    assert req.headers["user-api-key"] == "user-key" and "api-key" not in req.headers
    key24 = sent.outbox[0].idempotency_key[:24]
    case = sent.outbox[0].payload["title"].rsplit("(", 1)[1].rstrip(")")
    assert req.json == {
        "title": f"About your post: Plugin API: webhooks fire twice since 4.2 ({case})",
        "raw": f"Hi Gwen, could you share a delivery id?\n\n<!-- cm-console:{key24} -->",
        "target_recipients": "dev_gwen", "archetype": "private_message"}
    delivered = [e for e in store.events(item=item.id) if e.action == "delivered"]
    assert delivered[0].data["remote"]["topic_id"] == 9990  # the private thread


def test_writing_without_credentials_fails_clearly(api: ApiServer, forum: FakeDiscourse,
                                                   make_config: Callable[..., Config]) -> None:
    config, store = polled(api, forum, make_config, api_key=None)
    reply(store, config, post_id(9912, 2), "Thanks!", "ann", delay=0.0)
    result = delivery.deliver_due(store, config)[0]
    assert not result.ok and "writing needs `api_key`" in result.error
    assert api.made("POST") == []


def test_marker_is_what_the_retry_looks_for() -> None:
    from cm_console.models import OutboxEntry

    entry = OutboxEntry(id="e", kind="platform", item="i", target="forum",
                        payload={"op": "reply", "text": "Hi", "ids": {"topic_id": 1,
                                                                      "post_number": 1}},
                        created=0.0, actor="ann", idempotency_key="ab" * 16)
    body = discourse.request_for(entry)
    assert body == {"raw": "Hi\n\n<!-- cm-console:" + "ab" * 12 + " -->", "topic_id": 1}
