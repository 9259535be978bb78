"""Pilot tests of the inbox TUI (issue 3): every key, against a store filled from a real
loopback feed server, asserting on the store and on what reaches the screen.

Waiting is never blind: the initial poll is awaited through ``app.last_report`` and the
worker group, and everything else through bounded ``wait_until`` loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from rich.segment import Segment
from textual.command import CommandList, CommandPalette
from textual.content import Content
from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input, OptionList, Select

from cm_console import actions
from cm_console.app.app import CMConsoleApp, InboxScreen, ItemCommands, make_app
from cm_console.app.screens import (
    FilterScreen,
    HelpScreen,
    PickScreen,
    PromptScreen,
    ReaderScreen,
    SourcesScreen,
)
from cm_console.app.widgets import DetailPane, ItemList, StatusBar, ViewsList
from cm_console.config import Config
from cm_console.demo import demo_env
from cm_console.feedserver import FeedServer
from cm_console.keymap import KEYS
from cm_console.models import Item
from cm_console.store import NewItem, Store

from .feeds import atom, rss

SIZE = (120, 40)
ACTOR = "me"
TEAM = [{"id": "me", "name": "Mel Example", "role": "lead"},
        {"id": "alice", "name": "Alice Moreau", "role": "agent"}]

# Newest first: the order the inbox must show them in.
ORDER = [
    "Refund request for order 42",
    "Plugin API webhooks fire twice",
    "Sync lost my notes",
    "Dark mode request",
    "Love the new release",
    "Pricing question about education seats",
]


def blog_entries(now: float) -> list[dict]:
    return [
        {"guid": "b1", "title": ORDER[0], "link": "http://blog.example/c/1",
         "author": "Priya Raman", "date": now - 60,
         "html": "<p>I was charged <b>twice</b> for order 42.</p>"},
        {"guid": "b2", "title": ORDER[2], "link": "http://blog.example/c/2",
         "author": "Marco Bellini", "date": now - 180, "html": "<p>Three notes are gone.</p>"},
        {"guid": "b3", "title": ORDER[4], "link": "http://blog.example/c/3",
         "author": "Lena Fischer", "date": now - 300, "html": "<p>Great work, team.</p>"},
        {"guid": "b4", "title": ORDER[5], "link": "http://blog.example/c/4",
         "author": "Jon Okafor", "date": now - 360, "html": "<p>We have 40 seats.</p>"},
    ]


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def forum_entries(now: float) -> list[dict]:
    return [
        {"id": "urn:f1", "title": ORDER[1], "link": "http://forum.example/t/1",
         "author": "gwen", "date": iso(now - 120), "html": "<p>Every webhook arrives twice.</p>"},
        {"id": "urn:f2", "title": ORDER[3], "link": "http://forum.example/t/2",
         "author": "kim", "date": iso(now - 240), "html": "<p>Please add a dark theme.</p>"},
    ]


@dataclass
class Env:
    """A config with two real loopback sources, and the store the app will use."""

    config: Config
    store: Store
    server: FeedServer
    now: float

    def app(self, **kwargs: Any) -> CMConsoleApp:
        return make_app(self.config, self.store, ACTOR, **kwargs)

    def item_id(self, title: str) -> str:
        matches = [i.id for i in self.store.items(self.store.item_ids()) if i.title == title]
        assert len(matches) == 1, f"{title!r} is not in the store exactly once"
        return matches[0]


@pytest.fixture
def make_env(feed_server: FeedServer, make_config: Callable[..., Config]) -> Callable[..., Env]:
    def make(extra_sources: list[dict] | None = None, **extra: Any) -> Env:
        now = time.time()
        blog = feed_server.add("/blog.xml", rss(blog_entries(now), title="Blog comments"))
        forum = feed_server.add("/forum.atom", atom(forum_entries(now)),
                                "application/atom+xml")
        sources = [{"id": "blog", "type": "rss", "url": blog, "name": "Blog comments"},
                   {"id": "forum", "type": "rss", "url": forum, "name": "Forum"},
                   *(extra_sources or [])]
        config = make_config(sources, team=TEAM, **extra)
        return Env(config, Store(config.store), feed_server, now)

    return make


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


class Messages:
    """A ``message_hook``: keeps every message the app handled (notifications included)."""

    def __init__(self) -> None:
        self.seen: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.seen.append(message)

    def notes(self) -> list[str]:
        return [str(m.notification.message) for m in self.seen if isinstance(m, Notify)]


# ---------------------------------------------------------------------------- helpers


async def wait_until(pilot: Pilot, condition: Callable[[], object], what: str,
                     timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.02)


async def started(app: CMConsoleApp, pilot: Pilot) -> InboxScreen:
    """Wait for the initial background poll to finish and its results to be shown."""
    await wait_until(pilot, lambda: app.last_report is not None and not app.polling,
                     "the initial poll", timeout=20)
    await app.workers.wait_for_complete()
    await pilot.pause()
    return inbox(app)


def inbox(app: CMConsoleApp) -> InboxScreen:
    return next(s for s in app.screen_stack if isinstance(s, InboxScreen))


def item_list(app: CMConsoleApp) -> ItemList:
    return inbox(app).query_one(ItemList)


def titles(app: CMConsoleApp) -> list[str]:
    store = app.store
    return [store.get_item(i).title for i in item_list(app).ids]  # type: ignore[union-attr]


def current(app: CMConsoleApp) -> Item:
    item_id = item_list(app).current_id
    assert item_id is not None
    item = app.store.get_item(item_id)
    assert item is not None
    return item


def _screen_strips(app: CMConsoleApp) -> list[Strip]:
    # The compositor's strips are exactly what the driver turns into terminal output.
    return app.screen._compositor.render_strips()


def _lines(widget: Widget) -> str:
    """The part of the screen ``widget`` covers, one line per row."""
    region = widget.region
    strips = _screen_strips(widget.app)[region.y:region.bottom]  # type: ignore[arg-type]
    return "\n".join(strip.crop(region.x, region.right).text for strip in strips)


async def settled(pilot: Pilot, draw: Callable[[], str]) -> str:
    """``draw()`` once the app has handled pending messages and two draws agree.

    A key press can start a chain (cursor watcher → message → pane update → repaint), so one
    pause is not always enough; this waits for the picture to stop changing (bounded).
    """
    previous = None
    for _ in range(50):
        await pilot.pause()
        text = draw()
        if text == previous:
            return text
        previous = text
    raise AssertionError("the screen kept changing")


async def rendered(pilot: Pilot, widget: Widget) -> str:
    """What ``widget`` draws (borders and padding included), one line per row."""
    return await settled(pilot, lambda: _lines(widget))


def screen_segments(app: CMConsoleApp) -> list[Segment]:
    return [seg for strip in _screen_strips(app) for seg in strip]


async def screen_text(pilot: Pilot) -> str:
    """The whole screen as text, once it stopped changing."""
    return await settled(pilot, lambda: "\n".join(
        strip.text for strip in _screen_strips(pilot.app)))  # type: ignore[arg-type]


async def detail(pilot: Pilot) -> str:
    """The detail pane once it shows the item under the cursor.

    The pane follows the cursor after a short rest (so held-down j/k stays smooth): wait for
    it to show the current item's link before reading it.
    """
    pane = inbox(pilot.app).query_one(DetailPane)  # type: ignore[arg-type]
    url = current(pilot.app).url  # type: ignore[arg-type]
    await wait_until(pilot, lambda: url in str(pane.content), "the detail pane to follow")
    return await rendered(pilot, pane)


def view_counts(app: CMConsoleApp) -> dict[str, str]:
    """Each view's label as the views column shows it right now, by view id."""
    views = inbox(app).query_one(ViewsList)
    out = {}
    for index in range(views.option_count):
        option = views.get_option_at_index(index)
        if option.id:
            out[option.id] = str(option.prompt)
    return out


async def type_text(pilot: Pilot, text: str) -> None:
    await pilot.press(*("space" if c == " " else c for c in text))


async def click_view(pilot: Pilot, app: CMConsoleApp, view_id: str) -> None:
    """Click a view in the views column, as a user would."""
    views = inbox(app).query_one(ViewsList)
    index = views.get_option_index(view_id)
    # Rows are one line each, plus the separator before the first source view.
    row = index + (1 if view_id.startswith("source:") else 0)
    await pilot.click(ViewsList, offset=(2, row - views.scroll_offset.y))
    await pilot.pause()
    assert inbox(app).view.id == view_id


# ---------------------------------------------------------------------------- moving around


async def test_cursor_keys_move_and_the_detail_follows(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        items = item_list(app)
        assert titles(app) == ORDER
        assert app.focused is items and items.cursor == 0
        drawn = await screen_text(pilot)
        for title in ORDER:  # the list really draws every row
            assert title in drawn

        for key, expected in [("j", 1), ("down", 2), ("k", 1), ("up", 0), ("up", 0),
                              ("G", 5), ("j", 5), ("g", 0), ("end", 5), ("home", 0),
                              ("space", 5), ("b", 0), ("pagedown", 5), ("pageup", 0),
                              ("j", 1)]:
            await pilot.press(key)
            assert items.cursor == expected, f"after {key}"
        assert items.current_id == env.item_id(ORDER[1])
        shown_detail = await detail(pilot)
        assert ORDER[1] in shown_detail and "gwen" in shown_detail
        assert "Every webhook arrives twice." in shown_detail
        # The highlighted row is drawn with the cursor style, the others are not.
        cursor_style = items.get_component_rich_style("item-list--cursor")
        row1 = items.render_line(1)
        row0 = items.render_line(0)
        assert ORDER[1] in row1.text and row1 != row0
        assert any(seg.style and seg.style.bgcolor == cursor_style.bgcolor for seg in row1)
        assert not any(seg.style and seg.style.bgcolor == cursor_style.bgcolor
                       and cursor_style.bgcolor is not None for seg in row0)


async def test_enter_reads_the_item_and_marks_it_seen(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        item_id = env.item_id(ORDER[0])
        assert env.store.get_item(item_id).state == "new"  # type: ignore[union-attr]
        assert "6 unread" in await rendered(pilot, app.screen.query_one(StatusBar))
        before = time.time()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ReaderScreen)
        reader = await screen_text(pilot)
        assert ORDER[0] in reader and "Priya Raman" in reader
        assert "I was charged twice for order 42." in reader
        assert "http://blog.example/c/1" in reader
        assert "Mel Example  marked open" in reader  # its history, with my name

        assert env.store.get_item(item_id).state == "open"  # type: ignore[union-attr]
        event = env.store.events(item=item_id)[-1]
        assert (event.actor, event.action) == (ACTOR, "seen")
        assert event.data["before"] == {"state": "new"}
        assert event.data["after"] == {"state": "open"}
        assert before <= event.ts <= time.time()

        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen)
        assert item_list(app).current_id == item_id  # the cursor stayed on it
        # Reading it again logs nothing more; escape also goes back.
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ReaderScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen)
        assert len(env.store.events(item=item_id)) == 1


async def test_n_and_p_jump_between_new_items(env: Env) -> None:
    app = env.app()
    notes = Messages()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await started(app, pilot)
        for title in (ORDER[1], ORDER[2]):
            actions.set_state(env.store, env.item_id(title), "open", "alice")
        app.refresh_inbox()
        await pilot.pause()
        assert titles(app) == ORDER  # open items stay in the inbox
        items = item_list(app)
        for key, expected in [("n", 3), ("n", 4), ("n", 5), ("p", 4), ("p", 3), ("p", 0)]:
            await pilot.press(key)
            assert items.cursor == expected, f"after {key}"
        await pilot.press("p")
        assert items.cursor == 0
        await pilot.press("G", "n")
        assert items.cursor == 5
        await pilot.pause()
        assert "No more new items above." in notes.notes()
        assert "No more new items below." in notes.notes()


# ---------------------------------------------------------------------------- search, filter


async def test_slash_searches_incrementally_and_escape_clears(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        search = app.screen.query_one("#search", Input)
        assert not search.display
        await pilot.press("slash")
        assert search.display and app.focused is search
        await type_text(pilot, "twi")  # a title, and another post's text ("charged twice")
        await wait_until(pilot, lambda: titles(app) == [ORDER[0], ORDER[1]],
                         "the list to narrow to 'twi'")
        await type_text(pilot, "ce for")
        await wait_until(pilot, lambda: titles(app) == [ORDER[0]], "the list to narrow more")
        assert '"twice for"' in await screen_text(pilot)  # the list title says what narrows it
        assert ORDER[1] not in await rendered(pilot, item_list(app))
        # enter keeps the search and returns to the list; keys work on the narrowed list
        await pilot.press("enter")
        assert app.focused is item_list(app)
        assert item_list(app).current_id == env.item_id(ORDER[0])
        # escape clears the search: the whole inbox is back
        await pilot.press("escape")
        await pilot.pause()
        assert not search.display and search.value == ""
        assert titles(app) == ORDER
        assert app.is_running


async def test_search_matches_author_and_escape_from_the_input_clears(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("slash")
        await type_text(pilot, "priya")
        await wait_until(pilot, lambda: titles(app) == [ORDER[0]], "an author match")
        await type_text(pilot, "zzz")
        await wait_until(pilot, lambda: titles(app) == [], "no match")
        assert "No items match the search or filter" in await rendered(pilot, item_list(app))
        await pilot.press("escape")  # straight from the input
        await pilot.pause()
        assert titles(app) == ORDER
        assert app.focused is item_list(app)
        assert app.is_running


async def test_f_filters_by_source_state_and_tag(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        actions.tag(env.store, env.item_id(ORDER[2]), ["bug"], "alice")
        actions.tag(env.store, env.item_id(ORDER[3]), ["bug"], "alice")
        actions.set_state(env.store, env.item_id(ORDER[3]), "open", "alice")
        app.refresh_inbox()
        await pilot.pause()

        # Source, picked with the keyboard from the first select.
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, FilterScreen)
        source = app.screen.query_one("#filter-source", Select)
        assert app.focused is source
        await pilot.press("enter")  # open the menu
        await pilot.pause()
        await pilot.press("down", "down", "enter")  # blank prompt, Blog comments, Forum
        await pilot.pause()
        assert source.value == "forum"
        await pilot.click("#filter-apply")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen)
        assert titles(app) == [ORDER[1], ORDER[3]]
        assert "source forum" in await screen_text(pilot)

        # Add a state: the filter screen opens with the current choice.
        await pilot.press("f")
        await pilot.pause()
        assert app.screen.query_one("#filter-source", Select).value == "forum"
        app.screen.query_one("#filter-state", Select).value = "open"
        await pilot.click("#filter-apply")
        await pilot.pause()
        assert titles(app) == [ORDER[3]]

        # Clear, then a tag alone, picked from the menu of tags in use.
        await pilot.press("f")
        await pilot.pause()
        await pilot.click("#filter-clear")
        await pilot.pause()
        assert titles(app) == ORDER
        await pilot.press("f")
        await pilot.pause()
        tag_select = app.screen.query_one("#filter-tag", Select)
        tag_select.focus()
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("down", "enter")  # blank prompt, #bug
        await pilot.pause()
        assert tag_select.value == "bug"
        await pilot.click("#filter-apply")
        await pilot.pause()
        assert titles(app) == [ORDER[2], ORDER[3]]
        assert "#bug" in await rendered(pilot, app.screen.query_one("#list-title"))

        # escape in the dialog changes nothing; escape in the list clears the filter.
        await pilot.press("f")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen)
        assert titles(app) == [ORDER[2], ORDER[3]]
        await pilot.press("escape")
        await pilot.pause()
        assert titles(app) == ORDER
        assert app.is_running


# ---------------------------------------------------------------------------- links, poll


async def test_o_opens_the_link_in_the_browser(env: Env, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    app = env.app()
    opened: list[str] = []
    # App.open_url hands the URL to Textual's driver (webbrowser): record it instead.
    monkeypatch.setattr(app, "open_url", lambda url, **_: opened.append(url))
    notes = Messages()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await started(app, pilot)
        await pilot.press("j", "o")
        await pilot.pause()
        assert opened == ["http://forum.example/t/1"]
        assert "Opening http://forum.example/t/1" in notes.notes()
        assert isinstance(app.screen, InboxScreen) and app.is_running


async def test_y_copies_the_link(env: Env) -> None:
    app = env.app()
    notes = Messages()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await started(app, pilot)
        await pilot.press("G", "y")
        await pilot.pause()
        assert app.clipboard == "http://blog.example/c/4"  # what Textual sent via OSC 52
        assert "Copied http://blog.example/c/4" in notes.notes()


async def test_R_polls_now_and_new_entries_appear(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert len(titles(app)) == 6
        first_report = app.last_report
        env.server.add("/blog.xml", rss([
            {"guid": "b9", "title": "Brand new complaint", "link": "http://blog.example/c/9",
             "author": "Sam", "date": time.time() - 5, "html": "<p>Fresh.</p>"},
            *blog_entries(env.now),
        ]))
        await pilot.press("R")
        await wait_until(pilot, lambda: app.last_report is not first_report and not app.polling,
                         "the second poll")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert titles(app)[0] == "Brand new complaint"
        assert "Brand new complaint" in await rendered(pilot, item_list(app))
        assert view_counts(app)["inbox"].endswith(" 7")
        assert "1 new" in await rendered(pilot, app.screen.query_one(StatusBar))


# ---------------------------------------------------------------------------- other screens


async def palette_commands(pilot: Pilot) -> list[str]:
    """The palette's commands once its search worker has finished (name, newline, help)."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    commands = pilot.app.screen.query_one(CommandList)
    return [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]


async def palette_prompts(pilot: Pilot) -> list[str]:
    """Open the command palette and return its commands."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    assert isinstance(pilot.app.screen, CommandPalette)
    return await palette_commands(pilot)


async def test_ctrl_p_opens_the_palette_with_the_consoles_commands(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        prompts = await palette_prompts(pilot)
        for name in ("Poll now", "Sources", "Help"):
            assert any(p.split("\n")[0] == name for p in prompts), (name, prompts)
        await type_text(pilot, "sources")
        assert (await palette_commands(pilot))[0].startswith("Sources")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SourcesScreen)


async def test_ctrl_p_lists_the_current_items_commands_and_runs_them(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        prompts = await palette_prompts(pilot)
        assert f"Mark done\n{ORDER[0]}" in prompts, prompts
        assert any(p.startswith("Open in browser") for p in prompts)
        assert any(p.startswith("View: Snoozed") for p in prompts)
        await type_text(pilot, "mark done")
        assert (await palette_commands(pilot))[0].startswith("Mark done")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen)
        assert env.store.get_item(env.item_id(ORDER[0])).state == "done"  # type: ignore[union-attr]
        assert titles(app) == ORDER[1:]


async def test_question_mark_shows_every_binding_with_its_keys(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        help_text = str(app.screen.query_one("#help-body").query_one("Static").render())
        for spec in KEYS:
            assert spec.id in help_text, spec.id
            assert spec.description in help_text, spec.description
        lines = {line.split()[-1]: line for line in help_text.splitlines() if line.strip()}
        assert lines["cursor.down"].startswith("j, down")
        assert lines["search"].startswith("/")
        assert lines["help"].startswith("?")
        assert lines["back"].startswith("esc")
        assert lines["quit"].startswith("q")
        assert "ctrl+p" in help_text
        assert "cursor.down" in await screen_text(pilot)  # drawn, not just composed
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen)
        await pilot.press("question_mark")
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen) and app.is_running


async def test_S_shows_a_failing_sources_error_in_full(
    feed_server: FeedServer, make_env: Callable[..., Env]
) -> None:
    bomb = feed_server.add("/bomb.xml", b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a '
                           b'"aaaaaaaa">]><rss version="2.0"><channel><title>&a;</title>'
                           b"</channel></rss>")
    env = make_env([{"id": "broken", "type": "rss", "url": bomb, "name": "Broken feed"}])
    app = env.app()
    notes = Messages()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await started(app, pilot)
        assert [r.source for r in app.last_report.errors] == ["broken"]  # type: ignore[union-attr]
        assert any("1 source(s) failed: broken" in n for n in notes.notes())
        assert "1 error(s) (S)" in await rendered(pilot, app.screen.query_one(StatusBar))
        error = env.store.source_state("broken").last_error
        assert "DTD" in error and len(error) > 60  # longer than the table's column

        await pilot.press("S")
        await pilot.pause()
        assert isinstance(app.screen, SourcesScreen)
        table = await screen_text(pilot)
        for label in ("Blog comments", "Forum", "Broken feed"):
            assert label in table
        # Move to the broken source: its whole error is shown below the table.
        await pilot.press("down", "down")
        await pilot.pause()
        full = str(app.screen.query_one("#source-error").render())
        assert "Broken feed (broken)" in full
        assert error in full
        assert "1 error(s) in a row" in full
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen)
        await pilot.press("S")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen) and app.is_running


async def test_q_quits_from_the_inbox(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, "the app to exit", timeout=5)
    assert app.return_code == 0


async def test_escape_never_quits_the_inbox(env: Env) -> None:
    """A newcomer's stray esc (after clearing a search) used to end the session."""
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("escape", "escape")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, InboxScreen)


async def test_escape_from_the_detail_pane_returns_to_the_list_first(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        app.screen.query_one(DetailPane).focus()
        await pilot.pause()
        await pilot.press("escape")
        assert app.is_running and app.focused is item_list(app)


# ---------------------------------------------------------------------------- actions


async def test_d_marks_done_and_the_list_and_counts_follow(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        counts = view_counts(app)
        assert counts["inbox"] == "Inbox 6" and counts["done"] == "Done"
        assert counts["source:blog"] == "Blog comments 4"
        item_id = env.item_id(ORDER[0])
        before = time.time()
        await pilot.press("d")
        await pilot.pause()

        item = env.store.get_item(item_id)
        assert item is not None and item.state == "done"
        event = env.store.events(item=item_id)[-1]
        assert (event.actor, event.action) == (ACTOR, "state")
        assert event.data["before"] == {"state": "new"}
        assert event.data["after"] == {"state": "done"}
        assert before <= event.ts <= time.time()
        # Saved at once: a fresh Store on the same files sees it.
        assert Store(env.config.store).get_item(item_id).state == "done"  # type: ignore[union-attr]

        # The list and the counts changed without any reload.
        assert titles(app) == ORDER[1:]
        assert ORDER[0] not in await rendered(pilot, item_list(app))
        counts = view_counts(app)
        assert counts["inbox"] == "Inbox 5" and counts["done"] == "Done 1"
        assert counts["source:blog"] == "Blog comments 3"
        assert "Inbox 5" in await screen_text(pilot)
        assert item_list(app).cursor == 0 and current(app).title == ORDER[1]

        # In the Done view, d reopens it.
        await click_view(pilot, app, "done")
        assert titles(app) == [ORDER[0]]
        item_list(app).focus()
        await pilot.press("d")
        await pilot.pause()
        assert env.store.get_item(item_id).state == "open"  # type: ignore[union-attr]
        assert titles(app) == []
        assert view_counts(app)["done"] == "Done"


async def test_u_undoes_my_last_change(env: Env) -> None:
    app = env.app()
    notes = Messages()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await started(app, pilot)
        item_id = env.item_id(ORDER[0])
        await pilot.press("d")
        await pilot.pause()
        assert env.store.get_item(item_id).state == "done"  # type: ignore[union-attr]
        await pilot.press("u")
        await pilot.pause()
        assert env.store.get_item(item_id).state == "new"  # type: ignore[union-attr]
        event = env.store.events(item=item_id)[-1]
        assert (event.actor, event.action, event.data["undone_action"]) == (ACTOR, "undo",
                                                                             "state")
        assert titles(app) == ORDER
        assert view_counts(app)["inbox"] == "Inbox 6"
        await pilot.press("u")  # the undo itself is not undone, and nothing else is mine
        await pilot.pause()
        assert env.store.get_item(item_id).state == "new"  # type: ignore[union-attr]
        assert "Nothing of yours to undo." in notes.notes()


async def test_s_snoozes_the_item_into_the_snoozed_view(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("j")
        item_id = item_list(app).current_id
        assert item_id == env.item_id(ORDER[1])
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        prompt = app.screen.query_one(Input)
        assert prompt.value == "2h" and app.focused is prompt
        before = time.time()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen)

        item = env.store.get_item(item_id)  # type: ignore[arg-type]
        assert item is not None and item.state == "snoozed"
        assert item.snooze_until is not None
        assert before + 7200 - 1 <= item.snooze_until <= time.time() + 7200 + 1
        event = env.store.events(item=item_id)[-1]  # type: ignore[arg-type]
        assert (event.actor, event.action) == (ACTOR, "snooze")
        assert ORDER[1] not in titles(app)
        assert view_counts(app)["snoozed"] == "Snoozed 1"
        await click_view(pilot, app, "snoozed")
        assert titles(app) == [ORDER[1]]
        assert ORDER[1] in await rendered(pilot, item_list(app))


async def test_s_with_a_bad_time_says_so_and_changes_nothing(env: Env) -> None:
    app = env.app()
    notes = Messages()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await started(app, pilot)
        item_id = item_list(app).current_id
        await pilot.press("s")
        await pilot.pause()
        prompt = app.screen.query_one(Input)
        prompt.value = ""
        await type_text(pilot, "soonish")
        await pilot.press("enter")
        await pilot.pause()
        # Asked again, with what was typed and why it did not work: no starting over.
        assert isinstance(app.screen, PromptScreen) and app.is_running
        assert app.screen.query_one(Input).value == "soonish"
        assert "soonish" in await screen_text(pilot)
        assert env.store.get_item(item_id).state == "new"  # type: ignore[arg-type, union-attr]
        app.screen.query_one(Input).value = "2h"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen)
        assert env.store.get_item(item_id).state == "snoozed"  # type: ignore[arg-type, union-attr]
        assert any("Snoozed until" in n for n in notes.notes())


async def test_t_sets_tags(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        item_id = env.item_id(ORDER[0])
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        await type_text(pilot, "billing #Urgent")
        await pilot.press("enter")
        await pilot.pause()
        assert env.store.get_item(item_id).tags == ["billing", "urgent"]  # type: ignore[union-attr]
        event = env.store.events(item=item_id)[-1]
        assert (event.actor, event.action) == (ACTOR, "tag")
        row = item_list(app).render_line(0).text
        assert "#billing #urgent" in row
        assert "#billing #urgent" in await detail(pilot)
        # The prompt opens with the current tags; emptying it removes them all.
        await pilot.press("t")
        await pilot.pause()
        prompt = app.screen.query_one(Input)
        assert prompt.value == "billing urgent"
        prompt.value = ""
        await pilot.press("enter")
        await pilot.pause()
        assert env.store.get_item(item_id).tags == []  # type: ignore[union-attr]


async def test_a_assigns_to_a_team_member_and_mine_shows_mine(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        first, second = env.item_id(ORDER[0]), env.item_id(ORDER[1])
        assert view_counts(app)["mine"] == "Mine"

        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, PickScreen)
        options = app.screen.query_one(OptionList)
        labels = [str(options.get_option_at_index(i).prompt)
                  for i in range(options.option_count)]
        assert labels == ["Mel Example (lead)", "Alice Moreau (agent)", "nobody (unassign)"]
        await pilot.press("j", "enter")  # Alice
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen)
        assert env.store.get_item(first).assignee == "alice"  # type: ignore[union-attr]
        assert "@alice" in item_list(app).render_line(0).text
        assert "assigned to Alice Moreau" in await detail(pilot)
        assert view_counts(app)["mine"] == "Mine"

        await pilot.press("j", "a")
        await pilot.pause()
        await pilot.press("enter")  # me
        await pilot.pause()
        assert env.store.get_item(second).assignee == ACTOR  # type: ignore[union-attr]
        event = env.store.events(item=second)[-1]
        assert (event.actor, event.action) == (ACTOR, "assign")
        assert view_counts(app)["mine"] == "Mine 1"
        await click_view(pilot, app, "mine")
        assert titles(app) == [ORDER[1]]


async def test_N_adds_a_note_to_the_history(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        item_id = env.item_id(ORDER[0])
        await pilot.press("N")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        await type_text(pilot, "called them back")
        await pilot.press("enter")
        await pilot.pause()
        event = env.store.events(item=item_id)[-1]
        assert (event.actor, event.action, event.data["text"]) == (ACTOR, "note",
                                                                    "called them back")
        await pilot.press("enter")  # the reader shows the full history
        await pilot.pause()
        reader = await screen_text(pilot)
        assert "Mel Example  note: called them back" in reader
        assert "Mel Example  marked open" in reader


# ---------------------------------------------------------------------------- keymap


async def test_keys_from_the_config_rebind_actions(make_env: Callable[..., Env]) -> None:
    env = make_env(keys={"done": "x"})
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        item_id = env.item_id(ORDER[0])
        await pilot.press("d")
        await pilot.pause()
        assert env.store.get_item(item_id).state == "new"  # type: ignore[union-attr]
        assert env.store.events(item=item_id) == []
        await pilot.press("x")
        await pilot.pause()
        assert env.store.get_item(item_id).state == "done"  # type: ignore[union-attr]
        footer = (await screen_text(pilot)).splitlines()[-1]
        assert "x Done" in footer and "d Done" not in footer
        await pilot.press("question_mark")
        await pilot.pause()
        help_text = str(app.screen.query_one("#help-body").query_one("Static").render())
        done_line = next(line for line in help_text.splitlines() if line.endswith(" done"))
        assert done_line.split()[0] == "x"


# ---------------------------------------------------------------------------- two consoles


async def test_another_consoles_change_shows_within_a_tick(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        other = Store(env.config.store)  # a second console on the same files
        actions.set_state(other, env.item_id(ORDER[2]), "done", "alice")
        actions.tag(other, env.item_id(ORDER[3]), ["vip"], "alice")
        assert titles(app) == ORDER  # not yet
        app._tick()  # what the REFRESH_EVERY interval runs
        await pilot.pause()
        assert titles(app) == [t for t in ORDER if t != ORDER[2]]
        assert view_counts(app)["done"] == "Done 1"
        assert "#vip" in await rendered(pilot, item_list(app))
        assert env.store.get_item(env.item_id(ORDER[2])).state == "done"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- the demo


async def test_the_demo_end_to_end_with_parse_workers() -> None:
    with demo_env("tester") as demo:
        assert demo.config.poll.parse_workers == 1
        app = make_app(demo.config, demo.store, "tester", demo=demo)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            report = app.last_report
            assert report is not None and not report.errors
            # Parsed in a worker process, not in a thread of the UI's process.
            assert app.poller._pool is not None and not app.poller._pool_broken
            assert all(r.status == "ok" and r.new > 0 for r in report.results), report.results
            assert len(titles(app)) == len(report.new_ids) > 10
            status = await rendered(pilot, app.screen.query_one(StatusBar))
            assert "DEMO" in status and "Sam" in status
            # The demo's own hostile author shows literally.
            assert any("Lena [/b] Fischer" in t for t in titles(app))
            await pilot.press("d")
            await pilot.pause()
            done = demo.store.search(state="done")
            assert len(done) == 1 and demo.store.events(item=done[0].id)[-1].actor == "tester"
            assert len(titles(app)) == len(report.new_ids) - 1


# ---------------------------------------------------------------------------- hostile text

# (what a stranger sent, what the screen must show)
HOSTILE_TITLES = [
    ("Price [/b] drop", "Price [/b] drop"),
    ("[@click=app.quit]x", "[@click=app.quit]x"),
    ("[bold red]x[/]", "[bold red]x[/]"),
    ("Red \x1b[31malert\x1b[0m here", "Red alert here"),
    ("Retitle \x1b]0;owned\x07 done", "Retitle done"),
    ("Bidi \u202eevil\u202c text", "Bidi evil text"),
    ("Zero\u200bwidth\u200djoin", "Zerowidthjoin"),
]
FORBIDDEN = ["\x1b", "\x07", "\x9b", "\u202e", "\u202c", "\u200b", "\u200d", "\u2066"]


def hostile_items(now: float) -> list[NewItem]:
    out = []
    for n, (title, _) in enumerate(HOSTILE_TITLES):
        item = Item(id=f"evil:raw{n}", source="evil", source_type="rss", guid=str(n),
                    url=f"http://evil.example/{n}", title=title,
                    author="[@click=app.quit]mallory\x1b[2J", published=now - 60 * (n + 1),
                    fetched=now, summary=title)
        out.append(NewItem(item, f"Body of {title}\n[/b] [@click=app.quit]x \x1b]0;t\x07", ""))
    huge = Item(id="evil:rawhuge", source="evil", source_type="rss", guid="huge",
                url="http://evil.example/huge", title="T" * 10_000, author="A" * 5000,
                published=now - 3600, fetched=now)
    out.append(NewItem(huge, ("200KB of text \u202e " * 14_000)[:200_000], ""))
    return out


def assert_clean(app: CMConsoleApp, *, export: bool = False) -> None:
    """No control byte, bidi or zero-width char, and no @click action from content, on screen.

    ``export`` also checks the raw terminal output of a full repaint and the SVG export.
    """
    segments = screen_segments(app)
    text = "".join(seg.text for seg in segments)
    for char in FORBIDDEN:
        assert char not in text, f"{char!r} reached the screen"
    for seg in segments:
        meta = seg.style.meta if seg.style else {}
        assert "quit" not in str(meta.get("@click", "")), seg
    if export:
        raw = app.screen._compositor.render_full_update().render_segments(app.console)
        assert "\x1b]" not in raw and "\u202e" not in raw  # no OSC, no bidi in the output
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\u202e" not in svg and "\u200b" not in svg


async def test_hostile_text_is_shown_literally_and_controls_never_reach_the_screen(
    feed_server: FeedServer, make_config: Callable[..., Config]
) -> None:
    now = time.time()
    # Through a real feed: markup, bidi and zero-width chars survive XML, so the poller and
    # the sanitizer see them as a stranger would send them.
    url = feed_server.add("/evil.xml", rss([
        {"guid": "f1", "title": "Feed says [b]hi[/b] and [@click=app.quit]quit",
         "author": "[red]eve[/red]", "link": "http://evil.example/f1", "date": now - 5,
         "html": "<p>Price [/b] drop \u202egnp.exe\u202c and \u200bhidden</p>"},
    ]))
    config = make_config([{"id": "evil", "type": "rss", "url": url}], team=TEAM)
    store = Store(config.store)
    store.add_items(hostile_items(now))  # and straight into the store, unsanitized
    app = make_app(config, store, ACTOR)
    quits: list[str] = []
    original_quit = app.action_quit

    async def spy_quit() -> None:  # pragma: no cover - must never run
        quits.append("quit")
        await original_quit()

    app.action_quit = spy_quit  # type: ignore[method-assign]
    notes = Messages()
    async with app.run_test(size=SIZE, notifications=True, message_hook=notes) as pilot:
        await started(app, pilot)
        assert app.last_report is not None and not app.last_report.errors
        shown = titles(app)
        assert shown[0] == "Feed says [b]hi[/b] and [@click=app.quit]quit"
        screen = await screen_text(pilot)
        for literal in ("Feed says [b]hi[/b] and [@click=app.quit]quit", "Price [/b] drop",
                        "[@click=app.quit]x", "[bold red]x[/]", "Red alert here",
                        "Retitle done", "Bidi evil text", "Zerowidthjoin",
                        "[@click=app.quit]mallory"):
            assert literal in screen, literal
        assert_clean(app, export=True)

        # Walk every row: each detail pane shows its literal title and body, cleanly.
        for index in range(len(shown)):
            item_list(app).move_to(index)
            await pilot.pause()
            shown_detail = await detail(pilot)
            item = current(app)
            if item.id == "evil:rawhuge":
                assert "T" * 100 in shown_detail and "200KB of text" in shown_detail
            elif item.id.startswith("evil:raw"):
                raw, visible = HOSTILE_TITLES[int(item.id.removeprefix("evil:raw"))]
                assert item.title == raw  # the store kept what it was given
                assert visible in shown_detail and f"Body of {visible}" in shown_detail
                assert "[/b] [@click=app.quit]x" in shown_detail
            assert_clean(app)
        item_list(app).move_to(0)
        await pilot.pause()
        shown_detail = await detail(pilot)
        assert "Price [/b] drop gnp.exe and hidden" in shown_detail

        # Clicking on the literal [@click=...] text (row, detail, reader) and typing runs nothing.
        row = shown.index("[@click=app.quit]x")
        line = (await rendered(pilot, item_list(app))).splitlines()[row]
        for x in (line.index("[@click"), line.rindex("[@click")):  # the author, the title
            await pilot.click(ItemList, offset=(x + 1, row))
            await pilot.click(ItemList, offset=(x + 3, row))
        assert item_list(app).cursor == row and app.is_running
        detail_lines = (await detail(pilot)).splitlines()
        y = next(n for n, text in enumerate(detail_lines) if "[/b] [@click" in text)
        await pilot.click(DetailPane, offset=(detail_lines[y].index("[@click") + 1, y))
        item_list(app).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ReaderScreen)
        assert "[@click=app.quit]x" in await screen_text(pilot)
        assert_clean(app)
        await pilot.click("#reader-text", offset=(1, 0))
        await pilot.press("j", "k", "space", "b", "escape")
        await pilot.pause()
        assert isinstance(app.screen, InboxScreen) and app.is_running

        # The 10,000-character title and 200 KB body: the reader opens, cut, without stalling.
        item_list(app).focus()
        item_list(app).move_to(titles(app).index("T" * 10_000))
        await pilot.pause()
        started_at = time.monotonic()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ReaderScreen)
        assert time.monotonic() - started_at < 10  # cut for display: no stall
        reader = await screen_text(pilot)
        assert "T" * 100 in reader and "200KB of text" in reader
        assert_clean(app, export=True)
        await pilot.press("escape")
        await pilot.pause()

        # Tagging and noting hostile items works too (no notification carries their title).
        item_list(app).focus()
        item_list(app).move_to(titles(app).index("[@click=app.quit]x"))
        await pilot.press("t")
        await pilot.pause()
        await type_text(pilot, "[b]x")
        await pilot.press("enter")
        await pilot.pause()
        assert current(app).tags == ["[b]x"]
        assert "#[b]x" in await rendered(pilot, item_list(app))
        assert_clean(app)
        assert app.is_running
    assert quits == []
    assert app.return_code in (None, 0)


def hostile_app(make_config: Callable[..., Config], count: int = 3) -> CMConsoleApp:
    """An app on a store holding the first ``count`` hostile items (no polling)."""
    config = make_config([{"id": "evil", "type": "rss", "url": "http://127.0.0.1:9/none"}],
                         team=TEAM)
    store = Store(config.store)
    store.add_items(hostile_items(time.time())[:count])
    return make_app(config, store, ACTOR, poll_on_start=False)


def toast_text(message: Notify) -> str:
    """The text a Toast shows for a notification: exactly what Textual's Toast.render does
    (markup is parsed unless the notification turned it off)."""
    note = message.notification
    content = Content.from_markup(note.message) if note.markup else Content(note.message)
    assert not any("@click" in str(span.style) for span in content.spans), content.spans
    return content.plain


def toasts(messages: Messages) -> list[str]:
    return [toast_text(m) for m in messages.seen if isinstance(m, Notify)]


@pytest.mark.parametrize(("keys", "expected"), [
    pytest.param(("y",), "Copied http://blog.example/c/1", id="y"),
    pytest.param(("o",), "Opening http://blog.example/c/1", id="o"),
    pytest.param(("d", "u"), f"Undid state: {ORDER[0]}", id="u"),
    pytest.param(("u",), "Nothing of yours to undo.", id="u-nothing"),
    pytest.param(("d",), f"Done: {ORDER[0]}  (u undoes)", id="d"),
    pytest.param(("p",), "No more new items above.", id="p"),
])
async def test_every_notification_is_drawn(env: Env, monkeypatch: pytest.MonkeyPatch,
                                           keys: tuple[str, ...], expected: str) -> None:
    app = env.app()
    monkeypatch.setattr(app, "open_url", lambda url, **_: None)
    messages = Messages()
    async with app.run_test(size=SIZE, notifications=True, message_hook=messages) as pilot:
        await started(app, pilot)
        await pilot.press(*keys)
        await pilot.pause()
        assert expected in toasts(messages)
        assert expected in await screen_text(pilot)  # the toast really rendered
        assert app.is_running


async def test_a_failing_source_notification_is_drawn(
    feed_server: FeedServer, make_env: Callable[..., Env]
) -> None:
    env = make_env([{"id": "broken", "type": "rss", "url": feed_server.url("/missing.xml")}])
    app = env.app()
    messages = Messages()
    async with app.run_test(size=SIZE, notifications=True, message_hook=messages) as pilot:
        await started(app, pilot)
        expected = "1 source(s) failed: broken. S shows details."
        assert expected in toasts(messages)
        assert expected in await screen_text(pilot)
        assert app.is_running


async def test_d_on_hostile_titles_keeps_the_notification_literal(
    make_config: Callable[..., Config]
) -> None:
    app = hostile_app(make_config)
    messages = Messages()
    async with app.run_test(size=SIZE, notifications=True, message_hook=messages) as pilot:
        for raw, visible in HOSTILE_TITLES[:3]:
            item_list(app).focus()
            item_list(app).move_to(titles(app).index(raw))
            item_id = item_list(app).current_id
            await pilot.press("d")
            await pilot.pause()
            assert app.store.get_item(item_id).state == "done"  # type: ignore[arg-type, union-attr]
            assert f"Done: {visible}  (u undoes)" in toasts(messages)
            assert f"Done: {visible}" in await screen_text(pilot)
            assert_clean(app)
        assert app.is_running


async def test_a_snooze_time_with_brackets_is_reported_not_fatal(env: Env) -> None:
    app = env.app()
    messages = Messages()
    async with app.run_test(size=SIZE, notifications=True, message_hook=messages) as pilot:
        await started(app, pilot)
        item_id = item_list(app).current_id
        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one(Input).value = "[/b]"
        await pilot.press("enter")
        await pilot.pause()
        assert env.store.get_item(item_id).state == "new"  # type: ignore[arg-type, union-attr]
        assert isinstance(app.screen, PromptScreen)  # asked again, naming what was typed
        assert "[/b]" in await screen_text(pilot)
        assert app.is_running


async def test_hostile_titles_in_the_command_palette(make_config: Callable[..., Config]) -> None:
    app = hostile_app(make_config)
    async with app.run_test(size=SIZE) as pilot:
        for raw, visible in HOSTILE_TITLES[:3]:
            item_list(app).focus()
            item_list(app).move_to(titles(app).index(raw))
            prompts = await palette_prompts(pilot)
            assert f"Mark done\n{visible}" in prompts, prompts
            assert visible in await screen_text(pilot)
            assert_clean(app)
            await pilot.press("escape")
            await pilot.pause()
        assert app.is_running


async def test_palette_help_texts_are_literal(make_config: Callable[..., Config]) -> None:
    app = hostile_app(make_config)
    async with app.run_test(size=SIZE) as pilot:
        for raw, visible in HOSTILE_TITLES[:3]:
            item_list(app).move_to(titles(app).index(raw))
            await pilot.pause()
            provider = ItemCommands(inbox(app), None)
            hits = [hit async for hit in provider.discover()]
            helps = [hit.help for hit in hits if hit.text == "Mark done"]
            assert helps, [hit.text for hit in hits]
            # Exactly what the palette does with a hit's help text.
            content = Content.from_markup(helps[0])  # type: ignore[arg-type]
            assert content.plain == visible
            assert not any("@click" in str(span.style) for span in content.spans)


# ---------------------------------------------------------------------------- known gaps


async def test_the_status_bar_unread_count_follows_a_key_at_once(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert "6 unread" in await rendered(pilot, app.screen.query_one(StatusBar))
        await pilot.press("d")
        assert "5 unread" in await rendered(pilot, app.screen.query_one(StatusBar))


async def test_tab_moves_between_panes(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert app.focused is item_list(app)
        await pilot.press("tab")
        assert isinstance(app.focused, DetailPane)
        await pilot.press("escape")  # back to the list, not out of the app
        assert app.focused is item_list(app) and app.is_running


async def test_rebinding_views_next_moves_focus(make_env: Callable[..., Env]) -> None:
    env = make_env(keys={"views.next": "ctrl+n"})
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert app.focused is item_list(app)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.focused is not item_list(app)


async def test_the_status_bar_shows_at_once(env: Env) -> None:
    app = env.app(poll_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        status = await rendered(pilot, app.screen.query_one(StatusBar))
        assert "not polled yet (R polls)" in status and "Mel Example" in status


async def test_each_view_takes_one_line_in_the_views_column(
    make_config: Callable[..., Config]
) -> None:
    config = make_config([{"id": "forum", "type": "rss", "url": "http://127.0.0.1:9/feed",
                           "name": "Tessel community forum"}])
    app = make_app(config, Store(config.store), ACTOR, poll_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        lines = [line.strip("▕ ") for line in
                 (await rendered(pilot, inbox(app).query_one(ViewsList))).splitlines()]
        assert len([line for line in lines if line]) == len(app.views) + 1  # + the separator


async def test_list_columns_stay_aligned_for_old_items(make_config: Callable[..., Config]) -> None:
    config = make_config([{"id": "blog", "type": "rss", "url": "http://127.0.0.1:9/feed"}])
    store = Store(config.store)
    now = time.time()
    store.add_items([
        NewItem(Item(id=f"blog:{n}", source="blog", source_type="rss", guid=str(n), url="",
                     title=f"Post {n}", author="Ann", published=now - age, fetched=now), "", "")
        for n, age in enumerate([60, 400 * 86400])
    ])
    app = make_app(config, store, ACTOR, poll_on_start=False)
    async with app.run_test(size=SIZE) as pilot:
        rows = (await rendered(pilot, item_list(app))).splitlines()[:2]
        assert "Post 0" in rows[0] and "Post 1" in rows[1]
        assert rows[0].index("blog") == rows[1].index("blog")
        assert rows[0].index("Post") == rows[1].index("Post")


async def test_item_keys_work_from_the_reader(env: Env) -> None:
    """d in the reader closes it and marks that item done (the newcomer expected r/e/t too)."""
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        item_id = item_list(app).current_id
        await pilot.press("enter")
        await pilot.pause()
        assert type(app.screen).__name__ == "ReaderScreen"
        await pilot.press("d")
        await wait_until(pilot, lambda: env.store.get_item(item_id).state == "done",
                         "the item to be done", timeout=5)
        assert isinstance(app.screen, InboxScreen)


async def test_q_warns_before_quitting_over_messages_in_the_undo_window(
        make_env: Callable[..., Env]) -> None:
    env = make_env(escalation={"targets": [{"id": "pr", "name": "PR desk",
                                            "email": ["pr@example.com"]}]},
                   undo_window="60s")
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        from cm_console.actions import escalate

        escalate(env.store, env.config, item_list(app).current_id, "pr", "press", ACTOR)
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running  # warned first
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, "the app to exit", timeout=5)


async def test_j_and_k_move_the_views_column_when_it_has_focus(env: Env) -> None:
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(app, pilot)
        views = screen.query_one("#views")
        views.focus()
        await pilot.pause()
        before = item_list(app).cursor
        await pilot.press("j", "j")
        await pilot.pause()
        assert views.highlighted == 2 and item_list(app).cursor == before


# ---------------------------------------------------------------------------- review: edit

ANSWER_TEMPLATES = [
    {"id": "ack", "title": "Acknowledge", "visibility": "public",
     "body": "Thanks {author}, I have sent you a message."},
    {"id": "dm", "title": "Ask privately", "visibility": "private",
     "body": "Could you send me the order number?"},
]


async def on_screen(app: CMConsoleApp, pilot: Pilot, kind: type) -> Any:
    await wait_until(pilot, lambda: isinstance(app.screen, kind), kind.__name__)
    await pilot.pause()
    return app.screen


async def save_text(app: CMConsoleApp, pilot: Pilot, append: str = "") -> None:
    """In the compose screen: append text at the end, then ctrl+s to review."""
    from textual.widgets import TextArea

    from cm_console.app.compose import ComposeScreen

    screen = await on_screen(app, pilot, ComposeScreen)
    area = screen.query_one(TextArea)
    if append:
        area.move_cursor(area.document.end)
        area.insert(append)
    await pilot.press("ctrl+s")


async def test_edit_on_the_private_review_returns_to_the_text_not_to_nothing(
        make_env: Callable[..., Env]) -> None:
    """Found by a newcomer: 'e edit' on the route-private review ended the flow and lost
    both texts. It now asks which text, opens it, and comes back to the review."""
    from cm_console.app.compose import ReviewScreen, TemplatePickerScreen

    env = make_env(templates=ANSWER_TEMPLATES, support_email="support@example.com")
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        item = current(app)
        await pilot.press("P")
        await on_screen(app, pilot, TemplatePickerScreen)
        await pilot.press("enter")
        await save_text(app, pilot)
        await on_screen(app, pilot, TemplatePickerScreen)
        await pilot.press("enter")
        await save_text(app, pilot)
        await on_screen(app, pilot, ReviewScreen)
        await pilot.press("e")
        await on_screen(app, pilot, PickScreen)
        await pilot.press("enter")  # the private message (listed first)
        await save_text(app, pilot, " It starts with A-.")
        await on_screen(app, pilot, ReviewScreen)
        await pilot.press("y")
        # A feed has no DM: the private text goes out as the e-mail hand-off.
        await wait_until(pilot, lambda: len(env.store.outbox()) == 1, "the queued hand-off")
    [hand_off] = env.store.outbox()
    assert hand_off.kind == "email" and hand_off.item == item.id
    assert "Could you send me the order number? It starts with A-." in str(hand_off.payload)


async def test_edit_on_the_escalation_review_changes_the_reason(
        make_env: Callable[..., Env]) -> None:
    from cm_console.app.compose import ReviewScreen

    env = make_env(escalation={"targets": [{"id": "pr", "name": "PR desk",
                                            "email": ["pr@example.com"]}]},
                   smtp={"host": "127.0.0.1", "port": 1, "from": "cm@example.com"})
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("e")
        await on_screen(app, pilot, PickScreen)
        await pilot.press("enter")
        await on_screen(app, pilot, PromptScreen)
        await pilot.press(*"refund storm")
        await pilot.press("enter")
        await on_screen(app, pilot, PickScreen)
        await pilot.press("enter")  # priority
        await on_screen(app, pilot, ReviewScreen)
        await pilot.press("e")
        prompt = await on_screen(app, pilot, PromptScreen)
        assert prompt.query_one(Input).value == "refund storm"  # the reason, kept
        await pilot.press("end", *" on Twitter")
        await pilot.press("enter")
        await on_screen(app, pilot, ReviewScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: len(env.store.outbox()) == 1, "a queued escalation")
    assert "refund storm on Twitter" in str(env.store.outbox()[0].payload)


async def test_esc_over_edited_text_asks_once_before_discarding(
        make_env: Callable[..., Env]) -> None:
    """Found by a newcomer: esc in the reply editor threw the typed text away at once."""
    from textual.widgets import TextArea

    from cm_console.app.compose import ComposeScreen, TemplatePickerScreen

    env = make_env(templates=ANSWER_TEMPLATES)
    app = env.app()
    notes = Messages()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await started(app, pilot)
        await pilot.press("r")
        await on_screen(app, pilot, TemplatePickerScreen)
        await pilot.press("enter")
        screen = await on_screen(app, pilot, ComposeScreen)
        await pilot.press("escape")  # nothing typed yet: leaves at once
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen), "the inbox")
        await pilot.press("r")
        await on_screen(app, pilot, TemplatePickerScreen)
        await pilot.press("enter")
        screen = await on_screen(app, pilot, ComposeScreen)
        area = screen.query_one(TextArea)
        area.move_cursor(area.document.end)
        area.insert(" Which order?")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and area.text.endswith("Which order?")
        assert any("esc again discards" in n for n in notes.notes())
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen), "the inbox")
    assert env.store.outbox() == []


async def test_esc_on_the_review_goes_back_to_the_text_and_n_aborts(
        make_env: Callable[..., Env]) -> None:
    """A stray esc on the review used to throw the whole answer away."""
    from textual.widgets import TextArea

    from cm_console.app.compose import ComposeScreen, ReviewScreen, TemplatePickerScreen

    env = make_env(templates=ANSWER_TEMPLATES)
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("r")
        await on_screen(app, pilot, TemplatePickerScreen)
        await pilot.press("enter")
        await save_text(app, pilot, " Which order?")
        await on_screen(app, pilot, ReviewScreen)
        await pilot.press("escape")
        editor = await on_screen(app, pilot, ComposeScreen)
        assert editor.query_one(TextArea).text.endswith("Which order?")
        await pilot.press("ctrl+s")
        await on_screen(app, pilot, ReviewScreen)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen), "the inbox")
    assert env.store.outbox() == [] and current_state(env) == "new"


def current_state(env: Env) -> str:
    return env.store.get_item(env.item_id(ORDER[0])).state  # type: ignore[union-attr]


async def test_start_up_notices_are_shown(env: Env) -> None:
    app = env.app(notices=['local.yaml: keys.note: "j" is also the key of cursor.down'])
    notes = Messages()
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await started(app, pilot)
        assert any("keys.note" in n for n in notes.notes())


async def test_the_dashboard_fits_80_columns_without_breaking_a_figure(env: Env) -> None:
    """Found by a newcomer: at 80 columns the dashboard wrapped inside its lines
    ("mastodon 6m (1 / answered)") and inside its figures ("0 SLA / breaches")."""
    app = env.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        await pilot.press("D")
        await wait_until(pilot, lambda: "Dashboard" in type(app.screen).__name__,
                         "the dashboard")
        await app.workers.wait_for_complete()
        text = (await screen_text(pilot)).replace("\u00a0", " ")
        assert "6 items" in text
        assert any("SLA breaches" in line for line in text.splitlines())
        assert "First response (median, ×answered)" in text


async def test_priority_and_a_rules_escalation_flag_show(make_env: Callable[..., Env]) -> None:
    """Found in a team walkthrough: a rule's urgent priority and escalate flag were only in
    the CLI history, never on screen."""
    env = make_env(
        escalation={"targets": [{"id": "pr", "name": "PR desk", "email": ["pr@example.com"]}]},
        smtp={"host": "127.0.0.1", "port": 1, "from": "cm@example.com"},
        rules=[{"id": "refunds", "match": {"words": ["refund"]},
                "set": {"priority": "urgent", "escalate": "pr"}}])
    app = env.app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert current(app).title == ORDER[0] and current(app).priority == "urgent"
        rows = (await rendered(pilot, item_list(app))).splitlines()
        assert "!! " + ORDER[0] in next(r for r in rows if ORDER[0] in r)
        shown = await detail(pilot)
        assert "urgent" in shown and "⚑ escalate to pr" in shown
