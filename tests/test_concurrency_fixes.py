"""Races and edge cases found in review: each one is a test now."""

from __future__ import annotations

import time

import pytest

from cm_console import approvals
from cm_console.actions import set_state
from cm_console.config import ConfigError
from cm_console.delivery import enqueue, retry
from cm_console.models import Event, Item, parse_duration
from cm_console.sla import mark_breaches
from cm_console.store import NewItem, Store


def item(item_id: str, age: float = 0.0) -> NewItem:
    now = time.time()
    return NewItem(Item(id=item_id, source="blog", source_type="rss", guid=item_id, url="",
                        title=item_id, author="a", published=now - age, fetched=now), "", "")


def test_an_answer_is_approved_once_even_from_a_stale_console(make_config) -> None:
    config = make_config([{"id": "blog", "type": "rss", "url": "http://127.0.0.1:9/b"}],
                         team=[{"id": "ann", "name": "Ann"},
                               {"id": "kim", "name": "Kim", "role": "lead"},
                               {"id": "lee", "name": "Lee", "role": "lead"}])
    kim, lee = Store(config.store), None
    kim.add_items([item("blog:1")])
    approval = approvals.submit(kim, "blog:1", "ann", "reply", {"text": "hi", "template": ""})
    lee = Store(config.store)  # a second console that will not refresh before acting
    approvals.approve(kim, config, approval, "kim")
    with pytest.raises(ValueError, match="already approved by kim"):
        approvals.approve(lee, config, approval, "lee")
    with pytest.raises(ValueError, match="already approved"):
        approvals.reject(lee, config, approval, "lee", "too late")
    assert [e.action for e in Store(config.store).events(item="blog:1")].count("reply") == 1


def test_retry_leaves_an_entry_being_sent_and_one_in_its_undo_window(store: Store) -> None:
    sending = enqueue(store, "webhook", "", "pr", {"url": "http://127.0.0.1:9/"}, "ann")
    with store.transaction() as tx:
        tx.patch("outbox", sending.id, {"lease_until": time.time() + 120, "attempts": 1,
                                        "lease_owner": "other:1"})
    waiting = enqueue(store, "webhook", "", "pr", {"url": "http://127.0.0.1:9/"}, "ann",
                      delay=60)
    assert retry(store, [sending.id, waiting.id], "ann") == []
    assert store.get_outbox(sending.id).lease_until > time.time()


def test_a_breach_is_not_marked_on_an_item_closed_by_another_console(make_config) -> None:
    config = make_config([{"id": "blog", "type": "rss", "url": "http://127.0.0.1:9/b",
                           "sla": "1h"}])
    mine = Store(config.store)
    mine.add_items([item("blog:1", age=7200)])
    other = Store(config.store)
    set_state(other, "blog:1", "done", "ann")  # mine has not seen this yet
    assert mark_breaches(mine, config) == []
    assert "breached" not in Store(config.store).get_item("blog:1").extra


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0])
def test_non_finite_durations_are_refused(value: float) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_infinite_interval_is_a_config_error(make_config) -> None:
    with pytest.raises(ConfigError, match="interval"):
        make_config([{"id": "blog", "type": "rss", "url": "http://127.0.0.1:9/b",
                      "interval": float("inf")}])


def test_unset_variable_in_store_path_is_an_error(make_config, monkeypatch) -> None:
    monkeypatch.delenv("CM_TEST_UNSET_DIR", raising=False)
    with pytest.raises(ConfigError, match="store: environment variable CM_TEST_UNSET_DIR"):
        make_config([], store="${CM_TEST_UNSET_DIR}/team.db.json")


def test_events_about_items_another_console_stored_first_are_dropped(store: Store) -> None:
    store.add_items([item("blog:1")])
    added = store.add_items([item("blog:1"), item("blog:2")], events=[
        Event(ts=time.time(), actor="rules", action="rules", item="blog:1"),
        Event(ts=time.time(), actor="rules", action="rules", item="blog:2")])
    assert added == ["blog:2"]
    assert [e.item for e in store.events() if e.action == "rules"] == ["blog:2"]
