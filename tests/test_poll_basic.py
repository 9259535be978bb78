"""End to end: a real HTTP server, the real poller, the real store."""

from __future__ import annotations

import asyncio
import time

from cm_console.feedserver import FeedServer
from cm_console.poller import Poller
from cm_console.store import Store

from .feeds import atom, rss


def test_poll_stores_new_items_then_304(feed_server: FeedServer, make_config) -> None:
    now = time.time()
    url = feed_server.add("/a.xml", rss([
        {"guid": "1", "title": "First", "link": "http://example.com/1", "author": "Ann",
         "date": now - 60, "html": "<p>Hello <b>there</b></p>"},
        {"guid": "2", "title": "Second", "link": "/2", "date": now - 30},
    ]))
    config = make_config([{"id": "a", "type": "rss", "url": url}])
    store = Store(config.store)
    with Poller(config, store) as poller:
        report = asyncio.run(poller.poll())
        assert [r.status for r in report.results] == ["ok"]
        assert len(report.new_ids) == 2
        items = store.items(store.item_ids())
        assert [i.title for i in items] == ["Second", "First"]
        assert items[0].url == url.rsplit("/", 1)[0] + "/2"  # relative link resolved
        assert store.body(items[1].id)[0] == "Hello there"
        snapshot_mtime = config.store.stat().st_mtime_ns
        report = asyncio.run(poller.poll())
        assert [r.status for r in report.results] == ["304"]
        assert report.new_ids == []
        assert config.store.stat().st_mtime_ns == snapshot_mtime  # nothing rewritten


def test_same_guid_in_two_feeds_are_two_items(feed_server: FeedServer, make_config) -> None:
    a = feed_server.add("/a", rss([{"guid": "1", "title": "From A"}]))
    b = feed_server.add("/b", atom([{"id": "1", "title": "From B"}]))
    config = make_config([{"id": "a", "type": "rss", "url": a},
                          {"id": "b", "type": "rss", "url": b}])
    store = Store(config.store)
    with Poller(config, store) as poller:
        report = asyncio.run(poller.poll())
    assert len(report.new_ids) == 2
    assert sorted(i.title for i in store.items(store.item_ids())) == ["From A", "From B"]


def test_a_poll_that_adds_many_items_leaves_them_in_the_snapshot(
        feed_server: FeedServer, make_config) -> None:
    """A first poll of busy feeds folds its items into the snapshot, so the next open (a
    warm poll, the TUI) neither decodes them from the journal nor holds them twice."""
    from cm_console.store import PENDING_LIMIT

    now = time.time()
    urls = [feed_server.add(f"/busy{f}.xml", rss([
        {"guid": f"{f}-{i}", "title": f"Post {f}-{i}", "date": now - i} for i in range(400)]))
        for f in range(3)]
    config = make_config([{"id": f"busy{f}", "type": "rss", "url": u}
                          for f, u in enumerate(urls)])
    store = Store(config.store)
    with Poller(config, store) as poller:
        report = asyncio.run(poller.poll())
    assert len(report.new_ids) == 1200 >= PENDING_LIMIT
    journal = store.journal_path.read_bytes().splitlines()
    assert len(journal) == 1  # only the new generation's header
    reopened = Store(config.store)
    assert reopened.item_count() == 1200
    assert reopened.source_state("busy2").last_status == "ok"


def test_a_feed_longer_than_the_cap_says_it_was_cut(feed_server: FeedServer,
                                                    make_config) -> None:
    """Found by a newcomer: 5,000 entries came out as "2000 new (2000 in feed)"."""
    from cm_console.sources.rss import MAX_ENTRIES

    now = time.time()
    url = feed_server.add("/huge.xml", rss([{"guid": f"h{i}", "title": f"Post {i}",
                                             "date": now - i} for i in range(MAX_ENTRIES + 5)]))
    config = make_config([{"id": "huge", "type": "rss", "url": url}])
    store = Store(config.store)
    with Poller(config, store) as poller:
        [result] = asyncio.run(poller.poll()).results
    assert (result.status, result.new, result.entries) == ("ok", MAX_ENTRIES, MAX_ENTRIES)
    assert result.error == f"only the first {MAX_ENTRIES} entries are read"
    assert store.source_state("huge").last_error == ""  # a note, not a failure
