"""The Textual skin: the inbox screen, background polling, and the command palette.

All decisions live in the core (views, actions, poller, store); this module wires keys to
them and shows results. The UI thread never waits on the network: polls run in a thread
worker (parsing in the poller's processes) and report back with messages.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Label
from textual.worker import Worker, WorkerState

from .. import actions, approvals, delivery
from ..config import Config
from ..keymap import KEYS
from ..models import Item
from ..poller import CycleReport, Poller, SourceResult
from ..sanitize import one_line
from ..sla import mark_breaches
from ..store import Store, StoreError
from ..views import Filter, View, standard_views, view_count, view_ids
from .answering import AnsweringMixin
from .compose import (
    ApprovalsScreen,
    ComposeScreen,
    OutboxScreen,
)
from .dashboard import DashboardScreen
from .screens import FilterScreen, HelpScreen, PickScreen, PromptScreen, ReaderScreen, SourcesScreen
from .widgets import DetailPane, ItemList, StatusBar, ViewsList, render_item

DETAIL_DELAY = 0.06  # seconds the cursor rests before the detail pane follows it
REFRESH_EVERY = 2.0  # seconds between checks for other consoles' changes and due sources


@dataclass
class PollProgressed(Message):
    """One more source finished in the running poll."""

    done: int
    total: int
    result: SourceResult
    added: list[str]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PollProgressed) and not message.added and not self.added


@dataclass
class SourcesPolled(Message):
    """A poll cycle finished."""

    report: CycleReport


class InboxScreen(AnsweringMixin, Screen[None]):
    """Views column, item list, detail pane, status bar."""

    BINDINGS = [
        Binding(spec.keys, spec.action, spec.description, show=spec.show, id=spec.id)
        for spec in KEYS
        if spec.action in {
            "cursor_down", "cursor_up", "cursor_top", "cursor_bottom", "page_down", "page_up",
            "open_item", "next_new", "prev_new", "search", "filter", "open_browser",
            "copy_link", "assign", "tag", "snooze", "done", "undo", "note", "back", "reply",
            "route_private", "escalate", "focus_next_pane", "quit_console",
        }
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view: View = View("inbox", "Inbox")
        self.flt = Filter()
        self._search_timer: Timer | None = None
        self._detail_timer: Timer | None = None
        self._quit_armed = 0.0

    @property
    def cm(self) -> CMConsoleApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield ViewsList(id="views")
            with Vertical(id="content"):
                yield Input(placeholder="search title, author, text · enter: keep · esc: clear",
                            id="search")
                yield Label(id="list-title")
                with Horizontal(id="panes"):
                    yield ItemList(self.cm.store, id="items",
                                   slas={s.id: s.sla for s in self.cm.config.sources if s.sla})
                    yield DetailPane(id="detail")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.items.me = self.cm.actor
        self.cm.update_status()
        views = self.cm.views
        self.query_one(ViewsList).show_views(views, self.cm.counts())
        self.query_one(ViewsList).highlighted = 0
        self.reload(keep=None)
        self.query_one(ItemList).focus()

    # ------------------------------------------------------------------ data → screen

    @property
    def items(self) -> ItemList:
        return self.query_one(ItemList)

    def reload(self, keep: str | None = None) -> None:
        """Recompute the list for the current view and filter, and the counts."""
        items = self.items
        keep = keep if keep is not None else items.current_id
        ids = view_ids(self.cm.store, self.view, self.cm.actor, self.flt)
        items.empty_text = ("No items match the search or filter (esc clears it)."
                            if self.flt.active else f"Nothing in {self.view.label}.")
        items.set_ids(ids, keep=keep)
        self.query_one(ViewsList).update_counts(self.cm.views, self.cm.counts())
        self._title(len(ids))
        self.show_detail(items.current_id)

    def _title(self, count: int) -> None:
        parts = [f"{one_line(self.view.label, 40)} · {count} item{'s' if count != 1 else ''}"]
        if self.flt.source:
            parts.append(f"source {one_line(self.flt.source, 30)}")
        if self.flt.state:
            parts.append(f"state {self.flt.state}")
        if self.flt.tag:
            parts.append(f"#{one_line(self.flt.tag, 30)}")
        if self.flt.text:
            parts.append(f'"{one_line(self.flt.text, 40)}"')
        self.query_one("#list-title", Label).update(Text("  ·  ".join(parts)))

    def show_detail(self, item_id: str | None) -> None:
        pane = self.query_one(DetailPane)
        item = self.cm.store.get_item(item_id) if item_id else None
        if item is None:
            pane.show_item(None, "", [], [], {})
            return
        held = self.cm.store.claims().get(item.id)
        replying = held["actor"] if held and held.get("actor") != self.cm.actor else ""
        pane.show_item(item, *self.cm.item_context(item),
                       replying=self.cm.member_names.get(replying, replying))

    @on(ItemList.Highlighted)
    def _highlighted(self, event: ItemList.Highlighted) -> None:
        # The detail pane follows the cursor once it rests: redrawing it re-lays out the
        # screen (~20 ms), which would make held-down j/k stutter through a long list.
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(DETAIL_DELAY,
                                            partial(self.show_detail, event.item_id))

    @on(ItemList.Selected)
    def _selected(self, event: ItemList.Selected) -> None:
        self.action_open_item()

    @on(ViewsList.OptionHighlighted, "#views")
    def _view_chosen(self, event: ViewsList.OptionHighlighted) -> None:
        view = next((v for v in self.cm.views if v.id == event.option.id), None)
        if view is not None and view != self.view:
            self.view = view
            self.items.cursor = 0
            self.reload(keep=None)

    @on(ViewsList.OptionSelected, "#views")
    def _view_selected(self) -> None:
        self.items.focus()

    # ------------------------------------------------------------------ list keys

    def action_focus_next_pane(self) -> None:
        """Views column → list → detail pane → views column (rebindable, unlike tab)."""
        self.focus_next()

    def action_cursor_down(self) -> None:
        if isinstance(self.focused, ViewsList):
            self.focused.action_cursor_down()  # j/k move whichever column has focus
            return
        self.items.move(1)

    def action_cursor_up(self) -> None:
        if isinstance(self.focused, ViewsList):
            self.focused.action_cursor_up()
            return
        self.items.move(-1)

    def action_cursor_top(self) -> None:
        self.items.move_to(0)

    def action_cursor_bottom(self) -> None:
        self.items.move_to(len(self.items.ids) - 1)

    def action_page_down(self) -> None:
        self.items.move(max(1, self.items.size.height - 1))

    def action_page_up(self) -> None:
        self.items.move(-max(1, self.items.size.height - 1))

    def _find_new(self, step: int) -> None:
        items = self.items
        store = self.cm.store
        index = items.cursor + step
        while 0 <= index < len(items.ids):
            item = store.get_item(items.ids[index])
            if item is not None and item.state == "new":
                items.move_to(index)
                return
            index += step
        self.notify("No more new items " + ("below." if step > 0 else "above."), timeout=2)

    def action_next_new(self) -> None:
        self._find_new(1)

    def action_prev_new(self) -> None:
        self._find_new(-1)

    def action_open_item(self) -> None:
        item = self.current()
        if item is None:
            return
        item = self.cm.perform(actions.mark_seen, item.id) or item
        body, events, thread, names = self.cm.item_context(item)
        self.app.push_screen(ReaderScreen(render_item(item, body, events, thread, names)))

    # ------------------------------------------------------------------ search and filter

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        value = event.value
        self._search_timer = self.set_timer(0.15, partial(self._apply_search, value))

    def _apply_search(self, value: str) -> None:
        self.flt = self.flt.with_text(value.strip())
        self.items.cursor = 0
        self.reload(keep=None)

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.items.focus()

    def action_filter(self) -> None:
        store = self.cm.store
        sources = [(s.id, s.label) for s in self.cm.config.sources]
        tags = sorted(store.counts()["tag"])

        def applied(result: tuple[str | None, str | None, str | None] | None) -> None:
            if result is None:
                return
            source, state, tag = result
            self.flt = Filter(source=source, state=state, tag=tag, text=self.flt.text)
            self.items.cursor = 0
            self.reload(keep=None)

        self.app.push_screen(FilterScreen(sources, tags,
                                          (self.flt.source, self.flt.state, self.flt.tag)),
                             applied)

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.display or self.flt.active:
            search.value = ""
            search.display = False
            self.flt = Filter()
            self.reload()
            self.items.focus()
            return
        if self.focused is not self.items:
            self.items.focus()

    def action_quit_console(self) -> None:
        """q: quit, but not silently over messages still inside their undo window."""
        now = time.time()
        waiting = [e for e in self.cm.store.outbox(["pending"])
                   if e.attempts == 0 and e.next_attempt > now]
        if waiting and now - self._quit_armed > 5:
            self._quit_armed = now
            later = ("the demo's store is thrown away, so they are lost"
                     if self.cm.demo is not None else
                     "they are sent the next time cm-console runs")
            self.notify(f"{len(waiting)} message(s) still wait out the undo window; q again "
                        f"quits and {later}.", severity="warning", timeout=6)
            return
        self.app.exit()

    # ------------------------------------------------------------------ item actions

    def current(self) -> Item | None:
        item_id = self.items.current_id
        return self.cm.store.get_item(item_id) if item_id else None

    def action_open_browser(self) -> None:
        item = self.current()
        if item is None or not item.url:
            self.notify("This item has no link.", severity="warning")
            return
        self.app.open_url(item.url)
        self.notify(Text(f"Opening {one_line(item.url, 80)}"), timeout=3)

    def action_copy_link(self) -> None:
        item = self.current()
        if item is None or not item.url:
            self.notify("This item has no link.", severity="warning")
            return
        self.app.copy_to_clipboard(item.url)
        self.notify(Text(f"Copied {one_line(item.url, 80)}"), timeout=3)

    def action_done(self) -> None:
        item = self.current()
        if item is None:
            return
        state = "open" if item.state == "done" else "done"
        if self.cm.perform(actions.set_state, item.id, state) is not None:
            self.notify(f"{'Reopened' if state == 'open' else 'Done'}: "
                        f"{one_line(item.title, 50)}  (u undoes)", timeout=3)

    def action_undo(self) -> None:
        try:
            result = actions.undo_last(self.cm.store, self.cm.actor)
        except (KeyError, ValueError, StoreError) as exc:
            # Why it cannot be undone ("being sent right now") is the only message.
            self.notify(Text(str(exc.args[0] if isinstance(exc, KeyError) else exc)),
                        severity="error", timeout=6)
            return
        self.cm.refresh_inbox()
        if result is None:
            self.notify("Nothing of yours to undo.", timeout=3)
            return
        item, event = result
        self.notify(Text(f"Undid {event.data.get('undone_action', '')}: "
                         f"{one_line(item.title, 60)}"), timeout=3)

    def action_snooze(self) -> None:
        item = self.current()
        if item is None:
            return

        hint = "30m · 2h · 1d · tomorrow · 17:30"

        def chosen(value: str | None) -> None:
            if not value:
                return
            try:
                seconds = actions.parse_when(value)
            except ValueError as exc:
                # Ask again with what was typed and why it did not work, rather than closing
                # the dialog and making the agent start over.
                self.app.push_screen(PromptScreen("Snooze until", f"{exc} · {hint}", value),
                                     chosen)
                return
            if self.cm.perform(actions.snooze, item.id, seconds) is not None:
                until = time.strftime("%a %H:%M", time.localtime(time.time() + seconds))
                self.notify(f"Snoozed until {until}", timeout=3)

        self.app.push_screen(PromptScreen("Snooze until", hint, "2h"), chosen)

    def action_tag(self) -> None:
        item = self.current()
        if item is None:
            return

        def chosen(value: str | None) -> None:
            if value is not None:
                tags = [t.lstrip("#") for t in value.replace(",", " ").split()]
                self.cm.perform(actions.tag, item.id, tags)

        self.app.push_screen(PromptScreen("Tags", "space-separated; empty removes all",
                                          " ".join(item.tags)), chosen)

    def action_assign(self) -> None:
        item = self.current()
        if item is None:
            return
        options = [(m.id, f"{m.name} ({m.role})") for m in self.cm.config.team]
        if self.cm.actor not in {m.id for m in self.cm.config.team}:
            options.insert(0, (self.cm.actor, f"me ({self.cm.actor})"))
        options.append(("", "nobody (unassign)"))

        def chosen(value: str | None) -> None:
            if value is not None:
                self.cm.perform(actions.assign, item.id, value or None)

        self.app.push_screen(PickScreen("Assign to", options), chosen)

    def action_note(self) -> None:
        item = self.current()
        if item is None:
            return

        def chosen(value: str | None) -> None:
            if value and value.strip():
                self.cm.perform(actions.add_note, item.id, value)

        self.app.push_screen(PromptScreen("Internal note (the team sees it; never sent)"),
                             chosen)


class ItemCommands(Provider):
    """Command palette: the actions that apply to the highlighted item, and global ones."""

    def _commands(self) -> list[tuple[str, str, Any]]:
        app: CMConsoleApp = self.app  # type: ignore[assignment]
        screen = self.screen  # the screen the palette was opened on (app.screen is the palette)
        out: list[tuple[str, str, Any]] = [
            ("Poll now", "fetch every source now", app.action_poll_now),
            ("Sources", "poll state and errors of every source", app.action_sources),
            ("Outbox", "pending and failed deliveries", app.action_outbox),
            ("Dashboard", "volume, response times, SLA, escalations", app.action_dashboard),
            ("Help", "every key", app.action_help),
        ]
        if isinstance(screen, InboxScreen):
            item = screen.current()
            if item is not None:
                title = one_line(item.title, 40)
                out = [
                    ("Mark done" if item.state != "done" else "Reopen", title, screen.action_done),
                    ("Reply…", title, screen.action_reply),
                    ("Route private…", title, screen.action_route_private),
                    ("Escalate…", title, screen.action_escalate),
                    ("Snooze…", title, screen.action_snooze),
                    ("Tag…", title, screen.action_tag),
                    ("Assign…", title, screen.action_assign),
                    ("Add note…", title, screen.action_note),
                    ("Read", title, screen.action_open_item),
                    *([("Open in browser", one_line(item.url, 60), screen.action_open_browser),
                       ("Copy link", one_line(item.url, 60), screen.action_copy_link)]
                      if item.url else []),
                    ("Undo my last action", "", screen.action_undo),
                    *out,
                ]
            out += [(f"View: {one_line(v.label, 40)}", "", partial(app.go_to_view, v.id))
                    for v in app.views]
        return out

    # The palette renders help as markup and str displays as markup too: item titles are
    # strangers' text, so help is escaped and displays are plain Content.

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(Content(name), callback, text=name, help=escape(help_text))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, text=name,
                          help=escape(help_text))


class CMConsoleApp(App[int]):
    """cm-console's TUI. Build it with :func:`make_app` (tests and the demo do too)."""

    CSS_PATH = "cm_console.tcss"
    TITLE = "cm-console"
    COMMANDS = App.COMMANDS | {ItemCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (130, "-wide")]
    BINDINGS = [
        Binding(spec.keys, spec.action, spec.description, show=spec.show, id=spec.id)
        for spec in KEYS
        if spec.action in {"poll_now", "sources", "help", "outbox", "dashboard", "approvals"}
    ]

    def __init__(self, config: Config, store: Store, actor: str, *, demo: Any = None,
                 poll_on_start: bool = True, notices: list[str] | None = None):
        super().__init__()
        self.notices = list(notices or ())  # shown as warnings once the inbox is up
        self.config = config
        self.store = store
        self.actor = actor
        self.demo = demo
        self.poll_on_start = poll_on_start
        self.views = standard_views(config)
        self.poller = Poller(config, store)
        self.poller.prepare()  # before Textual replaces sys.stderr (see poller._start_helpers)
        self.polling = False
        self.delivering = False
        self.poll_progress = ""
        self.last_report: CycleReport | None = None
        self._last_wake = 0.0
        self._reload_pending = False
        self.member_names = {m.id: m.name for m in config.team}
        self._decisions_seen = time.time()  # approvals decided before I started: old news

    def notify(self, message: object, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Every notification is plain text, whatever the caller says: they quote titles and
        errors written by strangers, which must never be parsed as markup."""
        super().notify(str(message), title=title, severity=severity, timeout=timeout,
                       markup=False)

    # ------------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        if self.config.keys:
            self.set_keymap(self.config.keys)
        self.push_screen(InboxScreen())
        self.update_status()
        for notice in self.notices:
            self.notify(notice, severity="warning", timeout=10)
        if self.config.team and self.config.member(self.actor) is None:
            # Replies are signed, and the audit log written, with this name.
            self.notify(f'You are "{self.actor}", who is not in the config\'s team: replies '
                        "are signed with that name. Start with --as ID.",
                        severity="warning", timeout=10)
        self.set_interval(REFRESH_EVERY, self._tick)
        if self.poll_on_start:
            self.poll_sources(only_due=False)

    def on_unmount(self) -> None:
        self.poller.close()

    def _tick(self) -> None:
        """Pick up other consoles' writes, wake snoozed items, poll due sources."""
        changed = False
        try:
            changed = self.store.refresh()
            if time.time() - self._last_wake > 30:
                self._last_wake = time.time()
                changed = bool(actions.wake_snoozed(self.store, self.actor)) or changed
                changed = bool(mark_breaches(self.store, self.config)) or changed
                delivery.prune(self.store)
        except StoreError as exc:
            self.notify(str(exc), severity="error", timeout=8)
        if changed:
            self.refresh_inbox()
            self._tell_decisions()
        if not self.polling and self.poller.due():
            self.poll_sources(only_due=True)
        if not self.delivering and self._outbox_due():
            self.deliver_outbox()
        self.update_status()

    def _tell_decisions(self) -> None:
        """Tell me when a lead approved or rejected one of my answers (on any console)."""
        seen = self._decisions_seen
        for row in self.store.approvals(None):
            decided = float(row.get("decided") or 0)
            if row.get("actor") != self.actor or decided <= seen or \
                    row.get("status") not in ("approved", "rejected"):
                continue
            self._decisions_seen = max(self._decisions_seen, decided)
            item = self.store.get_item(row["item"])
            title = one_line(item.title, 60) if item else row["item"]
            who = self.member_names.get(row.get("by", ""), row.get("by", "a lead"))
            if row["status"] == "approved":
                self.notify(Text(f"{who} approved your answer on “{title}”: it is sent."),
                            timeout=6)
            else:
                note = next((e.data.get("note", "") for e in reversed(
                    self.store.events(item=row["item"])) if e.action == "rejected"), "")
                self.notify(Text(f"{who} rejected your answer on “{title}”"
                                 + (f": {one_line(note, 120)}" if note else ".")),
                            severity="warning", timeout=10)

    def _outbox_due(self) -> bool:
        now = time.time()
        return any(e.next_attempt <= now and e.lease_until <= now
                   for e in self.store.outbox(["pending"]))

    @work(thread=True, exclusive=True, exit_on_error=False, group="deliver",
          description="Delivering the outbox")
    def deliver_outbox(self) -> None:
        self.delivering = True
        try:
            results = delivery.deliver_due(self.store, self.config)
        finally:
            self.delivering = False
        self.call_from_thread(self._delivered, results)

    def _delivered(self, results: list[delivery.DeliveryResult]) -> None:
        for result in results:
            what = delivery.describe(result.entry)
            if result.ok:
                self.notify(f"Delivered {what}.", timeout=3)
            else:
                self.notify(Text(f"Not delivered yet ({what}): {one_line(result.error, 120)}; "
                                 "will retry."), severity="warning", timeout=5)
        self.refresh_inbox()
        self.update_status()
        if isinstance(self.screen, OutboxScreen):
            self.screen.fill(self.store.outbox(), self._received())

    def _received(self) -> list[str] | None:
        return self.demo.received if self.demo is not None else None

    def action_outbox(self) -> None:
        if isinstance(self.screen, OutboxScreen):
            return
        self.push_screen(OutboxScreen(self.store.outbox(), self._received()))

    def retry_outbox(self) -> None:
        changed = delivery.retry(self.store, None, self.actor)
        self.notify(f"{len(changed)} failed deliver{'y' if len(changed) == 1 else 'ies'} "
                    "due again.", timeout=3)
        if changed and not self.delivering:
            self.deliver_outbox()

    def cancel_outbox(self, entry_id: str) -> None:
        entry = self.store.get_outbox(entry_id)
        if delivery.cancel(self.store, entry_id, self.actor, attempted=True):
            if entry is not None and entry.attempts:
                self.notify(f"Stopped: no more retries. It was tried {entry.attempts}x, so "
                            f"{entry.target} may have received it once.", timeout=6)
            else:
                self.notify("Cancelled.", timeout=2)
        else:
            self.notify("Not cancelled: it is being sent right now, or already delivered.",
                        severity="warning")
        if isinstance(self.screen, OutboxScreen):
            self.screen.fill(self.store.outbox(), self._received())

    # ------------------------------------------------------------------ polling

    def action_poll_now(self) -> None:
        if self.polling:
            self.notify("A poll is already running.", timeout=2)
            return
        self.poll_sources(only_due=False)

    @work(thread=True, exclusive=True, exit_on_error=False, group="poll",
          description="Polling sources")
    def poll_sources(self, only_due: bool) -> CycleReport:
        self.polling = True
        self.call_from_thread(self.update_status)

        def progress(done: int, total: int, result: SourceResult, added: list[str]) -> None:
            self.post_message(PollProgressed(done, total, result, added))

        try:
            report = asyncio.run(self.poller.poll(only_due=only_due, on_progress=progress))
        finally:
            self.polling = False
        self.post_message(SourcesPolled(report))
        return report

    @on(PollProgressed)
    def _poll_progressed(self, message: PollProgressed) -> None:
        self.poll_progress = f"polling {message.done}/{message.total}"
        if message.added:
            self.refresh_inbox()
        self.update_status()

    @on(SourcesPolled)
    def _sources_polled(self, message: SourcesPolled) -> None:
        self.last_report = message.report
        self.poll_progress = ""
        self.refresh_inbox()
        self.update_status()
        if isinstance(self.screen, SourcesScreen):
            self.screen.fill(self.source_rows())
        if isinstance(self.screen, DashboardScreen) and message.report.new_ids:
            self.screen.recompute()
        errors = message.report.errors
        if errors:
            names = ", ".join(e.source for e in errors[:3])
            self.notify(Text(f"{len(errors)} source(s) failed: {names}. S shows details."),
                        severity="warning", timeout=5)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.polling = False
            error = event.worker.error
            self.notify(Text(f"Polling failed: {type(error).__name__}: {one_line(error, 200)}"),
                        severity="error", timeout=8)
            self.update_status()

    # ------------------------------------------------------------------ shared helpers

    def counts(self) -> dict[str, int]:
        return {v.id: view_count(self.store, v, self.actor) for v in self.views}

    def item_context(self, item: Item) -> tuple[str, list, list[Item], dict[str, str]]:
        body, _html = self.store.body(item.id)
        events = self.store.events(item=item.id)
        return body, events, self.store.thread_items(item.thread), self.member_names

    def perform(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a core action as me; refresh the inbox; show errors instead of crashing.

        Core actions take ``(store, *args, actor, **kwargs)``; functions that need the
        config get it bound with ``functools.partial(fn, config=...)``.
        """
        try:
            if isinstance(fn, partial) and "config" in fn.keywords:
                config = fn.keywords["config"]
                result = fn.func(self.store, config, *args, self.actor, **kwargs)
            else:
                result = fn(self.store, *args, self.actor, **kwargs)
        except (KeyError, ValueError, StoreError) as exc:
            self.notify(Text(str(exc.args[0] if isinstance(exc, KeyError) else exc)),
                        severity="error", timeout=6)
            return None
        self.refresh_inbox()
        return result

    def refresh_inbox(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, InboxScreen):
                screen.reload()
        self.update_status()

    def go_to_view(self, view_id: str) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, InboxScreen):
                views = screen.query_one(ViewsList)
                views.highlighted = views.get_option_index(view_id)

    def source_rows(self) -> list[tuple]:
        states = self.store.source_states()
        counts = self.store.counts()["source"]
        return [(s.id, s.type, s.label, states.get(s.id), counts.get(s.id, 0))
                for s in self.config.sources]

    def update_status(self) -> None:
        try:
            status = self.screen.query_one(StatusBar)
        except Exception:
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.polling:
            text.append(f"⟳ {self.poll_progress or 'polling'}", style="bold")
        elif self.last_report is not None:
            report = self.last_report
            text.append(f"last poll {time.strftime('%H:%M:%S', time.localtime(report.finished))}"
                        f": {len(report.new_ids)} new")
            if report.errors:
                text.append(f" · {len(report.errors)} error(s) (S)", style="bold red")
        else:
            text.append("not polled yet (R polls)")
        counts = self.store.counts()["state"]
        text.append(f" · {counts.get('new', 0)} unread")
        waiting = self.store.outbox(["pending", "failed"])
        if waiting:
            failed = sum(1 for e in waiting if e.status == "failed" or e.last_error)
            text.append(f" · outbox {len(waiting)}" + (f" ({failed} failing, O)" if failed
                                                        else ""),
                        style="bold yellow" if failed else "")
        waiting_approval = len(self.store.approvals())
        if waiting_approval and approvals.can_approve(self.config, self.actor):
            text.append(f" · {waiting_approval} awaiting approval (A)", style="bold")
        if self.demo is not None:
            text.append(" · DEMO: sample data on 127.0.0.1", style="italic")
        text.append(f" · {self.member_names.get(self.actor, self.actor)}", style="dim")
        status.update(text)

    # ------------------------------------------------------------------ global keys

    def action_help(self) -> None:
        keys = {spec.id: spec.keys for spec in KEYS}
        keys.update(self.config.keys)
        self.push_screen(HelpScreen(keys))

    def action_approvals(self) -> None:
        if not isinstance(self.screen, ApprovalsScreen):
            self.push_screen(ApprovalsScreen(*self._approval_rows()))

    def _approval_rows(self) -> tuple[list[dict], dict[str, str]]:
        rows = self.store.approvals()
        titles = {}
        for row in rows:
            item = self.store.get_item(row["item"])
            titles[row["item"]] = item.title if item else row["item"]
        return rows, titles

    def decide_approval(self, approval_id: str, *, approve: bool,
                        edited: dict[str, str] | None = None, force: bool = False) -> None:
        if approve:
            try:
                sent = self._approve(approval_id, edited, force)
            except approvals.AlreadyAnswered as exc:
                def anyway(choice: str | None) -> None:
                    if choice == "send":
                        self.decide_approval(approval_id, approve=True, edited=edited,
                                             force=True)

                self.push_screen(PickScreen(f"⚠ {exc}", [
                    ("keep", "Keep it waiting (then reject it with x)"),
                    ("send", "Approve anyway: send a second answer")]), anyway)
                return
            if sent is not None:
                self.notify("Approved: " + ("queued for the platform." if sent.mode == "outbox"
                                            else "the text is on the clipboard and the post is "
                                            "open: paste it there." if sent.mode == "clipboard"
                                            else "sent."), timeout=6)
                if sent.mode == "clipboard":
                    self.copy_to_clipboard(sent.text)
                    if sent.item.url:
                        self.open_url(sent.item.url)
        else:
            def with_note(note: str | None) -> None:
                if note is None:
                    return
                try:
                    approvals.reject(self.store, self.config, approval_id, self.actor, note)
                except (KeyError, ValueError) as exc:
                    self.notify(str(exc), severity="error")
                self._refresh_approvals()

            self.push_screen(PromptScreen("Reject with a note for the agent"), with_note)
            return
        self._refresh_approvals()

    def _approve(self, approval_id: str, edited: dict[str, str] | None,
                 force: bool = False) -> Any:
        try:
            sent = approvals.approve(self.store, self.config, approval_id, self.actor, edited,
                                     force=force)
        except approvals.AlreadyAnswered:
            raise
        except (KeyError, ValueError, StoreError) as exc:
            self.notify(str(exc.args[0] if isinstance(exc, KeyError) else exc),
                        severity="error", timeout=6)
            return None
        self.refresh_inbox()
        return sent

    def edit_approval(self, row: dict) -> None:
        payload = row["payload"]
        key = "text" if "text" in payload else "private_text"

        def edited(text: str | None) -> None:
            if text is not None:
                self.decide_approval(row["id"], approve=True, edited={key: text})

        self.push_screen(ComposeScreen("Edit, then approve", payload.get(key, ""), None, len),
                         edited)

    def _refresh_approvals(self) -> None:
        if isinstance(self.screen, ApprovalsScreen):
            self.screen.fill(*self._approval_rows())
        self.update_status()

    def action_dashboard(self) -> None:
        if not isinstance(self.screen, DashboardScreen):
            self.push_screen(DashboardScreen())

    def action_sources(self) -> None:
        if isinstance(self.screen, SourcesScreen):
            return
        self.push_screen(SourcesScreen(self.source_rows()))


def make_app(config: Config, store: Store, actor: str, *, demo: Any = None,
             poll_on_start: bool = True, notices: list[str] | None = None) -> CMConsoleApp:
    """The one factory: the CLI, the demo and the tests build the app the same way."""
    return CMConsoleApp(config, store, actor, demo=demo, poll_on_start=poll_on_start,
                        notices=notices)
