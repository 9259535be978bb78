"""The console's widgets. Every stranger-written string reaches the screen as ``rich.text.Text``
built from :mod:`cm_console.sanitize` output, never as markup.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..models import Event, Item
from ..sanitize import one_line, safe_text
from ..sentiment import label as sentiment_label
from ..store import Store
from ..views import View, sla_left

STATE_MARK = {"new": "●", "open": " ", "replied": "↩", "escalated": "▲", "private": "◆",
              "snoozed": "z", "done": "✓"}
MAX_DETAIL_CHARS = 20_000


def short_time(ts: float, now: float | None = None) -> str:
    """``14:05`` today, ``Nov 23`` this year, ``Nov 25`` (month, year) before."""
    now = now or time.time()
    local, today = time.localtime(ts), time.localtime(now)
    if local[:3] == today[:3]:
        return time.strftime("%H:%M", local)
    if local.tm_year == today.tm_year:
        return time.strftime("%b %d", local)
    return time.strftime("%b %y", local)  # six cells like the others: "Dec 25"


def _short(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.0f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f}h"
    return f"{max(seconds, 0) / 60:.0f}m"


def age(ts: float, now: float | None = None) -> str:
    seconds = max(0, (now or time.time()) - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"


class ItemList(ScrollView, can_focus=True):
    """A virtual list of items: only visible rows are built, so 100k items cost nothing.

    It holds ids only; each visible row reads its hot record from the store (cached per
    store version). Bodies are never read here.
    """

    COMPONENT_CLASSES = {
        "item-list--cursor", "item-list--new", "item-list--meta", "item-list--muted",
        "item-list--tag", "item-list--empty",
    }

    cursor: reactive[int] = reactive(0, always_update=True, init=False)

    @dataclass
    class Highlighted(Message):
        """The cursor moved to ``item_id`` (None: the list is empty)."""

        item_list: ItemList
        item_id: str | None

    @dataclass
    class Selected(Message):
        item_list: ItemList
        item_id: str

    def __init__(self, store: Store, *, slas: dict[str, float] | None = None,
                 id: str | None = None):
        super().__init__(id=id)
        self.store = store
        self.slas = slas or {}
        self.ids: list[str] = []
        self.empty_text = "Nothing here."
        self.me = ""
        self._lines: OrderedDict[tuple, Strip] = OrderedDict()
        self._claims: dict[str, dict] = {}
        self._claims_version = -1

    # ------------------------------------------------------------------ data

    @property
    def current_id(self) -> str | None:
        return self.ids[self.cursor] if 0 <= self.cursor < len(self.ids) else None

    def set_ids(self, ids: list[str], keep: str | None = None) -> None:
        """Show ``ids``; keep the cursor on ``keep`` (or the same row) when possible."""
        self.ids = ids
        self._lines.clear()
        self.virtual_size = Size(self.size.width, len(ids))
        index = self.cursor
        if keep is not None:
            try:
                index = ids.index(keep)
            except ValueError:
                pass
        self.cursor = max(0, min(index, len(ids) - 1))
        self.refresh()

    def invalidate(self) -> None:
        """Rows changed in the store (same ids): redraw from fresh records."""
        self._lines.clear()
        self.refresh()

    # ------------------------------------------------------------------ rendering

    def _row(self, item: Item, width: int, selected: bool) -> Strip:
        style_new = self.get_component_rich_style("item-list--new", partial=True)
        meta = self.get_component_rich_style("item-list--meta", partial=True)
        muted = self.get_component_rich_style("item-list--muted", partial=True)
        tag_style = self.get_component_rich_style("item-list--tag", partial=True)
        fresh = item.state == "new"
        title_style = style_new if fresh else (muted if item.state == "done" else Style())
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(STATE_MARK.get(item.state, "?"), style_new if fresh else meta)
        mood = sentiment_label(item.extra.get("sentiment_score"))
        text.append({"negative": "-", "positive": "+"}.get(mood, " "),
                    {"negative": "bold red", "positive": "green"}.get(mood, ""))
        text.append(f"{short_time(item.published):>6} ", meta)
        text.append(f"{one_line(item.source, 10):<10.10} ", meta)
        if width >= 70:
            text.append(f"{one_line(item.author, 16):<16.16} ", meta)
        if item.priority in ("high", "urgent"):  # before the title, where it is never cut
            text.append("!! " if item.priority == "urgent" else "! ",
                        "bold red" if item.priority == "urgent" else "bold yellow")
        held = self._claims.get(item.id)
        if held and held.get("actor") != self.me:  # before the title, where it is never cut
            text.append(f"✎{one_line(held.get('actor', ''), 16)} ", "bold yellow")
        text.append(one_line(item.title, 300) or one_line(item.summary, 300) or "(untitled)",
                    title_style)
        for tag in item.tags[:4]:
            text.append(f" #{one_line(tag, 20)}", tag_style)
        if item.assignee:
            text.append(f" @{one_line(item.assignee, 20)}", meta)
        left = sla_left(item.published, self.slas.get(item.source)) if item.state in (
            "new", "open") else None
        if left is not None:
            # Time to the first-response target, at the end of the row where it can't be cut.
            label = f" ⏱{_short(left)}" if left >= 0 else f" late {_short(-left)}"
            room = width - len(label)
            text.truncate(max(room, 0), overflow="ellipsis", pad=True)
            text.append(label, "bold red" if left < 0 else ("yellow" if left < 3600 else meta))
        text.truncate(width, overflow="ellipsis", pad=True)
        segments = list(text.render(self.app.console, end=""))
        strip = Strip(segments, text.cell_len)
        if selected:
            strip = strip.apply_style(self.get_component_rich_style("item-list--cursor"))
        return strip.adjust_cell_length(width, self.rich_style)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width  # not under the scrollbar
        index = y + self.scroll_offset.y
        if not self.ids:
            if y == 0:
                text = Text(f" {self.empty_text}", no_wrap=True, end="")
                style = self.get_component_rich_style("item-list--empty")
                return Strip(list(text.render(self.app.console, end="")),
                             text.cell_len).apply_style(style).adjust_cell_length(width)
            return Strip.blank(width, self.rich_style)
        if index >= len(self.ids):
            return Strip.blank(width, self.rich_style)
        item_id = self.ids[index]
        selected = index == self.cursor
        if self._claims_version != self.store.version:
            self._claims = self.store.claims()
            self._claims_version = self.store.version
        key = (item_id, selected, width, self.store.version, self.has_focus)
        strip = self._lines.get(key)
        if strip is None:
            item = self.store.get_item(item_id)
            if item is None:
                return Strip.blank(width, self.rich_style)
            strip = self._row(item, width, selected)
            self._lines[key] = strip
            if len(self._lines) > 512:
                self._lines.popitem(last=False)
        return strip

    # ------------------------------------------------------------------ cursor

    def watch_cursor(self, old: int, new: int) -> None:
        top = self.scroll_offset.y
        self.scroll_to_region(Region(0, new, 1, 1), animate=False, force=True)
        if self.scroll_offset.y == top:
            # Only the two rows that changed are redrawn (virtual coordinates).
            self.refresh_line(old)
            self.refresh_line(new)
        else:
            self.refresh()
        self.post_message(self.Highlighted(self, self.current_id))

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.ids))
        self._lines.clear()

    def on_focus(self) -> None:
        self._lines.clear()
        self.refresh()

    def on_blur(self) -> None:
        self._lines.clear()
        self.refresh()

    def move(self, delta: int) -> None:
        if self.ids:
            self.cursor = max(0, min(len(self.ids) - 1, self.cursor + delta))

    def move_to(self, index: int) -> None:
        if self.ids:
            self.cursor = max(0, min(len(self.ids) - 1, index))

    def on_click(self, event: events.Click) -> None:
        index = event.y + self.scroll_offset.y
        if 0 <= index < len(self.ids):
            if index == self.cursor and event.chain >= 2:
                self.post_message(self.Selected(self, self.ids[index]))
            self.cursor = index


class ViewsList(OptionList):
    """The views column: Inbox, Mine, ..., then each source, with counts."""

    def _room(self) -> int:
        """Cells for a label: the column's width less padding and the scrollbar."""
        width = self.content_region.width or self.size.width
        return max(8, width - 2) if width else 19

    def show_views(self, views: list[View], counts: dict[str, int]) -> None:
        highlighted = self.highlighted
        room = self._room()
        options = [Option(self._prompt(v, counts.get(v.id, 0), room), id=v.id) for v in views]
        first_source = next((i for i, v in enumerate(views) if v.source), None)
        if first_source is not None:
            options.insert(first_source, None)  # a separator line
        self.set_options(options)
        if highlighted is not None:
            self.highlighted = min(highlighted, self.option_count - 1)

    def on_resize(self) -> None:
        app: Any = self.app
        if hasattr(app, "views"):
            self.update_counts(app.views, app.counts())

    def update_counts(self, views: list[View], counts: dict[str, int]) -> None:
        room = self._room()
        for view in views:
            try:
                self.replace_option_prompt(view.id, self._prompt(view, counts.get(view.id, 0),
                                                                 room))
            except Exception:  # the option list is being rebuilt
                return

    @staticmethod
    def _prompt(view: View, count: int, width: int = 19) -> Text:
        # One line per view: long source names are cut, the count always shows.
        suffix = f" {count}" if count else ""
        label = one_line(view.label, 40)
        room = max(4, width - len(suffix))
        if len(label) > room:
            label = label[: room - 1] + "…"
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(label)
        if suffix:
            text.append(suffix, style="bold" if view.id in ("inbox", "new") else "dim")
        return text


class DetailPane(Static, can_focus=True):
    """The highlighted item, as text: what was said, by whom, where, and what was done."""

    def show_item(self, item: Item | None, body: str, events: list[Event],
                  thread: list[Item], member_names: dict[str, str], replying: str = "") -> None:
        if item is None:
            self.update(Text("Select an item to read it.", style="dim"))
            return
        text = render_item(item, body, events, thread, member_names)
        if replying:
            text = Text.assemble((f"✎ {one_line(replying, 40)} is replying\n", "bold yellow"),
                                 text)
        self.update(text)


def render_item(item: Item, body: str, events: list[Event], thread: list[Item],
                member_names: dict[str, str]) -> Text:
    """The detail view of one item as a literal Text (no markup is ever parsed)."""
    text = Text()
    text.append(one_line(item.title, 500) or "(untitled)", style="bold")
    text.append("\n")
    meta = [one_line(item.source, 40), one_line(item.author, 80) or "unknown author",
            f"{short_time(item.published)} ({age(item.published)})", item.state]
    if item.assignee:
        meta.append(f"assigned to {member_names.get(item.assignee, item.assignee)}")
    text.append(" · ".join(meta), style="dim")
    if item.priority in ("high", "urgent"):
        text.append(f"  {item.priority}", style="bold red" if item.priority == "urgent"
                    else "bold yellow")
    flagged = item.extra.get("escalate_to") if isinstance(item.extra, dict) else None
    if flagged and item.state != "escalated":  # a rule asked for it; nobody has yet
        text.append(f"  ⚑ escalate to {one_line(flagged, 30)}", style="bold yellow")
    if item.tags:
        text.append("  " + " ".join(f"#{one_line(t, 30)}" for t in item.tags), style="italic")
    text.append("\n")
    text.append(one_line(item.url, 300) or "(no link)", style="underline dim")
    text.append("\n\n")
    text.append(safe_text(body, MAX_DETAIL_CHARS) or one_line(item.summary, 300) or "(no text)")
    if len(thread) > 1:
        text.append("\n\nThread\n", style="bold")
        for other in thread[:20]:
            mark = "▸ " if other.id == item.id else "  "
            text.append(f"{mark}{short_time(other.published)}  {one_line(other.author, 24)}: "
                        f"{one_line(other.title or other.summary, 80)}\n",
                        style="bold" if other.id == item.id else "")
    text.append("\n\nHistory\n", style="bold")
    if not events:
        text.append("nothing done yet\n", style="dim")
    for event in events[-30:]:
        who = member_names.get(event.actor, event.actor)
        text.append(f"{time.strftime('%b %d %H:%M', time.localtime(event.ts))}  "
                    f"{one_line(who, 30)}  {describe_event(event)}\n")
    return text


def describe_event(event: Event) -> str:
    """One line for the history: what this event did, in words."""
    data = event.data
    after = data.get("after", {}) if isinstance(data.get("after"), dict) else {}
    if event.action in ("state", "seen", "wake"):
        return f"marked {after.get('state', '?')}"
    if event.action == "snooze":
        until = data.get("until")
        when = time.strftime("%b %d %H:%M", time.localtime(until)) if until else "?"
        return f"snoozed until {when}"
    if event.action == "tag":
        tags = after.get("tags") or []
        return "tags: " + (" ".join(f"#{one_line(t, 30)}" for t in tags) or "(none)")
    if event.action == "assign":
        return f"assigned to {one_line(after.get('assignee') or 'nobody', 40)}"
    if event.action == "note":
        return "note: " + one_line(data.get("text", ""), 200)
    if event.action == "escalate":
        return (f"escalated to {one_line(data.get('target', ''), 30)}: "
                f"{one_line(data.get('reason', ''), 160)}")
    if event.action == "reply":
        how = "posted" if data.get("mode") == "outbox" else "copied to post"
        return f"replied ({how}): {one_line(data.get('text', ''), 160)}"
    if event.action == "route_private":
        return (f"routed private ({one_line(data.get('channel', ''), 20)}): "
                f"{one_line(data.get('private_text', ''), 140)}")
    if event.action in ("delivered", "delivery_failed"):
        outcome = "delivered" if event.action == "delivered" else "not delivered yet"
        return f"{outcome}: {one_line(data.get('kind', ''), 10)} to " \
               f"{one_line(data.get('target', ''), 30)}"
    if event.action == "sla_breached":
        flag = after.get("escalate_to")
        return "passed its first-response SLA" + (f"; flagged for {flag}" if flag else "")
    if event.action == "rules":
        return "routed by rules " + ", ".join(one_line(r, 30) for r in data.get("rules", []))
    if event.action == "submitted_for_approval":
        return "sent an answer for approval"
    if event.action == "approved":
        return f"approved {one_line(data.get('agent', ''), 30)}'s answer" + (
            " (edited)" if data.get("edited") else "")
    if event.action == "rejected":
        return f"rejected the answer: {one_line(data.get('note', ''), 160)}"
    if event.action == "undo":
        return f"undid {one_line(data.get('undone_action', ''), 30)}"
    return one_line(event.action, 40)


class StatusBar(Static):
    """One line: poll state, errors, new items, who I am."""
