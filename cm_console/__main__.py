"""``python -m cm_console``: the same as the ``cm-console`` command."""

from .cli import entry

entry()
