"""TUI at scale: first paint and key-to-repaint latency with 10k and 50k items.

Builds a store of N realistic items (bodies included), opens the real app headless
(Textual's ``run_test``, which renders every frame like a terminal would), and measures:

- first paint: from ``run_test`` start until the inbox has rendered its list;
- cursor move (``j``): median wall time of a keypress until the screen is idle again;
- done (``d``): an action that writes the store and recomputes the list and counts;
- search (``/`` + typing): narrowing 50k items by text.

Each size is built in one child process and measured in another, so the peak memory is the
app's alone (a store built in the measuring process, or the previous size's app, left
garbage whose collection timing moved the peak by up to 100 MB).

Run: ``.venv/bin/python bench/tui_bench.py --sizes 10000,50000``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cm_console.app import make_app
from cm_console.config import parse_config
from cm_console.models import Item
from cm_console.store import NewItem, Store

WORDS = ("sync offline billing refund crash login export import pricing plugin webhook "
         "dark mode invoice support team thanks broken slow fast love hate note app share "
         "privacy security data account password team feature request bug").split()


def build_store(path: Path, n: int) -> Store:
    store = Store(path)
    rng = random.Random(7)
    now = time.time()
    batch: list[NewItem] = []
    for i in range(n):
        src = ("blog", "forum", "mastodon", "reddit", "hn")[i % 5]
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize()
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 200)))
        item = Item(id=f"{src}:{i:08x}", source=src, source_type="rss", guid=str(i),
                    url=f"https://example.com/{src}/{i}", title=title,
                    author=f"user{rng.randint(1, 5000)}", published=now - i * 37,
                    fetched=now, summary=body[:280])
        batch.append(NewItem(item, body, f"<p>{body}</p>"))
        if len(batch) == 5000:
            store.add_items(batch)
            batch = []
    if batch:
        store.add_items(batch)
    return store


CONFIG = """
store: {store}
sources:
  - {{id: blog, type: rss, url: "http://127.0.0.1:9/blog"}}
  - {{id: forum, type: rss, url: "http://127.0.0.1:9/forum"}}
  - {{id: mastodon, type: rss, url: "http://127.0.0.1:9/m"}}
  - {{id: reddit, type: rss, url: "http://127.0.0.1:9/r"}}
  - {{id: hn, type: rss, url: "http://127.0.0.1:9/hn"}}
team:
  - {{id: bench, name: Bench, role: agent}}
"""


async def measure(n: int, folder: Path) -> dict[str, float]:
    path = folder / f"store-{n}.db.json"
    if not path.exists():
        build_store(path, n)
    config = parse_config(CONFIG.format(store=path), "bench.yaml", folder)
    started = time.perf_counter()
    store = Store(path)
    opened = time.perf_counter() - started
    app = make_app(config, store, "bench", poll_on_start=False)
    t0 = time.perf_counter()
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        first_paint = time.perf_counter() - t0
        items = app.screen.query_one("ItemList")
        assert len(items.ids) >= n - 100, (len(items.ids), n)  # reused stores lose a few

        cpu: dict[str, list[float]] = {}

        async def timed(*keys: str) -> float:
            t, c = time.perf_counter(), time.process_time()
            await pilot.press(*keys)
            await pilot.pause()
            cpu.setdefault(keys[0], []).append(time.process_time() - c)
            return time.perf_counter() - t

        baseline = [await timed("x") for _ in range(20)]  # unbound: Pilot's own overhead
        moves = [await timed("j") for _ in range(40)]
        dones = [await timed("d") for _ in range(10)]
        search = await timed("slash", *"refund crash")
        await asyncio.sleep(0.3)  # the search debounce
        await pilot.pause()
        narrowed = len(items.ids)
    return {"items": n, "store_open_s": opened, "first_paint_s": first_paint,
            "pilot_ms_median": statistics.median(baseline) * 1000,
            "pilot_cpu_ms": statistics.median(cpu["x"]) * 1000,
            "move_cpu_ms": statistics.median(cpu["j"]) * 1000,
            "done_cpu_ms": statistics.median(cpu["d"]) * 1000,
            "move_ms_median": statistics.median(moves) * 1000,
            "done_ms_median": statistics.median(dones) * 1000,
            "search_typing_s": search, "search_hits": narrowed,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--dir", default="", help="reuse stores from this folder")
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)  # child: build N
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # child: measure N
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="cm-tui-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    if args.build:
        path = folder / f"store-{args.build}.db.json"
        if not path.exists():
            build_store(path, args.build)
        return
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure, folder))))
        return
    print("key times: ms per keypress until idle, minus Pilot's overhead (an unbound key);\n"
          "wall = what the user waits, cpu = work done by the process")
    print(f"{'items':>7} {'open s':>7} {'paint s':>8} {'pilot ms':>9} {'j wall':>7} "
          f"{'j cpu':>6} {'d wall':>7} {'d cpu':>6} {'search s':>9} {'peak MB':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        child = [sys.executable, __file__, "--dir", str(folder)]
        subprocess.run([*child, "--build", str(n)], check=True)
        out = subprocess.run([*child, "--measure", str(n)], check=True, capture_output=True,
                             text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        base = r["pilot_ms_median"]
        cbase = r["pilot_cpu_ms"]
        print(f"{r['items']:>7} {r['store_open_s']:>7.2f} {r['first_paint_s']:>8.2f} "
              f"{base:>9.1f} {r['move_ms_median'] - base:>7.1f} "
              f"{r['move_cpu_ms'] - cbase:>6.1f} {r['done_ms_median'] - base:>7.1f} "
              f"{r['done_cpu_ms'] - cbase:>6.1f} {r['search_typing_s']:>9.2f} "
              f"{r['peak_rss_mb']:>8.0f}")


if __name__ == "__main__":
    main()
