"""Cross-source dedup: one canonical form per link, so one story is one conversation.

The same article shows up as an HN story, a Reddit link post, a blog's RSS entry and a forum
topic. Each source sets its items' ``thread`` to :func:`thread_key` of the link they are
about, and ``Store.thread_items()`` (which groups by exact thread key) then shows them as
one conversation in the detail pane. The key is a *comparison* form, not a URL to open:

- scheme folded to https, host lower-cased without ``www.``, default ports and user info
  dropped (``http://WWW.Example.com:80/a`` and ``https://example.com/a`` are one page);
- fragments dropped (a comment anchor ``#comment-12`` belongs to its post's conversation);
- tracking parameters (``utm_*``, ``fbclid``, ``gclid``...) dropped, the rest sorted;
- one trailing slash dropped;
- two site shapes folded to their conversation: Reddit ``/r/x/comments/ID/slug/...`` →
  ``reddit.com/comments/ID``; Discourse ``/t/slug/ID[/N]`` → ``/t/ID`` (topic slugs change
  with titles; post numbers are replies within the one topic).

Pure functions, no I/O: this runs in the parse worker processes too.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["canonical_url", "reddit_thread", "thread_key"]

_TRACKING = frozenset({"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid",
                       "_hsenc", "_hsmi", "yclid", "ref_src"})
_REDDIT_HOSTS = frozenset({"reddit.com", "old.reddit.com", "new.reddit.com", "np.reddit.com",
                           "m.reddit.com", "i.reddit.com"})
_REDDIT_POST = re.compile(r"^(?:/r/[^/]+)?/comments/([a-z0-9]+)(?:/|$)", re.IGNORECASE)
# /t/ID, /t/ID/N, /t/slug/ID, /t/slug/ID/N (a slug is never all digits in these shapes)
_DISCOURSE_TOPIC = re.compile(r"^/t/(?:(\d+)|[^/]*[^/\d][^/]*/(\d+))(?:/\d+)?/?$")
_REDDIT_LINK = re.compile(r"""<a\s[^>]*href=["']([^"']+)["'][^>]*>\s*\[link\]\s*</a>""",
                          re.IGNORECASE)


def canonical_url(url: str) -> str:
    """The comparison form of an http(s) URL, or ``""`` for anything else."""
    text = (url or "").strip()
    if len(text) > 4096:
        return ""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    host = parts.hostname.lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    if port and port not in (80, 443):
        host = f"{host}:{port}"
    path = parts.path or ""
    if host in _REDDIT_HOSTS:
        match = _REDDIT_POST.match(path)
        if match:
            return f"https://reddit.com/comments/{match.group(1).lower()}"
        host = "reddit.com"
    topic = _DISCOURSE_TOPIC.match(path)
    if topic:
        path = "/t/" + (topic.group(1) or topic.group(2))
    if path.endswith("/"):
        path = path[:-1]
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not k.lower().startswith("utm_") and k.lower() not in _TRACKING]
    out = f"https://{host}{path}"
    if query:
        out += "?" + urlencode(sorted(query))
    return out


def thread_key(url: str) -> str:
    """``link:<canonical url>``, the thread key every source uses for "about this link"."""
    canonical = canonical_url(url)
    return f"link:{canonical}" if canonical else ""


def reddit_thread(entry_url: str, html: str) -> str:
    """A Reddit RSS entry's conversation: the external page a link post points to (so it
    meets the same link from HN or a blog), else the Reddit post itself (comments included).

    Reddit's feed content ends with ``<a href="...">[link]</a>``: the submitted URL, which
    for a self post is the post's own comments page.
    """
    match = _REDDIT_LINK.search(html[:200_000] if html else "")
    if match:
        import html as html_module

        target = html_module.unescape(match.group(1))
        host = (urlsplit(target).hostname or "").lower() if "://" in target else ""
        if host and host.removeprefix("www.") not in _REDDIT_HOSTS:
            key = thread_key(target)
            if key:
                return key
    return thread_key(entry_url)
