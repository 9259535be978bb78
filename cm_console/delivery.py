"""The outbox: everything that leaves the machine, delivered at least once, never lost.

An entry is written to the store *before* anything is sent, with an idempotency key that
every attempt repeats (HTTP ``Idempotency-Key`` header, e-mail ``Message-ID``), so a receiver
can drop a duplicate that a crash between "accepted" and "marked delivered" would cause.
Entries wait out the undo window, then are claimed with a short lease (two consoles on one
store never send the same entry at once), sent, and marked delivered only when the far side
accepted (HTTP 2xx, SMTP 250). Failures retry with exponential backoff, across restarts.
"""

from __future__ import annotations

import os
import random
import smtplib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from .config import Config, resolve_secret
from .fetch import USER_AGENT
from .models import OutboxEntry
from .sanitize import one_line
from .store import Store

__all__ = ["DeliveryResult", "cancel", "deliver_due", "enqueue", "prune", "retry"]

LEASE_SECONDS = 120.0
MAX_ATTEMPTS = 10
SEND_TIMEOUT = 15.0


@dataclass(slots=True)
class DeliveryResult:
    entry: OutboxEntry
    ok: bool
    error: str = ""
    remote: dict[str, Any] | None = None  # what the platform made (status id, topic...)


def enqueue(store: Store, kind: str, item_id: str, target: str, payload: dict[str, Any],
            actor: str, *, delay: float = 0.0, now: float | None = None,
            tx: Any = None) -> OutboxEntry:
    """Add an entry. ``delay`` is the undo window. Pass ``tx`` to join a larger commit."""
    now = time.time() if now is None else now
    key = uuid.uuid4().hex
    entry = OutboxEntry(id=key[:16], kind=kind, item=item_id, target=target, payload=payload,
                        created=now, actor=actor, next_attempt=now + delay,
                        idempotency_key=key)
    if tx is not None:
        tx.put("outbox", entry.id, entry.to_doc())
    else:
        with store.transaction() as own:
            own.put("outbox", entry.id, entry.to_doc())
    return entry


def cancel(store: Store, entry_id: str, actor: str, *, attempted: bool = False) -> bool:
    """Cancel an entry not attempted yet (the undo window). True if cancelled.

    ``attempted=True`` also stops one that has been tried and is still failing or waiting
    to retry (a webhook URL that is wrong, a mail server that is down): without it such an
    entry could only go on retrying, and would be sent hours late once the cause is fixed.
    An earlier attempt may still have reached the far side; the event records how many
    there were. Never an entry being sent right now (leased).
    """
    with store.transaction() as tx:
        entry = store.get_outbox(entry_id)
        if entry is None or entry.lease_until > time.time():
            return False
        if not (entry.status == "pending" and entry.attempts == 0) and not (
                attempted and entry.status in ("pending", "failed")):
            return False
        tx.patch("outbox", entry_id, {"status": "cancelled"})
        tx.event(actor, "outbox_cancelled", entry.item, {
            "outbox": entry_id, "target": entry.target, "after_attempts": entry.attempts,
            "last_error": entry.last_error})
    return True


def retry(store: Store, entry_ids: list[str] | None, actor: str) -> list[str]:
    """Make failed (or all given) entries due now again. Returns the ids changed."""
    changed = []
    with store.transaction() as tx:
        now = time.time()
        for entry in store.outbox(["failed", "pending"]):
            if entry_ids is not None and entry.id not in entry_ids:
                continue
            if entry.lease_until > now:
                continue  # being sent right now by a console
            if entry.status == "pending" and entry.attempts == 0:
                continue  # still in its undo window: it will go by itself
            if entry_ids is None and entry.status != "failed":
                continue
            tx.patch("outbox", entry.id, {"status": "pending", "next_attempt": 0.0,
                                          "lease_until": 0.0})
            tx.event(actor, "outbox_retry", entry.item, {"outbox": entry.id})
            changed.append(entry.id)
    return changed


def describe(entry: OutboxEntry) -> str:
    """An entry in words: "reply on mastodon", "private message on forum", "email to pr"."""
    if entry.kind == "platform":
        op = entry.payload.get("op", "") if isinstance(entry.payload, dict) else ""
        what = {"reply": "reply", "private": "private message"}.get(op, "post")
        return f"{what} on {entry.target}"
    return f"{entry.kind} to {entry.target}"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def deliver_due(store: Store, config: Config, *, now: float | None = None,
                limit: int = 50) -> list[DeliveryResult]:
    """Send every due entry once. Safe to call from several consoles at the same time.

    Entries are claimed one at a time, each with its own lease, right before it is sent: a
    lease taken for a whole batch could run out behind a few slow receivers and let another
    console send the same entries again.
    """
    owner = _owner()
    results: list[DeliveryResult] = []
    tried: set[str] = set()  # one attempt per entry per call; retries wait for their backoff
    while len(results) < limit:
        moment = time.time() if now is None else now
        entry = _claim_one(store, moment, owner, tried)
        if entry is not None:
            tried.add(entry.id)
        if entry is None:
            break
        try:
            remote = _send(entry, config)
        except DeliveryError as exc:
            result = DeliveryResult(entry, False, str(exc))
        except Exception as exc:  # one bad entry (e.g. a malformed ${URL}) is a failure
            result = DeliveryResult(entry, False, f"{type(exc).__name__}: {one_line(exc, 200)}")
        else:
            result = DeliveryResult(entry, True, remote=remote)
        _finish(store, [result], owner)  # marked at once: a crash later cannot resend it
        results.append(result)
    return results


def _claim_one(store: Store, now: float, owner: str, tried: set[str]) -> OutboxEntry | None:
    with store.transaction() as tx:
        for entry in store.outbox(["pending"]):
            if entry.id in tried or entry.next_attempt > now or entry.lease_until > now:
                continue
            tx.patch("outbox", entry.id, {"lease_until": now + LEASE_SECONDS,
                                          "lease_owner": owner})
            return entry
    return None


def _finish(store: Store, results: list[DeliveryResult], owner: str) -> None:
    now = time.time()
    with store.transaction() as tx:
        for result in results:
            current = store.get_outbox(result.entry.id)
            if current is None or current.lease_owner != owner:
                continue  # our lease was taken over; the new holder records the outcome
            entry = current
            attempts = entry.attempts + 1
            if result.ok:
                tx.patch("outbox", entry.id, {"status": "delivered", "delivered": now,
                                              "attempts": attempts, "lease_until": 0.0,
                                              "last_error": ""})
                tx.event(entry.actor, "delivered", entry.item,
                         {"outbox": entry.id, "kind": entry.kind, "target": entry.target,
                          "attempts": attempts,
                          **({"remote": result.remote} if result.remote else {})})
                continue
            failed = attempts >= MAX_ATTEMPTS
            delay = min(30.0 * 2 ** (attempts - 1), 3600.0) * random.uniform(0.8, 1.2)
            # Cancelled while this attempt was in flight (its lease ran out first): record the
            # attempt, never bring it back to pending. (A success is recorded as delivered
            # above: it did go out.)
            status = "cancelled" if entry.status == "cancelled" else (
                "failed" if failed else "pending")
            tx.patch("outbox", entry.id, {
                "status": status, "attempts": attempts,
                "next_attempt": now + delay, "lease_until": 0.0,
                "last_error": one_line(result.error, 300),
            })
            tx.event(entry.actor, "delivery_failed", entry.item,
                     {"outbox": entry.id, "kind": entry.kind, "target": entry.target,
                      "attempts": attempts, "error": one_line(result.error, 300),
                      "gave_up": failed})


class DeliveryError(Exception):
    """The far side did not accept the message (this attempt)."""


def _send(entry: OutboxEntry, config: Config) -> dict[str, Any] | None:
    if entry.kind == "webhook":
        _send_webhook(entry)
    elif entry.kind == "email":
        _send_email(entry, config)
    elif entry.kind == "platform":
        return _send_platform(entry, config)
    else:
        raise DeliveryError(f"no sender for {entry.kind!r} entries in this version")
    return None


def _send_platform(entry: OutboxEntry, config: Config) -> dict[str, Any]:
    """A reply or private message through the source's own API (sources/<type>.py builds
    the exact request, resolves its secrets now, and raises DeliveryError on failure)."""
    from .sources import API_TYPES, CAPABILITIES, connector

    source_id = str(entry.payload.get("source") or "")
    op = str(entry.payload.get("op") or "")
    src = config.source(source_id)
    if src is None:
        raise DeliveryError(f'source "{one_line(source_id, 60)}" is no longer in the config')
    if src.type not in API_TYPES or op not in CAPABILITIES.get(src.type, frozenset()):
        raise DeliveryError(f"{src.type} source {src.id} cannot {op or '?'} through its API")
    remote = connector(src.type).send(src, entry, SEND_TIMEOUT)
    return remote if isinstance(remote, dict) else {}


def _send_webhook(entry: OutboxEntry) -> None:
    url = entry.payload.get("url", "")
    try:
        url = resolve_secret(url, f"webhook for {entry.target}")
        response = httpx.post(
            url, json=entry.payload.get("body", {}), timeout=SEND_TIMEOUT,
            follow_redirects=False,
            headers={"Idempotency-Key": entry.idempotency_key, "User-Agent": USER_AGENT},
        )
    except ValueError as exc:
        raise DeliveryError(str(exc)) from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {one_line(exc, 200)}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code} from the webhook")


def _header(value: str) -> str:
    """A header value with CR/LF (and every other control character) removed."""
    return one_line(value, 900)


def _send_email(entry: OutboxEntry, config: Config) -> None:
    payload = entry.payload
    message = EmailMessage()
    message["From"] = _header(config.smtp.sender)
    message["To"] = ", ".join(_header(a) for a in payload.get("to", []))
    message["Subject"] = _header(payload.get("subject", "cm-console"))
    message["Message-ID"] = f"<{entry.idempotency_key}@cm-console>"
    message["X-CM-Console-Idempotency-Key"] = entry.idempotency_key
    message.set_content(payload.get("body", ""))
    smtp = config.smtp
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=SEND_TIMEOUT) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username:
                client.login(smtp.username, resolve_secret(smtp.password, "smtp.password"))
            refused = client.send_message(message)
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {one_line(exc, 200)}") from None
    if refused:
        raise DeliveryError(f"SMTP refused: {', '.join(refused)}")


KEEP_FINISHED = 30 * 86400.0


def prune(store: Store, now: float | None = None, keep: float = KEEP_FINISHED) -> int:
    """Drop delivered and cancelled entries older than ``keep`` (30 days).

    The outbox is a queue, not the record: every attempt, delivery and cancellation is in
    the event log already, and a queue that only grows makes every status check slower.
    Pending and failed entries are never dropped. Returns how many were removed.
    """
    now = time.time() if now is None else now
    old = [e.id for e in store.outbox(["delivered", "cancelled"])
           if (e.delivered or e.created) < now - keep]
    if old:
        with store.transaction() as tx:
            for entry_id in old:
                tx.delete("outbox", entry_id)
    return len(old)
