"""OPML import/export of RSS sources, so feeds move in and out of other readers (newsboat...).

Import edits the team's YAML *in place*: new sources are inserted as text at the end of the
``sources:`` list, so comments and layout survive, and the file is re-validated before it is
replaced (atomically). OPML is parsed with lxml without entity expansion or network access.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

import yaml

from .config import Config, ConfigError, ConfigIssue, parse_config
from .sanitize import one_line, safe_url

__all__ = ["export_opml", "import_into_config", "read_opml"]


def read_opml(data: bytes) -> list[tuple[str, str]]:
    """``(title, xmlUrl)`` for every feed outline (nested folders included)."""
    from lxml import etree

    from .sources.rss import FeedError, check_dtd

    try:
        check_dtd(data)
    except FeedError as exc:
        raise ValueError(str(exc)) from None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not valid OPML: {exc}") from None
    out = []
    for outline in root.iter("outline"):
        url = safe_url(outline.get("xmlUrl"))
        if url:
            out.append((one_line(outline.get("title") or outline.get("text") or "", 200), url))
    return out


def _new_id(title: str, url: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", (title or url.split("//", 1)[-1]).lower()).strip("-")
    base = (base or "feed")[:40].strip("-") or "feed"
    candidate, n = base, 2
    while candidate in taken:
        candidate = f"{base[:36]}-{n}"
        n += 1
    taken.add(candidate)
    return candidate


def import_into_config(config: Config, opml_file: Path) -> list[str]:
    """Add the OPML's feeds that the config does not have yet. Returns the new source ids."""
    if config.path is None:
        raise ValueError("the config has no file to write to")
    feeds = read_opml(opml_file.read_bytes())
    known = {s.url for s in config.sources}
    taken = {s.id for s in config.sources}
    new = [(t, u) for t, u in dict((u, (t, u)) for t, u in feeds).values() if u not in known]
    if not new:
        return []
    text = config.path.read_text(encoding="utf-8")
    entries = []
    ids = []
    for title, url in new:
        sid = _new_id(title, url, taken)
        ids.append(sid)
        entry = {"id": sid, "type": "rss", "url": url}
        if title:
            entry["name"] = title
        entries.append("  - " + yaml.safe_dump(entry, default_flow_style=True,
                                                width=10_000).strip())
    updated = _insert_sources(text, entries)
    try:
        parse_config(updated, str(config.path), config.path.resolve().parent)
    except ConfigError as exc:  # never write a config that would not load
        raise ConfigError([ConfigIssue(str(config.path), 0, "", "import would make the config "
                                       "invalid; nothing written"), *exc.issues]) from None
    tmp = config.path.with_name(config.path.name + ".tmp")
    tmp.write_text(updated, encoding="utf-8")
    os.replace(tmp, config.path)
    return ids


def _insert_sources(text: str, entries: list[str]) -> str:
    """Insert list entries at the end of the top-level ``sources:`` block (or add one)."""
    node = yaml.compose(text)
    lines = text.splitlines(keepends=True)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value != "sources":
                continue
            if isinstance(value, yaml.SequenceNode) and value.value and not value.flow_style:
                end = _end_line(value)
                block = "".join(e + "\n" for e in entries)
                return "".join(lines[:end]) + block + "".join(lines[end:])
            # `sources:` empty, null or flow style: replace its value with a block list.
            start, stop = key.start_mark.line, value.end_mark.line
            if value.end_mark.column > 0 or stop == start:
                stop += 1
            block = "sources:\n" + "".join(e + "\n" for e in entries)
            return "".join(lines[:start]) + block + "".join(lines[stop:])
    sep = "" if text.endswith("\n") or not text else "\n"
    return text + sep + "sources:\n" + "".join(e + "\n" for e in entries)


def _end_line(node: yaml.Node) -> int:
    """Line after a block node's last scalar (block ends run on past trailing comments)."""
    while isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.value \
            and not node.flow_style:
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    return node.end_mark.line + (1 if node.end_mark.column > 0 else 0)


def export_opml(config: Config) -> str:
    """The config's RSS sources as an OPML 2.0 document."""
    outlines = [
        f"    <outline type=\"rss\" text={quoteattr(s.label)} title={quoteattr(s.label)} "
        f"xmlUrl={quoteattr(s.url)}/>"
        for s in config.sources if s.type == "rss" and s.url
    ]
    return ('<?xml version="1.0" encoding="utf-8"?>\n<opml version="2.0">\n  <head>'
            "<title>cm-console sources</title></head>\n  <body>\n"
            + "\n".join(outlines) + "\n  </body>\n</opml>\n")
