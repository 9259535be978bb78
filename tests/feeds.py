"""Feed builders for tests: real RSS/Atom bytes with controllable entries."""

from __future__ import annotations

from email.utils import formatdate
from xml.sax.saxutils import escape


def rss(entries: list[dict], title: str = "Test feed") -> bytes:
    """RSS 2.0. Entry keys: guid, title, link, author, date (epoch), html."""
    items = []
    for e in entries:
        parts = []
        if "guid" in e:
            parts.append(f"<guid>{escape(str(e['guid']))}</guid>")
        if "title" in e:
            parts.append(f"<title>{escape(e['title'])}</title>")
        if "link" in e:
            parts.append(f"<link>{escape(e['link'])}</link>")
        if "author" in e:
            parts.append(f"<dc:creator>{escape(e['author'])}</dc:creator>")
        if "date" in e:
            parts.append(f"<pubDate>{formatdate(e['date'], usegmt=True)}</pubDate>")
        if "html" in e:
            parts.append(f"<description>{escape(e['html'])}</description>")
        items.append("<item>" + "".join(parts) + "</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>{escape(title)}</title>{''.join(items)}</channel></rss>"
    ).encode()


def atom(entries: list[dict], title: str = "Test feed") -> bytes:
    """Atom 1.0. Entry keys: id, title, link, author, date (ISO string), html."""
    out = []
    for e in entries:
        out.append(
            f"<entry><id>{escape(e['id'])}</id><title>{escape(e.get('title', ''))}</title>"
            f'<link rel="alternate" href="{escape(e.get("link", ""))}"/>'
            f"<author><name>{escape(e.get('author', ''))}</name></author>"
            f"<updated>{e.get('date', '2026-01-01T00:00:00Z')}</updated>"
            f'<content type="html">{escape(e.get("html", ""))}</content></entry>'
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(title)}</title><id>urn:test</id>{''.join(out)}</feed>"
    ).encode()
