"""Saved views of the inbox (Inbox, Mine, Escalated, ..., one per source): no UI code.

A view is a named filter over the store. The TUI's views column, its counts and the list all
come from here, so the CLI and the TUI agree on what "Mine" or "Snoozed" means.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from .config import Config
from .store import Store

__all__ = ["Filter", "View", "sla_left", "standard_views", "view_count", "view_ids"]

ACTIVE = ("new", "open")


@dataclass(frozen=True, slots=True)
class View:
    id: str
    label: str
    states: tuple[str, ...] | None = ACTIVE  # None: every state
    source: str | None = None
    mine: bool = False
    unassigned: bool = False
    breached: bool = False  # past its source's first-response SLA and still unanswered
    slas: tuple[tuple[str, float], ...] = ()  # (source id, seconds), for the Breached view


@dataclass(frozen=True, slots=True)
class Filter:
    """Narrowing on top of a view: the TUI's ``f`` filter and ``/`` search."""

    source: str | None = None
    state: str | None = None
    tag: str | None = None
    text: str = ""

    def with_text(self, text: str) -> Filter:
        return replace(self, text=text)

    @property
    def active(self) -> bool:
        return bool(self.source or self.state or self.tag or self.text)


def standard_views(config: Config) -> list[View]:
    """The fixed views, then one per configured source."""
    views = [
        View("inbox", "Inbox"),
        View("new", "New", ("new",)),
        View("mine", "Mine", (*ACTIVE, "escalated", "private", "replied"), mine=True),
        View("unassigned", "Unassigned", unassigned=True),
        View("breached", "Breached SLA", breached=True,
             slas=tuple((s.id, s.sla) for s in config.sources if s.sla)),
        View("escalated", "Escalated", ("escalated",)),
        View("private", "Private", ("private",)),
        View("snoozed", "Snoozed", ("snoozed",)),
        View("done", "Done", ("done", "replied")),
        View("all", "All", None),
    ]
    views += [View(f"source:{s.id}", s.label, ACTIVE, source=s.id) for s in config.sources]
    return views


def view_ids(store: Store, view: View, actor: str, flt: Filter | None = None) -> list[str]:
    """Item ids in ``view`` (narrowed by ``flt``), newest first."""
    flt = flt or Filter()
    states = view.states
    if flt.state:
        if states is not None and flt.state not in states:
            return []
        states = (flt.state,)
    if flt.source and view.source and flt.source != view.source:
        return []
    if view.breached and not view.slas:
        return []  # no source has an SLA: nothing can be late
    due = (dict(view.slas), time.time()) if view.breached else None
    return store.item_ids(states=states, source=flt.source or view.source, tag=flt.tag,
                          assignee=actor if view.mine else None, text=flt.text or None,
                          unassigned=view.unassigned, due_before=due)


def sla_left(item_published: float, sla: float | None, now: float | None = None) -> float | None:
    """Seconds until the first-response target (negative: breached by that much)."""
    if not sla:
        return None
    return item_published + sla - (time.time() if now is None else now)



def view_count(store: Store, view: View, actor: str) -> int:
    """How many items a view holds, from the store's cached counts where possible."""
    if view.breached:
        return len(view_ids(store, view, actor))
    counts = store.counts()
    states = view.states if view.states is not None else tuple(counts["state"])
    if view.mine:
        return sum(counts["assignee_state"].get(f"{actor}\x00{s}", 0) for s in states)
    if view.unassigned:
        return sum(counts["unassigned_state"].get(s, 0) for s in states)
    if view.source:
        return counts["active_source"].get(view.source, 0)
    if view.states is None:
        return store.item_count()
    return sum(counts["state"].get(s, 0) for s in view.states)
