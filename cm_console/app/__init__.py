"""Everything Textual lives in this package; the core (cm_console.*) never imports it."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..store import Store

__all__ = ["make_app", "run_app"]


def make_app(config: Config, store: Store, actor: str, **kwargs: Any) -> Any:
    """Build the app (the only factory; see app.make_app)."""
    from .app import make_app as _make

    return _make(config, store, actor, **kwargs)


def run_app(config: Config, store: Store, *, actor: str, demo: Any = None) -> int:
    """Run the TUI until the user quits; returns the exit code.

    The person's own settings file (never the team's config) adds their key overrides on top
    of the team's and picks their theme.
    """
    from ..config import load_local
    from ..keymap import merge_personal_keys

    local = load_local()
    config.keys, notices = merge_personal_keys(config.keys, local.keys, str(local.path))
    app = make_app(config, store, actor, demo=demo, notices=notices)
    theme = local.theme
    if theme:
        if theme in app.available_themes:
            app.theme = theme
        else:
            print(f"cm-console: unknown theme {theme!r} in your local settings (known: "
                  f"{', '.join(sorted(app.available_themes))})")
    app.run()
    return int(app.return_code or 0)
