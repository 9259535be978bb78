"""Proves a broken, slow or hostile feed host only ever hurts its own source, never the poll."""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
import zlib
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler

import pytest

from cm_console.config import Config
from cm_console.feedserver import FeedServer
from cm_console.models import MAX_AUTHOR, MAX_HTML, MAX_TEXT, MAX_TITLE, SourceState
from cm_console.poller import CycleReport, Poller, SourceResult
from cm_console.sources import item_id
from cm_console.sources.rss import FeedError, check_dtd
from cm_console.store import Store

from .feeds import atom, rss

Handler = Callable[[BaseHTTPRequestHandler], None]
MakeConfig = Callable[..., Config]  # the conftest fixture
GOOD = rss([{"guid": "g1", "title": "Still here", "link": "http://example.com/1",
             "date": 1_700_000_000}])


def poll_settings(**overrides: object) -> dict[str, object]:
    return {"timeout": "5s", "parse_workers": 0, **overrides}


def poll(config: Config, store: Store | None = None) -> tuple[CycleReport, Store]:
    """One real poll cycle; returns the report and the store it wrote."""
    store = store or Store(config.store)
    with Poller(config, store) as poller:
        report = asyncio.run(poller.poll())
    return report, store


def by_source(report: CycleReport) -> dict[str, SourceResult]:
    return {r.source: r for r in report.results}


def respond(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Handler:
    """A handler that answers every request with this status, headers and body."""

    def handler(req: BaseHTTPRequestHandler) -> None:
        req.send_response(status)
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        try:
            req.wfile.write(body)
        except OSError:
            pass

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    return respond(status, {"Location": location})


def sources(**urls: str) -> list[dict[str, object]]:
    return [{"id": sid, "type": "rss", "url": url, "interval": "1m"} for sid, url in urls.items()]


# --------------------------------------------------------------------------- plain failures


def test_http_500_is_an_error_for_that_source_only(feed_server: FeedServer,
                                                    make_config: MakeConfig) -> None:
    bad = feed_server.route("/broken", respond(500, body=b"<h1>oops</h1>"))
    good = feed_server.add("/good", GOOD)
    config = make_config(sources(bad=bad, good=good))
    report, store = poll(config)
    results = by_source(report)
    assert results["bad"].status == "error"
    assert results["bad"].error.startswith("HTTP 500")
    assert results["good"].status == "ok" and results["good"].new == 1
    state = store.source_state("bad")
    assert state.last_status == "error" and state.error_count == 1
    assert state.last_error.startswith("HTTP 500")
    assert store.item_ids(source="good") == [item_id("good", "id:g1")]


def test_connection_refused_is_an_error(feed_server: FeedServer, make_config: MakeConfig) -> None:
    with FeedServer() as gone:
        url = gone.url("/feed")
    config = make_config(sources(gone=url, good=feed_server.add("/good", GOOD)))
    results = by_source(poll(config)[0])
    assert results["gone"].status == "error"
    assert "cannot connect" in results["gone"].error
    assert results["good"].status == "ok"


@pytest.mark.parametrize("mode", ["trickle-body", "silent-before-headers"])
def test_slow_server_ends_at_the_deadline_and_the_cycle_goes_on(
        feed_server: FeedServer, make_config: MakeConfig, mode: str) -> None:
    body = rss([{"guid": str(i), "title": f"slow {i}"} for i in range(50)])

    def slow(req: BaseHTTPRequestHandler) -> None:
        try:
            if mode == "silent-before-headers":
                time.sleep(12)
                return
            req.send_response(200)
            req.send_header("Content-Type", "application/rss+xml")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            for i in range(60):  # one byte every 0.2 s: each read succeeds, the whole never
                req.wfile.write(body[i:i + 1])
                req.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    config = make_config(sources(slow=feed_server.route("/slow", slow),
                                 good=feed_server.add("/good", GOOD)),
                         poll=poll_settings(timeout="2s"))
    started = time.monotonic()
    report, store = poll(config)
    took = time.monotonic() - started
    results = by_source(report)
    assert results["slow"].status == "error"
    assert results["slow"].error == "no complete response within 2s"
    assert 1.8 <= took < 6.0  # the server would go on for 12 s
    assert results["good"].status == "ok"
    assert store.item_count() == 1
    assert store.source_state("slow").last_error == "no complete response within 2s"


@pytest.mark.parametrize("body, parser", [
    # Truncated mid-item: not well-formed, feedparser's lenient parser recovers what it can.
    (b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
     b"<item><guid>a</guid><title>Complete</title></item><item><guid>b</guid><title>Cut",
     "feedparser"),
    # Unescaped ampersand and an undefined entity, as broken CMSs produce.
    (b'<rss version="2.0"><channel><title>Q&A</title><item><guid>a</guid>'
     b"<title>Tom &amp; Jerry &nbsp; &copy;</title></item></channel></rss>", "feedparser"),
])
def test_malformed_xml_falls_back_to_feedparser(feed_server: FeedServer, make_config: MakeConfig,
                                                body: bytes, parser: str) -> None:
    config = make_config(sources(broken=feed_server.add("/broken", body)))
    results = by_source(poll(config)[0])
    assert results["broken"].status == "ok"
    assert results["broken"].parser == parser
    assert results["broken"].new >= 1


@pytest.mark.parametrize("body, message", [
    (b"\x00\x01\x02\xff not xml at all", "not a feed"),
    (b"<html><head><title>Login</title></head><body><p>Sign in</p></body></html>",
     "not an RSS or Atom feed"),
    (b'{"items": []}', "not a feed"),
    (b"", "empty response body"),
    (b"   \n\t  ", "empty response body"),
])
def test_non_feeds_are_errors_not_crashes(
        feed_server: FeedServer, make_config: MakeConfig, body: bytes, message: str) -> None:
    config = make_config(sources(junk=feed_server.add("/junk", body, "text/html"),
                                 good=feed_server.add("/good", GOOD)))
    results = by_source(poll(config)[0])
    assert results["junk"].status == "error"
    assert message in results["junk"].error
    assert results["good"].status == "ok"


# --------------------------------------------------------------------------- encodings, caps


def test_gzip_response_is_decoded(feed_server: FeedServer, make_config: MakeConfig) -> None:
    feed = rss([{"guid": str(i), "title": f"zipped {i}"} for i in range(20)])
    seen: dict[str, str] = {}

    def zipped(req: BaseHTTPRequestHandler) -> None:
        seen["accept-encoding"] = req.headers.get("Accept-Encoding", "")
        seen["user-agent"] = req.headers.get("User-Agent", "")
        respond(200, {"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"},
                gzip.compress(feed))(req)

    config = make_config(sources(z=feed_server.route("/z", zipped)))
    report, store = poll(config)
    assert by_source(report)["z"].status == "ok"
    assert "gzip" in seen["accept-encoding"]
    assert seen["user-agent"].startswith("cm-console/")  # a descriptive User-Agent
    assert sorted(i.title for i in store.items(store.item_ids())) == sorted(
        f"zipped {i}" for i in range(20))


def test_deflate_response_is_decoded(feed_server: FeedServer, make_config: MakeConfig) -> None:
    feed = rss([{"guid": "d", "title": "deflated"}])
    config = make_config(sources(d=feed_server.route("/d", respond(
        200, {"Content-Encoding": "deflate"}, zlib.compress(feed)))))
    report, store = poll(config)
    assert by_source(report)["d"].status == "ok"
    assert [i.title for i in store.items(store.item_ids())] == ["deflated"]


def _gzip_of_zeros(megabytes: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * 1_000_000
    parts = [z.compress(chunk) for _ in range(megabytes)]
    parts.append(z.flush())
    return b"".join(parts)


def test_gzip_bomb_stops_at_the_decoded_cap(
        feed_server: FeedServer, make_config: MakeConfig) -> None:
    bomb = _gzip_of_zeros(200)  # ~200 KB on the wire, 200 MB decoded
    assert len(bomb) < 1_000_000
    config = make_config(sources(
        bomb=feed_server.route("/bomb", respond(200, {"Content-Encoding": "gzip"}, bomb)),
        good=feed_server.add("/good", GOOD),
    ), poll=poll_settings(max_bytes="1MB"))
    store = Store(config.store)
    tracemalloc.start()
    try:
        report, _ = poll(config, store)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    results = by_source(report)
    assert results["bomb"].status == "error"
    assert results["bomb"].error == "response larger than 1,000,000 bytes (decoded); refused"
    assert peak < 30_000_000, f"peak {peak:,} bytes while refusing a bomb"
    assert results["good"].status == "ok"


def test_content_length_over_the_cap_is_refused_before_reading(feed_server: FeedServer,
                                                                make_config: MakeConfig) -> None:
    big = respond(200, {"Content-Length": "50000000", "Content-Type": "application/rss+xml"},
                  b"<rss>" + b" " * 1000)
    config = make_config(sources(big=feed_server.route("/big", big)),
                         poll=poll_settings(max_bytes="1MB"))
    results = by_source(poll(config)[0])
    assert results["big"].status == "error"
    assert results["big"].error == "response is 50,000,000 bytes; the limit is 1,000,000"


def test_plain_body_over_the_cap_without_length_is_refused(feed_server: FeedServer,
                                                           make_config: MakeConfig) -> None:
    def endless(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "application/rss+xml")
        req.send_header("Transfer-Encoding", "chunked")
        req.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range(100):  # 6.5 MB if nobody stops reading
                req.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            req.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass

    config = make_config(sources(endless=feed_server.route("/endless", endless)),
                         poll=poll_settings(max_bytes="1MB"))
    results = by_source(poll(config)[0])
    assert results["endless"].status == "error"
    assert "larger than 1,000,000 bytes" in results["endless"].error


# --------------------------------------------------------------------------- redirects


def test_redirect_is_followed_and_links_resolve_against_the_final_url(
        feed_server: FeedServer, make_config: MakeConfig) -> None:
    feed_server.add("/new/feed.xml", rss([{"guid": "r1", "title": "Moved", "link": "post/1"}]))
    feed_server.route("/old", redirect("/new/feed.xml", 301))
    config = make_config(sources(moved=feed_server.url("/old")))
    report, store = poll(config)
    assert by_source(report)["moved"].status == "ok"
    [item] = store.items(store.item_ids())
    assert item.title == "Moved"
    assert item.url == feed_server.url("/new/post/1")


def test_redirect_loop_is_an_error(feed_server: FeedServer, make_config: MakeConfig) -> None:
    feed_server.route("/loop", redirect("/loop"))
    config = make_config(sources(loop=feed_server.url("/loop"),
                                 good=feed_server.add("/good", GOOD)),
                         poll=poll_settings(max_redirects=3))
    report, _ = poll(config)
    results = by_source(report)
    assert results["loop"].status == "error"
    assert results["loop"].error == "too many redirects"
    assert feed_server.hits["/loop"] <= 4
    assert results["good"].status == "ok"


def test_redirect_chain_longer_than_the_limit_is_an_error(feed_server: FeedServer,
                                                          make_config: MakeConfig) -> None:
    for i in range(4):
        feed_server.route(f"/hop{i}", redirect(f"/hop{i + 1}"))
    feed_server.add("/hop4", GOOD)
    short = make_config(sources(hops=feed_server.url("/hop0")),
                        poll=poll_settings(max_redirects=3))
    assert by_source(poll(short)[0])["hops"].error == "too many redirects"
    long_enough = make_config(sources(hops=feed_server.url("/hop0")),
                              poll=poll_settings(max_redirects=4))
    assert by_source(poll(long_enough)[0])["hops"].status == "ok"


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/feed.xml",
                                    "gopher://127.0.0.1/1", "data:text/xml,<rss/>"])
def test_redirect_to_another_scheme_is_an_error(feed_server: FeedServer, make_config: MakeConfig,
                                                target: str) -> None:
    config = make_config(sources(sneaky=feed_server.route("/sneaky", redirect(target)),
                                 good=feed_server.add("/good", GOOD)))
    report, store = poll(config)
    results = by_source(report)
    assert results["sneaky"].status == "error"
    assert "redirect or URL" in results["sneaky"].error  # a FetchError, not "internal error"
    assert not results["sneaky"].error.startswith("internal error")
    assert store.item_ids(source="sneaky") == []
    assert results["good"].status == "ok"


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_even_by_a_forced_poll(
        feed_server: FeedServer, make_config: MakeConfig, status: int) -> None:
    url = feed_server.route("/busy", respond(status, {"Retry-After": "120"}))
    config = make_config(sources(busy=url, good=feed_server.add("/good", GOOD)))
    before = time.time()
    report, store = poll(config)
    after = time.time()
    result = by_source(report)["busy"]
    assert result.status == "error"
    assert result.error.startswith(f"HTTP {status}") and "Retry-After 120s" in result.error
    state = store.source_state("busy")
    assert before + 120 <= state.retry_after_until <= after + 120
    assert state.next_due >= state.retry_after_until
    assert feed_server.hits["/busy"] == 1

    report, store = poll(config, store)  # poll() = --once: every source, "now"
    result = by_source(report)["busy"]
    assert result.status == "waiting"
    assert "server asked to wait until" in result.error
    assert feed_server.hits["/busy"] == 1  # the server was not asked again
    assert by_source(report)["good"].status in ("304", "ok")
    with Poller(config, store) as poller:  # and --due does not even consider it
        assert [s.id for s in poller.due()] == []


@pytest.mark.parametrize("value", ["999999999", "NaN", "inf", "1e400",
                                   "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_absurd_retry_after_is_clamped(feed_server: FeedServer, make_config: MakeConfig,
                                       value: str) -> None:
    url = feed_server.route("/absurd", respond(429, {"Retry-After": value}))
    config = make_config(sources(absurd=url), poll=poll_settings(max_retry_after="1h"))
    before = time.time()
    report, store = poll(config)
    after = time.time()
    assert by_source(report)["absurd"].status == "error"
    until = store.source_state("absurd").retry_after_until
    assert before + 3600 <= until <= after + 3600


@pytest.mark.parametrize("value, wait", [("0", 1.0), ("-30", 1.0), ("soon", None),
                                         ("", None)])
def test_tiny_or_unparseable_retry_after(
        feed_server: FeedServer, make_config: MakeConfig, value: str,
        wait: float | None) -> None:
    url = feed_server.route("/x", respond(429, {"Retry-After": value}))
    config = make_config(sources(x=url))
    before = time.time()
    _, store = poll(config)
    state = store.source_state("x")
    if wait is None:
        assert state.retry_after_until == 0.0
        assert state.next_due >= before + 0.8 * 60  # ordinary backoff still applies
    else:
        assert before + wait <= state.retry_after_until <= time.time() + wait


def test_retry_after_http_date_is_understood(
        feed_server: FeedServer, make_config: MakeConfig) -> None:
    when = time.time() + 600
    url = feed_server.route("/d", respond(503, {"Retry-After": formatdate(when, usegmt=True)}))
    config = make_config(sources(d=url))
    _, store = poll(config)
    assert abs(store.source_state("d").retry_after_until - when) < 3


# --------------------------------------------------------------------------- entity attacks


_LAUGHS = ('<!DOCTYPE rss [<!ENTITY a "' + "ha" * 500 + '">'
           '<!ENTITY b "' + "&a;" * 500 + '"><!ENTITY c "' + "&b;" * 500 + '">]>')


def _entity_feed(encoding: str, decl: str) -> bytes:
    text = (f'<?xml version="1.0" encoding="{decl}"?>{_LAUGHS}<rss version="2.0"><channel>'
            "<title>t</title><item><guid>1</guid><title>&c;</title><description>&c;&c;"
            "</description></item></channel></rss>")
    return text.encode(encoding)


@pytest.mark.parametrize("body", [
    _entity_feed("utf-8", "utf-8"),
    _entity_feed("utf-16", "UTF-16"),  # with a BOM
    _entity_feed("utf-16-le", "UTF-16"),  # no BOM: sniffed from '<?' by every XML parser
    _entity_feed("utf-16-be", "UTF-16"),
    _entity_feed("utf-32-le", "UTF-32"),
    # Not well-formed too, so the lenient fallback would be the one to see the entities.
    _entity_feed("utf-16-le", "UTF-16")[:-20],
    b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<rss version="2.0"><channel><item><guid>1</guid><title>&xxe;</title></item>'
    b"</channel></rss>",
    b'<?xml version="1.0"?><!doctype rss\n[\n<!entity x "y">]><rss/>',
    # A comment that looks like an element must not end the prolog before the DOCTYPE.
    b'<?xml version="1.0"?><!-- <a> --><?pi <b>?>' + _LAUGHS.encode() +
    b'<rss version="2.0"><channel><item><guid>1</guid><title>&c;</title></item>'
    b"</channel></rss>",
    # A quoted ">" in the DOCTYPE must not hide the internal subset after it.
    b'<?xml version="1.0"?><!DOCTYPE rss PUBLIC "-//a>b//EN" "x" [<!ENTITY x "y">]><rss/>',
], ids=["utf8", "utf16-bom", "utf16le", "utf16be", "utf32le", "utf16le-broken", "xxe",
        "lowercase", "comment-first", "quoted-gt"])
def test_inline_dtd_with_entities_is_refused(feed_server: FeedServer, make_config: MakeConfig,
                                             body: bytes) -> None:
    config = make_config(sources(laughs=feed_server.add("/laughs", body),
                                 good=feed_server.add("/good", GOOD)))
    report, store = poll(config)
    results = by_source(report)
    assert results["laughs"].status == "error"
    assert "inline DTD" in results["laughs"].error
    assert store.item_ids(source="laughs") == []
    assert results["good"].status == "ok"


_ENTS = ('<!ENTITY a "' + "ha" * 20 + '"><!ENTITY b "' + "&a;" * 20 + '">'
         '<!ENTITY c "' + "&b;" * 20 + '">')
_ROOT = ('<rss version="2.0"><item><title>t</title><description>&c;</description>'
         "<guid>g</guid></item></rss>")


@pytest.mark.parametrize("body", [
    # Quoted literals in the DOCTYPE may hold ">" and "<a>": neither ends it.
    f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "x<a>" [{_ENTS}]>{_ROOT}'.encode(),
    f'<?xml version="1.0"?><!DOCTYPE rss PUBLIC "<a>" "y" [{_ENTS}]>{_ROOT}'.encode(),
    f"<?xml version='1.0'?><!DOCTYPE rss SYSTEM 'x<a>' [{_ENTS}]>{_ROOT}".encode(),
    f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "x>" [<!-- <a> -->{_ENTS}]>{_ROOT}'.encode(),
    f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "x>" [<?p <a>?>{_ENTS}]>{_ROOT}'.encode(),
    f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "x>" [<!ENTITY z "<a>">{_ENTS}]>{_ROOT}'.encode(),
    # Stray bytes before the prolog's constructs: the whole body is searched.
    b"\xef\xbb\xbf\xef\xbb\xbf" + f"<!-- <a> --><!DOCTYPE rss [{_ENTS}]>{_ROOT}".encode(),
    b"\xc2\xa0" + f"<!-- <a> --><!DOCTYPE rss [{_ENTS}]>{_ROOT}".encode(),
    # The same trick in the encodings feedparser decodes.
    ('\ufeff<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE rss SYSTEM "x<a>" '
     f"[{_ENTS}]>{_ROOT}").encode("utf-16-le"),
    ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE rss SYSTEM "x<a>" '
     f"[{_ENTS}]>{_ROOT}").encode("utf-16-be"),
    ('<?xml version="1.0" encoding="UTF-32"?><!DOCTYPE rss SYSTEM "x<a>" '
     f"[{_ENTS}]>{_ROOT}").encode("utf-32"),
    ('<?xml version="1.0" encoding="cp037"?><!DOCTYPE rss SYSTEM "x<a>" '
     f"[{_ENTS}]>{_ROOT}").encode("cp037"),
], ids=["literal-lt", "public-lt", "single-quotes", "gt-then-comment", "gt-then-pi",
        "gt-then-entity-value", "two-boms", "nbsp", "utf16le-bom", "utf16be", "utf32",
        "ebcdic"])
def test_prolog_tricks_do_not_hide_an_internal_subset(body: bytes) -> None:
    """Found in review: each of these passed the first prolog-only check, and feedparser
    then expanded the entities."""
    with pytest.raises(FeedError, match="inline DTD"):
        check_dtd(body)


def test_a_post_quoting_an_entity_declaration_is_text_not_a_dtd(
        feed_server: FeedServer, make_config: MakeConfig) -> None:
    """Security blogs publish XXE examples: inside an entry they are content, and refusing
    the feed for them would silence the source for good."""
    example = '<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>'
    body = ('<?xml version="1.0"?><!DOCTYPE rss><rss version="2.0"><channel><title>t</title>'
            '<item><guid>xxe-post</guid><title>How XXE works</title>'
            "<content:encoded xmlns:content='http://purl.org/rss/1.0/modules/content/'>"
            f"<![CDATA[<p>Send this:</p><pre>{example.replace('<', '&lt;')}</pre>"
            f"<!-- pasted raw by the author: -->{example}]]>"
            "</content:encoded></item></channel></rss>").encode()
    config = make_config(sources(blog=feed_server.add("/xxe-blog", body)))
    report, store = poll(config)
    result = by_source(report)["blog"]
    assert result.status == "ok", result.error
    [iid] = store.item_ids(source="blog")
    assert store.get_item(iid).title == "How XXE works"  # type: ignore[union-attr]
    text, _html = store.body(iid)
    assert '<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;' in text  # as escaped


def test_external_dtd_is_never_fetched(feed_server: FeedServer, make_config: MakeConfig) -> None:
    feed_server.add("/evil.dtd", b'<!ENTITY t "pwned">', "application/xml-dtd")
    body = (f'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "{feed_server.url("/evil.dtd")}">'
            '<rss version="2.0"><channel><title>t</title><item><guid>1</guid>'
            "<title>plain</title></item></channel></rss>").encode()
    config = make_config(sources(ext=feed_server.add("/ext", body)))
    report, store = poll(config)
    assert by_source(report)["ext"].status == "ok"
    assert [i.title for i in store.items(store.item_ids())] == ["plain"]
    assert feed_server.hits["/evil.dtd"] == 0


# --------------------------------------------------------------------------- identity, 304


def test_duplicate_guids_across_feeds_stay_separate_items(feed_server: FeedServer,
                                                          make_config: MakeConfig) -> None:
    entries = [{"guid": str(i), "title": f"post {i}", "link": f"http://example.com/{i}"}
               for i in range(1, 4)]
    same = rss(entries)
    config = make_config(sources(
        a=feed_server.add("/a", same), b=feed_server.add("/b", same),
        c=feed_server.add("/c", atom([{"id": "1", "title": "atom 1"}])),
        dup=feed_server.add("/dup", rss([{"guid": "x", "title": "first"},
                                         {"guid": "x", "title": "again"}])),
    ))
    report, store = poll(config)
    assert len(report.new_ids) == 3 + 3 + 1 + 1
    for src in ("a", "b"):
        assert len(store.item_ids(source=src)) == 3
    assert item_id("a", "id:1") != item_id("b", "id:1") != item_id("c", "id:1")
    assert [i.title for i in store.items(store.item_ids(source="dup"))] == ["first"]
    # Re-polled with changed bytes (so it is parsed again) but the same entries: no new items.
    feed_server.add("/a", rss(entries, title="renamed"))
    feed_server.add("/b", rss(entries, title="renamed too"))
    report, store = poll(config, store)
    assert {r.source: r.status for r in report.results} == {
        "a": "ok", "b": "ok", "c": "304", "dup": "304"}
    assert {r.source: r.entries for r in report.results}["a"] == 3
    assert report.new_ids == []
    assert store.item_count() == 8


def test_304_on_the_second_poll_rewrites_nothing(feed_server: FeedServer,
                                                 make_config: MakeConfig) -> None:
    seen: list[str] = []
    feed_server.add("/real", rss([{"guid": str(i), "title": f"p{i}"} for i in range(30)]))

    def spy(req: BaseHTTPRequestHandler) -> None:
        seen.append(req.headers.get("If-None-Match") or "")
        req.path = "/real"
        feed_server._serve(req)

    config = make_config(sources(feed=feed_server.route("/feed", spy)))
    report, store = poll(config)
    assert by_source(report)["feed"].status == "ok" and len(report.new_ids) == 30
    snapshot = config.store.stat()
    bodies = store.bodies_path.read_bytes()
    journal_lines = len(store.journal_path.read_bytes().splitlines())

    report, store = poll(config, store)
    assert by_source(report)["feed"].status == "304"
    assert report.new_ids == []
    assert seen[-1].startswith('"')  # the ETag went back as If-None-Match
    again = config.store.stat()
    assert (again.st_ino, again.st_mtime_ns, again.st_size) == (
        snapshot.st_ino, snapshot.st_mtime_ns, snapshot.st_size)
    assert store.bodies_path.read_bytes() == bodies
    # Only the poll bookkeeping was appended: one journal line for the whole cycle.
    assert len(store.journal_path.read_bytes().splitlines()) == journal_lines + 1
    assert store.source_state("feed").last_status == "304"


def test_server_without_conditional_get_is_not_reparsed(feed_server: FeedServer,
                                                        make_config: MakeConfig) -> None:
    feed_server.conditional = False  # no ETag, no Last-Modified, never 304
    config = make_config(sources(f=feed_server.add("/feed", rss([{"guid": "1"}]))))
    first, store = poll(config)
    second, store = poll(config, store)
    assert by_source(first)["f"].status == "ok"
    assert by_source(second)["f"].status == "unchanged"
    assert by_source(second)["f"].parser == ""  # same bytes: no parser ran
    assert store.source_state("f").last_status == "unchanged"


# --------------------------------------------------------------------------- backoff


def test_error_backoff_grows_and_success_resets_it(feed_server: FeedServer,
                                                   make_config: MakeConfig) -> None:
    feed_server.route("/flaky", respond(500))
    config = make_config(sources(flaky=feed_server.url("/flaky")),
                         poll=poll_settings(max_backoff="10m"))
    store = Store(config.store)
    delays = []
    for _ in range(6):
        before = time.time()
        poll(config, store)
        state = store.source_state("flaky")
        delays.append(state.next_due - before)
    assert store.source_state("flaky").error_count == 6
    # The 60 s interval doubles (±20 % jitter: 60, 120, 240, 480), then stops at 10 min.
    assert 48 <= delays[0] <= 73
    assert delays[0] < delays[1] < delays[2] < delays[3]
    assert 384 <= delays[3] <= 577
    assert all(600 * 0.8 <= d <= 600 * 1.2 + 1 for d in delays[4:])

    del feed_server.handlers["/flaky"]
    feed_server.add("/flaky", GOOD)
    before = time.time()
    report, store = poll(config, store)
    assert by_source(report)["flaky"].status == "ok"
    state = store.source_state("flaky")
    assert (state.error_count, state.last_error, state.last_status) == (0, "", "ok")
    assert before + 60 <= state.next_due <= time.time() + 60
    assert state.last_success >= before


def test_backoff_jitter_spreads_sources(feed_server: FeedServer, make_config: MakeConfig) -> None:
    feed_server.route("/down", respond(500))
    config = make_config([{"id": f"s{i}", "type": "rss", "url": feed_server.url("/down"),
                           "interval": "1m"} for i in range(12)])
    _, store = poll(config)
    delays = [store.source_state(f"s{i}").next_due - store.source_state(f"s{i}").last_poll
              for i in range(12)]
    assert all(48 <= d <= 72 for d in delays)  # the 60 s interval ±20 %
    assert max(delays) - min(delays) > 5  # not all retrying at the same instant


# --------------------------------------------------------------------------- hostile content


def test_hostile_titles_are_stored_safe_and_literal(feed_server: FeedServer,
                                                    make_config: MakeConfig) -> None:
    titles = {
        "markup": ("Price [/b] drop", "Price [/b] drop"),
        "action": ("[@click=app.quit]x", "[@click=app.quit]x"),
        "bidi": ("invoice\u202egnp.exe", "invoicegnp.exe"),
        "isolate": ("a\u2066b\u2069c", "abc"),
        "zw": ("ad\u200bmin\u200d\ufeff", "admin"),
        "tabs": ("line\none\ttwo", "line one two"),
    }
    fast = rss([{"guid": key, "title": raw, "author": "[red]Mallory[/red]\u202e",
                 "html": "<p>hi\u200b <script>alert(1)</script><b>there</b></p>"}
                for key, (raw, _) in titles.items()])
    # Raw ESC bytes are not even legal XML: this feed goes through the lenient fallback.
    ansi = (b'<rss version="2.0"><channel><title>x</title>'
            b"<item><guid>ansi</guid><title>\x1b[31mred\x1b[0m alert\x07</title>"
            b"<dc:creator xmlns:dc='http://purl.org/dc/elements/1.1/'>\x1b]0;pwned\x07Eve"
            b"</dc:creator><description>body \x1b[2J\x1b[H cleared?</description></item>"
            b"</channel></rss>")
    config = make_config(sources(fast=feed_server.add("/fast", fast),
                                 ansi=feed_server.add("/ansi", ansi)))
    report, store = poll(config)
    assert {r.source: r.status for r in report.results} == {"fast": "ok", "ansi": "ok"}
    for key, (_, expected) in titles.items():
        item = store.get_item(item_id("fast", "id:" + key))
        assert item is not None and item.title == expected, key
        assert item.author == "[red]Mallory[/red]"
        text, html = store.body(item.id)
        assert text == "hi there"
        assert "<script>" in html  # the original HTML is kept; only the text is shown
    ansi_item = store.get_item(item_id("ansi", "id:ansi"))
    assert ansi_item is not None
    assert ansi_item.title == "red alert"
    assert ansi_item.author == "Eve"
    text, _ = store.body(ansi_item.id)
    assert text == "body cleared?"
    for item in store.items(store.item_ids()):
        for value in (item.title, item.author, item.summary, store.body(item.id)[0]):
            assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in value)
            assert not set(value) & set("\x1b\u202e\u2066\u2069\u200b\u200d\ufeff")


def test_unsafe_links_are_dropped(feed_server: FeedServer, make_config: MakeConfig) -> None:
    feed = rss([
        {"guid": "js", "title": "js", "link": "javascript:alert(document.cookie)"},
        {"guid": "data", "title": "data", "link": "data:text/html,<script>x</script>"},
        {"guid": "file", "title": "file", "link": "file:///etc/passwd"},
        {"guid": "ok", "title": "ok", "link": "https://example.com/a?b=c#d"},
    ])
    config = make_config(sources(links=feed_server.add("/links", feed)))
    _, store = poll(config)
    urls = {i.title: i.url for i in store.items(store.item_ids())}
    assert urls == {"js": "", "data": "", "file": "", "ok": "https://example.com/a?b=c#d"}


def test_future_dates_are_clamped_to_fetch_time(
        feed_server: FeedServer, make_config: MakeConfig) -> None:
    feed = rss([{"guid": "future", "title": "from 2099", "date": 4_070_908_800},
                {"guid": "past", "title": "old", "date": 1_600_000_000},
                {"guid": "none", "title": "undated"}])
    config = make_config(sources(f=feed_server.add("/f", feed)))
    before = time.time()
    _, store = poll(config)
    after = time.time()
    items = {i.title: i for i in store.items(store.item_ids())}
    assert before <= items["from 2099"].published <= after
    assert items["from 2099"].published == items["from 2099"].fetched
    assert items["undated"].published == items["undated"].fetched
    assert items["old"].published == 1_600_000_000
    # The clamped item sorts as "now", not pinned above everything forever.
    assert store.item_ids()[-1] == items["old"].id


def test_every_stored_field_is_capped(feed_server: FeedServer, make_config: MakeConfig) -> None:
    huge_title = "T" * 1_000_000
    feed = rss([{"guid": "g" * 5000, "title": huge_title, "author": "A" * 100_000,
                 "link": "https://example.com/" + "p" * 10_000,
                 "html": "<p>" + "word " * 400_000 + "</p>"}])
    assert len(feed) > 3_000_000
    config = make_config(sources(big=feed_server.add("/big", feed)))
    report, store = poll(config)
    assert by_source(report)["big"].status == "ok"
    [item] = store.items(store.item_ids())
    assert len(item.title) <= MAX_TITLE and item.title.startswith("TTT")
    assert len(item.author) <= MAX_AUTHOR
    assert item.url == ""  # over the URL cap: dropped rather than cut into another URL
    assert len(item.guid) <= 1100
    text, html = store.body(item.id)
    assert len(text) <= MAX_TEXT and len(html) <= MAX_HTML
    assert len(item.summary) <= 280
    assert store.bodies_path.stat().st_size < 1_000_000


# --------------------------------------------------------------------------- one hostile cycle


def test_one_cycle_of_everything_hostile_still_stores_the_good_feed(
        feed_server: FeedServer, make_config: MakeConfig) -> None:
    """Through the real parse worker processes, as `cm-console poll` runs by default."""
    hostile = {
        "e500": feed_server.route("/e500", respond(500)),
        "bomb": feed_server.route("/bomb", respond(200, {"Content-Encoding": "gzip"},
                                                   _gzip_of_zeros(20))),
        "loop": feed_server.route("/loop", redirect("/loop")),
        "file": feed_server.route("/file", redirect("file:///etc/passwd")),
        "laughs": feed_server.add("/laughs", _entity_feed("utf-16-le", "UTF-16")),
        "busy": feed_server.route("/busy", respond(429, {"Retry-After": "NaN"})),
        "junk": feed_server.add("/junk", b"\x89PNG\r\n\x1a\n" + bytes(range(256))),
        "broken": feed_server.add("/broken", b"<rss><channel><item><guid>1</guid><title>ok"),
    }
    config = make_config(sources(good=feed_server.add("/good", GOOD), **hostile),
                         poll=poll_settings(max_bytes="1MB", parse_workers=1))
    report, store = poll(config)
    results = by_source(report)
    assert results["good"].status == "ok" and results["good"].parser == "fast"
    assert results["broken"].status == "ok" and results["broken"].parser == "feedparser"
    for sid in hostile.keys() - {"broken"}:
        assert results[sid].status == "error", (sid, results[sid])
        state: SourceState = store.source_state(sid)
        assert state.last_error == results[sid].error and state.error_count == 1
    assert store.item_ids(source="good") == [item_id("good", "id:g1")]
