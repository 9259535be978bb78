"""Source types: what each can do, where its data comes from, and the parse job.

``parse_job`` runs in the poller's worker processes, so this package imports only parsing
code (no store, no HTTP client, no UI). The API connectors (``hackernews``, ``mastodon``,
``discourse``, ``bluesky``) run in the poller's own process and are imported lazily through
:func:`connector`.
"""

from __future__ import annotations

import hashlib
import importlib
from types import ModuleType
from typing import Any
from urllib.parse import quote

from ..models import Item
from .links import reddit_thread, thread_key
from .rss import FeedError, parse_feed

__all__ = ["API_TYPES", "CAPABILITIES", "FeedError", "can_send", "connector", "feed_url",
           "item_id", "parse_job"]

# What a community manager can do on each platform from the console. "read" sources answer
# through the fallbacks: clipboard + browser for replies, e-mail hand-off for private routes.
CAPABILITIES: dict[str, frozenset[str]] = {
    "rss": frozenset({"read"}),
    "reddit": frozenset({"read"}),
    "hackernews": frozenset({"read"}),
    "discourse": frozenset({"read", "reply", "private"}),
    "mastodon": frozenset({"read", "reply", "private"}),
    "bluesky": frozenset({"read", "reply", "private"}),
}
# Types polled through a JSON API connector (a module of this package with ``poll``).
API_TYPES = frozenset({"hackernews", "mastodon", "discourse", "bluesky"})
# Types this version can poll (the others validate in the config but report "not supported").
POLLABLE = frozenset({"rss", "reddit"}) | API_TYPES


def connector(source_type: str) -> ModuleType:
    """The connector module for an API source type (imported on first use)."""
    if source_type not in API_TYPES:
        raise KeyError(f"no API connector for {source_type!r}")
    return importlib.import_module(f"{__name__}.{source_type}")


def can_send(item: Item, op: str) -> bool:
    """Whether ``op`` ("reply"/"private") can go through the platform for this item: the
    type allows it and the item carries the platform ids the request needs (an item stored
    before the connector existed, or from a feed, falls back to clipboard/e-mail)."""
    if op not in CAPABILITIES.get(item.source_type, frozenset()):
        return False
    if item.source_type not in API_TYPES:
        return False
    module = connector(item.source_type)
    check = getattr(module, "can_send", None)
    return bool(check is not None and check(item, op))


def feed_url(source_type: str, url: str, options: dict[str, Any]) -> str:
    """The URL to GET for a feed-based source."""
    if source_type == "reddit" and not url:
        sub = quote(str(options.get("subreddit", "all")), safe="")
        if options.get("query"):
            q = quote(str(options["query"]), safe="")
            return f"https://www.reddit.com/r/{sub}/search.rss?q={q}&restrict_sr=1&sort=new"
        kind = "comments" if options.get("comments") else "new"
        return f"https://www.reddit.com/r/{sub}/{kind}.rss"
    return url


def item_id(source_id: str, key: str) -> str:
    """Stable id: the source id plus a digest of the entry's guid/link/content key.

    The source id keeps two feeds' guid ``1`` apart; the digest keeps hostile guids (huge,
    control characters, slashes) out of ids people type.
    """
    return f"{source_id}:{hashlib.sha256(key.encode('utf-8', 'replace')).hexdigest()[:12]}"


def _thread(source_type: str, entry: Any) -> str:
    """A feed entry's conversation: its canonical link (cross-source dedup: the same page
    from HN, Reddit and a blog is one thread; a comment's ``#anchor`` joins its post)."""
    if source_type == "reddit":
        return reddit_thread(entry.url, entry.html) or entry.url
    return thread_key(entry.url) or entry.url


def parse_job(source_id: str, source_type: str, body: bytes, base_url: str,
              fetched: float) -> tuple[list[tuple[dict[str, Any], str, str]], str]:
    """Parse one fetched body into ``(item_doc, text, html)`` rows (picklable).

    Runs in a worker process. Dates are capped: a missing or future date becomes the fetch
    time, so a hostile feed cannot pin its items above everything else forever.
    """
    entries, parser = parse_feed(body, base_url)
    rows = []
    for entry in entries:
        published = entry.published
        if published is None or published > fetched or published != published:
            published = fetched
        published = max(published, 0.0)
        item = Item(
            id=item_id(source_id, entry.key), source=source_id, source_type=source_type,
            guid=entry.key, url=entry.url, title=entry.title, author=entry.author,
            published=published, fetched=fetched, summary=entry.extra.get("summary", ""),
            author_handle=entry.author_handle, thread=entry.thread or _thread(source_type, entry),
        )
        rows.append((item.to_doc(), entry.text, entry.html))
    return rows, parser
