"""Proves the reports: figures computed from a real store's items and event log (replies,
escalations, private routes, an undo), in every format, hostile text kept inert."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cm_console.actions import escalate, reply, route_private, set_state, undo_last
from cm_console.config import Config
from cm_console.models import Item
from cm_console.reports import build_report, digest_text, render
from cm_console.store import NewItem, Store

DAY = 86400.0
NOW = time.mktime((2026, 11, 20, 12, 0, 0, 0, 0, -1))  # a fixed local noon


def _item(n: int, source: str, published: float, title: str, author: str = "") -> NewItem:
    item = Item(id=f"{source}:{n:04d}", source=source, source_type="rss", guid=str(n),
                url=f"https://{source}.example/{n}", title=title, author=author or f"user{n}",
                published=published, fetched=published)
    return NewItem(item, f"text {n}", "")


@pytest.fixture
def team(make_config: Callable[..., Config]) -> tuple[Config, Store]:
    config = make_config(
        [{"id": "blog", "type": "rss", "url": "http://127.0.0.1:9/b", "sla": "1h"},
         {"id": "forum", "type": "rss", "url": "http://127.0.0.1:9/f"}],
        team=[{"id": "ann", "name": "Ann"}, {"id": "bo", "name": "Bo"}],
        support_email="support@example.com", undo_window="0s",
        escalation={"targets": [{"id": "pr", "name": "PR", "email": ["pr@example.com"]}]},
        smtp={"host": "127.0.0.1", "port": 1, "from": "cm@example.com"})
    store = Store(config.store)
    store.add_items([
        _item(1, "blog", NOW - 3 * DAY, "Refund please"),
        _item(2, "blog", NOW - 3 * DAY + 60, "=HYPERLINK(\"http://evil\",\"x\")"),
        _item(3, "forum", NOW - 1 * DAY, "<script>alert(1)</script> sync broke"),
        _item(4, "forum", NOW - 1 * DAY + 30, "Love it", author="user3"),
        _item(5, "blog", NOW - 2 * 3600, "Where is my order?"),
    ])
    return config, store


def _at(store: Store, when: float, action: Callable[[], object]) -> None:
    """Run an action, then move its events to ``when`` (a report reads the log's times)."""
    before = {e.id for e in store.events()}
    action()
    for event in store.events():
        if event.id not in before:
            with store.transaction() as tx:
                tx.patch("events", str(event.id), {"ts": when})


def test_figures_come_from_the_event_log(team: tuple[Config, Store]) -> None:
    config, store = team
    _at(store, NOW - 3 * DAY + 600, lambda: reply(store, config, "blog:0001", "Sorry!", "ann"))
    _at(store, NOW - 1 * DAY + 1800, lambda: escalate(store, config, "forum:0003", "pr",
                                                       "script in a post", "bo"))
    _at(store, NOW - 1 * DAY + 3600, lambda: route_private(
        store, config, "forum:0004", "ann", public_text="Thanks!", private_text="Hi"))
    set_state(store, "blog:0002", "done", "bo")
    _at(store, NOW - 3 * DAY + 7200, lambda: reply(store, config, "blog:0002", "x", "bo"))
    assert undo_last(store, "bo") is not None  # undone: not a response
    d = build_report(store, config, NOW - 7 * DAY, NOW + 1, now=NOW).data

    assert d["items"] == 5
    assert d["volume"]["by_source"] == {"blog": 3, "forum": 2}
    # Every day from the first to the last, the quiet one included.
    assert list(d["volume"]["by_day"].values()) == [2, 0, 2, 1]
    fr = d["first_response"]
    assert fr["unanswered"] == 2  # blog:0002 (its reply was undone) and blog:0005
    assert fr["by_agent"]["ann"]["count"] == 2 and fr["by_agent"]["bo"]["count"] == 1
    assert fr["by_source"]["blog"]["median_seconds"] == pytest.approx(600)
    breached = {b["id"] for b in d["sla"]["items"]}
    assert breached == {"blog:0002", "blog:0005"}  # 1h SLA on the blog; forum has none
    assert d["escalations"]["by_target"] == {"pr": 1}
    assert d["routed_private"] == 1
    assert d["top_authors"][0] == {"author": "user3", "items": 2}


def test_every_format_keeps_strangers_text_inert(team: tuple[Config, Store]) -> None:
    config, store = team
    report = build_report(store, config, NOW - 7 * DAY, NOW + 1, now=NOW)
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert len(rows) == 5
    formula = next(r for r in rows if r["id"] == "blog:0002")
    assert formula["title"].startswith("'=HYPERLINK")  # never run by a spreadsheet
    page = render(report, "html")
    assert page.lower().startswith("<!doctype html>")
    assert "Content-Security-Policy" in page and "<script" not in page.lower()
    assert json.loads(render(report, "json"))["items"] == 5
    assert "| blog | 3 |" in render(report, "md")


def test_digest_and_the_cli(team: tuple[Config, Store], tmp_path: Path) -> None:
    import subprocess
    import sys

    config, store = team
    text = digest_text(store, config, now=NOW)
    assert "3 in, 5 waiting" in text  # the last 24 hours, and everything unanswered
    assert "Waiting for an answer: 5 (oldest 3d 0h old)" in text
    assert "- Where is my order? (blog, waited 2h 0m)" in text  # past the blog's 1h SLA
    out = tmp_path / "r.html"
    done = subprocess.run([sys.executable, "-m", "cm_console", "--config", str(config.path),
                           "report", "--from", "2026-11-01", "--to", "2026-11-30",
                           "--format", "html", "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Refund please" in out.read_text(encoding="utf-8")
