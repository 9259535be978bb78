"""Secondary screens and dialogs: help, sources, the item reader, filter and prompts."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from ..keymap import KEYS
from ..models import STATES, SourceState
from ..sanitize import one_line

BACK = [Binding("escape,q", "dismiss_screen", "Back", id="dialog.back")]


class HelpScreen(ModalScreen[None]):
    """Every key, with its current binding (after the team's and the user's overrides)."""

    BINDINGS = [*BACK, Binding("question_mark", "dismiss_screen", "Back", show=False),
                Binding("j,down", "scroll('down')", show=False),
                Binding("k,up", "scroll('up')", show=False),
                Binding("space,pagedown", "scroll('page_down')", show=False),
                Binding("b,pageup", "scroll('page_up')", show=False)]

    def action_scroll(self, how: str) -> None:
        body = self.query_one("#help-body", VerticalScroll)
        getattr(body, f"scroll_{how}")(animate=False)

    def __init__(self, keys: dict[str, str]):
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Text()
        table.append("Keys\n\n", style="bold")
        for spec in KEYS:
            keys = self.keys.get(spec.id, spec.keys)
            shown = ", ".join(_key_label(k) for k in keys.split(","))
            table.append(f"{shown:<18}", style="bold")
            table.append(f"{spec.description:<16}")
            table.append(f"{spec.id}\n", style="dim")
        table.append("\nctrl+p            Command palette   (commands for the current item)\n")
        table.append("\nRebind any key in cm-console.yaml under keys: (binding id: key).\n",
                     style="dim")
        with VerticalScroll(id="help-body"):
            yield Static(table)
        yield Footer()

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)


def _key_label(key: str) -> str:
    return {"question_mark": "?", "slash": "/", "space": "space", "escape": "esc"}.get(
        key.strip(), key.strip())


class SourcesScreen(Screen[None]):
    """Each source's poll state: last poll, status, items, and its last error in full."""

    BINDINGS = [*BACK, Binding("R", "poll", "Poll now", id="sources.poll")]

    def __init__(self, rows: list[tuple[str, str, str, SourceState | None, int]]):
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        yield Label("Sources", id="screen-title")
        yield DataTable(id="sources-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="source-error")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("source", "type", "status", "last poll", "next", "items", "error")
        self.fill(self.rows)

    def fill(self, rows: list[tuple[str, str, str, SourceState | None, int]]) -> None:
        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        for sid, stype, label, state, count in rows:
            status = state.last_status if state and state.last_status else "never polled"
            style = "red" if status == "error" else ("green" if status in ("ok", "304",
                                                                           "unchanged") else "")
            table.add_row(
                Text(one_line(label, 30)), Text(stype), Text(status, style=style),
                Text(_ago(state.last_poll) if state else "-"),
                Text(_until(state.next_due) if state else "-"), Text(str(count)),
                Text(one_line(state.last_error, 60) if state else ""), key=sid,
            )
        self._show_error()

    @on(DataTable.RowHighlighted)
    def _show_error(self) -> None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row >= len(self.rows):
            return
        sid, _, label, state, _ = self.rows[table.cursor_row]
        detail = Text()
        detail.append(f"{one_line(label, 60)} ({sid})\n", style="bold")
        if state is None:
            detail.append("not polled yet")
        else:
            detail.append(f"last success {_ago(state.last_success)}; "
                          f"{state.error_count} error(s) in a row\n")
            if state.last_error:
                detail.append(one_line(state.last_error, 500), style="red")
        self.query_one("#source-error", Static).update(detail)

    def action_poll(self) -> None:
        self.app.action_poll_now()  # type: ignore[attr-defined]

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)


def _ago(ts: float) -> str:
    if not ts:
        return "never"
    seconds = max(0.0, time.time() - ts)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return time.strftime("%b %d %H:%M", time.localtime(ts))


def _until(ts: float) -> str:
    if not ts:
        return "now"
    seconds = ts - time.time()
    if seconds <= 0:
        return "due"
    if seconds < 3600:
        return f"in {seconds / 60:.0f}m"
    return time.strftime("%H:%M", time.localtime(ts))


class ReaderScreen(Screen[None]):
    """One item full-screen: the whole text, thread and history. The item keys (r, P, e,
    d, a, t, s, N, u, o, y) work here too: they close the reader and act on this item."""

    BINDINGS = [*BACK,
                Binding("j,down", "scroll_down", "Down", show=False),
                Binding("k,up", "scroll_up", "Up", show=False),
                Binding("space", "page_down", "Page down", show=False),
                Binding("b", "page_up", "Page up", show=False),
                *(Binding(key, f"forward('{action}')", label, show=show)
                  for key, action, label, show in (
                      ("r", "reply", "Reply", True), ("P", "route_private", "Private", False),
                      ("e", "escalate", "Escalate", True), ("d", "done", "Done", True),
                      ("a", "assign", "Assign", False), ("t", "tag", "Tag", False),
                      ("s", "snooze", "Snooze", False), ("N", "note", "Note", False),
                      ("u", "undo", "Undo", False), ("o", "open_browser", "Open", False),
                      ("y", "copy_link", "Copy link", False)))]

    def action_forward(self, action: str) -> None:
        app = self.app
        self.dismiss(None)

        async def run() -> None:
            await app.screen.run_action(action)

        app.call_after_refresh(run)

    def __init__(self, content: Text):
        super().__init__()
        self.content = content

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="reader"):
            yield Static(self.content, id="reader-text")
        yield Footer()

    def _scroll(self) -> VerticalScroll:
        return self.query_one("#reader", VerticalScroll)

    def action_scroll_down(self) -> None:
        self._scroll().scroll_down(animate=False)

    def action_scroll_up(self) -> None:
        self._scroll().scroll_up(animate=False)

    def action_page_down(self) -> None:
        self._scroll().scroll_page_down(animate=False)

    def action_page_up(self) -> None:
        self._scroll().scroll_page_up(animate=False)

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line of text (tags, snooze time, a note). Enter accepts, escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, title: str, hint: str = "", value: str = "", placeholder: str = ""):
        super().__init__()
        self.title_text = title
        self.hint = hint
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text, style="bold"))
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            if self.hint:
                yield Label(Text(self.hint, style="dim"), classes="hint")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickScreen(ModalScreen[str | None]):
    """Pick one of a few options (assignee...). Enter picks, escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
                Binding("j", "cursor_down", show=False), Binding("k", "cursor_up", show=False)]

    def __init__(self, title: str, options: Iterable[tuple[str, str]]):
        super().__init__()
        self.title_text = title
        self.options = list(options)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text, style="bold"))
            yield OptionList(*(Option(Text(label), id=value) for value, label in self.options),
                             id="pick-list")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    def action_cancel(self) -> None:
        self.dismiss(None)


class FilterScreen(ModalScreen[tuple[str | None, str | None, str | None] | None]):
    """Narrow the list by source, state and tag. Returns (source, state, tag) or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, sources: list[tuple[str, str]], tags: list[str],
                 current: tuple[str | None, str | None, str | None]):
        super().__init__()
        self.sources = sources
        self.tags = tags
        self.current = current

    def compose(self) -> ComposeResult:
        source, state, tag = self.current
        with Vertical(classes="dialog", id="filter-dialog"):
            yield Label(Text("Filter", style="bold"))
            yield Select([(Text(one_line(label, 40)), sid) for sid, label in self.sources],
                         prompt="any source", value=source or Select.NULL, id="filter-source")
            yield Select([(s, s) for s in STATES], prompt="any state",
                         value=state or Select.NULL, id="filter-state")
            yield Select([(Text("#" + one_line(t, 40)), t) for t in self.tags], prompt="any tag",
                         value=tag or Select.NULL, id="filter-tag")
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="filter-apply")
                yield Button("Clear", id="filter-clear")

    def _value(self, selector: str) -> str | None:
        value = self.query_one(selector, Select).value
        return None if value is Select.NULL or value is None else str(value)

    @on(Button.Pressed, "#filter-apply")
    def _apply(self) -> None:
        self.dismiss((self._value("#filter-source"), self._value("#filter-state"),
                      self._value("#filter-tag")))

    @on(Button.Pressed, "#filter-clear")
    def _clear(self) -> None:
        self.dismiss((None, None, None))

    def action_cancel(self) -> None:
        self.dismiss(None)
