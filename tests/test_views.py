"""Saved views: what Inbox, Mine, Unassigned and Breached SLA contain, and their counts."""

from __future__ import annotations

import time

from cm_console.actions import assign, set_state
from cm_console.models import Item
from cm_console.store import NewItem, Store
from cm_console.views import standard_views, view_count, view_ids


def add(store: Store, item_id: str, source: str, age: float) -> None:
    now = time.time()
    store.add_items([NewItem(Item(id=item_id, source=source, source_type="rss", guid=item_id,
                                  url="", title=item_id, author="a", published=now - age,
                                  fetched=now), "", "")])


def test_views_and_counts_agree(make_config) -> None:
    config = make_config([{"id": "blog", "type": "rss", "url": "http://127.0.0.1:9/b",
                           "sla": "1h"},
                          {"id": "forum", "type": "rss", "url": "http://127.0.0.1:9/f"}])
    store = Store(config.store)
    add(store, "blog:late", "blog", 2 * 3600)      # past the blog's 1h SLA
    add(store, "blog:fresh", "blog", 600)          # within it
    add(store, "forum:old", "forum", 5 * 86400)    # no SLA on the forum
    add(store, "blog:done", "blog", 3 * 3600)      # late, but answered
    set_state(store, "blog:done", "done", "ann")
    assign(store, "blog:fresh", "ann", "ann")
    views = {v.id: v for v in standard_views(config)}
    expected = {
        "inbox": {"blog:late", "blog:fresh", "forum:old"},
        "breached": {"blog:late"},
        "mine": {"blog:fresh"},
        "unassigned": {"blog:late", "forum:old"},
        "done": {"blog:done"},
        "source:forum": {"forum:old"},
    }
    for view_id, ids in expected.items():
        assert set(view_ids(store, views[view_id], "ann")) == ids, view_id
        assert view_count(store, views[view_id], "ann") == len(ids), view_id


def test_breached_view_is_empty_without_slas(make_config) -> None:
    config = make_config([{"id": "forum", "type": "rss", "url": "http://127.0.0.1:9/f"}])
    store = Store(config.store)
    add(store, "forum:old", "forum", 30 * 86400)
    breached = next(v for v in standard_views(config) if v.id == "breached")
    assert view_ids(store, breached, "ann") == [] and view_count(store, breached, "ann") == 0


def test_a_breach_is_marked_once_and_runs_breach_rules(make_config) -> None:
    from cm_console.sla import mark_breaches

    config = make_config([{"id": "blog", "type": "rss", "url": "http://127.0.0.1:9/b",
                           "sla": "1h"}],
                         escalation={"targets": [{"id": "pr", "name": "PR",
                                                  "email": ["pr@example.com"]}]},
                         rules=[{"id": "late-to-pr", "match": {"breached": True},
                                 "set": {"priority": "urgent", "escalate": "pr"}}])
    store = Store(config.store)
    add(store, "blog:late", "blog", 2 * 3600)
    add(store, "blog:fresh", "blog", 600)
    assert mark_breaches(store, config) == ["blog:late"]
    late = store.get_item("blog:late")
    assert late.priority == "urgent" and late.extra["escalate_to"] == "pr"
    (event,) = [e for e in store.events(item="blog:late") if e.action == "sla_breached"]
    assert event.data["rules"] == ["late-to-pr"]
    assert store.get_item("blog:fresh").priority == "normal"
    assert mark_breaches(store, config) == []  # once
