"""The outbox against a real webhook listener and a real SMTP server: retries, keys, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cm_console import cli
from cm_console.actions import escalate, route_private, undo_last
from cm_console.config import Config
from cm_console.delivery import LEASE_SECONDS, MAX_ATTEMPTS, cancel, deliver_due, retry
from cm_console.feedserver import FeedServer
from cm_console.models import Item
from cm_console.sources import item_id
from cm_console.store import NewItem, Store
from cm_console.templates import case_number

from .sinks import SmtpSink, Webhook, free_port

NOW = 1_760_000_000.0


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def later(seconds: float = 7200.0) -> float:
    """A ``now`` past any backoff so far, to drive retries without waiting."""
    return time.time() + seconds


def add_item(store: Store, key: str = "1", *, author: str = "Ann Lee",
             title: str = "Your product broke my kitchen", text: str = "It exploded. Twice.",
             url: str = "https://blog.example.com/posts/1#c1", source: str = "blog") -> Item:
    item = Item(id=item_id(source, key), source=source, source_type="rss", guid=key, url=url,
                title=title, author=author, published=NOW, fetched=NOW)
    store.add_items([NewItem(item, text=text, html="")])
    return item


def escalation_config(make_config: Callable[..., Config], *, webhook: str = "",
                      smtp_port: int = 0, **extra: object) -> Config:
    """Targets "pr" (webhook) and "legal" (e-mail, two addresses) and a team member "ann"."""
    targets: list[dict[str, object]] = []
    if webhook:
        targets.append({"id": "pr", "name": "PR desk", "webhook": webhook})
    targets.append({"id": "legal", "name": "Legal",
                    "email": ["legal@example.com", "counsel@example.com"]})
    extra.setdefault("team", [{"id": "ann", "name": "Ann Agent"}])
    return make_config(escalation={"targets": targets},
                       smtp={"host": "127.0.0.1", "port": smtp_port or free_port(),
                             "from": "cm@example.com"}, **extra)


def actions(store: Store, item: str) -> list[str]:
    return [e.action for e in store.events(item=item)]


# --------------------------------------------------------------------------- webhook


def test_webhook_body_is_chat_text_plus_structured_fields(
        feed_server: FeedServer, make_config: Callable[..., Config]) -> None:
    hook = Webhook(feed_server)
    config = escalation_config(make_config, webhook=hook.url)
    store = Store(config.store)
    item = add_item(store)
    sent = escalate(store, config, item.id, "pr", "Possible legal threat", "ann",
                    priority="high", delay=0)
    [result] = deliver_due(store, config)
    assert result.ok, result.error
    [hit] = hook.hits
    assert hit.headers["content-type"] == "application/json"
    assert hit.key == sent.outbox[0].idempotency_key
    body = hit.json
    case = case_number(item.id)
    text = body["text"]
    for part in (case, "high", "PR desk", "Ann Agent", "Possible legal threat", "Ann Lee",
                 "blog", "Your product broke my kitchen", item.url):
        assert part in text, part
    assert body["case"] == case and body["priority"] == "high" and body["target"] == "pr"
    assert body["reason"] == "Possible legal threat" and body["agent"] == "ann"
    assert body["item"] == {"id": item.id, "url": item.url, "author": "Ann Lee",
                            "source": "blog", "title": "Your product broke my kitchen",
                            "excerpt": "It exploded. Twice."}


def test_listener_failing_twice_gets_one_delivery_with_one_key(
        feed_server: FeedServer, make_config: Callable[..., Config]) -> None:
    hook = Webhook(feed_server, statuses=[500, 500])
    config = escalation_config(make_config, webhook=hook.url)
    store = Store(config.store)
    item = add_item(store)
    [entry] = escalate(store, config, item.id, "pr", "urgent", "ann", delay=0).outbox

    [first] = deliver_due(store, config)
    assert not first.ok and first.error == "HTTP 500 from the webhook"
    after_one = store.get_outbox(entry.id)
    assert after_one is not None
    assert (after_one.status, after_one.attempts) == ("pending", 1)
    assert 20 < after_one.next_attempt - time.time() < 40  # backoff, not a hot loop
    assert deliver_due(store, config) == []  # not due yet

    [second] = deliver_due(store, config, now=later())
    assert not second.ok
    assert retry(store, [entry.id], "ann") == [entry.id]  # or: make it due again by hand
    [third] = deliver_due(store, config)
    assert third.ok
    assert deliver_due(store, config, now=later(10**6)) == []  # nothing left to send

    assert [h.status for h in hook.hits] == [500, 500, 200]
    assert hook.keys == [entry.idempotency_key] * 3  # the same key on every attempt
    done = store.get_outbox(entry.id)
    assert done is not None
    assert (done.status, done.attempts, done.last_error) == ("delivered", 3, "")
    assert done.delivered is not None
    outcome = [e for e in store.events(item=item.id) if e.action in ("delivered",
                                                                      "delivery_failed")]
    assert [e.action for e in outcome] == ["delivery_failed", "delivery_failed", "delivered"]
    assert outcome[-1].data["attempts"] == 3 and outcome[-1].data["outbox"] == entry.id


@pytest.mark.parametrize("mention", ["@channel", "@here", "@everyone", "@all", "<!channel>",
                                     "<!everyone>", "<!here|here>", "<!subteam^S1|team>",
                                     "<@U024BE7LH>", "＠channel"])
def test_post_text_cannot_mass_mention(feed_server: FeedServer,
                                       make_config: Callable[..., Config],
                                       mention: str) -> None:
    hook = Webhook(feed_server)
    config = escalation_config(make_config, webhook=hook.url)
    store = Store(config.store)
    item = add_item(store, author=f"{mention} Mallory", title=f"hey {mention} look",
                    text=f"{mention} {mention}")
    escalate(store, config, item.id, "pr", f"they wrote {mention}", "ann", delay=0)
    assert deliver_due(store, config)[0].ok
    text = hook.hits[0].json["text"]
    for trigger in ("@channel", "@here", "@everyone", "@all", "<!", "<@"):
        assert trigger not in text, (trigger, text)
    assert "Mallory" in text  # the rest of the name still reads


def test_a_bad_webhook_does_not_strand_the_rest_of_the_batch(
        feed_server: FeedServer, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    hook = Webhook(feed_server)
    monkeypatch.setenv("CM_TEST_BROKEN_HOOK", "http://[::1")  # unparseable once resolved
    config = make_config(escalation={"targets": [
        {"id": "broken", "name": "Broken", "webhook": "${CM_TEST_BROKEN_HOOK}"},
        {"id": "unset", "name": "Unset", "webhook": "${CM_TEST_NEVER_SET_HOOK}"},
        {"id": "pr", "name": "PR", "webhook": hook.url},
    ]})
    store = Store(config.store)
    for n, target in enumerate(("broken", "unset", "pr")):
        escalate(store, config, add_item(store, str(n)).id, target, "why", "ann", delay=0)
    results = {r.entry.target: r for r in deliver_due(store, config)}
    assert results["pr"].ok and len(hook.hits) == 1
    assert not results["broken"].ok and results["broken"].error
    assert not results["unset"].ok and "CM_TEST_NEVER_SET_HOOK" in results["unset"].error
    by_target = {e.target: e for e in store.outbox()}
    assert by_target["pr"].status == "delivered"
    for target in ("broken", "unset"):
        assert (by_target[target].status, by_target[target].attempts) == ("pending", 1)
        assert by_target[target].lease_until == 0.0  # not left leased for two minutes


def test_backoff_then_gives_up_then_retry_delivers(
        feed_server: FeedServer, make_config: Callable[..., Config]) -> None:
    hook = Webhook(feed_server, statuses=[503] * MAX_ATTEMPTS)
    config = escalation_config(make_config, webhook=hook.url)
    store = Store(config.store)
    item = add_item(store)
    [entry] = escalate(store, config, item.id, "pr", "why", "ann", delay=0).outbox
    waits = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        [result] = deliver_due(store, config, now=later(10**5))
        assert not result.ok
        current = store.get_outbox(entry.id)
        assert current is not None and current.attempts == attempt
        waits.append(current.next_attempt - time.time())
    assert 24 <= waits[0] <= 36 and 48 <= waits[1] <= 72  # doubling, with jitter
    assert max(waits) <= 3600 * 1.2 + 1  # capped at an hour
    gave_up = store.get_outbox(entry.id)
    assert gave_up is not None and gave_up.status == "failed"
    assert store.events(item=item.id)[-1].data["gave_up"] is True
    assert deliver_due(store, config, now=later(10**7)) == []  # failed waits for a person
    assert retry(store, None, "ann") == [entry.id]
    assert deliver_due(store, config)[0].ok
    assert hook.keys == [entry.idempotency_key] * (MAX_ATTEMPTS + 1)


# --------------------------------------------------------------------------- e-mail


def test_email_reaches_the_smtp_server_with_headers_and_key(
        smtp: SmtpSink, make_config: Callable[..., Config]) -> None:
    config = escalation_config(make_config, smtp_port=smtp.port)
    store = Store(config.store)
    item = add_item(store)
    [entry] = escalate(store, config, item.id, "legal", "They mention a lawyer", "ann",
                       priority="urgent", delay=0).outbox
    [result] = deliver_due(store, config)
    assert result.ok, result.error
    [mail] = smtp.messages
    case = case_number(item.id)
    assert mail.mail_from == "cm@example.com"
    assert sorted(mail.rcpt_tos) == ["counsel@example.com", "legal@example.com"]
    msg = mail.message
    assert msg["From"] == "cm@example.com"
    assert msg["To"] == "legal@example.com, counsel@example.com"
    assert msg["Subject"] == f"[{case}] Escalation (urgent): Your product broke my kitchen"
    assert msg["Message-ID"] == f"<{entry.idempotency_key}@cm-console>"
    assert msg["X-CM-Console-Idempotency-Key"] == entry.idempotency_key
    body = msg.get_content()
    for part in ("Ann Agent escalated this to Legal", "Reason: They mention a lawyer",
                 f"Post: {item.url}", "Author: Ann Lee", "Source: blog", "Priority: urgent",
                 "It exploded. Twice."):
        assert part in body, part
    assert store.get_outbox(entry.id).status == "delivered"  # type: ignore[union-attr]


def test_crlf_in_author_and_title_adds_no_header(smtp: SmtpSink,
                                                 make_config: Callable[..., Config]) -> None:
    config = escalation_config(make_config, smtp_port=smtp.port,
                               support_email="support@example.com")
    store = Store(config.store)
    # Raw values straight into the store: the worst a connector could ever let through.
    hostile = add_item(store, "h", author="Mallory\r\nBcc: evil@x",
                       title="Refund\r\nBcc: evil2@x\r\nX-Injected: yes\n\nbody")
    escalate(store, config, hostile.id, "legal", "reason\r\nBcc: evil3@x", "ann", delay=0)
    other = add_item(store, "o", author="Eve\r\nBcc: evil@x\rCc: evil4@x")
    route_private(store, config, other.id, "ann", public_text="Sorry!",
                  private_text="Please help", delay=0)
    assert all(r.ok for r in deliver_due(store, config))
    assert len(smtp.messages) == 2
    allowed = {"From", "To", "Subject", "Message-ID", "X-CM-Console-Idempotency-Key",
               "Content-Type", "Content-Transfer-Encoding", "MIME-Version"}
    for mail in smtp.messages:
        names = mail.header_names
        assert set(names) <= allowed, names
        assert len(names) == len(set(names))  # no header twice
        assert not any("evil" in r for r in mail.rcpt_tos)
        assert "\n" not in mail.message["Subject"] and "\r" not in mail.message["Subject"]
    subjects = sorted(m.message["Subject"] for m in smtp.messages)
    assert "Refund Bcc: evil2@x X-Injected: yes body" in subjects[0] + subjects[1]
    assert "Hand-off: Eve Bcc: evil@x Cc: evil4@x on blog" in subjects[0] + subjects[1]


def test_smtp_down_stays_pending_then_delivers_when_up(
        make_config: Callable[..., Config], capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens here yet
    config = escalation_config(make_config, smtp_port=port)
    store = Store(config.store)
    item = add_item(store)
    [entry] = escalate(store, config, item.id, "legal", "why", "ann", delay=0).outbox
    [result] = deliver_due(store, config)
    assert not result.ok and f"SMTP 127.0.0.1:{port}" in result.error
    down = store.get_outbox(entry.id)
    assert down is not None
    assert (down.status, down.attempts) == ("pending", 1)
    assert down.last_error.startswith(f"SMTP 127.0.0.1:{port}")
    assert cli.main(["--config", str(config.path), "outbox", "--json"]) == 0
    listed = capsys.readouterr().out
    assert entry.id in listed and '"attempts":1' in listed and "SMTP 127.0.0.1" in listed

    with SmtpSink(port) as sink:
        [result] = deliver_due(store, config, now=later())
        assert result.ok, result.error
        [mail] = sink.messages
    assert mail.message["Message-ID"] == f"<{entry.idempotency_key}@cm-console>"
    up = store.get_outbox(entry.id)
    assert up is not None and (up.status, up.attempts, up.last_error) == ("delivered", 2, "")


# --------------------------------------------------------------------------- crashes


_PRELUDE = """
import pathlib, sys, time
from cm_console import actions, delivery
from cm_console.config import load_config
from cm_console.store import Store
config = load_config(pathlib.Path(sys.argv[1]))
store = Store(config.store)
"""

ESCALATE_AND_HANG = _PRELUDE + """
sent = actions.escalate(store, config, sys.argv[2], "pr", "legal threat", "ann", delay=0)
print(sent.outbox[0].id, flush=True)
time.sleep(60)
"""

DELIVER = _PRELUDE + """
print([r.ok for r in delivery.deliver_due(store, config)], flush=True)
"""

DELIVER_TOGETHER = _PRELUDE + """
pathlib.Path(sys.argv[2]).touch()
go = pathlib.Path(sys.argv[3])
deadline = time.time() + 30
while not go.exists() and time.time() < deadline:
    time.sleep(0.002)
sent = 0
while results := delivery.deliver_due(store, config, limit=1):
    sent += sum(r.ok for r in results)
print(sent, flush=True)
"""


def _py(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], text=True,
                            stdout=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


def test_killed_with_an_undelivered_escalation_delivers_after_restart(
        feed_server: FeedServer, make_config: Callable[..., Config]) -> None:
    hook = Webhook(feed_server)
    config = escalation_config(make_config, webhook=hook.url)
    item = add_item(Store(config.store))
    proc = _py(ESCALATE_AND_HANG, str(config.path), item.id)
    assert proc.stdout is not None
    entry_id = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    assert entry_id and hook.hits == []

    store = Store(config.store)  # a new console
    entry = store.get_outbox(entry_id)
    assert entry is not None and entry.status == "pending"
    assert store.get_item(item.id).state == "escalated"  # type: ignore[union-attr]

    done = subprocess.run([sys.executable, "-m", "cm_console", "--config", str(config.path),
                           "--as", "ann", "outbox", "--deliver"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"delivered webhook to pr for {item.id}" in done.stdout
    assert hook.keys == [entry.idempotency_key]
    store.refresh()
    assert store.get_outbox(entry_id).status == "delivered"  # type: ignore[union-attr]


def test_killed_mid_send_keeps_its_lease_then_resends_with_the_same_key(
        feed_server: FeedServer, make_config: Callable[..., Config]) -> None:
    hook = Webhook(feed_server, hold=True)
    config = escalation_config(make_config, webhook=hook.url)
    store = Store(config.store)
    item = add_item(store)
    [entry] = escalate(store, config, item.id, "pr", "why", "ann", delay=0).outbox
    proc = _py(DELIVER, str(config.path))
    try:
        assert hook.arrived.wait(30), "the sender never reached the listener"
        os.kill(proc.pid, signal.SIGKILL)  # the far side has it; we never heard back
        proc.wait(10)
    finally:
        hook.release()
    store.refresh()
    leased = store.get_outbox(entry.id)
    assert leased is not None
    assert leased.status == "pending" and leased.attempts == 0
    assert leased.lease_until > time.time() and leased.lease_owner.endswith(f":{proc.pid}")
    assert deliver_due(store, config) == []  # another console keeps off a live lease
    assert not cancel(store, entry.id, "ann")
    with pytest.raises(ValueError, match="being sent"):
        undo_last(store, "ann")

    [result] = deliver_due(store, config, now=time.time() + LEASE_SECONDS + 1)
    assert result.ok
    assert hook.keys == [entry.idempotency_key] * 2  # a receiver can drop the repeat
    assert store.get_outbox(entry.id).status == "delivered"  # type: ignore[union-attr]


def test_two_processes_delivering_at_once_send_each_entry_once(
        feed_server: FeedServer, make_config: Callable[..., Config], tmp_path: Path) -> None:
    hook = Webhook(feed_server, delay=0.03)
    config = escalation_config(make_config, webhook=hook.url)
    store = Store(config.store)
    entries = [escalate(store, config, add_item(store, str(n)).id, "pr", f"r{n}", "ann",
                        delay=0).outbox[0] for n in range(8)]
    go = tmp_path / "go"
    ready = [tmp_path / "ready-a", tmp_path / "ready-b"]
    procs = [_py(DELIVER_TOGETHER, str(config.path), str(r), str(go)) for r in ready]
    try:
        deadline = time.time() + 30
        while not all(r.exists() for r in ready) and time.time() < deadline:
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs)
    counts = [int(o.strip()) for o in outputs]
    assert sum(counts) == len(entries) and all(counts), counts  # both worked, none twice
    assert sorted(hook.keys) == sorted(e.idempotency_key for e in entries)
    store.refresh()
    assert all(e.status == "delivered" and e.attempts == 1 for e in store.outbox())


def test_prune_drops_only_old_finished_entries(store: Store) -> None:
    """The outbox is a queue: old delivered/cancelled entries go, pending/failed stay."""
    from cm_console.delivery import KEEP_FINISHED, enqueue, prune

    now = time.time()
    ids = {}
    for status in ("delivered", "cancelled", "pending", "failed"):
        entry = enqueue(store, "webhook", "", "pr", {"url": "http://127.0.0.1:9/"}, "ann",
                        now=now - KEEP_FINISHED - 10)
        with store.transaction() as tx:
            tx.patch("outbox", entry.id, {"status": status})
        ids[status] = entry.id
    recent = enqueue(store, "webhook", "", "pr", {"url": "http://127.0.0.1:9/"}, "ann")
    with store.transaction() as tx:
        tx.patch("outbox", recent.id, {"status": "delivered", "delivered": now})
    assert prune(store, now) == 2
    left = {e.id for e in store.outbox()}
    assert left == {ids["pending"], ids["failed"], recent.id}
