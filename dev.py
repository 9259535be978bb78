#!/usr/bin/env python3
"""Set up and run cm-console from a fresh clone with nothing but python3.

    python3 dev.py demo    # create .venv if needed, install, open the demo console
    python3 dev.py test    # create .venv if needed, install with test extras, run all tests

Anything after the command is passed on (``python3 dev.py test -k store``,
``python3 dev.py demo --headless``). The install step is skipped when pyproject.toml has not
changed since the last one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py runs on any python3)
        sys.exit(f"cm-console needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".cm-console-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    print("installing cm-console and its test tools into .venv (a minute the first time) ...",
          flush=True)
    pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    log = VENV / "install.log"
    with open(log, "w", encoding="utf-8") as out:
        # Build tools are chatty (setuptools prints banners even with --quiet): keep it all
        # in a log, and show it only if something fails.
        for args in (["--upgrade", "pip"], ["-e", f"{ROOT}[test]"]):
            if subprocess.run([*pip, *args], stdout=out, stderr=subprocess.STDOUT).returncode:
                out.flush()
                sys.stdout.write(log.read_text(encoding="utf-8"))
                sys.exit(f"install failed (the full log is in {log})")
    stamp.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    ensure_env()
    command, rest = argv[0], argv[1:]
    if command == "demo":
        return subprocess.call([str(BIN / "cm-console"), "demo", *rest])
    paths = [p for p in ("cm_console", "tests", "bench", "dev.py") if (ROOT / p).exists()]
    lint = subprocess.call([str(PY), "-m", "ruff", "check", *paths], cwd=ROOT)
    tests = subprocess.call([str(PY), "-m", "pytest", "-n", "2", "-q", *rest], cwd=ROOT)
    return tests or lint


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
