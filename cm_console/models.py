"""Domain objects: plain dataclasses, no storage or UI knowledge.

The store converts its JSON documents to these at one boundary (``store.py``); everything
else (poller, CLI, TUI) speaks only in these types.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1

# Item states. "new" is unseen; "open" seen but not handled; the rest are outcomes.
STATES = ("new", "open", "replied", "escalated", "private", "snoozed", "done")
ACTIVE_STATES = frozenset({"new", "open"})

# Caps on every stored field: hostile feeds cannot bloat the store.
MAX_TITLE = 500
MAX_AUTHOR = 200
MAX_URL = 2048
MAX_GUID = 1024
MAX_SUMMARY = 280
MAX_TEXT = 100_000
MAX_HTML = 200_000
MAX_TAGS = 32


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _doc(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict: one level of copying (lists and dicts are copied, so the store's
    document never shares them with an object someone may change), 15x faster than asdict."""
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in fields(obj))
    out = {}
    for name in names:
        value = getattr(obj, name)
        out[name] = value.copy() if isinstance(value, list | dict) else value
    return out


@dataclass(slots=True)
class Item:
    """One post/comment/mention, normalized across all source types.

    ``text``/``html`` bodies live apart from this hot record (see ``Store.body``) so that
    listing 50,000 items never loads 50,000 bodies.
    """

    id: str
    source: str
    source_type: str
    guid: str
    url: str
    title: str
    author: str
    published: float  # epoch seconds, UTC, never in the future of ``fetched``
    fetched: float
    summary: str = ""  # first words of the body, for the list and search
    author_handle: str = ""
    state: str = "new"
    tags: list[str] = field(default_factory=list)
    assignee: str | None = None
    priority: str = "normal"
    snooze_until: float | None = None
    thread: str = ""  # conversation key: items with the same key form one thread
    parent: str = ""  # id of the item this one answers, when known
    updated: float = 0.0  # last time anyone changed this item
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific ids (status id...)
    body: list[int] | None = None  # the store's [offset, length] of the body; not for display

    def to_doc(self) -> dict[str, Any]:
        """JSON-ready dict (the store's document form)."""
        return _doc(self)


@dataclass(slots=True)
class ParsedEntry:
    """What a source parser hands the poller: an item before it has a store identity."""

    key: str  # guid/id, else link, else content hash: stable across polls
    url: str
    title: str
    author: str
    published: float | None
    text: str
    html: str
    author_handle: str = ""
    thread: str = ""
    parent_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SourceState:
    """Poll bookkeeping for one source, persisted between runs."""

    id: str
    etag: str = ""
    last_modified: str = ""
    content_hash: str = ""  # skip re-parsing a 200 whose body did not change
    last_poll: float = 0.0
    last_success: float = 0.0
    last_status: str = ""  # "ok", "304", "unchanged", "error"
    last_error: str = ""
    error_count: int = 0
    next_due: float = 0.0
    retry_after_until: float = 0.0  # a server's explicit Retry-After: honoured even by --once
    last_new: int = 0
    items_total: int = 0
    cursor: dict[str, Any] = field(default_factory=dict)  # API sources: since_id etc.

    def to_doc(self) -> dict[str, Any]:
        return _doc(self)


@dataclass(slots=True)
class Event:
    """One line of the append-only audit log: who did what to which item, when."""

    ts: float
    actor: str
    action: str
    item: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    id: int = 0

    def to_doc(self) -> dict[str, Any]:
        return _doc(self)


@dataclass(slots=True)
class OutboxEntry:
    """A message waiting to leave the machine (reply, escalation, hand-off)."""

    id: str
    kind: str  # "webhook", "email", "platform"
    item: str
    target: str
    payload: dict[str, Any]
    created: float
    actor: str
    status: str = "pending"  # pending, delivered, failed, cancelled
    attempts: int = 0
    next_attempt: float = 0.0  # not before: created + the undo window, then backoff
    last_error: str = ""
    delivered: float | None = None
    idempotency_key: str = ""  # the same on every attempt, so the far side can dedupe
    lease_until: float = 0.0  # a console is sending it right now; others keep off
    lease_owner: str = ""

    def to_doc(self) -> dict[str, Any]:
        return _doc(self)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> float:
    """Seconds from ``90s``, ``5m``, ``1h``, ``7d``, ``2w`` (a bare number is seconds).

    Raises ValueError with a message fit to show a user.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a duration like 5m, got {text!r}")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"expected a positive duration, got {text}")
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f'expected a duration like 5m, got "{text}"')
    number, unit = match.groups()
    return float(number) * _DURATION_UNITS[(unit or "s").lower()]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2,
               "gib": 1024**3}


def parse_size(text: str | int) -> int:
    """Bytes from ``512KB``, ``10MB``, ``1MiB`` (a bare number is bytes)."""
    if isinstance(text, bool):
        raise ValueError(f"expected a size like 10MB, got {text!r}")
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f'expected a size like 10MB, got "{text}"')
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[(unit or "b").lower()])
