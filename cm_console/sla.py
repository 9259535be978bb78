"""SLA breaches: notice when an unanswered item passes its first-response target, and run
the rules written for that moment (``match: {breached: true}``), e.g. flag it for PR.

Rules normally run when an item arrives; a breach happens later, while nobody is looking,
so the TUI's tick and the continuous poll loop call :func:`mark_breaches`. Each item is
marked once (``extra.breached``), in one commit with the rules' changes and an event.
"""

from __future__ import annotations

import time

from .config import Config
from .rules import apply_rules, match_text
from .store import Store

__all__ = ["mark_breaches"]


def mark_breaches(store: Store, config: Config, now: float | None = None) -> list[str]:
    """Mark newly breached active items and apply breach rules. Returns their ids."""
    now = time.time() if now is None else now
    slas = {s.id: s.sla for s in config.sources if s.sla}
    if not slas:
        return []
    late = store.item_ids(states=("new", "open"), due_before=(slas, now))
    fresh = [i for i in store.items(late) if not i.extra.get("breached")]
    if not fresh:
        return []
    breach_rules = [r for r in config.rules if r.breached]
    marked: list[str] = []
    with store.transaction() as tx:
        for item in fresh:
            current = store.get_item(item.id)
            if current is None or current.extra.get("breached") or current.state not in (
                "new", "open"
            ):
                continue  # another console marked, answered or closed it meanwhile
            marked.append(item.id)
            current.extra = {**current.extra, "breached": now}
            changes: dict = {"extra": current.extra}
            matched: list[str] = []
            if breach_rules:
                result = apply_rules(breach_rules, current, match_text(current))
                matched = [m.rule.id for m in result.matches]
                changes.update(result.changes)
                changes["extra"] = {**result.changes.get("extra", current.extra),
                                    "breached": now}
            tx.patch("items", item.id, changes)
            visible = {k: v for k, v in changes.items() if k != "extra"}
            if "escalate_to" in changes["extra"]:
                visible["escalate_to"] = changes["extra"]["escalate_to"]
            tx.event("sla", "sla_breached", item.id,
                     {"sla": slas[item.source], "rules": matched, "after": visible}, now)
    return marked
