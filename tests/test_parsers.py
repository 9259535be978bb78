"""Proves the fast lxml parser stores exactly what feedparser (the reference) would store."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from cm_console.models import ParsedEntry
from cm_console.sources.rss import FeedError, parse_feed

CORPUS = Path(__file__).parent / "data" / "feeds"
FILES = sorted(p.name for p in CORPUS.iterdir())
BASE = "https://feeds.example.com/watch/feed.xml"
# Feeds the fast path hands to feedparser on purpose (it does not implement xml:base).
FEEDPARSER_ONLY = {"atom-xml-base.atom"}


def both(body: bytes, base: str = BASE) -> tuple[list[ParsedEntry], list[ParsedEntry]]:
    fast, _ = parse_feed(body, base)
    ref, ref_name = parse_feed(body, base, reference=True)
    assert ref_name == "feedparser"
    return fast, ref


def entries(name: str) -> dict[str, ParsedEntry]:
    parsed, _ = parse_feed((CORPUS / name).read_bytes(), BASE)
    return {e.title: e for e in parsed}


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 8
    assert {"wordpress-comments.rss", "discourse-latest.rss", "mastodon-tag.rss",
            "reddit.atom", "rss1.rdf", "atom-xhtml.atom", "relative-links.rss",
            "no-guids.rss"} <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_fast_path_and_feedparser_store_identical_entries(name: str) -> None:
    body = (CORPUS / name).read_bytes()
    fast, fast_name = parse_feed(body, BASE)
    ref, ref_name = parse_feed(body, BASE, reference=True)
    assert ref_name == "feedparser"
    assert fast_name == ("feedparser" if name in FEEDPARSER_ONLY else "fast")
    assert len(fast) >= 1
    # Every field: key (so the item id), url, title, author, date, text, html, summary.
    assert fast == ref
    keys = [e.key for e in fast]
    assert len(keys) == len(set(keys)), "two entries of one feed share a key"


# --------------------------------------------------------------------------- what is stored


def test_wordpress_comments_use_the_full_comment_html() -> None:
    got = entries("wordpress-comments.rss")
    comment = got["Comment on Announcing the 4.2 release by Jürgen Weiß"]
    assert comment.author == "Jürgen Weiß"
    assert comment.key == "id:https://blog.example.com/?p=4211#comment-18234"
    assert comment.url == "https://blog.example.com/2026/10/announcing-4-2/#comment-18234"
    assert comment.html.startswith("<p>Since the update")
    assert "<strong>Team</strong>" in comment.html
    assert comment.text == ("Since the update my exports are empty. Is there a known issue? "
                            "I’m on the Team plan.\n\nScreenshot: https://imgur.example/a/xyz")
    assert comment.published == calendar.timegm((2026, 11, 3, 9, 14, 2))
    pricing = next(e for t, e in got.items() if "pricing" in t)
    assert pricing.title == "Comment on Why we changed our pricing by “disappointed customer”"
    assert "• Order #A-99812" in pricing.text


def test_atom_plain_text_is_shown_as_written_not_read_as_markup() -> None:
    """Atom's type="text" (the default) holds characters: "<b>" is four of them. Both
    parsers agree (the corpus parity test covers this file too)."""
    got = entries("atom-text.atom")
    tag = got["Why a <b> tag showed up in the export"]
    assert tag.text == ("If a < b and b < c then a < c.\n"
                        "Type <script>alert(1)</script> into the box: it is shown, never run.\n"
                        "Tom & Jerry")
    assert "&lt;script&gt;" in tag.html and "<script>" not in tag.html  # stored escaped
    plain = got["Plain summary, no content"]
    assert plain.text == "Use <br> for a line break & keep going"
    html = got["An HTML title"]  # type="html" is still markup
    assert html.text == "Real markup here"


def test_mastodon_posts_are_the_post_not_the_image_alt_text() -> None:
    posts = list(entries("mastodon-tag.rss").values())
    assert [p.url for p in posts] == [
        "https://mastodon.example/@ada/113412345678901234",
        "https://mastodon.example/@tomas/113412299912345678",
        "https://mastodon.example/@nora/113411000000000001",
    ]
    with_image = posts[1]
    assert with_image.text.startswith("Really liking the new editor in #examplecorp")
    assert "dark theme" not in with_image.text
    assert with_image.title.startswith("Really liking")  # no <title>: the text's first words
    assert "hasn't answered" in posts[2].text


def test_reddit_atom() -> None:
    got = entries("reddit.atom")
    post = got["Account \"flagged for review\", can't access files"]
    assert post.key == "id:t3_1gj2k3l"
    assert post.author == "/u/throwaway_8812"
    assert post.text.startswith('Got an email saying my account was "flagged for review"')
    assert post.url.startswith("https://www.reddit.com/r/examplecorp/comments/1gj2k3l/")


def test_atom_author_is_the_name_without_the_email() -> None:
    got = entries("atom-xhtml.atom")
    post = got["Shipping sync v3 & what broke"]
    assert post.author == "Mei Chen"
    assert post.url == "https://engineering.example.com/sync-v3"  # not rel="replies"
    assert post.html.startswith("<p>We rewrote sync.")
    assert "xmlns" not in post.html
    assert "• Bug two: fsync" in post.text
    assert got["A summary-only post"].text == "Only a summary here."
    assert "An xhtml title" in got


def test_rss1_items_are_keyed_by_rdf_about() -> None:
    got = entries("rss1.rdf")
    incident = got["Resolved: login errors"]
    assert incident.key == "id:https://status.example.org/incidents/310"
    assert incident.text == ("Between 02:10 and 02:45 UTC some logins failed with 500.\n\n"
                             "Resolved. Post-mortem to follow.")  # content:encoded wins
    assert got["Degraded performance: file sync (EU)"].published == (
        calendar.timegm((2026, 11, 3, 7, 52, 0)))  # +01:00


def test_relative_links_resolve_against_the_feed_url() -> None:
    got = entries("relative-links.rss")
    release = got["Version 1.4 released"]
    assert release.url == "https://feeds.example.com/news/2026/11/v1-4.html"
    assert "changelog <https://feeds.example.com/changelog#1.4>" in release.text
    assert "<https://feeds.example.com/docs/upgrade.html>" in release.text
    assert release.author == "Robin Maintainer"  # "email (Name)" → Name
    assert got["Call for translators"].url == (
        "https://feeds.example.com/watch/news/translators.html?lang=all&ref=feed")
    assert "<https://chat.example.net/room>" in got["Call for translators"].text


def test_xml_base_is_honoured() -> None:
    [entry] = entries("atom-xml-base.atom").values()
    assert entry.url == "https://docs.example.com/changelog/2026/november.html"


def test_youtube_title_is_the_entry_title_not_media_title() -> None:
    [video] = entries("youtube-channel.atom").values()
    assert video.title == "What's new in 4.2 (in 90 seconds)"
    assert video.url == "https://www.youtube.com/watch?v=dQw4w9WgXcQ"


def test_feed_without_guids_gets_link_then_content_keys() -> None:
    items = list(entries("no-guids.rss").values())
    assert [e.key.split(":", 1)[0] for e in items] == ["link", "link", "hash", "hash"]
    assert items[0].title == "Sommerfest am Samstag"  # ISO-8859-1 decoded
    assert items[1].published is None  # no date: the poller uses the fetch time
    assert items[3].title.startswith("Kurzmeldung ohne Titel")
    again = list(entries("no-guids.rss").values())
    assert [e.key for e in again] == [e.key for e in items]  # stable across polls


# --------------------------------------------------------------------------- edge cases


RSS = '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>x</title>'
ATOM = '<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title>'
EDGE_CASES = {
    "whitespace": RSS + "<item><title>\n  Spaced   title \n</title><guid>  g1  </guid>"
    "<link>  http://e.com/1  </link><description>  <![CDATA[ <p>hi</p> ]]>  </description>"
    "</item></channel></rss>",
    "empty-elements": RSS + "<item><title/><guid/><link/><description/></item></channel></rss>",
    "dc-date-and-creator": RSS + "<item><title>a</title><guid>1</guid>"
    "<dc:date>2026-11-03T10:00:00+02:00</dc:date><dc:creator>Ann</dc:creator></item>"
    "</channel></rss>",
    "author-and-creator": RSS + "<item><title>a</title><guid>1</guid>"
    "<author>bob@example.com (Bob)</author><dc:creator>Ann</dc:creator></item></channel></rss>",
    "cdata-html-title": RSS + "<item><title><![CDATA[Hello <b>world</b> &amp; co]]></title>"
    "<guid>1</guid></item></channel></rss>",
    "escaped-title": RSS + "<item><title>Tom &amp;amp; Jerry &#8211; &lt;3</title><guid>1</guid>"
    "</item></channel></rss>",
    "permalink-guid-no-link": RSS + '<item><title>a</title><guid isPermaLink="true">'
    "http://e.com/p/1</guid></item></channel></rss>",
    "non-permalink-guid": RSS + '<item><title>a</title><guid isPermaLink="false">'
    "http://e.com/p/1</guid></item></channel></rss>",
    "guid-not-a-url": RSS + "<item><title>a</title><guid>1</guid></item></channel></rss>",
    "named-timezone": RSS + "<item><title>a</title><guid>1</guid>"
    "<pubDate>Tue, 03 Nov 2026 09:14:02 PST</pubDate></item></channel></rss>",
    "unparseable-date": RSS + "<item><title>a</title><guid>1</guid><pubDate>03/11/2026"
    "</pubDate></item></channel></rss>",
    "enclosure": RSS + '<item><title>a</title><guid>1</guid><enclosure url="http://e.com/a.mp3" '
    'type="audio/mpeg" length="1"/></item></channel></rss>',
    "rss-0.91": '<rss version="0.91"><channel><title>x</title><item><title>a</title>'
    "<link>http://e.com/1</link><description>d</description></item></channel></rss>",
    "atom-edit-link-first": ATOM + '<entry><id>1</id><title>t</title><link rel="edit" '
    'href="http://e.com/edit"/><link href="http://e.com/alt"/>'
    "<updated>2026-01-01T00:00:00Z</updated></entry></feed>",
    "atom-id-is-url": ATOM + "<entry><id>https://e.com/posts/9</id><title>t</title>"
    "<updated>2026-01-01T00:00:00Z</updated></entry></feed>",
    "atom-published-and-updated": ATOM + "<entry><id>1</id><title>t</title>"
    "<updated>2026-02-01T00:00:00Z</updated><published>2026-01-01T00:00:00Z</published>"
    "</entry></feed>",
    "atom-xhtml-summary": ATOM + '<entry><id>1</id><title>t</title><summary type="xhtml">'
    '<div xmlns="http://www.w3.org/1999/xhtml">A <b>bold</b> move</div></summary>'
    "<updated>2026-01-01T00:00:00Z</updated></entry></feed>",
    "rdf-without-about": '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
    'xmlns="http://purl.org/rss/1.0/"><channel rdf:about="x"><title>x</title></channel>'
    "<item><title>a</title><link>http://e.com/1</link></item></rdf:RDF>",
}


@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_cases_parse_identically(name: str) -> None:
    fast, ref = both(EDGE_CASES[name].encode())
    assert fast == ref


def test_edge_case_values() -> None:
    def one(name: str) -> ParsedEntry:
        [entry] = both(EDGE_CASES[name].encode())[0]
        return entry

    assert one("whitespace").title == "Spaced title"
    assert one("whitespace").key == "id:g1"
    assert one("permalink-guid-no-link").url == "http://e.com/p/1"
    assert one("non-permalink-guid").url == ""
    assert one("guid-not-a-url").url == ""  # not resolved into a made-up base/1
    assert one("atom-id-is-url").url == "https://e.com/posts/9"
    assert one("atom-edit-link-first").url == "http://e.com/alt"
    assert one("atom-published-and-updated").published == calendar.timegm((2026, 1, 1, 0, 0, 0))
    assert one("unparseable-date").published is None
    assert one("cdata-html-title").title == "Hello world & co"
    assert one("author-and-creator").author == "Bob"


# --------------------------------------------------------------------------- fallback


def test_non_well_formed_feed_falls_back_to_feedparser() -> None:
    good = (CORPUS / "wordpress-comments.rss").read_bytes()
    broken = good.replace(b"<title>Comment on Announcing the 4.2 release by Priya</title>",
                          b"<title>Comment on Announcing the 4.2 release by Priya & Sam</title>")
    broken = broken.replace(b"</channel>\n</rss>", b"")  # and cut off at the end
    fast_good, _ = parse_feed(good, BASE)
    entries_, name = parse_feed(broken, BASE)
    assert name == "feedparser"
    assert [e.key for e in entries_] == [e.key for e in fast_good]
    assert entries_[1].title == "Comment on Announcing the 4.2 release by Priya & Sam"
    assert [e.text for e in entries_] == [e.text for e in fast_good]


@pytest.mark.parametrize("body", [b"\x89PNG\r\n\x1a\n\x00\x00", b"<html><body>hi</body></html>",
                                  b"plain words", b"<?xml version='1.0'?><note>x</note>"])
def test_not_a_feed_is_a_feed_error_on_both_paths(body: bytes) -> None:
    with pytest.raises(FeedError):
        parse_feed(body, BASE)
    with pytest.raises(FeedError):
        parse_feed(body, BASE, reference=True)
