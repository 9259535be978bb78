"""Hacker News through a loopback Algolia: cursors, pagination, threads, 429, bad payloads,
and cross-source dedup (the same link from HN, Reddit and a blog is one conversation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from cm_console.config import Config
from cm_console.feedserver import FeedServer
from cm_console.poller import Poller
from cm_console.sources import hackernews, item_id
from cm_console.store import Store

from .api_server import ApiServer, Reply, Request, payload
from .feeds import atom, rss


class FakeAlgolia:
    """search_by_date as Algolia answers it: newest first, ``created_at_i>=N`` numeric
    filters, ``hitsPerPage``/``page`` pagination with ``nbPages``."""

    def __init__(self, hits: list[dict[str, Any]]):
        self.hits = list(hits)

    def __call__(self, req: Request) -> dict[str, Any]:
        hits = sorted(self.hits, key=lambda h: (h["created_at_i"], h["objectID"]),
                      reverse=True)
        for flt in req.query.get("numericFilters", []):
            name, _, value = flt.partition(">=")
            assert name == "created_at_i"
            hits = [h for h in hits if h["created_at_i"] >= int(value)]
        per_page = int(req.query["hitsPerPage"][0])
        page = int(req.query.get("page", ["0"])[0])
        pages = max(1, -(-len(hits) // per_page))
        return {"hits": hits[page * per_page:(page + 1) * per_page], "hitsPerPage": per_page,
                "nbHits": len(hits), "nbPages": pages, "page": page,
                "query": req.query["query"][0], "processingTimeMS": 1,
                "exhaustiveNbHits": True}


ALL = payload("hackernews", "hits.json")["hits"]


def poll(config: Config, store: Store) -> Any:
    with Poller(config, store) as poller:
        return asyncio.run(poller.poll())


@pytest.fixture
def api(feed_server: FeedServer) -> ApiServer:
    return ApiServer(feed_server)


def hn_source(api: ApiServer, **extra: object) -> dict[str, object]:
    return {"id": "hn", "type": "hackernews", "url": api.base, "query": "tessel", **extra}


def test_first_poll_then_only_newer_hits_across_pages(api: ApiServer,
                                                      make_config: Callable[..., Config],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    algolia = FakeAlgolia(ALL[:3])
    api.route("/search_by_date", algolia)
    config = make_config([hn_source(api)])
    store = Store(config.store)
    report = poll(config, store)
    assert [r.status for r in report.results] == ["ok"]
    assert len(report.new_ids) == 3
    first = api.made("GET", "/search_by_date")
    assert len(first) == 1 and "numericFilters" not in first[0].query  # newest page only
    assert first[0].query["tags"] == ["(story,comment)"]
    assert store.source_state("hn").cursor == {"since": 1793607600, "ids": ["42209876"]}

    # Three newer hits, two of them in the same second; two per page: the poller walks
    # pages from the cursor and skips the hit it already had at the boundary second.
    monkeypatch.setattr(hackernews, "HITS_PER_PAGE", 2)
    algolia.hits = list(ALL)
    api.clear()
    report = poll(config, store)
    assert sorted(i.split(":")[1] for i in report.new_ids) == sorted(
        item_id("hn", k).split(":")[1] for k in ("42211090", "42211091", "42211120"))
    asked = api.made("GET", "/search_by_date")
    assert [r.query["numericFilters"] for r in asked] == [["created_at_i>=1793607600"]] * 2
    assert [r.query["page"] for r in asked] == [["0"], ["1"]]
    assert store.source_state("hn").cursor == {"since": 1793611800, "ids": ["42211120"]}

    api.clear()
    report = poll(config, store)
    assert report.new_ids == [] and report.results[0].status == "ok"
    assert api.made()[0].query["numericFilters"] == ["created_at_i>=1793611800"]


def test_items_link_to_hn_and_thread_by_story(api: ApiServer,
                                              make_config: Callable[..., Config]) -> None:
    api.route("/search_by_date", FakeAlgolia(ALL))
    config = make_config([hn_source(api)])
    store = Store(config.store)
    poll(config, store)
    story = store.get_item(item_id("hn", "42211001"))
    comment = store.get_item(item_id("hn", "42211090"))
    ask = store.get_item(item_id("hn", "42209876"))
    assert story and comment and ask
    assert story.url == "https://news.ycombinator.com/item?id=42211001"
    assert story.title == "Show HN: I built a CLI for Tessel notes"
    assert story.thread == "link:https://github.com/pgrant/tessel-cli"  # utm_* stripped
    assert story.extra["link"].startswith("https://github.com/pgrant/tessel-cli")
    assert comment.thread == story.thread
    assert comment.parent == item_id("hn", "42211050")
    assert comment.title == "Re: Show HN: I built a CLI for Tessel notes"
    assert store.body(comment.id)[0] == "Yes, it streams them. Split above 25 MB for now."
    assert ask.thread == "hn:42209876"
    assert "Lifetime plan holders" in store.body(ask.id)[0]
    assert [i.id for i in store.thread_items(ask.thread)] == [
        item_id("hn", k) for k in ("42209876", "42211091", "42211120")]
    assert ask.author == "throwaway2026" and ask.published == 1793607600.0


def test_same_link_on_hn_reddit_and_a_blog_is_one_conversation(
        api: ApiServer, feed_server: FeedServer, make_config: Callable[..., Config]) -> None:
    api.route("/search_by_date", FakeAlgolia(ALL[:1]))
    now = time.time()
    blog = feed_server.add("/blog.xml", rss([
        {"guid": "b1", "title": "Why I wrote tessel-cli",
         "link": "http://WWW.github.com/pgrant/tessel-cli/#readme", "date": now - 3600},
        {"guid": "b2", "title": "Unrelated", "link": "https://github.com/pgrant/other",
         "date": now - 3600}]))
    reddit_html = ('submitted by <a href="https://www.reddit.com/user/x"> /u/x </a> <br/> '
                   '<span><a href="https://github.com/pgrant/tessel-cli?utm_campaign=r">'
                   '[link]</a></span> <span><a href="https://www.reddit.com/r/tesselapp/'
                   'comments/1h2k9z/a_cli_for_tessel/">[comments]</a></span>')
    reddit = feed_server.add("/r.rss", atom([
        {"id": "t3_1h2k9z", "title": "A CLI for Tessel",
         "link": "https://www.reddit.com/r/tesselapp/comments/1h2k9z/a_cli_for_tessel/",
         "html": reddit_html}]))
    config = make_config([hn_source(api), {"id": "blog", "type": "rss", "url": blog},
                          {"id": "reddit", "type": "reddit", "url": reddit}])
    store = Store(config.store)
    report = poll(config, store)
    assert [r.status for r in report.results] == ["ok", "ok", "ok"]
    story = store.get_item(item_id("hn", "42211001"))
    assert story is not None
    together = store.thread_items(story.thread)
    assert sorted(i.source for i in together) == ["blog", "hn", "reddit"]
    assert [i.title for i in together if i.source == "blog"] == ["Why I wrote tessel-cli"]


def test_429_with_retry_after_is_honoured_and_nothing_moves(
        api: ApiServer, feed_server: FeedServer, make_config: Callable[..., Config]) -> None:
    api.route("/search_by_date", Reply(429, {"message": "Too many requests"},
                                       {"Retry-After": "120"}))
    other = feed_server.add("/ok.xml", rss([{"guid": "1", "title": "Still polled"}]))
    config = make_config([hn_source(api), {"id": "blog", "type": "rss", "url": other}])
    store = Store(config.store)
    before = time.time()
    report = poll(config, store)
    by_source = {r.source: r for r in report.results}
    assert by_source["hn"].status == "error" and "429" in by_source["hn"].error
    assert by_source["blog"].status == "ok" and by_source["blog"].new == 1
    state = store.source_state("hn")
    assert before + 110 <= state.retry_after_until <= time.time() + 130
    assert state.cursor == {}
    report = poll(config, store)  # even an explicit poll waits for the server's time
    assert {r.source: r.status for r in report.results}["hn"] == "waiting"
    assert len(api.made()) == 1


@pytest.mark.parametrize("body", [
    b'{"hits": [{"objectID": "1", "created_at_i": 17',  # truncated
    b'{"hits": {"objectID": "1"}}',  # wrong type
    b'{"hits": [{"objectID": "1", "author": "a", "_tags": ["story"]}]}',  # no created_at_i
    b"<html>Service Unavailable</html>",  # not JSON at all
])
def test_malformed_payload_is_a_clear_error_and_stores_nothing(
        api: ApiServer, make_config: Callable[..., Config], body: bytes) -> None:
    api.route("/search_by_date", Reply(200, body))
    config = make_config([hn_source(api)])
    store = Store(config.store)
    report = poll(config, store)
    result = report.results[0]
    assert result.status == "error"
    assert result.error.startswith("hackernews") or "JSON" in result.error
    assert "internal error" not in result.error
    assert store.item_count() == 0
    assert store.source_state("hn").cursor == {}


def test_missing_query_is_a_per_source_error(api: ApiServer,
                                             make_config: Callable[..., Config]) -> None:
    config = make_config([{"id": "hn", "type": "hackernews", "url": api.base}])
    report = poll(config, Store(config.store))
    assert report.results[0].status == "error"
    assert "query" in report.results[0].error
