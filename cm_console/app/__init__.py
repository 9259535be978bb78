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
    """Run the TUI until the user quits; returns the exit code."""
    app = make_app(config, store, actor, demo=demo)
    app.run()
    return int(app.return_code or 0)
