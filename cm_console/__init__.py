"""cm-console: a terminal console for community managers."""

__version__ = "0.1.0"
