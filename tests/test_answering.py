"""Reply, route-private, escalate and undo on polled feed items, with real receivers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator

import pytest

from cm_console import cli
from cm_console.actions import escalate, reply, route_private, set_state, undo_last
from cm_console.config import Config
from cm_console.delivery import MAX_ATTEMPTS, cancel, deliver_due
from cm_console.feedserver import FeedServer
from cm_console.poller import Poller
from cm_console.store import Store
from cm_console.templates import case_number, render, values_for

from .feeds import rss
from .sinks import SmtpSink, Webhook

TEMPLATES = [
    {"id": "thanks", "title": "Thank you", "body": "Thanks {author}! -- {agent}"},
    {"id": "ack", "title": "Take it private", "visibility": "public",
     "body": "Sorry {author}, we'll follow up privately (case {case})."},
    {"id": "dm", "title": "Private follow-up", "visibility": "private",
     "body": "Hello {author}, about \"{title}\" ({link}): please send your order number."},
]


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def hook(feed_server: FeedServer) -> Webhook:
    return Webhook(feed_server)


def far() -> float:
    return time.time() + 10**6


def setup(feed_server: FeedServer, make_config: Callable[..., Config], *, hook: Webhook,
          smtp: SmtpSink | None = None, **extra: object) -> tuple[Config, Store, str]:
    """Poll one real feed with one complaint; targets "pr" (webhook + e-mail), "press"."""
    url = feed_server.add("/comments.xml", rss([{
        "guid": "c1", "title": "Worst support ever", "author": "Dana Doe",
        "link": "https://blog.example.com/p/1#c1", "date": time.time() - 120,
        "html": "<p>My order #123 never arrived and nobody answers.</p>"}]))
    extra.setdefault("support_email", "support@example.com")
    config = make_config(
        [{"id": "blog", "type": "rss", "url": url, "name": "Company blog"}],
        templates=TEMPLATES, team=[{"id": "ann", "name": "Ann Agent"}],
        escalation={"targets": [
            {"id": "pr", "name": "PR desk", "webhook": hook.url, "email": ["pr@example.com"]},
            {"id": "press", "name": "Press office", "email": ["press@example.com"]},
        ]},
        smtp={"host": "127.0.0.1", "port": smtp.port if smtp else 9, "from": "cm@example.com"},
        **extra)
    store = Store(config.store)
    with Poller(config, store) as poller:
        [iid] = asyncio.run(poller.poll()).new_ids
    return config, store, iid


def run(config: Config, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["--config", str(config.path), "--as", "ann", *args])
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def rendered(config: Config, store: Store, iid: str, template_id: str) -> str:
    item = store.get_item(iid)
    assert item is not None
    template = next(t for t in config.templates if t.id == template_id)
    return render(template, values_for(item, "ann", "Ann Agent", "Company blog"))


# --------------------------------------------------------------------------- reply


def test_reply_on_a_feed_item_marks_it_replied_for_pasting(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook)
    code, out, err = run(config, capsys, "reply", iid, "--template", "thanks")
    assert code == 0
    assert out == "Thanks Dana Doe! -- Ann Agent\n"
    assert "paste the text above at https://blog.example.com/p/1#c1" in err
    store.refresh()
    assert store.get_item(iid).state == "replied"  # type: ignore[union-attr]
    [event] = [e for e in store.events(item=iid) if e.action == "reply"]
    assert event.actor == "ann" and event.data["template"] == "thanks"
    assert event.data["text"] == "Thanks Dana Doe! -- Ann Agent"
    assert event.data["mode"] == "clipboard" and event.data["outbox"] == []
    assert store.outbox() == []  # nothing leaves the machine for a plain feed
    item, _ = undo_last(store, "ann")  # type: ignore[misc]
    assert item.state == "new"


def test_cli_reply_with_an_unknown_template_exits_2_listing_the_known_ones(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook)
    code, out, err = run(config, capsys, "reply", iid, "--template", "nope")
    assert code == 2
    assert 'no template "nope" (known: thanks, ack, dm)' in err and out == ""
    store.refresh()
    assert store.get_item(iid).state == "new"  # type: ignore[union-attr]


def test_reply_refuses_an_empty_text(feed_server: FeedServer,
                                     make_config: Callable[..., Config], hook: Webhook) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook)
    with pytest.raises(ValueError, match="empty"):
        reply(store, config, iid, " \x1b[0m\u200b\n ", "ann")


# --------------------------------------------------------------------------- route private


def test_route_private_hands_off_by_email_to_support(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        smtp: SmtpSink) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook, smtp=smtp)
    case = case_number(iid)
    public, private = rendered(config, store, iid, "ack"), rendered(config, store, iid, "dm")
    sent = route_private(store, config, iid, "ann", public_text=public, private_text=private,
                         public_template=config.templates[1],
                         private_template=config.templates[2])
    assert sent.text == f"Sorry Dana Doe, we'll follow up privately (case {case})."
    assert sent.mode == "clipboard" and sent.item.state == "private"
    [entry] = sent.outbox
    assert (entry.kind, entry.target, entry.status) == ("email", "support", "pending")
    assert entry.next_attempt - entry.created == pytest.approx(config.undo_window)
    [event] = [e for e in store.events(item=iid) if e.action == "route_private"]
    assert event.data["outbox"] == [entry.id]  # the item is linked to the hand-off
    assert event.data["to"] == "support@example.com" and event.data["case"] == case
    assert event.data["public_template"] == "ack" and event.data["private_template"] == "dm"
    assert event.data["before"] == {"state": "new"}

    assert deliver_due(store, config) == []  # still inside the undo window
    assert [r.ok for r in deliver_due(store, config, now=time.time() + 60)] == [True]
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["support@example.com"]
    assert mail.message["Subject"] == f"[{case}] Hand-off: Dana Doe on blog"
    body = mail.message.get_content()
    for part in ('Hello Dana Doe, about "Worst support ever" (https://blog.example.com/p/1#c1)',
                 f"Case {case}, handed off by ann", "Post: https://blog.example.com/p/1#c1",
                 "Author: Dana Doe", "My order #123 never arrived"):
        assert part in body, part


def test_cli_route_private_sends_the_hand_off_now(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        smtp: SmtpSink, capsys: pytest.CaptureFixture[str]) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook, smtp=smtp)
    code, out, _ = run(config, capsys, "route-private", iid, "--public", "ack")  # private: dm
    assert code == 0, out
    assert f"we'll follow up privately (case {case_number(iid)})" in out
    assert "delivered email to support" in out
    [mail] = smtp.messages
    assert "please send your order number" in mail.message.get_content()
    store.refresh()
    assert store.get_item(iid).state == "private"  # type: ignore[union-attr]


def test_route_private_without_support_email_is_a_clear_error(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook, support_email="")
    events = len(store.events())
    with pytest.raises(ValueError, match="support_email"):
        route_private(store, config, iid, "ann", public_text="Sorry!", private_text="Hi")
    assert store.get_item(iid).state == "new"  # type: ignore[union-attr]
    assert store.outbox() == [] and len(store.events()) == events
    code, _, err = run(config, capsys, "route-private", iid)
    assert code == 1 and "support_email" in err


# --------------------------------------------------------------------------- escalate


def test_escalate_to_an_unknown_target_lists_the_known_ones(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook)
    with pytest.raises(ValueError, match=r'no escalation target "legal" \(known: pr, press\)'):
        escalate(store, config, iid, "legal", "why", "ann")
    with pytest.raises(ValueError, match="priority"):
        escalate(store, config, iid, "pr", "why", "ann", priority="meh")
    assert store.get_item(iid).state == "new" and store.outbox() == []  # type: ignore[union-attr]
    code, _, err = run(config, capsys, "escalate", iid, "--to", "legal", "--reason", "x")
    assert code == 1 and "known: pr, press" in err


def test_cli_escalate_on_a_missing_item_exits_1(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, store, _ = setup(feed_server, make_config, hook=hook)
    code, out, err = run(config, capsys, "escalate", "blog:000000000000", "--to", "pr",
                         "--reason", "x")
    assert code == 1 and 'no item "blog:000000000000"' in err and out == ""
    store.refresh()
    assert store.outbox() == [] and hook.hits == []


def test_escalate_records_everything_and_logs_the_outcome(
        feed_server: FeedServer, make_config: Callable[..., Config], smtp: SmtpSink,
        capsys: pytest.CaptureFixture[str]) -> None:
    hook = Webhook(feed_server, statuses=[502])
    config, store, iid = setup(feed_server, make_config, hook=hook, smtp=smtp)
    before = time.time()
    sent = escalate(store, config, iid, "pr", "Threatens to go to the press", "ann",
                    priority="high")
    assert (sent.item.state, sent.item.priority) == ("escalated", "high")
    assert [e.kind for e in sent.outbox] == ["webhook", "email"]
    [event] = [e for e in store.events(item=iid) if e.action == "escalate"]
    assert event.actor == "ann" and before <= event.ts <= time.time()
    assert event.data["target"] == "pr" and event.data["case"] == case_number(iid)
    assert event.data["reason"] == "Threatens to go to the press"
    assert event.data["before"] == {"state": "new", "priority": "normal"}
    assert event.data["after"] == {"state": "escalated", "priority": "high"}
    assert event.data["outbox"] == [e.id for e in sent.outbox]

    results = {r.entry.kind: r.ok for r in deliver_due(store, config, now=far())}
    assert results == {"webhook": False, "email": True}
    code, out, _ = run(config, capsys, "outbox", "--json")
    assert code == 0
    [pending] = json_lines(out)  # the delivered e-mail is no longer listed
    assert pending["id"] == sent.outbox[0].id and pending["status"] == "pending"
    assert pending["attempts"] == 1 and pending["last_error"] == "HTTP 502 from the webhook"
    assert [r.ok for r in deliver_due(store, config, now=far())] == [True]

    code, out, _ = run(config, capsys, "log", "--item", iid, "--json")
    assert code == 0
    log = json_lines(out)
    actions = [e["action"] for e in log]
    start = actions.index("escalate")
    assert actions[start] == "escalate" and actions[-1] == "delivered"  # the webhook, at last
    assert sorted(actions[start + 1:-1]) == ["delivered", "delivery_failed"]  # one round
    assert all(e["actor"] == "ann" and e["item"] == iid and e["ts"] for e in log)
    failed = log[actions.index("delivery_failed")]["data"]
    assert failed["target"] == "pr" and failed["kind"] == "webhook" and failed["attempts"] == 1
    assert {e["data"]["kind"] for e in log if e["action"] == "delivered"} == {"webhook",
                                                                               "email"}
    assert run(config, capsys, "outbox", "--json")[1] == ""
    assert len(json_lines(run(config, capsys, "outbox", "--all", "--json")[1])) == 2


def test_cli_escalate_delivers_to_webhook_and_email(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        smtp: SmtpSink, capsys: pytest.CaptureFixture[str]) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook, smtp=smtp)
    code, out, err = run(config, capsys, "escalate", iid, "--to", "pr", "--reason",
                         "Legal threat", "--priority", "urgent")
    assert code == 0, err
    assert f"{iid}: escalated to pr" in out
    assert "delivered webhook to pr" in out and "delivered email to pr" in out
    assert hook.hits[0].json["priority"] == "urgent"
    assert smtp.messages[0].rcpt_tos == ["pr@example.com"]
    store.refresh()
    item = store.get_item(iid)
    assert item is not None and (item.state, item.priority) == ("escalated", "urgent")


def test_cli_outbox_retry_makes_a_failed_entry_due_again(
        feed_server: FeedServer, make_config: Callable[..., Config],
        capsys: pytest.CaptureFixture[str]) -> None:
    hook = Webhook(feed_server, statuses=[500] * MAX_ATTEMPTS)
    config, store, iid = setup(feed_server, make_config, hook=hook)
    [entry, _mail] = escalate(store, config, iid, "pr", "why", "ann").outbox
    for _ in range(MAX_ATTEMPTS):
        deliver_due(store, config, now=far())
    code, out, _ = run(config, capsys, "outbox", "--json")
    failed = {e["id"]: e for e in json_lines(out)}[entry.id]
    assert failed["status"] == "failed" and failed["attempts"] == MAX_ATTEMPTS
    assert run(config, capsys, "outbox", "--deliver")[0] == 0  # a failed entry is not retried
    assert len(hook.hits) == MAX_ATTEMPTS

    code, out, _ = run(config, capsys, "outbox", "--retry", entry.id)
    assert code == 0
    assert "1 entry due again" in out and f"delivered webhook to pr for {iid}" in out
    store.refresh()
    assert store.get_outbox(entry.id).status == "delivered"  # type: ignore[union-attr]
    assert hook.keys == [entry.idempotency_key] * (MAX_ATTEMPTS + 1)
    code, out, _ = run(config, capsys, "log", "--item", iid)
    assert "outbox_retry" in out and "delivered" in out


def test_cli_outbox_cancel_stops_an_entry_that_keeps_failing(
        feed_server: FeedServer, make_config: Callable[..., Config],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by a newcomer: a failing escalation (wrong webhook URL) could only go on
    retrying, and would have gone out hours late once the URL was fixed."""
    hook = Webhook(feed_server, statuses=[500] * 3)
    config, store, iid = setup(feed_server, make_config, hook=hook)
    [entry, _mail] = escalate(store, config, iid, "pr", "why", "ann").outbox
    deliver_due(store, config, now=far())  # tried once, failed, waiting to retry
    store.refresh()
    assert store.get_outbox(entry.id).attempts == 1  # type: ignore[union-attr]
    code, out, err = run(config, capsys, "outbox", "--cancel", entry.id, "nope")
    assert code == 1
    assert f"{entry.id}: cancelled (tried 1x: pr may have received it once)" in out
    assert "nope: not cancelled (no such entry)" in err
    store.refresh()
    assert store.get_outbox(entry.id).status == "cancelled"  # type: ignore[union-attr]
    deliver_due(store, config, now=far() * 2)
    assert len(hook.hits) == 1  # never retried
    [event] = [e for e in store.events(item=iid) if e.action == "outbox_cancelled"]
    assert event.data["after_attempts"] == 1 and "500" in event.data["last_error"]
    # Undo keeps its stricter rule: an attempted action is never "undone".
    with pytest.raises(ValueError, match="already attempted"):
        undo_last(store, "ann")


# --------------------------------------------------------------------------- undo


def test_undo_within_the_window_sends_nothing(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        smtp: SmtpSink) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook, smtp=smtp)
    set_state(store, iid, "open", "ann")
    assert config.undo_window == 10.0
    sent = escalate(store, config, iid, "pr", "oops, wrong item", "ann", priority="urgent")
    assert all(e.next_attempt >= e.created + 10 for e in sent.outbox)
    assert deliver_due(store, config) == []

    undone = undo_last(store, "ann")
    assert undone is not None
    item, event = undone
    assert (item.state, item.priority) == ("open", "normal")
    assert event.action == "undo" and event.data["undone_action"] == "escalate"
    assert sorted(event.data["cancelled"]) == sorted(e.id for e in sent.outbox)
    assert {e.status for e in store.outbox()} == {"cancelled"}
    assert deliver_due(store, config, now=far()) == []
    assert hook.hits == [] and smtp.messages == []
    assert [e.action for e in store.events(item=iid)][-3:] == [
        "outbox_cancelled", "outbox_cancelled", "undo"]


def test_undo_of_a_hand_off_cancels_the_email(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        smtp: SmtpSink) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook, smtp=smtp)
    route_private(store, config, iid, "ann", public_text="Sorry!", private_text="Hi")
    item, _ = undo_last(store, "ann")  # type: ignore[misc]
    assert item.state == "new"
    assert deliver_due(store, config, now=far()) == [] and smtp.messages == []


def test_undo_after_delivery_is_refused(
        feed_server: FeedServer, make_config: Callable[..., Config], hook: Webhook,
        smtp: SmtpSink) -> None:
    config, store, iid = setup(feed_server, make_config, hook=hook, smtp=smtp)
    escalate(store, config, iid, "press", "journalist asking", "ann")
    assert [r.ok for r in deliver_due(store, config, now=time.time() + 11)] == [True]
    with pytest.raises(ValueError, match="already left the outbox; it cannot be undone"):
        undo_last(store, "ann")
    assert store.get_item(iid).state == "escalated"  # type: ignore[union-attr]
    assert len(smtp.messages) == 1


def test_undo_looks_at_all_of_an_actions_entries_before_cancelling_any(
        feed_server: FeedServer, make_config: Callable[..., Config], smtp: SmtpSink) -> None:
    hook = Webhook(feed_server, statuses=[500] * MAX_ATTEMPTS)
    config, store, iid = setup(feed_server, make_config, hook=hook, smtp=smtp)
    [webhook, _mail] = escalate(store, config, iid, "pr", "why", "ann").outbox
    deliver_due(store, config, now=far())  # the e-mail is delivered; the webhook failed once
    with pytest.raises(ValueError, match="already left the outbox"):
        undo_last(store, "ann")
    # Both entries of one action are looked at before anything is cancelled.
    assert store.get_outbox(webhook.id).status == "pending"  # type: ignore[union-attr]
    assert store.get_item(iid).state == "escalated"  # type: ignore[union-attr]


def test_undo_of_an_attempted_escalation_is_refused(
        feed_server: FeedServer, make_config: Callable[..., Config]) -> None:
    hook = Webhook(feed_server, statuses=[500] * MAX_ATTEMPTS)
    config, store, iid = setup(feed_server, make_config, hook=hook)  # no SMTP server either
    [webhook, _mail] = escalate(store, config, iid, "pr", "why", "ann").outbox
    for n in range(MAX_ATTEMPTS):
        deliver_due(store, config, now=far())
        if n == 0:  # retrying: it may already have arrived, so it cannot be taken back
            with pytest.raises(ValueError, match=r"already attempted"):
                undo_last(store, "ann")
    assert store.get_outbox(webhook.id).status == "failed"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"already attempted"):
        undo_last(store, "ann")  # not "undone" while `outbox --retry` could still send it
    assert store.get_item(iid).state == "escalated"  # type: ignore[union-attr]


def test_an_entry_cancelled_during_a_late_attempt_stays_cancelled(
        feed_server: FeedServer, make_config: Callable[..., Config],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: cancelled while an attempt outlived its lease, a failing entry came
    back to pending when that attempt ended, and would have been retried."""
    import threading

    import cm_console.delivery as delivery_module

    hook = Webhook(feed_server, statuses=[500] * 3, hold=True)  # answers when released
    config, store, iid = setup(feed_server, make_config, hook=hook, undo_window="0s")
    [entry, _mail] = escalate(store, config, iid, "pr", "why", "ann").outbox
    monkeypatch.setattr(delivery_module, "LEASE_SECONDS", 0.2)
    worker = threading.Thread(target=deliver_due, args=(store, config))
    worker.start()
    other = Store(config.store)
    assert hook.arrived.wait(5)
    time.sleep(0.3)  # the lease has run out while the attempt is still in flight
    assert cancel(other, entry.id, "bo", attempted=True)
    hook.release()
    worker.join(10)
    other.refresh()
    after = other.get_outbox(entry.id)
    assert after is not None and after.status == "cancelled" and after.attempts == 1
