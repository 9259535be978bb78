"""Every rebindable key of the console: id, default keys, description.

Lives in the core (not the TUI) so ``check-config`` can validate a team's ``keys:``
overrides without importing Textual. The TUI builds its ``Binding`` objects from this
table and applies overrides with ``App.set_keymap``.
"""

from __future__ import annotations

import unicodedata
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

_MODIFIERS = ("ctrl", "shift", "alt", "meta", "super", "hyper")


# A punctuation character and the name Textual gives its key are the same key.
_CHAR_NAMES = {"?": "question_mark", "/": "slash", "\\": "backslash", "!": "exclamation_mark",
               "@": "at", "#": "number_sign", "$": "dollar_sign", "%": "percent_sign",
               "^": "circumflex_accent", "&": "ampersand", "*": "asterisk", "-": "minus",
               "+": "plus", "=": "equals_sign", "_": "underscore", ";": "semicolon",
               ":": "colon", "'": "apostrophe", '"': "quotation_mark", ",": "comma",
               ".": "full_stop", "<": "less_than_sign", ">": "greater_than_sign",
               "`": "grave_accent", "~": "tilde", " ": "space"}

# Key names a binding may use besides a single printable character (and, through
# _unicode_name, any character's Unicode name): the keys without a character, and Textual's
# spelling of the punctuation above.
_NAMED_KEYS = frozenset(
    "up down left right home end pageup pagedown enter escape tab backspace delete insert "
    "left_square_bracket right_square_bracket left_curly_bracket right_curly_bracket "
    "vertical_line left_parenthesis right_parenthesis".split()
) | frozenset(_CHAR_NAMES.values()) | frozenset(f"f{n}" for n in range(1, 25))


def _same_key(key: str) -> str:
    *mods, name = key.split("+") if key != "+" else ["+"]
    return "+".join([*mods, _CHAR_NAMES.get(name, name)])


# Keys Textual itself takes, whatever the bindings say: a binding on one never fires.
RESERVED = {"ctrl+q": "quitting the app", "ctrl+c": "copying / quitting",
            "ctrl+p": "the command palette", "shift+tab": "moving focus back"}


def _unicode_name(name: str) -> bool:
    """Textual names other keys after their character: pound_sign is "£"."""
    try:
        unicodedata.lookup(name.replace("_", " "))
    except KeyError:
        return False
    return True


def _key_name_ok(key: str) -> bool:
    *mods, name = key.split("+") if key != "+" else ["+"]
    if any(m not in _MODIFIERS for m in mods) or len(set(mods)) != len(mods):
        return False
    return (len(name) == 1 and name.isprintable() and not name.isspace()) or \
        name in _NAMED_KEYS or _unicode_name(name)


def key_problems(overrides: dict[str, str], base: dict[str, str] | None = None, *,
                 clashes: bool = True) -> list[tuple[str, str, bool]]:
    """What is wrong with ``keys:`` overrides, as (binding id, message, is_error).

    A key name Textual would not know is an error (``ctrl+shift+banana`` showed up in the
    footer and did nothing). A key that another binding also has is an error too: with
    ``reply: j`` the j key opened the reply picker instead of moving down. ``base`` is what
    the overrides apply on top of (the team's keys under a person's local.yaml);
    ``clashes=False`` checks names only, for a file read without that base.
    """
    problems: list[tuple[str, str, bool]] = []
    effective = {spec.id: spec.keys for spec in KEYS}
    effective.update(base or {})
    effective.update(overrides)
    owners: dict[str, list[str]] = {}
    for binding_id, keys in effective.items():
        for key in (k.strip() for k in keys.split(",")):
            owners.setdefault(_same_key(key), []).append(binding_id)
    for binding_id, keys in overrides.items():
        for key in (k.strip() for k in keys.split(",")):
            if not key or not _key_name_ok(key):
                problems.append((binding_id, f'"{key}" is not a key name (a character, or '
                                 "a name like enter, escape, f5, ctrl+r)", True))
                continue
            if _same_key(key) in RESERVED and not (
                    binding_id == "quit" and _same_key(key) in ("ctrl+q", "ctrl+c")):
                problems.append((binding_id, f'"{key}" is Textual\'s key for '
                                 f"{RESERVED[_same_key(key)]}; choose another", True))
                continue
            others = [o for o in owners.get(_same_key(key), ()) if o != binding_id]
            if clashes and others:
                problems.append((binding_id, f'"{key}" is also the key of '
                                 f"{', '.join(others)}; give one of them another key", True))
    return problems


def merge_personal_keys(team: dict[str, str], personal: dict[str, str],
                        where: str) -> tuple[dict[str, str], list[str]]:
    """The team's key overrides with a person's on top, minus the personal keys that clash
    with them (the team's win, so the team's help and habits stay true), and a notice for
    each one dropped, for the TUI to show."""
    kept = dict(personal)
    notices = []
    for binding_id, message, _is_error in key_problems(personal, base=team):
        kept.pop(binding_id, None)
        notices.append(f"{where}: keys.{binding_id}: {message}. Ignored.")
    return {**team, **kept}, notices
