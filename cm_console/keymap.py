"""Every rebindable key of the console: id, default keys, description.

Lives in the core (not the TUI) so ``check-config`` can validate a team's ``keys:``
overrides without importing Textual. The TUI builds its ``Binding`` objects from this
table and applies overrides with ``App.set_keymap``.
"""

from __future__ import annotations

from typing import NamedTuple


class KeySpec(NamedTuple):
    id: str
    keys: str  # Textual key names, comma-separated
    action: str
    description: str
    show: bool = True  # shown in the footer (all are shown on the help screen)


KEYS: tuple[KeySpec, ...] = (
    KeySpec("cursor.down", "j,down", "cursor_down", "Down", False),
    KeySpec("cursor.up", "k,up", "cursor_up", "Up", False),
    KeySpec("cursor.top", "g,home", "cursor_top", "First", False),
    KeySpec("cursor.bottom", "G,end", "cursor_bottom", "Last", False),
    KeySpec("page.down", "space,pagedown", "page_down", "Page down", False),
    KeySpec("page.up", "b,pageup", "page_up", "Page up", False),
    KeySpec("item.open", "enter", "open_item", "Read", False),
    KeySpec("next.new", "n", "next_new", "Next new", False),
    KeySpec("prev.new", "p", "prev_new", "Prev new", False),
    KeySpec("search", "slash", "search", "Search"),
    KeySpec("filter", "f", "filter", "Filter"),
    KeySpec("browser", "o", "open_browser", "Open", False),
    KeySpec("copy.link", "y", "copy_link", "Copy link", False),
    KeySpec("poll", "R", "poll_now", "Poll", False),
    KeySpec("reply", "r", "reply", "Reply"),
    KeySpec("private", "P", "route_private", "Private", False),
    KeySpec("escalate", "e", "escalate", "Escalate"),
    KeySpec("assign", "a", "assign", "Assign", False),
    KeySpec("tag", "t", "tag", "Tag", False),
    KeySpec("snooze", "s", "snooze", "Snooze", False),
    KeySpec("done", "d", "done", "Done"),
    KeySpec("undo", "u", "undo", "Undo", False),
    KeySpec("note", "N", "note", "Note", False),
    KeySpec("sources", "S", "sources", "Sources", False),
    KeySpec("outbox", "O", "outbox", "Outbox", False),
    KeySpec("dashboard", "D", "dashboard", "Dashboard", False),
    KeySpec("approvals", "A", "approvals", "Approvals", False),
    KeySpec("views.next", "tab", "focus_next_pane", "Next pane", False),
    KeySpec("help", "question_mark", "help", "Help"),
    KeySpec("back", "escape", "back", "Back", False),
    KeySpec("quit", "q", "quit_console", "Quit"),
)

BINDING_IDS: tuple[str, ...] = tuple(k.id for k in KEYS)
