"""Feeds honour the proxy environment (http_proxy / no_proxy), hop by hop through redirects.

The "proxy" is a real loopback HTTP server that answers absolute-URI requests, the way a
forward proxy receives them; the feed's own host does not resolve, so a fetch that skipped
the proxy could not succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

import pytest

from cm_console.config import Config
from cm_console.feedserver import FeedServer
from cm_console.fetch import proxy_configured
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


def _redirect(location: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def handler(req: BaseHTTPRequestHandler) -> None:
        req.send_response(301)
        req.send_header("Location", location)
        req.send_header("Content-Length", "0")
        req.end_headers()
    return handler


def test_a_no_proxy_feed_moved_outside_takes_the_proxy_for_the_outside_hop(
        monkeypatch: pytest.MonkeyPatch, make_config: Callable[..., Config],
        feed_server: FeedServer) -> None:
    _clear_proxy_env(monkeypatch)
    feed_server.route("/moved.xml", _redirect(FEED_URL))
    with FeedServer() as proxy:
        proxy.add(FEED_URL, FEED)
        monkeypatch.setenv("http_proxy", proxy.url(""))
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        config = make_config([{"id": "a", "type": "rss", "url": feed_server.url("/moved.xml")}])
        results, _ = _poll(config)
        assert results["a"].status == "ok", results["a"].error
        assert proxy.hits[FEED_URL] == 1


def test_a_redirect_into_a_no_proxy_host_goes_direct(
        monkeypatch: pytest.MonkeyPatch, make_config: Callable[..., Config],
        feed_server: FeedServer) -> None:
    _clear_proxy_env(monkeypatch)
    feed_server.add("/new.xml", FEED)
    with FeedServer() as proxy:
        proxy.route(FEED_URL, _redirect(feed_server.url("/new.xml")))
        monkeypatch.setenv("http_proxy", proxy.url(""))
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        config = make_config([{"id": "a", "type": "rss", "url": FEED_URL}])
        results, _ = _poll(config)
        assert results["a"].status == "ok", results["a"].error
        assert feed_server.hits["/new.xml"] == 1
        assert proxy.hits[feed_server.url("/new.xml")] == 0


def test_no_proxy_covers_a_url_with_a_query_and_no_path(
        monkeypatch: pytest.MonkeyPatch, make_config: Callable[..., Config],
        feed_server: FeedServer) -> None:
    _clear_proxy_env(monkeypatch)
    feed_server.add("/", FEED)
    with FeedServer() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url(""))
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        url = f"http://127.0.0.1:{feed_server.port}?feed=rss2"
        results, _ = _poll(config := make_config([{"id": "a", "type": "rss", "url": url}]))
        assert config.sources[0].url == url
        assert sum(proxy.hits.values()) == 0, dict(proxy.hits)
        assert results["a"].status == "ok", results["a"].error


def test_only_a_named_proxy_turns_the_proxy_lookup_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without one, no per-request proxy lookup (the warm poll's fast path)."""
    _clear_proxy_env(monkeypatch)
    assert proxy_configured() is False
    monkeypatch.setenv("no_proxy", "localhost")
    assert proxy_configured() is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.lan:3128")
    assert proxy_configured() is True
