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
        "author": one_line(item.author, 200) or "there",
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
        return values[name] if name in TEMPLATE_FIELDS and name in values else token

    return _TOKEN.sub(sub, template.body)


def length(text: str, source_type: str) -> int:
    """Length as the platform counts it: graphemes on Bluesky, characters elsewhere."""
    if source_type != "bluesky":
        return len(text)
    count = 0
    joiner = False
    for ch in text:
        if ch == "\u200d":
            joiner = True
            continue
        if joiner or unicodedata.combining(ch) or "\ufe00" <= ch <= "\ufe0f" or (
            "\U0001f3fb" <= ch <= "\U0001f3ff"
        ):
            joiner = False
            continue
        count += 1
    return count


def length_limit(template: Template | None, source: SourceConfig | None,
                 source_type: str) -> int | None:
    """The template's override, else the source's, else the platform's."""
    if template is not None and template.max_length:
        return template.max_length
    if source is not None and source.max_length:
        return source.max_length
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
