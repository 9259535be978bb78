"""Feeds honour the proxy environment (http_proxy / no_proxy), read once per poll cycle.

The "proxy" is a real loopback HTTP server that answers absolute-URI requests, the way a
forward proxy receives them; the feed's own host does not resolve, so a fetch that skipped
the proxy could not succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from cm_console.config import Config
from cm_console.feedserver import FeedServer
from cm_console.fetch import proxy_for
from cm_console.poller import Poller
from cm_console.store import Store

from .feeds import rss

FEED_URL = "http://feeds.cm-console.invalid/news.xml"  # .invalid never resolves (RFC 2606)
FEED = rss([{"guid": "p1", "title": "Through the proxy", "link": "http://example.com/p1",
             "date": 1_700_000_000}])


def _clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _poll(config: Config) -> tuple[dict[str, object], Store]:
    store = Store(config.store)
    with Poller(config, store) as poller:
        report = asyncio.run(poller.poll())
    return {r.source: r for r in report.results}, store


def test_feed_is_fetched_through_the_environment_proxy(
        monkeypatch: pytest.MonkeyPatch, make_config: Callable[..., Config]) -> None:
    _clear_proxy_env(monkeypatch)
    with FeedServer() as proxy:
        proxy.add(FEED_URL, FEED)  # a forward proxy sees the absolute URI as the path
        monkeypatch.setenv("http_proxy", proxy.url(""))
        config = make_config([{"id": "news", "type": "rss", "url": FEED_URL}])
        results, store = _poll(config)
        assert results["news"].status == "ok", results["news"].error
        assert [i.title for i in store.items(store.item_ids())] == ["Through the proxy"]
        assert proxy.hits[FEED_URL] == 1


def test_no_proxy_sends_the_host_direct(
        monkeypatch: pytest.MonkeyPatch, make_config: Callable[..., Config],
        feed_server: FeedServer) -> None:
    _clear_proxy_env(monkeypatch)
    feed_server.add("/direct.xml", FEED)
    with FeedServer() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url(""))
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        config = make_config([{"id": "direct", "type": "rss",
                               "url": feed_server.url("/direct.xml")}])
        results, _ = _poll(config)
        assert results["direct"].status == "ok", results["direct"].error
        assert feed_server.hits["/direct.xml"] == 1
        assert sum(proxy.hits.values()) == 0


def test_proxy_choice_per_url() -> None:
    proxies = {"http": "http://proxy.lan:3128", "https": "http://proxy.lan:3128",
               "no": "intranet.example,.corp.example"}
    assert proxy_for("http://feeds.example/a.xml", proxies) == "http://proxy.lan:3128"
    assert proxy_for("https://feeds.example/a.xml", proxies) == "http://proxy.lan:3128"
    assert proxy_for("http://intranet.example/a.xml", proxies) is None
    assert proxy_for("http://wiki.corp.example:8080/a.xml", proxies) is None
    assert proxy_for("http://feeds.example/a.xml", {}) is None
    # A TLS proxy (https://...) is not something aiohttp speaks to: go direct, not astray.
    assert proxy_for("http://feeds.example/a.xml", {"http": "https://proxy.lan"}) is None
