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
    from ..keymap import key_problems

    local = load_local()
    personal = dict(local.keys)
    for binding_id, message, _is_error in key_problems(personal, base=config.keys):
        # A personal key on top of the team's: the clash only shows now. Keep the team's.
        print(f"cm-console: {local.path}: keys.{binding_id}: {message} (ignored)")
        personal.pop(binding_id, None)
    config.keys = {**config.keys, **personal}
    app = make_app(config, store, actor, demo=demo)
    theme = local.theme
    if theme:
        if theme in app.available_themes:
            app.theme = theme
        else:
            print(f"cm-console: unknown theme {theme!r} in your local settings (known: "
                  f"{', '.join(sorted(app.available_themes))})")
    app.run()
    return int(app.return_code or 0)
