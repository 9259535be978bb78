"""Untrusted text: the one place that makes strangers' words safe to store and show.

Feed titles, author names and bodies are written by anyone on the internet. Everything
the app shows or stores from a feed passes through :func:`safe_text` (plain strings) or
:func:`html_to_text` (HTML bodies), so there is exactly one definition of "safe":

- C0/C1 control characters (except newline and tab in multi-line text), DEL, and complete
  ANSI/VT escape sequences are removed: nothing a feed says can move the cursor, retitle
  the terminal or switch its character set.
- Bidi overrides/isolates and zero-width characters are removed, so text cannot pretend
  to be something else ("Trojan Source" reordering, invisible handles).
- Length is capped; the cut is marked with an ellipsis.

Markup is *not* escaped here: the UI renders these strings as literal `rich.text.Text`
(never `Text.from_markup`), so `[b]` in a title stays `[b]` on screen.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

__all__ = ["html_to_text", "one_line", "safe_text", "safe_url"]

# ESC-introduced sequences (CSI, OSC, DCS, single-char escapes) and 8-bit CSI.
_ANSI = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]            # CSI ... final byte
    | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?  # OSC ... BEL or ST
    | \x1b[PX^_][^\x1b]*(?:\x1b\\)?      # DCS / SOS / PM / APC ... ST
    | \x1b[@-Z\\-_]                     # two-byte escapes
    | \x9b[0-?]*[ -/]*[@-~]             # 8-bit CSI
    """,
    re.VERBOSE,
)
# Controls except \t and \n, DEL, C1; bidi embeddings/overrides/isolates; zero-width chars;
# line/paragraph separators (they break line-based layouts); BOM.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    "\u2028\u2029\ufff9-\ufffb]"
)
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def safe_text(value: object, max_len: int = 10_000, *, multiline: bool = True) -> str:
    """Return ``value`` as a string that is safe to store and display literally.

    ``multiline=False`` folds all whitespace (newlines included) into single spaces, for
    titles, names and list cells.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    # Bound the work before any regex runs: a 50 MB "title" is cut first.
    if len(text) > max_len * 4 + 64:
        text = text[: max_len * 4 + 64]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ANSI.sub("", text)
    text = _INVISIBLE.sub("", text)
    if multiline:
        text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
        text = _BLANK_LINES.sub("\n\n", text).strip()
    else:
        text = " ".join(text.split())
    if len(text) > max_len:
        text = text[: max(0, max_len - 1)].rstrip() + "…"
    return text


def one_line(value: object, max_len: int = 500) -> str:
    """Single-line safe text: titles, author names, table cells."""
    return safe_text(value, max_len, multiline=False)


def safe_url(value: object, base: str | None = None, max_len: int = 2048) -> str:
    """An http(s) URL or ``""``: ``javascript:``, ``data:``, ``file:`` links are dropped."""
    raw = one_line(value, max_len * 2)
    if not raw:
        return ""
    if base:
        try:
            raw = urljoin(base, raw)
        except ValueError:
            return ""
    try:
        parts = urlsplit(raw)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return raw if len(raw) <= max_len else ""


# Block-level elements become line breaks; everything else is inline.
_BLOCK = frozenset({
    "p", "div", "br", "li", "ul", "ol", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5",
    "h6", "tr", "table", "section", "article", "header", "footer", "hr", "dd", "dt", "dl",
    "figure", "figcaption",
})
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "iframe",
                   "object", "svg", "math"})


def html_to_text(html: str, base_url: str | None = None, max_len: int = 100_000, *,
                 links: bool = True) -> str:
    """Readable plain text from (untrusted) HTML, keeping links as ``text <url>``.

    Uses lxml's HTML parser (libxml2: C speed, no entity expansion from DTDs, tolerant of
    garbage). Scripts, styles and embedded objects are dropped; paragraphs become blank
    lines; list items get a bullet.
    """
    if not html:
        return ""
    if "<" not in html and "&" not in html:
        return safe_text(html, max_len)
    from lxml import etree
    from lxml import html as lxml_html

    source = html[: max_len * 4]
    try:
        root = lxml_html.fragment_fromstring(source, create_parent="div")
    except (etree.ParserError, ValueError):
        return safe_text(re.sub(r"<[^>]*>", " ", source), max_len)
    out: list[str] = []
    _walk(root, out, base_url if links else None, links)
    return safe_text("".join(out), max_len)


def _walk(el: object, out: list[str], base_url: str | None, links: bool = True) -> None:
    """Depth-first text extraction; iterative so hostile nesting cannot blow the stack."""
    stack: list[tuple[object, bool]] = [(el, False)]
    while stack:
        node, closing = stack.pop()
        tag = node.tag if isinstance(node.tag, str) else ""  # type: ignore[attr-defined]
        tag = tag.lower()
        if closing:
            if tag == "a" and links:
                href = safe_url(node.get("href"), base_url)  # type: ignore[attr-defined]
                text = (node.text_content() or "").strip()  # type: ignore[attr-defined]
                if href and href != text and not text.startswith("http"):
                    out.append(f" <{href}>")
            if tag in _BLOCK and tag != "br":  # <br> is one line break, made on opening
                out.append("\n\n" if tag in ("p", "blockquote", "pre", "table") else "\n")
            if node.tail:  # type: ignore[attr-defined]
                out.append(node.tail)  # type: ignore[attr-defined]
            continue
        if tag in _SKIP:
            if node.tail:  # type: ignore[attr-defined]
                out.append(node.tail)  # type: ignore[attr-defined]
            continue
        if tag in _BLOCK:
            out.append("\n• " if tag == "li" else "\n")
        if tag == "img":
            alt = node.get("alt")  # type: ignore[attr-defined]
            if alt:
                out.append(f"[image: {alt}]")
        if node.text and tag:  # type: ignore[attr-defined]
            out.append(node.text)  # type: ignore[attr-defined]
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(list(node)))  # type: ignore[call-overload]
