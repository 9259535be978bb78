"""Store benchmark: what the journaled TinyDB store costs at 5k / 20k / 50k / 100k items.

For each size it builds a store through :meth:`cm_console.store.Store.add_items` in batches
(``--batch`` items a commit, like a poll cycle's flushes; realistic hot fields, and bodies of
~1.5 KB text + ~2.5 KB HTML that go to the ``.bodies`` file), then measures, in a *fresh
process* that opens the store the way the CLI and the TUI do:

- ``Store(path)`` open (load) time;
- ``item_ids()`` listing time, first call (sorts every id) and cached, and with a state filter;
- ``counts()`` (the views column's counters) and ``items()`` of the first 100 ids;
- a single item state change, :func:`cm_console.actions.set_state`, ``--changes`` times on
  random items (median, p90, max); the issue's target is < 50 ms at 20,000 items;
- ``Store.compact()`` (folding the journal into a new snapshot): the worst case that one
  state change pays when the journal has grown past half the snapshot;
- the peak RSS of that process (its own ``ru_maxrss``); target < 300 MB at 50,000;
- size on disk (snapshot, journal, bodies);
- end to end, ``cm-console --config X mark ID done`` as a subprocess (median of 5).

Run it from the repository root; JSON goes to bench/out/::

    .venv/bin/python bench/store_bench.py                     # 5000,20000,50000,100000
    .venv/bin/python bench/store_bench.py --sizes 20000 --changes 200

Every child process has a timeout (``--timeout``); the stores live in a temporary directory
that is removed at the end (``--keep DIR`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import git_state

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
OUT_DIR = ROOT / "bench" / "out"
PAGE = os.sysconf("SC_PAGE_SIZE")

_WORD_TEXT = (
    "the of and to in is that for it on with community update release forum thread reply "
    "moderator support ticket customer account login password reset outage latency server "
    "dashboard mobile app android version feature request bug report crash screen settings "
    "notification billing refund subscription roadmap feedback event changelog question "
    "answer workaround problem error thanks please sorry great slow broken fixed today"
)
_WORDS = tuple(_WORD_TEXT.split())
_NAMES = ("Alice Moreau", "Bo Lindqvist", "Chen Wei", "Dara O'Neill", "Emeka Obi",
          "Fatima Zahra", "Gustavo Lima", "Hana Sato", "Ivan Petrov", "Jana Novak")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def make_batch(rng: random.Random, start: int, count: int, sources: int,
               now: float) -> list[Any]:
    """``count`` NewItems as the poller would hand them to the store."""
    from cm_console.models import Item
    from cm_console.sources import item_id
    from cm_console.store import NewItem

    out = []
    for k in range(start, start + count):
        src = f"feed{k % sources}"
        host = f"community{k % sources}.example.org"
        paras = [_words(rng, rng.randint(40, 70)).capitalize() + "." for _ in range(4)]
        link = f"https://{host}/t/post-{k}"
        html = "\n".join(f'<p>{p} <a href="https://{host}/t/{k}-{i}">more</a></p>'
                         for i, p in enumerate(paras))
        text = "\n\n".join(f"{p} more <https://{host}/t/{k}-{i}>" for i, p in enumerate(paras))
        published = now - k * 37.0
        item = Item(id=item_id(src, f"id:{host}-post-{k}"), source=src, source_type="rss",
                    guid=f"id:{host}-post-{k}", url=link,
                    title=_words(rng, rng.randint(5, 12)).capitalize(),
                    author=rng.choice(_NAMES), published=published, fetched=now,
                    summary=text[:279] + "…", thread=link)
        out.append(NewItem(item, text, html))
    return out


def disk_usage(path: Path) -> dict[str, int]:
    return {p.name[len(path.name):] or "snapshot": p.stat().st_size
            for p in sorted(path.parent.glob(path.name + "*")) if p.is_file()}


def build(path: Path, size: int, batch: int, seed: int) -> dict[str, Any]:
    """Fill a new store with ``size`` items through add_items, ``batch`` at a time."""
    from cm_console.store import Store

    rng = random.Random(seed)
    now = time.time()
    store = Store(path)
    times: list[float] = []
    t0 = time.perf_counter()
    for start in range(0, size, batch):
        entries = make_batch(rng, start, min(batch, size - start), max(size // 50, 1), now)
        b0 = time.perf_counter()
        store.add_items(entries)
        times.append(time.perf_counter() - b0)
    total = time.perf_counter() - t0
    assert store.item_count() == size, store.item_count()
    return {"build_s": round(total, 2), "batches": len(times),
            "add_items_median_ms": round(statistics.median(times) * 1000, 1),
            "add_items_last10_median_ms": round(statistics.median(times[-10:]) * 1000, 1),
            "add_items_max_ms": round(max(times) * 1000, 1)}


# ----------------------------------------------------------------------------- the probe


def _rss_mb() -> float:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


def probe(path: Path, changes: int, seed: int) -> dict[str, Any]:
    """Runs in a fresh process: open, list, count, change states, compact. Prints JSON."""
    import resource

    from cm_console.actions import set_state
    from cm_console.store import Store

    out: dict[str, Any] = {"rss_before_open_mb": round(_rss_mb(), 1)}
    t0 = time.perf_counter()
    store = Store(path)
    out["open_s"] = round(time.perf_counter() - t0, 4)
    out["rss_after_open_mb"] = round(_rss_mb(), 1)
    out["items"] = store.item_count()

    def timed(fn: Any) -> tuple[Any, float]:
        t = time.perf_counter()
        value = fn()
        return value, (time.perf_counter() - t) * 1000

    ids, out["item_ids_first_ms"] = timed(store.item_ids)
    _, out["item_ids_cached_ms"] = timed(store.item_ids)
    _, out["item_ids_state_new_ms"] = timed(lambda: store.item_ids(states=["new", "open"]))
    _, out["item_ids_search_ms"] = timed(lambda: store.item_ids(text="refund"))
    _, out["counts_ms"] = timed(store.counts)
    _, out["items_first100_ms"] = timed(lambda: store.items(ids[:100]))
    _, out["body_ms"] = timed(lambda: store.body(ids[len(ids) // 2]))

    rng = random.Random(seed)
    samples: list[float] = []
    states = ("done", "open", "escalated", "private")
    for i in range(changes):
        item = rng.choice(ids)
        t = time.perf_counter()
        set_state(store, item, states[i % len(states)], "bench")
        samples.append((time.perf_counter() - t) * 1000)
        # what the TUI redraws after a key: the counts and the visible list page
    _, out["counts_after_change_ms"] = timed(store.counts)
    _, out["item_ids_after_change_ms"] = timed(store.item_ids)
    samples.sort()
    out["set_state_ms"] = {"median": round(statistics.median(samples), 2),
                           "p90": round(samples[int(len(samples) * 0.9) - 1], 2),
                           "max": round(samples[-1], 2), "n": len(samples)}
    _, out["compact_ms"] = timed(store.compact)
    t = time.perf_counter()
    set_state(store, ids[0], "done", "bench")
    out["set_state_after_compact_ms"] = round((time.perf_counter() - t) * 1000, 2)
    out["rss_end_mb"] = round(_rss_mb(), 1)
    out["maxrss_self_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    for key, value in list(out.items()):
        if key.endswith("_ms") and isinstance(value, float):
            out[key] = round(value, 2)
    return out


def run_child(cmd: list[str], timeout: float, cwd: str | None = None
              ) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, wall seconds); killed after ``timeout`` seconds."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    except BaseException:  # interrupted: leave nothing running behind us
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    wall = time.perf_counter() - start
    return proc.returncode, out.decode(), err.decode(), wall


def cli_mark(config: Path, ids: list[str], timeout: float, runs: int = 5) -> dict[str, Any]:
    walls = []
    for i in range(runs):
        rc, _out, err, wall = run_child(
            [str(VENV_BIN / "cm-console"), "--config", str(config), "--as", "bench", "mark",
             ids[i], "done"], timeout, cwd=str(config.parent))
        if rc != 0:
            raise RuntimeError(f"cm-console mark failed ({rc}): {err[-500:]}")
        walls.append(wall)
    rc, _out, _err, version_wall = run_child([str(VENV_BIN / "cm-console"), "--version"],
                                               timeout)
    return {"cli_mark_median_s": round(statistics.median(walls), 3),
            "cli_mark_all_s": [round(w, 3) for w in walls],
            "cli_version_s": round(version_wall, 3)}


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="5000,20000,50000,100000")
    p.add_argument("--batch", type=int, default=500, help="items per add_items commit")
    p.add_argument("--changes", type=int, default=50, help="state changes timed per size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=900, help="per child process, seconds")
    p.add_argument("--keep", metavar="DIR", help="build the stores here and keep them")
    p.add_argument("--no-cli", action="store_true", help="skip the `cm-console mark` timing")
    p.add_argument("--probe", metavar="STORE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.probe:
        print(json.dumps(probe(Path(args.probe), args.changes, args.seed)))
        return 0

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # run the cleanups: child killed, stores removed

    signal.signal(signal.SIGTERM, on_term)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    machine = {"nproc": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform(), "loadavg_start": os.getloadavg(),
               "git": git_state()}
    print(f"machine: {machine}")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="store-bench-"))
    results: list[dict[str, Any]] = []
    try:
        for size in sizes:
            work = base / f"s{size}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            path = work / "bench.db.json"
            print(f"\n== {size} items: building ...", flush=True)
            res: dict[str, Any] = {"size": size, **build(path, size, args.batch, args.seed)}
            res["disk_bytes"] = disk_usage(path)
            print(f"   built in {res['build_s']}s; add_items of {args.batch}: median "
                  f"{res['add_items_median_ms']} ms, last 10 {res['add_items_last10_median_ms']}"
                  f" ms; disk {res['disk_bytes']}", flush=True)
            # A fresh process opens it, as the CLI/TUI would: times, state changes, memory.
            rc, out, err, wall = run_child(
                [sys.executable, __file__, "--probe", str(path), "--changes",
                 str(args.changes), "--seed", str(args.seed)], args.timeout)
            if rc != 0:
                print(err[-3000:], file=sys.stderr)
                raise SystemExit(f"probe failed with exit code {rc}")
            res["probe"] = json.loads(out.strip().splitlines()[-1])
            res["probe_wall_s"] = round(wall, 2)
            print(f"   probe: {res['probe']}", flush=True)
            if not args.no_cli:
                config = work / "cm-console.yaml"
                config.write_text(f"version: 1\nstore: {path}\nsources: []\n")
                from cm_console.store import Store

                ids = Store(path).item_ids()[100:110]
                res.update(cli_mark(config, ids, args.timeout))
                print(f"   cli mark: {res['cli_mark_all_s']} (cm-console --version "
                      f"{res['cli_version_s']}s)", flush=True)
            res["disk_bytes_after"] = disk_usage(path)
            results.append(res)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    machine["loadavg_end"] = os.getloadavg()

    head = (f"{'items':>7} {'open s':>7} {'ids 1st ms':>10} {'ids ms':>7} {'counts ms':>9} "
            f"{'state med ms':>12} {'p90':>6} {'max':>6} {'compact ms':>10} {'peak MB':>8} "
            f"{'snapshot MB':>11} {'bodies MB':>9} {'cli mark s':>10}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in results:
        pr, disk = r["probe"], r["disk_bytes"]
        print(f"{r['size']:>7} {pr['open_s']:>7.2f} {pr['item_ids_first_ms']:>10.1f} "
              f"{pr['item_ids_cached_ms']:>7.1f} {pr['counts_ms']:>9.1f} "
              f"{pr['set_state_ms']['median']:>12.2f} {pr['set_state_ms']['p90']:>6.1f} "
              f"{pr['set_state_ms']['max']:>6.1f} {pr['compact_ms']:>10.0f} "
              f"{pr['maxrss_self_mb']:>8.0f} {disk.get('snapshot', 0) / 2**20:>11.1f} "
              f"{disk.get('.bodies', 0) / 2**20:>9.1f} {r.get('cli_mark_median_s', 0):>10.2f}")
    print("targets: state change < 50 ms at 20,000 items; peak memory < 300 MB at 50,000")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out_file = OUT_DIR / f"store-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_file.write_text(json.dumps({"machine": machine, "args": vars(args),
                                    "results": results}, indent=1))
    print(f"\nJSON: {out_file}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
