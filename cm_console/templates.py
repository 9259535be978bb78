"""Scripted responses: pick, render, measure. No UI.

Rendering is a plain substitution of known ``{name}`` placeholders with sanitized,
single-line strings. It never uses ``str.format`` (no ``{item.__class__}`` attribute walks,
no format specs) and never treats anything from a post as template text: a value of
``{{ 7*7 }}`` or ``${HOME}`` is inserted literally, once, and not looked at again.
"""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass

from .config import TEMPLATE_FIELDS, Config, SourceConfig, Template
from .models import Item
from .sanitize import one_line

__all__ = ["PLATFORM_LIMITS", "TemplateError", "case_number", "length", "length_limit",
           "render", "templates_for"]

# Reply length limits by source type (None: no limit we know of). Bluesky counts graphemes.
PLATFORM_LIMITS: dict[str, int | None] = {
    "mastodon": 500, "bluesky": 300, "discourse": 32_000, "reddit": 10_000,
    "hackernews": None, "rss": None,
}
_TOKEN = re.compile(r"\{\{|\}\}|\{([a-z_]+)\}")
# What an empty value reads as when the template does not ``require`` it ("Thanks, there!").
# Applied after the ``requires`` check, so ``requires: [author]`` can refuse an anonymous post.
_FALLBACK = {"author": "there"}


class TemplateError(ValueError):
    """The template cannot be rendered for this item (e.g. a required value is empty)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    length: int
    limit: int | None

    @property
    def over(self) -> bool:
        return self.limit is not None and self.length > self.limit


def case_number(item_id: str) -> str:
    """A short, stable case reference for an item, e.g. ``C-3F9A2B``."""
    digest = item_id.rsplit(":", 1)[-1]
    return "C-" + re.sub(r"[^0-9A-Za-z]", "", digest)[:6].upper()


def values_for(item: Item, agent_id: str, agent_name: str, source_label: str,
               now: float | None = None) -> dict[str, str]:
    """The placeholder values for one item, each sanitized to a single line."""
    handle = item.author_handle or (item.author if item.author.startswith("@") else "")
    return {
        "author": one_line(item.author, 200),
        "handle": one_line(handle, 200),
        "title": one_line(item.title, 300),
        "link": one_line(item.url, 2048),
        "source": one_line(source_label, 100),
        "agent": one_line(agent_name, 100),
        "agent_id": one_line(agent_id, 64),
        "case": case_number(item.id),
        "date": time.strftime("%Y-%m-%d", time.localtime(now or time.time())),
    }


def render(template: Template, values: dict[str, str]) -> str:
    """Substitute placeholders in one pass. Unknown names were refused by check-config;
    here they are left as typed rather than guessed."""
    for name in template.requires:
        if not values.get(name):
            raise TemplateError(f'template "{template.id}" needs {{{name}}}, which is empty for '
                                "this item")

    def sub(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        if name not in TEMPLATE_FIELDS or name not in values:
            return token
        return values[name] or _FALLBACK.get(name, "")

    return _TOKEN.sub(sub, template.body)


def _hangul(cp: int) -> str:
    """Hangul syllable type (L, V, T, LV, LVT) of a code point, "" for anything else."""
    if 0x1100 <= cp <= 0x115F or 0xA960 <= cp <= 0xA97C:
        return "L"
    if 0x1160 <= cp <= 0x11A7 or 0xD7B0 <= cp <= 0xD7C6:
        return "V"
    if 0x11A8 <= cp <= 0x11FF or 0xD7CB <= cp <= 0xD7FB:
        return "T"
    if 0xAC00 <= cp <= 0xD7A3:
        return "LV" if (cp - 0xAC00) % 28 == 0 else "LVT"
    return ""


_HANGUL_JOINS = frozenset({("L", "L"), ("L", "V"), ("L", "LV"), ("L", "LVT"), ("LV", "V"),
                           ("LV", "T"), ("V", "V"), ("V", "T"), ("LVT", "T"), ("T", "T")})


def _extends(ch: str) -> bool:
    """Joins the grapheme before it: marks, joiners, variation selectors, skin tones, tags."""
    cp = ord(ch)
    return (unicodedata.category(ch) in ("Mn", "Me", "Mc") or ch in "\u200c\u200d"
            or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F)


def length(text: str, source_type: str) -> int:
    """Length as the platform counts it: graphemes on Bluesky, characters elsewhere.

    Graphemes follow Unicode's extended grapheme cluster rules closely enough for a length
    check: combining marks, ZWJ emoji sequences, skin tones, keycaps, tag flags, flag pairs
    and Hangul jamo sequences each count once.
    """
    if source_type != "bluesky":
        return len(text)
    count = 0
    after_zwj = False  # the character after a zero-width joiner continues the sequence
    open_flag = False  # a lone regional indicator waits for its pair
    prev_hangul = ""
    for ch in text:
        cp = ord(ch)
        hangul = _hangul(cp)
        regional = 0x1F1E6 <= cp <= 0x1F1FF
        joins = count > 0 and (after_zwj or _extends(ch) or (regional and open_flag)
                               or (prev_hangul, hangul) in _HANGUL_JOINS)
        if not joins:
            count += 1
        open_flag = regional and not (joins and open_flag)
        after_zwj = ch == "\u200d"
        prev_hangul = hangul
    return count


def length_limit(template: Template | None, source: SourceConfig | None,
                 source_type: str, item: Item | None = None) -> int | None:
    """The template's override, else the source's, else what the server said (Mastodon's
    /api/v2/instance, carried on its items), else the platform's default."""
    if template is not None and template.max_length:
        return template.max_length
    if source is not None and source.max_length:
        return source.max_length
    server = item.extra.get("max_chars") if item is not None else None
    if isinstance(server, int) and not isinstance(server, bool) and server > 0:
        return server
    return PLATFORM_LIMITS.get(source_type)


def measure(text: str, template: Template | None, source: SourceConfig | None,
            source_type: str) -> Rendered:
    return Rendered(text, length(text, source_type), length_limit(template, source, source_type))


def templates_for(config: Config, source_type: str, visibility: str | None = None
                  ) -> list[Template]:
    """Templates that fit a source type (and visibility), in config order."""
    return [t for t in config.templates
            if (not t.channels or source_type in t.channels)
            and (visibility is None or t.visibility == visibility)]
