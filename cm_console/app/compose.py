"""Answering screens: template picker, editor, review (aerc-style y/e/n), and the outbox."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from ..config import Template
from ..models import OutboxEntry
from ..sanitize import one_line, safe_text

CONFIRM_WITHIN = 4.0  # seconds in which a second esc discards edited text


class TemplatePickerScreen(ModalScreen[Template | None]):
    """Type to filter templates by id or title; the preview shows this item's rendering."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="picker.cancel"),
                Binding("down", "cursor_down", show=False),
                Binding("up", "cursor_up", show=False)]

    def __init__(self, title: str, templates: list[Template],
                 preview: Callable[[Template], str]):
        super().__init__()
        self.title_text = title
        self.templates = templates
        self.preview = preview

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide-dialog"):
            yield Label(Text(self.title_text, style="bold"))
            yield Input(placeholder="type to filter templates", id="picker-filter")
            yield OptionList(id="picker-list")
            yield Static(id="picker-preview")
            yield Label(Text("enter: use · ↑↓: choose · esc: cancel", style="dim"))

    def on_mount(self) -> None:
        self._fill("")
        self.query_one("#picker-filter", Input).focus()

    def _matching(self, query: str) -> list[Template]:
        q = query.casefold().strip()
        return [t for t in self.templates
                if not q or q in t.id.casefold() or q in t.title.casefold()]

    def _fill(self, query: str) -> None:
        options = self.query_one("#picker-list", OptionList)
        options.clear_options()
        for tpl in self._matching(query):
            options.add_option(Option(Text.assemble((tpl.id, "bold"), "  ",
                                                    one_line(tpl.title, 60)), id=tpl.id))
        if options.option_count:
            options.highlighted = 0
        self._show_preview()

    def _current(self) -> Template | None:
        options = self.query_one("#picker-list", OptionList)
        if options.highlighted is None or not options.option_count:
            return None
        option_id = options.get_option_at_index(options.highlighted).id
        return next((t for t in self.templates if t.id == option_id), None)

    def _show_preview(self) -> None:
        tpl = self._current()
        preview = self.query_one("#picker-preview", Static)
        if tpl is None:
            preview.update(Text("No template matches.", style="dim"))
            return
        try:
            preview.update(Text(self.preview(tpl)))
        except ValueError as exc:
            preview.update(Text(str(exc), style="red"))

    @on(Input.Changed, "#picker-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(OptionList.OptionHighlighted, "#picker-list")
    def _highlight(self) -> None:
        self._show_preview()

    @on(Input.Submitted, "#picker-filter")
    @on(OptionList.OptionSelected, "#picker-list")
    def _choose(self) -> None:
        tpl = self._current()
        if tpl is not None:
            self.dismiss(tpl)

    def action_cursor_down(self) -> None:
        self.query_one("#picker-list", OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#picker-list", OptionList).action_cursor_up()

    def action_cancel(self) -> None:
        self.dismiss(None)


class ComposeScreen(ModalScreen[str | None]):
    """Edit the text with a live length counter; ctrl+s reviews, ctrl+e opens $EDITOR."""

    BINDINGS = [
        # priority: the TextArea would otherwise take ctrl+e (end of line) and ctrl+s.
        Binding("ctrl+s", "done", "Review", id="compose.review", priority=True),
        Binding("ctrl+e", "external", "$EDITOR", id="compose.editor", priority=True),
        Binding("escape", "cancel", "Cancel", id="compose.cancel"),
    ]

    def __init__(self, title: str, text: str, limit: int | None, count: Callable[[str], int]):
        super().__init__()
        self.title_text = title
        self.text = text
        self.limit = limit
        self.count = count
        self._cancel_asked = 0.0  # when esc last asked to confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide-dialog"):
            yield Label(Text(self.title_text, style="bold"))
            yield TextArea(self.text, id="compose-text", soft_wrap=True, show_line_numbers=False)
            yield Label(id="compose-count")
        yield Footer()

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        area.focus()
        area.move_cursor(area.document.end)
        self._update_count()

    @on(TextArea.Changed)
    def _update_count(self) -> None:
        text = self.query_one(TextArea).text
        size = self.count(text)
        label = f"{size}" + (f" / {self.limit}" if self.limit else "") + " characters"
        over = self.limit is not None and size > self.limit
        if over:
            label += f" — {size - self.limit} over the limit"
        self.query_one("#compose-count", Label).update(
            Text(label, style="bold red" if over else "dim"))

    def action_done(self) -> None:
        text = self.query_one(TextArea).text
        if self.limit is not None and self.count(text) > self.limit:
            self.notify("Too long for this platform; shorten it first.", severity="error")
            return
        if not text.strip():
            self.notify("The text is empty.", severity="warning")
            return
        self.dismiss(text)

    def action_external(self) -> None:
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
        if not editor:
            self.notify("Set $EDITOR (or $VISUAL) to edit in your own editor.",
                        severity="warning")
            return
        area = self.query_one(TextArea)
        with tempfile.NamedTemporaryFile("w+", suffix=".txt", delete=False,
                                         encoding="utf-8") as fh:
            fh.write(area.text)
            path = fh.name
        try:
            with self.app.suspend():
                subprocess.call([*shlex.split(editor), path])
            with open(path, encoding="utf-8") as fh:
                area.load_text(safe_text(fh.read(), 20_000))
        except OSError as exc:
            self.notify(f"Could not run {editor}: {exc.strerror}", severity="error")
        finally:
            os.unlink(path)

    def action_cancel(self) -> None:
        """Leave; typed changes need a second esc, so one stray key never loses them."""
        changed = self.query_one(TextArea).text != self.text
        now = time.monotonic()
        if changed and now - self._cancel_asked > CONFIRM_WITHIN:
            self._cancel_asked = now
            self.notify("Your changes are not saved: esc again discards them, ctrl+s reviews.",
                        severity="warning", timeout=CONFIRM_WITHIN)
            return
        self.dismiss(None)


class ReviewScreen(ModalScreen[str]):
    """Last look before anything leaves: y send, e (or esc) back to the text, n abort.

    esc goes back rather than aborting: everywhere else esc means "back", and one stray esc
    here used to throw the whole answer away."""

    BINDINGS = [
        Binding("y", "choose('send')", "Send", id="review.send"),
        Binding("e,escape", "choose('edit')", "Edit", id="review.edit"),
        Binding("n", "choose('abort')", "Abort", id="review.abort"),
    ]

    def __init__(self, summary: Text):
        super().__init__()
        self.summary = summary

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide-dialog"):
            yield Label(Text("Review", style="bold"))
            with VerticalScroll(id="review-body"):
                yield Static(self.summary)
            yield Label(Text("y send · e or esc: edit · n abort", style="bold"))
        yield Footer()

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


class OutboxScreen(Screen[None]):
    """What is waiting to leave, what failed and why; r retries failed, c cancels pending."""

    BINDINGS = [
        Binding("escape,q", "dismiss_screen", "Back", id="outbox.back"),
        Binding("r", "retry", "Retry failed", id="outbox.retry"),
        Binding("c", "cancel_entry", "Cancel", id="outbox.cancel"),
    ]

    def __init__(self, entries: list[OutboxEntry], received: list[str] | None = None):
        super().__init__()
        self.entries = entries
        self.received = received

    def compose(self) -> ComposeResult:
        yield Label("Outbox", id="screen-title")
        yield DataTable(id="outbox-table", cursor_type="row", zebra_stripes=True)
        if self.received is not None:
            yield Label("Received by the demo's local webhook and SMTP sinks", id="sink-title")
            yield Static(id="sink-log")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("created", "status", "kind", "target", "item", "tries", "last error")
        self.fill(self.entries, self.received)

    def fill(self, entries: list[OutboxEntry], received: list[str] | None = None) -> None:
        self.entries = entries
        table = self.query_one(DataTable)
        table.clear()
        for e in sorted(entries, key=lambda e: e.created, reverse=True):
            style = {"failed": "red", "pending": "yellow", "delivered": "green"}.get(e.status, "")
            table.add_row(Text(time.strftime("%H:%M:%S", time.localtime(e.created))),
                          Text(e.status, style=style), Text(e.kind), Text(one_line(e.target, 20)),
                          Text(one_line(e.item, 30)), Text(str(e.attempts)),
                          Text(one_line(e.last_error, 80)), key=e.id)
        if received is not None and self.received is not None:
            self.received = received
            log = Text()
            for line in received[-12:]:
                log.append(one_line(line, 300) + "\n")
            self.query_one("#sink-log", Static).update(log or Text("nothing yet", style="dim"))

    def _selected(self) -> OutboxEntry | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((e for e in self.entries if e.id == key), None)

    def action_retry(self) -> None:
        self.app.retry_outbox()  # type: ignore[attr-defined]

    def action_cancel_entry(self) -> None:
        entry = self._selected()
        if entry is not None:
            self.app.cancel_outbox(entry.id)  # type: ignore[attr-defined]

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)


class ApprovalsScreen(Screen[None]):
    """Answers waiting for review: y approves (sends), e edits then approves, x rejects."""

    BINDINGS = [
        Binding("escape,q", "dismiss_screen", "Back", id="approvals.back"),
        Binding("y", "approve", "Approve", id="approvals.approve"),
        Binding("e", "edit", "Edit + approve", id="approvals.edit"),
        Binding("x", "reject", "Reject", id="approvals.reject"),
    ]

    def __init__(self, rows: list[dict], titles: dict[str, str]):
        super().__init__()
        self.rows = rows
        self.titles = titles

    def compose(self) -> ComposeResult:
        yield Label("Awaiting approval", id="screen-title")
        yield DataTable(id="approvals-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="approval-text")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("submitted", "by", "answer", "item")
        self.fill(self.rows, self.titles)

    def fill(self, rows: list[dict], titles: dict[str, str]) -> None:
        self.rows, self.titles = rows, titles
        table = self.query_one(DataTable)
        table.clear()
        for row in rows:
            table.add_row(Text(time.strftime("%H:%M", time.localtime(row["created"]))),
                          Text(one_line(row["actor"], 20)),
                          Text(row["op"].replace("_", " ")),
                          Text(one_line(titles.get(row["item"], row["item"]), 60)),
                          key=row["id"])
        self._show()

    def selected(self) -> dict | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _show(self) -> None:
        row = self.selected()
        text = Text()
        if row is None:
            text.append("Nothing is waiting for approval.", style="dim")
        else:
            payload = row["payload"]
            for key, label in (("text", "Reply"), ("public_text", "Public acknowledgement"),
                               ("private_text", "Private message")):
                if payload.get(key):
                    text.append(f"{label}:\n", style="bold")
                    text.append(safe_text(payload[key], 5000) + "\n\n")
        self.query_one("#approval-text", Static).update(text)

    def action_approve(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.decide_approval(row["id"], approve=True)  # type: ignore[attr-defined]

    def action_edit(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.edit_approval(row)  # type: ignore[attr-defined]

    def action_reject(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.decide_approval(row["id"], approve=False)  # type: ignore[attr-defined]

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)
