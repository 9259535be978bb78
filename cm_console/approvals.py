"""Reply approvals: sensitive answers wait for a lead before anything leaves.

An answer needs approval when its template says ``requires_approval: true`` or the agent's
role is listed under ``approvals.review`` in the config. Instead of going to the outbox (or
the clipboard) it is stored as a draft "awaiting approval"; a member whose role is under
``approvals.approvers`` approves it (it is then sent exactly as the agent wrote it, or as the
approver edited it), or rejects it with a note the agent sees in the item's history.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from . import actions
from .config import Config, Template
from .sanitize import safe_text
from .store import Store

__all__ = ["AlreadyAnswered", "answered_since", "approve", "can_approve", "needs_approval",
           "reject", "submit"]


def _role(config: Config, member_id: str) -> str:
    member = config.member(member_id)
    return member.role if member else ""


def needs_approval(config: Config, actor: str, *templates: Template | None) -> bool:
    """True when any template used requires approval or the actor's role is reviewed."""
    if any(t is not None and t.requires_approval for t in templates):
        return True
    return _role(config, actor) in config.review_roles


def can_approve(config: Config, member_id: str) -> bool:
    return _role(config, member_id) in config.approver_roles


def submit(store: Store, item_id: str, actor: str, op: str, payload: dict[str, Any]) -> str:
    """Park an answer for review. ``op`` is "reply" or "route_private"; ``payload`` holds the
    texts and template ids exactly as the agent would have sent them."""
    if store.get_item(item_id) is None:
        raise KeyError(f'no item "{item_id}"')
    approval_id = uuid.uuid4().hex[:12]
    now = time.time()
    with store.transaction() as tx:
        tx.put("approvals", approval_id, {"item": item_id, "actor": actor, "op": op,
                                          "payload": payload, "created": now,
                                          "status": "awaiting"})
        tx.event(actor, "submitted_for_approval", item_id, {"approval": approval_id, "op": op},
                 now)
    return approval_id


def _decide(store: Store, approval_id: str, status: str, approver: str) -> dict[str, Any]:
    """Take the decision atomically: re-read under the store's lock, so two reviewers (or a
    stale console) can never both act on one answer."""
    with store.transaction() as tx:
        row = next((r for r in store.approvals(None) if r["id"] == approval_id), None)
        if row is None:
            raise KeyError(f'no answer awaiting approval with id "{approval_id}"')
        if row.get("status") != "awaiting":
            raise ValueError(f"this answer was already {row.get('status')} by "
                             f"{row.get('by', 'someone')}")
        tx.patch("approvals", approval_id, {"status": status, "by": approver,
                                            "decided": time.time()})
    return row


class AlreadyAnswered(ValueError):
    """Someone answered the post after this answer was submitted: approving would send the
    customer a second reply. ``force=True`` approves anyway."""


def answered_since(store: Store, item_id: str, since: float) -> list[str]:
    """Answers that went (or are queued) to the post after ``since``, in words."""
    out = []
    for event in store.events(item=item_id):
        if event.ts > since and event.action in ("reply", "route_private"):
            out.append(f"{event.actor} answered ({event.action.replace('_', ' ')}) at "
                       f"{time.strftime('%H:%M', time.localtime(event.ts))}")
    return out


def approve(store: Store, config: Config, approval_id: str, approver: str,
            edited: dict[str, str] | None = None, *, force: bool = False) -> actions.Sent:
    """Send the answer (as the agent wrote it, or with the approver's ``edited`` texts).

    Raises AlreadyAnswered when the post was answered after the answer was submitted (a
    teammate, or the approver, got there first), unless ``force``.
    """
    if not can_approve(config, approver):
        raise ValueError(f"{approver} cannot approve answers (approving roles: "
                         f"{', '.join(config.approver_roles)})")
    pending = next((r for r in store.approvals(None) if r["id"] == approval_id), None)
    if pending is not None and pending.get("status") == "awaiting" and not force:
        earlier = answered_since(store, pending["item"], float(pending.get("created", 0)))
        if earlier:
            raise AlreadyAnswered(f"since this answer was submitted, {'; '.join(earlier)}: "
                                  "approving would send a second answer (reject it, or "
                                  "approve anyway)")
    row = _decide(store, approval_id, "sending", approver)
    payload = {**row["payload"], **(edited or {})}
    templates = {t.id: t for t in config.templates}
    agent = row["actor"]
    try:
        if row["op"] == "reply":
            sent = actions.reply(store, config, row["item"], payload["text"], agent,
                                 template=templates.get(payload.get("template", "")))
        else:
            sent = actions.route_private(
                store, config, row["item"], agent, public_text=payload.get("public_text", ""),
                private_text=payload["private_text"],
                public_template=templates.get(payload.get("public_template", "")),
                private_template=templates.get(payload.get("private_template", "")))
    except (KeyError, ValueError):
        with store.transaction() as tx:  # nothing was sent: it waits for a decision again
            tx.patch("approvals", approval_id, {"status": "awaiting"})
        raise
    with store.transaction() as tx:
        tx.patch("approvals", approval_id, {"status": "approved", "by": approver,
                                            "decided": time.time(), "edited": bool(edited)})
        tx.event(approver, "approved", row["item"], {"approval": approval_id, "agent": agent,
                                                     "edited": bool(edited)})
    return sent


def reject(store: Store, config: Config, approval_id: str, approver: str, note: str) -> None:
    """Turn the answer down; the note goes to the item's history for the agent."""
    if not can_approve(config, approver):
        raise ValueError(f"{approver} cannot reject answers (approving roles: "
                         f"{', '.join(config.approver_roles)})")
    row = _decide(store, approval_id, "rejected", approver)
    with store.transaction() as tx:
        tx.event(approver, "rejected", row["item"], {"approval": approval_id,
                                                     "agent": row["actor"],
                                                     "note": safe_text(note, 2000)})
