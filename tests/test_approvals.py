"""Reply approvals: sensitive answers wait for a lead, who approves, edits or rejects them."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from cm_console import approvals
from cm_console.app import make_app
from cm_console.poller import Poller
from cm_console.store import Store

from .feeds import rss

TEAM = [{"id": "ann", "name": "Ann", "role": "agent"},
        {"id": "lee", "name": "Lee", "role": "lead"}]
TEMPLATES = [{"id": "legal", "title": "Legal answer", "requires_approval": True,
              "body": "Hi {author}, our lawyers reviewed this."},
             {"id": "thanks", "title": "Thanks", "body": "Thanks {author}!"}]


@pytest.fixture
def setup(feed_server, make_config):
    url = feed_server.add("/f", rss([{"guid": "1", "title": "Is this legal?", "author": "Zoe",
                                      "link": "http://example.com/1"}]))
    config = make_config([{"id": "blog", "type": "rss", "url": url}], team=TEAM,
                         templates=TEMPLATES)
    store = Store(config.store)
    with Poller(config, store) as poller:
        asyncio.run(poller.poll())
    return config, store, store.item_ids()[0]


def test_template_requiring_approval_waits_then_lead_approves(setup) -> None:
    config, store, item_id = setup
    legal = next(t for t in config.templates if t.id == "legal")
    assert approvals.needs_approval(config, "ann", legal)
    assert not approvals.needs_approval(config, "ann", None)
    approval = approvals.submit(store, item_id, "ann", "reply",
                                {"text": "Hi Zoe, our lawyers reviewed this.",
                                 "template": "legal"})
    assert store.get_item(item_id).state == "new"  # nothing happened yet
    with pytest.raises(ValueError, match="cannot approve"):
        approvals.approve(store, config, approval, "ann")
    sent = approvals.approve(store, config, approval, "lee", {"text": "Hi Zoe, edited."})
    assert sent.text == "Hi Zoe, edited." and store.get_item(item_id).state == "replied"
    actions = [(e.actor, e.action) for e in store.events(item=item_id)]
    assert ("ann", "submitted_for_approval") in actions
    assert ("ann", "reply") in actions and ("lee", "approved") in actions
    assert store.approvals() == []


def test_reject_leaves_a_note_and_sends_nothing(setup) -> None:
    config, store, item_id = setup
    approval = approvals.submit(store, item_id, "ann", "reply", {"text": "x", "template": ""})
    approvals.reject(store, config, approval, "lee", "Too blunt; mention the FAQ")
    (event,) = [e for e in store.events(item=item_id) if e.action == "rejected"]
    assert event.data["note"] == "Too blunt; mention the FAQ"
    assert store.get_item(item_id).state == "new" and store.outbox() == []


def test_reviewed_roles_and_the_cli(setup) -> None:
    config, _store, item_id = setup
    text = config.path.read_text() + "approvals: {review: [agent], approvers: [lead]}\n"
    config.path.write_text(text)
    run = [sys.executable, "-m", "cm_console", "--config", str(config.path)]
    out = subprocess.run([*run, "--as", "ann", "reply", item_id, "-t", "thanks"],
                         capture_output=True, text=True, check=True).stdout
    assert "waiting for approval" in out
    fresh = Store(config.store)
    (row,) = fresh.approvals()
    denied = subprocess.run([*run, "--as", "ann", "approvals", "--approve", row["id"]],
                            capture_output=True, text=True)
    assert denied.returncode == 1 and "cannot approve" in denied.stderr
    listed = subprocess.run([*run, "--as", "lee", "approvals"], capture_output=True, text=True,
                            check=True).stdout
    assert row["id"] in listed and "Thanks Zoe!" in listed
    subprocess.run([*run, "--as", "lee", "approvals", "--approve", row["id"]], check=True,
                   capture_output=True)
    assert Store(config.store).get_item(item_id).state == "replied"


async def test_agent_submits_in_the_tui_and_a_lead_approves_in_another(setup) -> None:
    config, store, item_id = setup
    agent = make_app(config, store, "ann", poll_on_start=False)
    agent.copy_to_clipboard = lambda text: None  # type: ignore[method-assign]
    agent.open_url = lambda url, **kw: None  # type: ignore[method-assign]
    async with agent.run_test(size=(120, 36)) as pilot:
        await pilot.press("r")
        await pilot.pause()
        await pilot.press(*"legal", "enter")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
    assert len(store.approvals()) == 1 and store.get_item(item_id).state == "new"
    lead = make_app(config, Store(config.store), "lee", poll_on_start=False)
    lead.copy_to_clipboard = lambda text: None  # type: ignore[method-assign]
    async with lead.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        assert "1 awaiting approval" in str(lead.screen.query_one("StatusBar").render())
        await pilot.press("A")
        await pilot.pause()
        assert "our lawyers reviewed" in str(lead.screen.query_one("#approval-text").render())
        await pilot.press("y")
        await pilot.pause()
    assert Store(config.store).get_item(item_id).state == "replied"


def test_approving_after_someone_answered_is_refused_unless_forced(setup) -> None:
    """Found in a team walkthrough: the lead answered the post herself, then approved the
    agent's waiting answer, and the customer got two replies."""
    from cm_console.actions import reply

    config, store, item_id = setup
    approval = approvals.submit(store, item_id, "ann", "reply",
                                {"text": "Sorry, Zoe!", "template": ""})
    reply(store, config, item_id, "Thanks Zoe, on it.", "lee")
    with pytest.raises(approvals.AlreadyAnswered, match="lee answered \\(reply\\)"):
        approvals.approve(store, config, approval, "lee")
    assert store.approvals()[0]["status"] == "awaiting"  # still waiting: nothing was sent
    run = [sys.executable, "-m", "cm_console", "--config", str(config.path), "--as", "lee"]
    refused = subprocess.run([*run, "approvals", "--approve", approval], capture_output=True,
                             text=True)
    assert refused.returncode == 1 and "approving would send a second answer" in refused.stderr
    forced = subprocess.run([*run, "approvals", "--approve", approval, "--force"],
                            capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr
    # A feed has no reply API: the approver is given the text to post, not just "(clipboard)".
    assert "post this at" in forced.stdout and "Sorry, Zoe!" in forced.stdout


def test_cli_reply_refuses_a_post_someone_else_answered(setup) -> None:
    from cm_console.actions import reply

    config, store, item_id = setup
    reply(store, config, item_id, "Thanks Zoe, on it.", "lee")
    run = [sys.executable, "-m", "cm_console", "--config", str(config.path), "--as", "ann"]
    refused = subprocess.run([*run, "reply", item_id, "--text", "Hi Zoe"], capture_output=True,
                             text=True)
    assert refused.returncode == 1
    assert "lee already answered (reply)" in refused.stderr and "nothing sent" in refused.stderr
    forced = subprocess.run([*run, "reply", item_id, "--text", "Hi Zoe", "--force"],
                            capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr


async def test_the_agents_console_says_when_a_lead_decides(setup) -> None:
    """Found in a team walkthrough: the agent learned of an approval or a rejection only
    from the item's history."""
    import time

    from textual.notifications import Notify

    config, store, item_id = setup
    agent = make_app(config, store, "ann", poll_on_start=False)
    toasts: list[str] = []

    def hook(message: object) -> None:
        if isinstance(message, Notify):
            toasts.append(str(message.notification.message))

    async with agent.run_test(size=(120, 36), message_hook=hook) as pilot:
        await pilot.pause()
        first = approvals.submit(store, item_id, "ann", "reply", {"text": "a", "template": ""})
        second = approvals.submit(store, item_id, "ann", "reply", {"text": "b", "template": ""})
        lead_store = Store(config.store)  # another console
        approvals.reject(lead_store, config, first, "lee", "Mention the FAQ")
        approvals.approve(lead_store, config, second, "lee", force=True)
        deadline = time.monotonic() + 10
        while len(toasts) < 2 and time.monotonic() < deadline:
            await pilot.pause(0.1)
    assert any("rejected your answer" in t and "Mention the FAQ" in t for t in toasts), toasts
    assert any("approved your answer" in t for t in toasts), toasts
