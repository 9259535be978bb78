"""What an agent does to an item: the one code path for the TUI and the CLI.

Every action is a single store commit that changes the item and appends an audit event
(actor, time, before/after), so undo and reports read the same history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .config import Config, Template
from .models import STATES, Event, Item, OutboxEntry
from .sanitize import one_line, safe_text
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

UNDOABLE = frozenset({"state", "snooze", "tag", "untag", "assign", "reply", "route_private",
                      "escalate"})


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
        from .delivery import cancel

        entries = [e for e in map(store.get_outbox, event.data.get("outbox", [])) if e]
        # Look at every entry before cancelling any: all of the action goes back, or none.
        if any(e.status == "delivered" for e in entries):
            raise ValueError(f"{event.action} already left the outbox; it cannot be undone")
        tried = next((e for e in entries if e.status in ("pending", "failed") and e.attempts),
                     None)
        if tried is not None:  # the far side may have it (a timeout, a 500 after accepting)
            raise ValueError(f"{event.action} was already attempted ({tried.attempts}x, last: "
                             f"{tried.last_error or 'no answer'}); it cannot be undone")
        cancelled: list[str] = []
        for entry in entries:
            if entry.status == "pending" and not cancel(store, entry.id, actor):
                raise ValueError(f"{event.action} is being sent right now; it cannot be undone")
            cancelled.append(entry.id)
        item, logged = store.update_item(event.item, dict(event.data["before"]), actor=actor,
                                         action="undo", data={"undoes": event.id,
                                                              "undone_action": event.action,
                                                              "cancelled": cancelled})
        return item, logged
    return None


def add_note(store: Store, item_id: str, text: str, actor: str) -> Event:
    """An internal note on an item: visible to the team in its history, never sent anywhere."""
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


# --------------------------------------------------------------------------- answering


@dataclass(slots=True)
class Sent:
    """What an answering action did: the text, how it leaves, and what waits in the outbox.

    ``mode`` is "clipboard" when the platform has no write API from here: the caller copies
    ``text`` and opens ``item.url`` so the agent pastes it (and the item is marked replied).
    ``mode`` is "outbox" when the platform's API posts it: ``outbox`` holds the entries
    (kind "platform"), sent after the undo window by ``delivery.deliver_due``.
    """

    item: Item
    text: str
    mode: str
    outbox: list[OutboxEntry] = field(default_factory=list)


def _slack_safe(value: object, max_len: int = 600) -> str:
    """Untrusted text for a chat webhook: no markup, no mass mentions (@here, <!channel>)."""
    text = one_line(value, max_len)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("@", "@\u2060")  # a word joiner breaks @channel/@all/@here


def _slack_url(url: str) -> str:
    """A permalink for a chat webhook: escaped, but intact (an @ in a path must stay)."""
    return one_line(url, 500).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _own_text(text: object, max_len: int = 20_000) -> str:
    """The agent's outgoing text, made safe like any other but keeping zero-width joiners
    (U+200C/U+200D): they hold emoji sequences (a family, a profession) and Indic or Persian
    spellings together, and Bluesky counts such a sequence as one character."""
    stand_in = {"\u200c": "\ufdd0", "\u200d": "\ufdd1"}  # noncharacters safe_text keeps
    raw = "" if text is None else str(text)
    raw = raw.replace("\ufdd0", "").replace("\ufdd1", "")
    for joiner, other in stand_in.items():
        raw = raw.replace(joiner, other)
    clean = safe_text(raw, max_len)
    for joiner, other in stand_in.items():
        clean = clean.replace(other, joiner)
    return clean


def _commit(store: Store, item_id: str, changes: dict[str, Any], actor: str, action: str,
            data: dict[str, Any], outbox: list[tuple[str, str, dict[str, Any]]],
            delay: float) -> tuple[Item, list[OutboxEntry]]:
    """Change the item, queue its outbox entries and log the event: one atomic commit."""
    from .delivery import enqueue

    with store.transaction() as tx:
        current = store.get_item(item_id)
        if current is None:
            raise KeyError(f'no item "{item_id}"')
        before = {k: getattr(current, k) for k in changes}
        now = time.time()
        tx.patch("items", item_id, {**changes, "updated": now})
        entries = [enqueue(store, kind, item_id, target, payload, actor, delay=delay, now=now,
                           tx=tx) for kind, target, payload in outbox]
        tx.event(actor, action, item_id, {**data, "before": before, "after": changes,
                                          "outbox": [e.id for e in entries]}, now)
    item = store.get_item(item_id)
    assert item is not None
    return item, entries


def _check_length(text: str, config: Config, item: Item, template: Template | None) -> None:
    from .templates import length, length_limit

    limit = length_limit(template, config.source(item.source), item.source_type, item)
    size = length(text, item.source_type)
    if limit is not None and size > limit:
        raise ValueError(f"the reply is {size} characters; {item.source_type} allows {limit}")


def platform_can(config: Config, item: Item, op: str) -> bool:
    """True when ``op`` ("reply"/"private") for this item goes through the platform's API
    (the outbox posts it); False means the fallback: clipboard + browser for a reply, the
    e-mail hand-off for a private route. The TUI asks this to describe what will happen."""
    from .sources import can_send

    return config.source(item.source) is not None and can_send(item, op)


def _platform(item: Item, op: str, text: str, title: str = "") -> tuple[str, str, dict[str, Any]]:
    """An outbox entry for the source's connector: which source, what to do, the platform
    ids the request needs (copied from ``item.extra`` now, so a later poll cannot change
    what this entry answers), and the text."""
    return ("platform", item.source, {"source": item.source, "op": op, "text": text,
                                      "ids": dict(item.extra), "url": item.url,
                                      "title": title})


def outgoing_text(item: Item, op: str, text: str) -> str:
    """What the platform will receive for ``text`` (Mastodon puts the author's @mention
    first): the length limit is checked on this, and the TUI can show it in the review."""
    from .sources import API_TYPES, connector

    if item.source_type not in API_TYPES:
        return text
    build = getattr(connector(item.source_type), "outgoing_text", None)
    return build(item.extra, op, text) if build is not None else text


def reply(store: Store, config: Config, item_id: str, text: str, actor: str, *,
          template: Template | None = None, delay: float | None = None) -> Sent:
    """Answer publicly. Where the source has a write API (Mastodon, Discourse, Bluesky) the
    reply goes through the outbox (``mode`` "outbox": it waits out the undo window, then the
    connector posts it); for feeds the text goes to the clipboard and the item is marked
    replied."""
    item = store.get_item(item_id)
    if item is None:
        raise KeyError(f'no item "{item_id}"')
    text = _own_text(text)
    if not text:
        raise ValueError("the reply is empty")
    _check_length(text, config, item, template)
    if platform_can(config, item, "reply"):
        _check_length(outgoing_text(item, "reply", text), config, item, template)
        updated, entries = _commit(
            store, item_id, {"state": "replied"}, actor, "reply",
            {"template": template.id if template else "", "text": text, "mode": "outbox",
             "channel": item.source_type},
            [_platform(item, "reply", text)], config.undo_window if delay is None else delay)
        return Sent(updated, text, "outbox", entries)
    updated, _ = _commit(store, item_id, {"state": "replied"}, actor, "reply",
                         {"template": template.id if template else "", "text": text,
                          "mode": "clipboard"}, [], 0.0)
    return Sent(updated, text, "clipboard")


def route_private(store: Store, config: Config, item_id: str, actor: str, *,
                  public_text: str, private_text: str, public_template: Template | None = None,
                  private_template: Template | None = None, delay: float | None = None) -> Sent:
    """Acknowledge publicly, continue privately: the platform's private channel where it has
    one, otherwise an e-mail hand-off to ``support_email`` through the outbox."""
    from .templates import case_number

    item = store.get_item(item_id)
    if item is None:
        raise KeyError(f'no item "{item_id}"')
    public_text = _own_text(public_text)
    private_text = _own_text(private_text)
    if public_text:
        _check_length(public_text, config, item, public_template)
    if platform_can(config, item, "private"):
        if not private_text:
            raise ValueError("the private message is empty")
        if public_text:
            _check_length(outgoing_text(item, "reply", public_text), config, item,
                          public_template)
        _check_length(outgoing_text(item, "private", private_text), config, item,
                      private_template)
        case = case_number(item_id)
        title = f"About your post: {one_line(item.title, 150)} ({case})" if item.title \
            else f"About your post ({case})"
        outbox = ([_platform(item, "reply", public_text)] if public_text else []) + \
            [_platform(item, "private", private_text, title)]
        channel = {"mastodon": "direct", "discourse": "private_message",
                   "bluesky": "chat"}.get(item.source_type, item.source_type)
        updated, entries = _commit(
            store, item_id, {"state": "private"}, actor, "route_private",
            {"public_template": public_template.id if public_template else "",
             "private_template": private_template.id if private_template else "",
             "public_text": public_text, "private_text": private_text, "channel": channel,
             "to": item.author_handle or item.author, "case": case},
            outbox, config.undo_window if delay is None else delay)
        return Sent(updated, public_text, "outbox", entries)
    if not config.support_email:
        raise ValueError(f"{item.source_type} has no private channel here and the config has "
                         "no support_email for an e-mail hand-off")
    body, _ = store.body(item_id)
    case = case_number(item_id)
    mail = {
        "to": [config.support_email],
        "subject": f"[{case}] Hand-off: {one_line(item.author, 80) or 'no author'} on "
                   f"{item.source}",
        "body": (f"{private_text}\n\n---\nCase {case}, handed off by {actor}\n"
                 f"Post: {item.url or '(no link)'}\nAuthor: {one_line(item.author, 200)}\n"
                 f"Source: {item.source}\n\n{safe_text(body, 2000)}\n"),
    }
    updated, entries = _commit(
        store, item_id, {"state": "private"}, actor, "route_private",
        {"public_template": public_template.id if public_template else "",
         "private_template": private_template.id if private_template else "",
         "public_text": public_text, "private_text": private_text, "channel": "email",
         "to": config.support_email, "case": case},
        [("email", "support", mail)], config.undo_window if delay is None else delay)
    return Sent(updated, public_text, "clipboard" if public_text else "none", entries)


def escalate(store: Store, config: Config, item_id: str, target_id: str, reason: str,
             actor: str, *, priority: str = "normal", delay: float | None = None) -> Sent:
    """Send the item to a target (PR desk, legal...) by webhook and/or e-mail; the item
    waits in Escalated until someone resolves it."""
    from .templates import case_number

    target = next((t for t in config.escalation_targets if t.id == target_id), None)
    if target is None:
        known = ", ".join(t.id for t in config.escalation_targets) or "none configured"
        raise ValueError(f'no escalation target "{target_id}" (known: {known})')
    if priority not in ("low", "normal", "high", "urgent"):
        raise ValueError(f'priority must be low, normal, high or urgent, not "{priority}"')
    item = store.get_item(item_id)
    if item is None:
        raise KeyError(f'no item "{item_id}"')
    reason = safe_text(reason, 2000)
    body, _ = store.body(item_id)
    excerpt = safe_text(body, 500, multiline=False) or item.summary
    case = case_number(item_id)
    member = config.member(actor)
    agent = member.name if member else actor
    outbox: list[tuple[str, str, dict[str, Any]]] = []
    if target.webhook:
        text = (f"*Escalation {case}* ({priority}) for {_slack_safe(target.name, 80)} from "
                f"{_slack_safe(agent, 80)}: {_slack_safe(reason, 500)}\n"
                f"{_slack_safe(item.author, 100)} on {_slack_safe(item.source, 60)}: "
                f"\"{_slack_safe(item.title or excerpt, 200)}\"\n{_slack_url(item.url)}")
        outbox.append(("webhook", target.id, {"url": target.webhook, "body": {
            "text": text,
            "case": case, "priority": priority, "target": target.id, "reason": reason,
            "agent": actor, "item": {"id": item.id, "url": item.url, "author": item.author,
                                     "source": item.source, "title": item.title,
                                     "excerpt": excerpt},
        }}))
    if target.email:
        outbox.append(("email", target.id, {
            "to": target.email,
            "subject": f"[{case}] Escalation ({priority}): {one_line(item.title or excerpt, 80)}",
            "body": (f"{agent} escalated this to {target.name}.\n\nReason: {reason}\n\n"
                     f"Post: {item.url or '(no link)'}\nAuthor: {one_line(item.author, 200)}\n"
                     f"Source: {item.source}\nPriority: {priority}\n\n{excerpt}\n"),
        }))
    updated, entries = _commit(store, item_id, {"state": "escalated", "priority": priority},
                               actor, "escalate", {"target": target.id, "reason": reason,
                                                   "case": case}, outbox,
                               config.undo_window if delay is None else delay)
    return Sent(updated, reason, "outbox", entries)
