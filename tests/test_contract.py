"""Architecture rules that keep the core usable without a terminal."""

from __future__ import annotations

import subprocess
import sys


def test_core_never_imports_textual() -> None:
    code = (
        "import sys, cm_console.cli, cm_console.config, cm_console.store, cm_console.poller, "
        "cm_console.actions, cm_console.demo, cm_console.sources.rss\n"
        "assert 'textual' not in sys.modules, 'core imported textual'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "cm_console", "--help"], check=True,
                         capture_output=True, text=True).stdout
    assert "cm-console" in out and "poll" in out and "Exit codes" in out
