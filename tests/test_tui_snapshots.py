"""SVG snapshots of the main screens (pytest-textual-snapshot): inbox, reader, help, sources.

Everything that could change between runs is fixed: the items, their dates and events are
written straight into the store with fixed values; the clock the widgets, screens, status bar,
store and actions read is frozen (and reads UTC, so the machine's time zone does not matter);
the app never polls (``poll_on_start=False``, the poller's clock is frozen too, and every source
was "just polled"). Update with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and
look at the SVGs before committing them.
"""

from __future__ import annotations

import calendar
import time
import types
from collections.abc import Awaitable, Callable, Iterator

import pytest
from textual.pilot import Pilot

import cm_console.actions
import cm_console.app.app
import cm_console.app.screens
import cm_console.app.widgets
import cm_console.claims
import cm_console.store
import cm_console.views
from cm_console import claims
from cm_console.app.app import CMConsoleApp, make_app
from cm_console.config import Config
from cm_console.models import Event, Item, SourceState
from cm_console.poller import CycleReport, SourceResult
from cm_console.store import NewItem, Store

NOW = float(calendar.timegm((2026, 3, 14, 15, 0, 0)))  # Sat Mar 14 2026, 15:00 UTC
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0
SIZE = (120, 36)
ACTOR = "mel"

TEAM = [{"id": "mel", "name": "Mel Ortega", "role": "lead"},
        {"id": "alice", "name": "Alice Moreau", "role": "agent"},
        {"id": "bo", "name": "Bo Lindqvist", "role": "pr"}]

# id, source, author, title, minutes ago, state, tags, assignee, thread, body
ROWS = [
    ("blog:c1182", "blog", "Priya Raman", "Comment on Tessel 4.2: offline sync", 12, "new",
     [], None, "blog:4.2",
     "Offline sync is great, but after updating I lost three notes I wrote on the train.\n\n"
     "They were there before the update. Is there any way to get them back? I have a "
     "presentation on Thursday that depends on them."),
    ("forum:t9912", "forum", "@dev_gwen", "Plugin API: webhooks fire twice since 4.2", 25,
     "new", ["bug"], "alice", "",
     "Since 4.2 every webhook arrives twice, a few milliseconds apart. Same payload, same "
     "delivery id."),
    ("masto:1101", "mastodon", "@kira@social.example", "", 31, "open", [], None, "",
     "@tessel is there a way to export a whole notebook as markdown? asking for a friend "
     "(the friend is me)"),
    ("blog:c1179", "blog", "Marco Bellini", "Comment on Tessel 4.2: offline sync", 47, "open",
     ["praise"], None, "blog:4.2",
     "This is the release I was waiting for. Sync on the subway just works now."),
    ("blog:c1175", "blog", "J. Okafor", "Comment on Pricing changes for 2027", 2 * 60, "new",
     ["billing", "urgent"], "mel", "",
     "I was charged twice this month (order TS-48213 and TS-48214). Support hasn't answered "
     "in four days."),
    ("forum:t9907", "forum", "lena_f", "Price [/b] drop for schools? [@click=app.quit]x",
     5 * 60, "new", [], None, "",
     "Will the education discount still apply? Our school has 40 seats."),
    ("masto:1099", "mastodon", "@ops@fosstodon.example", "", 6 * 60, "snoozed", [], None, "",
     "Status page says all green but sync has been failing for an hour in EU-West."),
    ("blog:c1160", "blog", "Sam Whitaker", "Comment on Keyboard shortcuts cheat sheet",
     2 * 24 * 60, "done", [], "bo", "", "Printed it and taped it to my monitor. Thanks!"),
    ("forum:t9850", "forum", "noor", "Feature request: per-notebook themes", 95 * 24 * 60,
     "open", ["idea"], None, "", "It would be lovely to give each notebook its own colour."),
]
SOURCES = [("blog", "Tessel blog comments"), ("forum", "Tessel community forum"),
           ("mastodon", "Mastodon #tessel")]
SENTIMENT = {"blog:c1182": -0.4, "blog:c1175": -0.7, "blog:c1179": 0.8, "blog:c1160": 0.6,
             "forum:t9912": -0.2, "masto:1101": 0.0}


def frozen_time() -> types.SimpleNamespace:
    """A stand-in for the ``time`` module: the wall clock stops at NOW and reads UTC."""
    fake = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time)
                                    if not n.startswith("_")})
    fake.time = lambda: NOW
    fake.localtime = lambda secs=None: time.gmtime(NOW if secs is None else secs)
    return fake


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = frozen_time()
    for module in (cm_console.app.widgets, cm_console.app.screens, cm_console.app.app,
                   cm_console.store, cm_console.actions, cm_console.views, cm_console.claims):
        monkeypatch.setattr(module, "time", clock)


def fill(store: Store) -> None:
    entries = []
    for item_id, source, author, title, minutes, state, tags, assignee, thread, body in ROWS:
        published = NOW - minutes * MIN
        mood = SENTIMENT.get(item_id)
        item = Item(id=item_id, source=source, source_type="rss", guid=item_id,
                    url=f"https://{source}.tessel.example/{item_id.split(':')[1]}",
                    title=title, author=author, published=published, fetched=published + 30,
                    summary=body[:280], state=state, tags=list(tags), assignee=assignee,
                    snooze_until=NOW + 2 * HOUR if state == "snoozed" else None,
                    thread=thread, updated=published,
                    extra={} if mood is None else {"sentiment_score": mood})
        entries.append(NewItem(item, body, ""))
    events = [
        Event(ts=NOW - 40 * MIN, actor="alice", action="seen", item="blog:c1179",
              data={"before": {"state": "new"}, "after": {"state": "open"}}),
        Event(ts=NOW - 39 * MIN, actor="alice", action="tag", item="blog:c1179",
              data={"before": {"tags": []}, "after": {"tags": ["praise"]}}),
        Event(ts=NOW - 38 * MIN, actor="alice", action="note", item="blog:c1179",
              data={"text": "Quote this one in the release notes?"}),
        Event(ts=NOW - 90 * MIN, actor="mel", action="assign", item="blog:c1175",
              data={"before": {"assignee": None}, "after": {"assignee": "mel"}}),
        Event(ts=NOW - 2 * DAY + HOUR, actor="bo", action="state", item="blog:c1160",
              data={"before": {"state": "new"}, "after": {"state": "done"}}),
    ]
    states = [
        SourceState(id="blog", last_poll=NOW - 2 * MIN, last_success=NOW - 2 * MIN,
                    last_status="ok", next_due=NOW + 3 * MIN, last_new=2, items_total=4),
        SourceState(id="forum", last_poll=NOW - 2 * MIN, last_success=NOW - 2 * MIN,
                    last_status="304", next_due=NOW + 3 * MIN, items_total=3),
        SourceState(id="mastodon", last_poll=NOW - 2 * MIN, last_success=NOW - 2 * DAY,
                    last_status="error", error_count=3, next_due=NOW + 38 * MIN,
                    last_error="HTTP 503 Service Unavailable (Retry-After 1800s): the instance "
                               "social.example is in maintenance and asked us to come back "
                               "later; polling resumes on its own"),
    ]
    store.add_items(entries, states, events)
    claims.claim(store, "forum:t9912", "alice")  # Alice is writing a reply to this one


@pytest.fixture
def snapshot_app(frozen: None, make_config: Callable[..., Config]) -> Iterator[CMConsoleApp]:
    sources = [{"id": sid, "type": "rss", "name": name,
                "url": f"https://{sid}.tessel.example/feed.xml"} for sid, name in SOURCES]
    sources[0]["sla"] = "4h"  # first-response target: the list shows the time left
    config = make_config(sources, team=TEAM)
    store = Store(config.store)
    fill(store)
    app = make_app(config, store, ACTOR, poll_on_start=False)
    app.poller.clock = lambda: NOW  # nothing is ever due: no poll during a snapshot
    app.last_report = CycleReport(
        results=[SourceResult("blog", "ok", new=2, entries=4),
                 SourceResult("forum", "304"),
                 SourceResult("mastodon", "error", error="HTTP 503 Service Unavailable")],
        new_ids=["blog:c1182", "forum:t9912"], started=NOW - 2 * MIN - 3,
        finished=NOW - 2 * MIN)
    yield app


def keys(*presses: str) -> Callable[[Pilot], Awaitable[None]]:
    """Steps run before the screenshot: show the status bar, then press ``presses``.

    The status bar is drawn explicitly because the app's own first draw of it (in
    ``on_mount``) happens before the inbox is composed, so without a poll it stays blank
    until the first refresh tick (see ``test_the_status_bar_shows_at_once`` in test_tui.py).
    """

    async def run(pilot: Pilot) -> None:
        await pilot.pause()
        pilot.app.update_status()  # type: ignore[attr-defined]
        await pilot.press(*presses)
        await pilot.pause()

    return run


def test_inbox(snapshot_app: CMConsoleApp, snap_compare: Callable[..., bool]) -> None:
    """The inbox: views with counts, the list (states, tags, assignees), detail, status."""
    assert snap_compare(snapshot_app, run_before=keys(), terminal_size=SIZE)


def test_inbox_small_terminal(snapshot_app: CMConsoleApp,
                              snap_compare: Callable[..., bool]) -> None:
    """80x24 stays readable: narrow views column, list above the detail."""
    assert snap_compare(snapshot_app, run_before=keys(), terminal_size=(80, 24))


def test_inbox_wide_terminal(snapshot_app: CMConsoleApp,
                             snap_compare: Callable[..., bool]) -> None:
    """From 130 columns the detail pane sits beside the list."""
    assert snap_compare(snapshot_app, run_before=keys("j", "j", "j"), terminal_size=(160, 40))


def test_reader(snapshot_app: CMConsoleApp, snap_compare: Callable[..., bool]) -> None:
    """One item full screen: text, where it came from, its thread and its history."""
    assert snap_compare(snapshot_app, run_before=keys("j", "j", "j", "enter"),
                        terminal_size=SIZE)


def test_help(snapshot_app: CMConsoleApp, snap_compare: Callable[..., bool]) -> None:
    """Every key with its binding id."""
    assert snap_compare(snapshot_app, run_before=keys("question_mark"), terminal_size=SIZE)


def test_sources(snapshot_app: CMConsoleApp, snap_compare: Callable[..., bool]) -> None:
    """Each source's poll state; the failing one highlighted, its error in full below."""
    assert snap_compare(snapshot_app, run_before=keys("S", "down", "down"), terminal_size=SIZE)
