"""Report speed: ``cm-console report`` over a 100,000-item store with a realistic history.

Builds the store once (items plus replies, escalations and an undo, spread over 30 days),
then times build_report + every output format, median of 3 runs. Times are CPU seconds
(process time): the machine is shared, and wall time measures the neighbours. Target: under 5 s.

Run: ``.venv/bin/python bench/report_bench.py --items 100000``
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from tui_bench import CONFIG, build_store  # same realistic items as the TUI benchmark

from cm_console.config import parse_config
from cm_console.reports import build_report, render
from cm_console.store import Store


def add_history(store: Store, n_actions: int) -> None:
    rng = random.Random(3)
    ids = store.ordered_ids()
    with store.transaction() as tx:
        for i in range(n_actions):
            item_id = rng.choice(ids)
            item = store.get_item(item_id)
            assert item is not None
            action = rng.choice(("reply", "reply", "escalate", "route_private", "state"))
            data = {"before": {"state": "new"}, "after": {"state": "replied"}}
            if action == "escalate":
                data["target"] = rng.choice(("pr", "legal", "product"))
            tx.event(f"agent{i % 7}", action, item_id, data,
                     ts=item.published + rng.uniform(60, 86400))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dir", default="")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="cm-report-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"report-{args.items}.db.json"
    if not path.exists():
        t = time.process_time()
        store = build_store(path, args.items)
        add_history(store, args.items // 3)
        print(f"built {args.items} items + {args.items // 3} actions in "
              f"{time.process_time() - t:.1f}s")
    config = parse_config(CONFIG.format(store=path), "bench.yaml", folder)
    times: dict[str, list[float]] = {}
    for _ in range(3):
        t = time.process_time()
        store = Store(path)
        times.setdefault("open", []).append(time.process_time() - t)
        t = time.process_time()
        report = build_report(store, config, 0, time.time() + 1)
        times.setdefault("build", []).append(time.process_time() - t)
        for fmt in ("json", "md", "html", "csv"):
            t = time.process_time()
            render(report, fmt)
            times.setdefault(fmt, []).append(time.process_time() - t)
    total = sum(statistics.median(v) for v in times.values())
    print("  ".join(f"{k} {statistics.median(v):.2f}s" for k, v in times.items()))
    print(f"open + report + all four formats: {total:.2f}s (target < 5 s) for "
          f"{report.data['items']} items")


if __name__ == "__main__":
    main()
