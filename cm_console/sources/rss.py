"""RSS 2.0 / RSS 1.0 / Atom 1.0 parsing: bytes in, normalized entries out. No network, ever.

Two parsers, one normalization:

- a fast path on lxml (libxml2, strict, ``resolve_entities=False``, ``no_network=True``)
  for well-formed RSS/Atom, the vast majority of real feeds (~1 ms a feed);
- feedparser, the reference, for everything else (broken XML, odd dialects): ~65 ms a feed,
  so it is only the fallback. Both produce raw fields that go through the same
  :func:`_normalize`, and a test keeps their stored results identical on the test corpus.

Feeds that declare an inline DTD (``<!DOCTYPE x [ <!ENTITY ...> ]>``) are refused before any
parser sees them: feedparser's lenient fallback expands entities, and an 80 KB feed with one
nested entity can become hundreds of MB.

This module runs in parse worker processes; keep it free of store/UI imports.
"""

from __future__ import annotations

import calendar
import codecs
import hashlib
import html as html_lib
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ..models import (
    MAX_AUTHOR,
    MAX_GUID,
    MAX_HTML,
    MAX_SUMMARY,
    MAX_TEXT,
    MAX_TITLE,
    ParsedEntry,
)
from ..sanitize import html_to_text, one_line, safe_text, safe_url

__all__ = ["FeedError", "parse_feed"]

MAX_ENTRIES = 2000  # a feed with more is cut: nobody triages 100k entries from one poll


class FeedError(Exception):
    """This feed cannot be used; the message is shown for its source."""


_DTD_SUBSET = re.compile(rb"<!DOCTYPE[^>\[]*\[", re.IGNORECASE)
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
_XML_ENCODING = re.compile(
    rb"""^\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
# How XML parsers (feedparser included) sniff an encoding from the first bytes: BOMs, then
# "<?" in UTF-32/UTF-16 without a BOM, then EBCDIC. UTF-32 first: its LE BOM begins like
# UTF-16's.
_SNIFF = (
    (b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"),
    (b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"), (b"<\x00?\x00", "utf-16-le"),
    (b"Lo\xa7\x94", "cp037"),
)
# Encodings in which "<!DOCTYPE" and "<!ENTITY" are the same bytes as in ASCII.
_ASCII_SAFE = frozenset({"ascii", "utf-8", "iso8859-1", "cp1252", "iso8859-2", "iso8859-15"})


def _dtd_samples(body: bytes) -> list[bytes]:
    """The body as each parser might read it: raw, and decoded as sniffed or declared.

    A DTD written in UTF-16/32 (with or without a BOM), UTF-7 or EBCDIC is invisible to a
    byte search, yet feedparser decodes it and its lenient parser expands the entities.
    """
    samples = [body]
    if b"\x00" in body[:4096]:  # UTF-16/32 in any byte order: ASCII characters minus NULs
        samples.append(body.replace(b"\x00", b""))
    codecs_to_try: list[str] = []
    head = body[:1024]
    for prefix, codec in _SNIFF:
        if body.startswith(prefix):
            codecs_to_try.append(codec)
            head = head.decode(codec, "replace").lstrip("\ufeff").encode("utf-8", "replace")
            break
    declared = _XML_ENCODING.match(head.removeprefix(b"\xef\xbb\xbf"))
    if declared:
        codecs_to_try.append(declared.group(1).decode("ascii"))
    for name in codecs_to_try:
        try:
            if codecs.lookup(name).name in _ASCII_SAFE:
                continue
            samples.append(body.decode(name, "replace").encode("utf-8", "replace"))
        except (LookupError, UnicodeError, ValueError):
            continue
    return samples


# One construct of an XML prolog, after optional whitespace: a PI or comment, a DOCTYPE (its
# quoted literals skipped whole, so a ">" or "<a>" inside one ends nothing; ``close`` is "["
# when an internal subset follows, ">" when it does not), or the root element's start.
_PROLOG_ITEM = re.compile(rb"""\s*(?:
      <\?.*?\?> | <!--.*?-->
    | <!DOCTYPE (?:[^>\['"]+ | "[^"]*" | '[^']*')* (?P<close>[\[>]?)
    | (?P<root><[A-Za-z_:\x80-\xff])
)""", re.DOTALL | re.IGNORECASE | re.VERBOSE)


def _prolog_end(sample: bytes) -> int:
    """Where the root element starts: entities can only be declared before it (in the
    DOCTYPE's internal subset), and feedparser only looks for declarations there too.

    Only a prolog made of what XML allows (one BOM, whitespace, PIs, comments, a DOCTYPE
    without internal subset) narrows the search; anything else (a subset, an unterminated
    construct, stray bytes before the root) returns len(sample), so the whole body is
    searched, as it always was.
    """
    pos = 3 if sample.startswith(b"\xef\xbb\xbf") else 0
    while True:
        item = _PROLOG_ITEM.match(sample, pos)
        if item is None:
            return len(sample)
        if item.group("root"):
            return item.start("root")
        if item.group("close") is not None and item.group("close") != b">":
            return len(sample)
        pos = item.end()


def check_dtd(body: bytes) -> None:
    """Refuse inline DTD internal subsets and entity declarations (billion laughs).

    Only the prolog is searched: a post that quotes ``<!ENTITY xxe SYSTEM ...>`` inside its
    CDATA (security blogs do) is text, not a declaration, and refusing the whole feed for
    it would silence a source for good.
    """
    for sample in _dtd_samples(body):
        end = _prolog_end(sample)
        if _DTD_SUBSET.search(sample, 0, end) or _ENTITY.search(sample, 0, end):
            raise FeedError("feed declares an inline DTD with entities; refused (entity "
                            "expansion can exhaust memory)")


# ----------------------------------------------------------------------------- normalization

_HTMLISH = re.compile(r"<[A-Za-z/!]|&[#A-Za-z0-9]+;")
_EMAIL_NAME = re.compile(r"^\s*\S+@\S+\s*\((.+)\)\s*$")


def _title_text(value: str) -> str:
    if _HTMLISH.search(value):
        value = html_to_text(value, max_len=MAX_TITLE * 2)
    return one_line(value, MAX_TITLE)


def _author_name(value: str) -> str:
    match = _EMAIL_NAME.match(value or "")
    return one_line(match.group(1) if match else value, MAX_AUTHOR)


def parse_date(value: str | None) -> float | None:
    """Epoch seconds from RFC 822 or ISO 8601 dates; None when unparseable."""
    if not value:
        return None
    value = value.strip()[:100]
    try:
        dt = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        dt = None
    if dt is None:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def _as_html(value: str, kind: str) -> str:
    """A text construct as HTML: plain text escaped, its line breaks kept."""
    if kind != "text" or not value:
        return value
    return html_lib.escape(value, quote=False).replace("\n", "<br>")


def _normalize(raw: dict[str, Any], base_url: str) -> ParsedEntry:
    """Raw parser fields → a capped, sanitized entry. Shared by both parsers.

    ``*_kind`` is "text" for Atom's plain-text constructs (``type="text"``, the default):
    their "<" is a character, so they are escaped into HTML rather than read as markup
    ("a < b", "type <script> to test" must come out as written). RSS fields are HTML.
    """
    # Stripped as feedparser strips it, so both paths store the same bytes.
    body, kind = (raw.get("content") or "").strip(), raw.get("content_kind", "html")
    if not body:
        body, kind = (raw.get("summary") or "").strip(), raw.get("summary_kind", "html")
    html = _as_html(body, kind)[:MAX_HTML]
    text = html_to_text(html, base_url, MAX_TEXT)
    # No link: a guid/id that may serve as one (RSS isPermaLink, Atom id), if it is a full
    # http(s) URL. feedparser would also take "1" and resolve it into a bogus base/1.
    link = safe_url(raw.get("link"), base_url) or safe_url(raw.get("permalink"))
    guid = one_line(raw.get("id"), MAX_GUID)
    title = (one_line(raw.get("title") or "", MAX_TITLE) if raw.get("title_kind") == "text"
             else _title_text(raw.get("title") or ""))
    if guid:
        key = "id:" + guid
    elif link:
        key = "link:" + link
    else:
        digest = hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()[:32]
        key = "hash:" + digest
    return ParsedEntry(
        key=key,
        url=link,
        title=title or one_line(html_to_text(html, links=False, max_len=240), 120),
        author=_author_name(raw.get("author") or ""),
        published=raw.get("published"),
        text=text,
        html=html,
        extra={"summary": safe_text(text, MAX_SUMMARY, multiline=False)},
    )


# ----------------------------------------------------------------------------- fast path

_ATOM = "{http://www.w3.org/2005/Atom}"
_RSS1 = "{http://purl.org/rss/1.0/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}"


class _NotFast(Exception):
    """The fast path does not handle this document; use feedparser."""


def _text(el: Any) -> str:
    return "".join(el.itertext()) if el is not None else ""


def _attr(el: Any, name: str, default: str) -> str:
    """An attribute by case-insensitive name (feedparser lowercases attribute names)."""
    return next((v for k, v in el.attrib.items() if k.lower() == name), default)


def _atom_kind(el: Any) -> str:
    """"text" or "html" for an Atom text construct (RFC 4287 3.1: no type means text)."""
    kind = (el.get("type") or "text").strip().lower() if el is not None else "text"
    return "text" if kind in ("text", "text/plain") else "html"


def _atom_content(el: Any) -> str:
    if el is None:
        return ""
    if el.get("type") == "xhtml":
        from lxml import etree

        div = el[0] if len(el) else None
        if div is None:
            return el.text or ""
        inner = (div.text or "") + "".join(
            etree.tostring(child, encoding="unicode", with_tail=True) for child in div
        )
        return re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", inner)
    return _text(el)


def _fast_parse(body: bytes) -> list[dict[str, Any]]:
    from lxml import etree

    if b"xml:base" in body:
        raise _NotFast("xml:base")  # feedparser resolves links against it; this path does not
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                             load_dtd=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(body, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise _NotFast(str(exc)) from None
    raw: list[dict[str, Any]] = []
    tag = root.tag
    if tag == "rss":
        channel = root.find("channel")
        if channel is None:
            raise _NotFast("rss without channel")
        for item in channel.iterfind("item"):
            if len(raw) >= MAX_ENTRIES:
                break
            guid = item.find("guid")
            author = item.find("author")
            if author is None:
                author = item.find(_DC + "creator")
            date = item.find("pubDate")
            if date is None:
                date = item.find(_DC + "date")
            content = item.find(_CONTENT + "encoded")
            raw.append({
                "id": _text(guid).strip(),
                "permalink": _text(guid).strip() if guid is not None and _attr(
                    guid, "ispermalink", "true") == "true" else "",
                "title": _text(item.find("title")),
                "link": _text(item.find("link")).strip(),
                "author": _text(author).strip(),
                "published": parse_date(_text(date)),
                "content": _text(content),
                "summary": _text(item.find("description")),
            })
    elif tag == _ATOM + "feed":
        for entry in root.iterfind(_ATOM + "entry"):
            if len(raw) >= MAX_ENTRIES:
                break
            link = ""
            for el in entry.iterfind(_ATOM + "link"):
                if el.get("rel", "alternate") == "alternate":
                    link = (el.get("href") or "").strip()
                    break
            name = entry.find(f"{_ATOM}author/{_ATOM}name")
            date = entry.find(_ATOM + "published")
            if date is None:
                date = entry.find(_ATOM + "updated")
            title, content, summary = (entry.find(_ATOM + "title"),
                                       entry.find(_ATOM + "content"),
                                       entry.find(_ATOM + "summary"))
            raw.append({
                "id": _text(entry.find(_ATOM + "id")).strip(),
                "permalink": _text(entry.find(_ATOM + "id")).strip(),
                "title": _atom_content(title), "title_kind": _atom_kind(title),
                "link": link,
                "author": _text(name).strip(),
                "published": parse_date(_text(date)),
                "content": _atom_content(content), "content_kind": _atom_kind(content),
                "summary": _atom_content(summary), "summary_kind": _atom_kind(summary),
            })
    elif tag == _RDF + "RDF":
        for item in root.iterfind(_RSS1 + "item"):
            if len(raw) >= MAX_ENTRIES:
                break
            content = item.find(_CONTENT + "encoded")
            raw.append({
                "id": (item.get(_RDF + "about") or "").strip(),  # feedparser's id too
                "title": _text(item.find(_RSS1 + "title")),
                "link": _text(item.find(_RSS1 + "link")).strip(),
                "author": _text(item.find(_DC + "creator")).strip(),
                "published": parse_date(_text(item.find(_DC + "date"))),
                "content": _text(content),
                "summary": _text(item.find(_RSS1 + "description")),
            })
    else:
        raise _NotFast(f"root element {tag!r}")
    return raw


# ----------------------------------------------------------------------------- reference path


def _ignore_media_text(feedparser: Any) -> None:
    """Keep feedparser from filing media:title / media:description as the entry's own.

    feedparser treats them as a second <title>/<description>: a Mastodon post with an image
    came out as the image's alt text instead of the post. The fast path ignores media:*
    text; this makes the reference do the same (the text lands in unused keys).
    """
    ns = getattr(getattr(feedparser, "namespaces", None), "mediarss", None)
    cls = getattr(ns, "Namespace", None)
    if cls is None or getattr(cls, "_cm_console_quiet", False):
        return

    def start(name: str) -> Any:
        return lambda self, attrs_d: self.push(name, 1)

    def end(name: str) -> Any:
        return lambda self: self.pop(name)

    cls._start_media_title, cls._end_media_title = start("media_title"), end("media_title")
    cls._start_media_description = start("media_description")
    cls._end_media_description = end("media_description")
    cls._cm_console_quiet = True


def _feedparser_parse(body: bytes) -> list[dict[str, Any]]:
    import feedparser

    _ignore_media_text(feedparser)

    # No base URL (links are resolved in _normalize, the same way for both paths), no
    # feedparser HTML sanitizing (we never render HTML; html_to_text extracts text).
    parsed = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
    if not parsed.entries and parsed.get("bozo") and not parsed.get("feed"):
        reason = parsed.get("bozo_exception")
        raise FeedError(f"not a feed: {one_line(reason, 200) or 'unparseable'}")
    if not parsed.entries and not parsed.get("version"):
        raise FeedError("not an RSS or Atom feed")
    atom = str(parsed.get("version", "")).startswith("atom")

    def kind(detail: Any) -> str:
        # Atom says what a construct is; feedparser's text/plain for RSS is a guess.
        plain = atom and (detail or {}).get("type") == "text/plain"
        return "text" if plain else "html"

    raw = []
    for entry in parsed.entries[:MAX_ENTRIES]:
        published = entry.get("published_parsed") or entry.get("updated_parsed")
        content = entry.get("content")
        raw.append({
            "title_kind": kind(entry.get("title_detail")),
            "content_kind": kind(content[0]) if content else "html",
            "summary_kind": kind(entry.get("summary_detail")),
            "id": entry.get("id", ""),
            "title": entry.get("title", ""),
            # The first alternate <link> as written (entry.link may be the guid instead).
            "link": next((ln.get("href", "") for ln in entry.get("links") or ()
                          if ln.get("rel", "alternate") == "alternate"), ""),
            "permalink": entry.get("id", "") if entry.get("guidislink") else "",
            # Atom's <name> alone, as the fast path reads it (feedparser's "author" appends
            # the e-mail address: "Mei Chen (mei@example.com)").
            "author": (entry.get("author_detail") or {}).get("name") or entry.get("author", ""),
            "published": calendar.timegm(published) if published else None,
            "content": content[0].get("value", "") if content else "",
            "summary": entry.get("summary", ""),
        })
    return raw


def parse_feed(body: bytes, base_url: str, *,
               reference: bool = False) -> tuple[list[ParsedEntry], str]:
    """Parse feed bytes. Returns (entries, parser name). Raises FeedError for bad feeds.

    ``reference=True`` forces feedparser (used by the parity test).
    """
    check_dtd(body)
    if not body.strip():
        raise FeedError("empty response body")
    name = "fast"
    try:
        if reference:
            raise _NotFast("reference requested")
        raw = _fast_parse(body)
    except _NotFast:
        name = "feedparser"
        try:
            raw = _feedparser_parse(body)
        except FeedError:
            raise
        except Exception as exc:  # feedparser on hostile bytes: contain whatever it raises
            raise FeedError(f"feed could not be parsed ({type(exc).__name__})") from None
    return [_normalize(r, base_url) for r in raw], name
