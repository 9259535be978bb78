"""What an agent does to an item: the one code path for the TUI and the CLI.

Every action is a single store commit that changes the item and appends an audit event
(actor, time, before/after), so undo and reports read the same history.
"""

from __future__ import annotations

import time

from .models import STATES, Event, Item
from .store import Store

__all__ = [
    "UNDOABLE",
    "add_note",
    "assign",
    "mark_seen",
    "parse_when",
    "set_state",
    "snooze",
    "tag",
    "undo_last",
    "wake_snoozed",
]

UNDOABLE = frozenset({"state", "snooze", "tag", "untag", "assign"})


def set_state(store: Store, item_id: str, state: str, actor: str) -> Item:
    """Move an item to ``state`` (done, open, ...). Leaving "snoozed" clears the timer."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    changes: dict[str, object] = {"state": state}
    current = store.get_item(item_id)
    if current is not None and current.snooze_until is not None and state != "snoozed":
        changes["snooze_until"] = None
    item, _ = store.update_item(item_id, changes, actor=actor, action="state")
    return item


def mark_seen(store: Store, item_id: str, actor: str) -> Item | None:
    """new → open when an agent reads it; anything else is left alone (no event spam)."""
    item = store.get_item(item_id)
    if item is None or item.state != "new":
        return item
    updated, _ = store.update_item(item_id, {"state": "open"}, actor=actor, action="seen")
    return updated


def snooze(store: Store, item_id: str, seconds: float, actor: str) -> Item:
    """Hide an item until ``seconds`` from now; :func:`wake_snoozed` brings it back."""
    until = time.time() + seconds
    item, _ = store.update_item(item_id, {"state": "snoozed", "snooze_until": until},
                                actor=actor, action="snooze", data={"until": until})
    return item


def wake_snoozed(store: Store, actor: str = "cm-console", now: float | None = None) -> list[str]:
    """Return snoozed items whose time has come to the inbox (state "open")."""
    now = time.time() if now is None else now
    due = [i for i in store.items(store.item_ids(states=["snoozed"]))
           if i.snooze_until is not None and i.snooze_until <= now]
    for item in due:
        store.update_item(item.id, {"state": "open", "snooze_until": None}, actor=actor,
                          action="wake")
    return [i.id for i in due]


def tag(store: Store, item_id: str, tags: list[str], actor: str) -> Item:
    """Replace the item's tags (the event keeps the old list for undo)."""
    clean = sorted({t.strip().lower()[:40] for t in tags if t.strip()})[:32]
    item, _ = store.update_item(item_id, {"tags": clean}, actor=actor, action="tag")
    return item


def assign(store: Store, item_id: str, member: str | None, actor: str) -> Item:
    item, _ = store.update_item(item_id, {"assignee": member or None}, actor=actor,
                                action="assign")
    return item


def undo_last(store: Store, actor: str, item_id: str | None = None) -> tuple[Item, Event] | None:
    """Revert ``actor``'s most recent undoable change (on ``item_id`` if given).

    Restores the fields recorded in that event's "before" and logs an "undo" event that
    points at it, so the audit log keeps both. Returns None when there is nothing to undo.
    """
    undone = {e.data.get("undoes") for e in store.events() if e.action == "undo"}
    for event in reversed(store.events(item=item_id) if item_id else store.events()):
        if event.actor != actor or event.id in undone:
            continue
        if event.action == "undo":
            continue
        if event.action not in UNDOABLE or "before" not in event.data:
            continue
        item, logged = store.update_item(event.item, dict(event.data["before"]), actor=actor,
                                         action="undo", data={"undoes": event.id,
                                                              "undone_action": event.action})
        return item, logged
    return None


def add_note(store: Store, item_id: str, text: str, actor: str) -> Event:
    """An internal note on an item: visible to the team in its history, never sent anywhere."""
    from .sanitize import safe_text

    if store.get_item(item_id) is None:
        raise KeyError(f'no item "{item_id}"')
    return store.log_event(actor, "note", item_id, {"text": safe_text(text, 4000)})


def parse_when(text: str, now: float | None = None) -> float:
    """Seconds from now for a snooze: ``30m``/``2h``/``1d``, ``tomorrow`` (9:00), ``17:30``.

    Raises ValueError with a message fit to show.
    """
    from .models import parse_duration

    now = time.time() if now is None else now
    value = text.strip().lower()
    local = time.localtime(now)
    if value in ("tomorrow", "tmr"):
        target = time.mktime((local.tm_year, local.tm_mon, local.tm_mday + 1, 9, 0, 0, 0, 0, -1))
        return target - now
    if ":" in value:
        try:
            hours, minutes = (int(p) for p in value.split(":", 1))
        except ValueError:
            raise ValueError(f'"{text}" is not a time like 17:30') from None
        if not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ValueError(f'"{text}" is not a time like 17:30')
        target = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, hours, minutes, 0, 0,
                              0, -1))
        if target <= now:
            target += 86400
        return target - now
    seconds = parse_duration(value)
    if not 0 < seconds <= 365 * 86400:
        raise ValueError("snooze for between a second and a year")
    return seconds
