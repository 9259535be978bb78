"""Poll benchmark: ``cm-console poll --once`` cold and warm against newsboat, same feeds.

What it measures, for each size N (default 200 and 1000):

1. It generates N realistic feeds (mostly RSS 2.0, one in five Atom 1.0; 50 entries of
   ~2 KB of real-looking HTML each, so ~100 KB a feed; authors, dates, guids, categories) and
   serves them from a *separate process* through :class:`cm_console.feedserver.FeedServer`
   (ETag, Last-Modified, 304, gzip), so the server's GIL never competes with the client.
2. It writes a ``cm-console.yaml`` with one ``type: rss`` source per feed and times
   ``.venv/bin/cm-console --config X poll --once --json`` as a subprocess (stdout piped):
   *cold* (empty store: every feed is downloaded, parsed and stored) and *warm* (a second
   run on that store: every feed answers 304).
3. Where ``newsboat`` is installed it times ``newsboat -x reload`` on the same URLs in the
   same run (its own urls file, cache file, config file, HOME and XDG dirs; a fresh cache
   for every cold run; its default configuration otherwise), and prints cm-console/newsboat.
   newsboat 2.21 only starts sending If-None-Match/If-Modified-Since on its *third* reload
   (the first stores no validators, since the feed is not in its cache yet), so it runs three
   times: cold, "second" (a full re-download, nothing new) and warm (all 304, which the feed
   server's request counters confirm for both programs).

Each timing is the wall clock from spawn to exit, the median of ``--runs`` runs (cm-console
and newsboat alternate who goes first). Peak memory is the child's ``ru_maxrss`` (through
``/usr/bin/time``), plus a sampled peak of the RSS summed over the child's whole process tree
(cm-console's forkserver, resource tracker and parse workers, which ``ru_maxrss`` does not
count; the sum counts shared pages once per process, so it overstates a little). The 1-minute
load average is recorded with every run: the machine may be shared.

``--breakdown`` adds a split of a cold poll's work, measured in one separate process:
fetching every feed alone (cm-console's own ``fetch`` at the configured concurrency), the
CPU time of ``parse_job`` per feed (what the parse workers do), and one ``Store.add_items``
of all the items.

Run it from the repository root (N=200 and 1000, three runs each, JSON in bench/out/)::

    .venv/bin/python bench/poll_bench.py                      # --sizes 200,1000 --runs 3
    .venv/bin/python bench/poll_bench.py --sizes 200 --runs 1 --breakdown
    .venv/bin/python bench/poll_bench.py --no-newsboat --keep /tmp/pb   # keep the files

Everything is bounded: each child has a timeout (``--timeout``), and the feed server
process exits by itself when the benchmark ends, dies, or after ``--server-lifetime`` s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from _common import git_state

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
OUT_DIR = ROOT / "bench" / "out"
NEWSBOAT = shutil.which("newsboat") or "/usr/bin/newsboat"
ENTRIES = 50
PAGE = os.sysconf("SC_PAGE_SIZE")

# Targets from issue 2 (cm-console time / newsboat time).
TARGETS = {"cold": {200: 0.5, 1000: 0.5}, "warm": {200: 0.25, 1000: 0.05}}

# ----------------------------------------------------------------------------- feed text

_WORD_TEXT = (
    "the of and to in is that for it on with as was at by this be from are have an or "
    "community update release forum thread reply moderator support ticket customer account "
    "login password reset outage latency server dashboard mobile app android ios desktop "
    "version feature request bug report crash screen button settings notification email "
    "privacy policy billing invoice refund subscription plan team roadmap feedback survey "
    "event webinar meetup conference keynote announcement changelog documentation guide "
    "tutorial example question answer solution workaround issue problem error message "
    "really quite very just still already also maybe perhaps definitely honestly thanks "
    "please sorry great terrible slow fast broken fixed new old better worse today yesterday "
    "week month customers users players members developers partners volunteers everyone"
)
_WORDS = tuple(_WORD_TEXT.split())
_NAMES = (
    "Alice Moreau", "Bo Lindqvist", "Chen Wei", "Dara O'Neill", "Emeka Obi", "Fatima Zahra",
    "Gustavo Lima", "Hana Sato", "Ivan Petrov", "Jana Novak", "Kwame Mensah", "Lea Schmidt",
    "Mateo Garcia", "Nora Haddad", "Olu Adeyemi", "Priya Raman", "Quinn Taylor", "Rosa Costa",
    "Sven Berg", "Tomás Ruiz", "Uma Patel", "Viktor Hahn", "Wen Li", "Yara Silva", "Zoë Martin",
)
_TAGS = ("announcements", "support", "bugs", "feature-requests", "general", "billing",
         "mobile", "api", "events", "off-topic")


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 22))]
    return words[0].capitalize() + " " + " ".join(words[1:]) + rng.choice(".....?!")


def _paragraph(rng: random.Random, host: str) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(3, 6)):
        s = _sentence(rng)
        roll = rng.random()
        if roll < 0.25:
            w = rng.choice(_WORDS)
            s = s.replace(f" {w} ", f' <a href="https://{host}/t/{w}-{rng.randint(1, 99999)}">'
                             f"{w}</a> ", 1)
        elif roll < 0.35:
            w = rng.choice(_WORDS)
            s = s.replace(f" {w} ", f" <em>{w}</em> ", 1)
        elif roll < 0.42:
            s += f" See <code>v{rng.randint(1, 9)}.{rng.randint(0, 20)}</code>."
        parts.append(s)
    return "<p>" + " ".join(parts) + "</p>"


def entry_html(rng: random.Random, host: str, budget: int) -> str:
    """Blog/forum-post HTML of about ``budget`` characters once XML-escaped."""
    blocks: list[str] = []
    size = 0
    while size < budget:
        roll = rng.random()
        if roll < 0.08 and blocks:
            block = "<blockquote>" + _paragraph(rng, host) + "</blockquote>"
        elif roll < 0.14:
            block = "<ul>" + "".join(f"<li>{_sentence(rng)}</li>"
                                      for _ in range(rng.randint(2, 4))) + "</ul>"
        elif roll < 0.17:
            block = (f'<p><img src="https://{host}/img/{rng.randint(1, 9999)}.png" '
                     f'alt="{_sentence(rng)[:40]}"></p>')
        else:
            block = _paragraph(rng, host)
        blocks.append(block)
        size += len(html.escape(block, quote=False))
    return "\n".join(blocks)


def make_feed(index: int, seed: int, feed_bytes: int) -> tuple[bytes, str]:
    """One feed's bytes and content type. Every fifth feed is Atom, the rest RSS 2.0."""
    rng = random.Random(seed * 1_000_003 + index)
    host = f"community{index}.example.org"
    budget = max(200, feed_bytes // ENTRIES - 700)
    now = 1_767_000_000 - rng.randint(0, 86400)
    entries = []
    for j in range(ENTRIES):
        when = now - j * rng.randint(600, 7200)
        entries.append({
            "n": 10_000 + index * 100 + j,
            "title": _sentence(rng)[:rng.randint(30, 90)].rsplit(" ", 1)[0],
            "author": rng.choice(_NAMES),
            "when": when,
            "tags": rng.sample(_TAGS, rng.randint(1, 3)),
            "html": entry_html(rng, host, budget),
        })
    esc = html.escape
    if index % 5 == 4:
        out = ['<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">',
               f"<title>Community {index} forum</title>",
               f'<link rel="alternate" href="https://{host}/"/>',
               f'<link rel="self" href="https://{host}/latest.atom"/>',
               f"<id>tag:{host},2025:feed</id>",
               f"<updated>{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}</updated>"]
        for e in entries:
            iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["when"]))
            out.append(
                f"<entry><id>tag:{host},2025:post-{e['n']}</id>"
                f'<title type="text">{esc(e["title"])}</title>'
                f'<link rel="alternate" type="text/html" href="https://{host}/t/{e["n"]}"/>'
                f"<author><name>{esc(e['author'])}</name></author>"
                f"<published>{iso}</published><updated>{iso}</updated>"
                + "".join(f'<category term="{t}"/>' for t in e["tags"])
                + f'<content type="html">{esc(e["html"], quote=False)}</content></entry>')
        out.append("</feed>")
        return "\n".join(out).encode(), "application/atom+xml; charset=utf-8"
    full = index % 2 == 0  # half the RSS feeds: short description + full content:encoded
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
           'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
           'xmlns:atom="http://www.w3.org/2005/Atom">',
           f"<channel><title>Community {index} blog</title><link>https://{host}/</link>",
           f"<description>Posts and comments from community {index}</description>",
           f'<atom:link href="https://{host}/feed.xml" rel="self" '
           'type="application/rss+xml"/>',
           f"<lastBuildDate>{formatdate(now, usegmt=True)}</lastBuildDate>"]
    for e in entries:
        link = f"https://{host}/{time.strftime('%Y/%m', time.gmtime(e['when']))}/post-{e['n']}"
        body = e["html"]
        if full:
            summary = re.sub(r"<[^>]+>", "", body)[:300]
            desc = (f"<description>{esc(summary, quote=False)}</description>"
                    f"<content:encoded><![CDATA[{body}]]></content:encoded>")
        else:
            desc = f"<description>{esc(body, quote=False)}</description>"
        author = (f"<dc:creator>{esc(e['author'])}</dc:creator>" if e["n"] % 2 else
                  f"<author>{e['author'].split()[0].lower()}@{host} ({esc(e['author'])})"
                  "</author>")
        out.append(
            f"<item><title>{esc(e['title'])}</title><link>{link}</link>"
            f'<guid isPermaLink="false">{host}-post-{e["n"]}</guid>'
            f"<pubDate>{formatdate(e['when'], usegmt=True)}</pubDate>{author}"
            + "".join(f"<category>{t}</category>" for t in e["tags"])
            + f"{desc}</item>")
    out.append("</channel></rss>")
    return "\n".join(out).encode(), "application/rss+xml; charset=utf-8"


# ----------------------------------------------------------------------------- feed server


def _serve(conn: multiprocessing.connection.Connection, count: int, seed: int,
           feed_bytes: int, lifetime: float) -> None:
    """Server process: build the feeds, serve them, exit on "stop", parent death or deadline."""
    from cm_console.feedserver import FeedServer

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    parent = os.getppid()
    server = FeedServer()
    sizes: list[int] = []
    kinds = {"rss": 0, "atom": 0}
    for i in range(count):
        body, ctype = make_feed(i, seed, feed_bytes)
        server.add(f"/feed/{i}.xml", body, ctype)
        sizes.append(len(body))
        kinds["atom" if "atom" in ctype else "rss"] += 1
    gz = sum(len(d.gzipped) for d in server.documents.values())
    # Count what clients ask, so the parent can check that "warm" really was all 304.
    stats = {"requests": 0, "conditional": 0, "not_modified": 0}
    lock = threading.Lock()
    serve = server._serve

    def counting(req: Any) -> None:
        etag = req.headers.get("If-None-Match")
        since = req.headers.get("If-Modified-Since")
        doc = server.documents.get(req.path)
        hit = doc is not None and (etag == doc.etag or (not etag and since == doc.last_modified))
        with lock:
            stats["requests"] += 1
            stats["conditional"] += bool(etag or since)
            stats["not_modified"] += hit
        serve(req)

    server._serve = counting  # type: ignore[method-assign]
    with server:
        conn.send({"port": server.port, "bytes": sum(sizes), "gzip_bytes": gz,
                   "min": min(sizes), "max": max(sizes), "kinds": kinds})
        deadline = time.monotonic() + lifetime
        while time.monotonic() < deadline and os.getppid() == parent:
            try:
                if not conn.poll(1.0):
                    continue
                if conn.recv() != "stats":
                    break
                with lock:
                    conn.send(dict(stats))
                    stats.update(requests=0, conditional=0, not_modified=0)
            except (EOFError, OSError):
                break


class ServerProcess:
    """The feed server in its own process (context manager)."""

    def __init__(self, count: int, seed: int, feed_bytes: int, lifetime: float):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, count, seed, feed_bytes, lifetime),
                                 daemon=True, name="feedserver")
        self.info: dict[str, Any] = {}

    def __enter__(self) -> ServerProcess:
        self._proc.start()
        if not self._conn.poll(600):
            self._proc.kill()
            raise RuntimeError("feed server did not start within 600 s")
        self.info = self._conn.recv()
        return self

    def stats(self) -> dict[str, int]:
        """Requests since the last call: total, conditional, answered 304."""
        self._conn.send("stats")
        if not self._conn.poll(30):
            raise RuntimeError("feed server does not answer")
        return self._conn.recv()

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.info['port']}/feed/{i}.xml"

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send("stop")
        except OSError:
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


# ----------------------------------------------------------------------------- running


@dataclass
class Run:
    wall: float
    rc: int
    maxrss_mb: float  # the child's own peak (ru_maxrss)
    tree_peak_mb: float  # sampled peak of RSS summed over the child and its descendants
    user: float
    sys: float
    stdout: str = field(repr=False, default="")
    stderr: str = field(repr=False, default="")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _tree_rss(root: int) -> int:
    total = 0
    for pid in _descendants(root):
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


TIME = "/usr/bin/time"


def run_timed(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float,
              cwd: str | None = None, sample: float = 0.2) -> Run:
    """Run ``cmd`` with piped output; wall time, exit code and peak memory of the child.

    The peak RSS comes from ``/usr/bin/time`` when it exists: a child forked from this
    (bigger) process inherits our resident size in its own ``ru_maxrss`` until it execs,
    which would inflate small children like newsboat; ``time`` is small when it forks.
    """
    with tempfile.NamedTemporaryFile(prefix="pb-time-", suffix=".txt", delete=False) as fh:
        time_file = fh.name
    use_time = os.access(TIME, os.X_OK)
    argv = [TIME, "-f", "%M %U %S", "-o", time_file, *cmd] if use_time else cmd
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=cwd, start_new_session=True)
    out: dict[str, bytes] = {}

    def drain(name: str, stream: Any) -> None:
        out[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    peak = 0
    next_sample = start
    deadline = start + timeout
    timed_out = False
    try:
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.perf_counter()
            if now > deadline:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(proc.pid, 0)
                break
            if now >= next_sample:
                peak = max(peak, _tree_rss(proc.pid))
                next_sample = now + sample
            time.sleep(0.002)
    except BaseException:  # interrupted: leave nothing running behind us
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(time_file)
        raise
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the session (a pool worker...)
    for t in readers:
        t.join(10)
    maxrss, user, sys_s = rusage.ru_maxrss / 1024, rusage.ru_utime, rusage.ru_stime
    try:
        fields = Path(time_file).read_text().split("\n")[-2].split()
        maxrss, user, sys_s = int(fields[0]) / 1024, float(fields[1]), float(fields[2])
    except (OSError, IndexError, ValueError):
        pass  # killed before time wrote it, or no /usr/bin/time: keep wait4's figures
    finally:
        with contextlib.suppress(OSError):
            os.unlink(time_file)
    return Run(wall=wall, rc=-9 if timed_out else proc.returncode, maxrss_mb=maxrss,
               tree_peak_mb=max(peak / 2**20, maxrss), user=user, sys=sys_s,
               stdout=out.get("out", b"").decode("utf-8", "replace"),
               stderr=out.get("err", b"").decode("utf-8", "replace"))


def write_config(path: Path, store: Path, urls: list[str], concurrency: int,
                 workers: int) -> None:
    lines = ["# generated by bench/poll_bench.py", "version: 1", f"store: {store}", "poll:",
             "  interval: 1h", "  timeout: 60s", f"  concurrency: {concurrency}",
             f"  parse_workers: {workers}", "sources:"]
    for i, url in enumerate(urls):
        lines += [f"  - id: feed{i}", "    type: rss", f"    url: {url}"]
    path.write_text("\n".join(lines) + "\n")


def cm_poll(config: Path, timeout: float) -> tuple[Run, dict[str, int]]:
    run = run_timed([str(VENV_BIN / "cm-console"), "--config", str(config), "poll", "--once",
                     "--json"], timeout=timeout, cwd=str(config.parent))
    statuses: dict[str, int] = {}
    new = 0
    for line in run.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        new += int(row.get("new", 0))
    statuses["new_items"] = new
    return run, statuses


def newsboat_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "http_", "HTTP"))}
    for sub in ("config", "data", "cache", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"),
               XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"),
               XDG_STATE_HOME=str(home / "state"), TERM=env.get("TERM", "dumb"),
               no_proxy="127.0.0.1,localhost")
    return env


def nb_reload(work: Path, cache: Path, timeout: float) -> Run:
    return run_timed([NEWSBOAT, "-x", "reload", "-u", str(work / "urls"), "-c", str(cache),
                      "-C", str(work / "config")], env=newsboat_env(work / "home"),
                     timeout=timeout, cwd=str(work))


def nb_unread(work: Path, cache: Path) -> str:
    run = run_timed([NEWSBOAT, "-x", "print-unread", "-u", str(work / "urls"), "-c",
                     str(cache), "-C", str(work / "config")], env=newsboat_env(work / "home"),
                    timeout=300)
    return run.stdout.strip()


def _clean_store(store: Path) -> None:
    for p in store.parent.glob(store.name + "*"):
        p.unlink()


def _median(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


# ----------------------------------------------------------------------------- breakdown


def breakdown(urls: list[str], concurrency: int) -> dict[str, Any]:
    """In-process split of a cold poll: fetch only, parse_job CPU per feed, one add_items."""
    from cm_console.fetch import fetch, make_feed_session
    from cm_console.models import Item
    from cm_console.sources import parse_job
    from cm_console.sources.rss import _fast_parse, parse_feed
    from cm_console.store import NewItem, Store

    async def fetch_all() -> list[tuple[str, bytes]]:
        sem = asyncio.Semaphore(concurrency)
        async with make_feed_session(concurrency=concurrency, timeout=60) as client:
            async def one(url: str) -> tuple[str, bytes]:
                async with sem:
                    return url, (await fetch(client, url)).body
            return await asyncio.gather(*(one(u) for u in urls))

    t0 = time.perf_counter()
    bodies = asyncio.run(fetch_all())
    fetch_s = time.perf_counter() - t0

    per_feed: list[float] = []
    rows_all: list[Any] = []
    parsers: dict[str, int] = {}
    now = time.time()
    for i, (url, body) in enumerate(bodies):
        c0 = time.process_time()
        rows, parser = parse_job(f"feed{i}", "rss", body, url, now)
        per_feed.append(time.process_time() - c0)
        parsers[parser] = parsers.get(parser, 0) + 1
        rows_all.extend(rows)
    # Where parse time goes, on a sample: lxml tree walk vs normalization (html_to_text ...)
    sample = bodies[: min(len(bodies), 40)]
    c0 = time.process_time()
    for _, body in sample:
        _fast_parse(body)
    fast_only = (time.process_time() - c0) / len(sample)
    c0 = time.process_time()
    for url, body in sample[:10]:
        parse_feed(body, url, reference=True)
    feedparser_per = (time.process_time() - c0) / min(len(sample), 10)

    with tempfile.TemporaryDirectory(prefix="pb-store-") as tmp:
        store = Store(Path(tmp) / "s.db.json")
        entries = [NewItem(Item(**doc), text, h) for doc, text, h in rows_all]
        t0 = time.perf_counter()
        store.add_items(entries)
        add_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        Store(Path(tmp) / "s.db.json")
        reopen_s = time.perf_counter() - t0
    return {
        "feeds": len(bodies),
        "fetch_only_s": round(fetch_s, 3),
        "parse_job_cpu_median_ms": round(statistics.median(per_feed) * 1000, 2),
        "parse_job_cpu_total_s": round(sum(per_feed), 3),
        "lxml_tree_extract_only_ms": round(fast_only * 1000, 2),
        "feedparser_reference_ms": round(feedparser_per * 1000, 2),
        "parsers": parsers,
        "items": len(rows_all),
        "add_items_one_batch_s": round(add_s, 3),
        "store_reopen_s": round(reopen_s, 3),
    }


# ----------------------------------------------------------------------------- main


def bench_size(n: int, args: argparse.Namespace, base: Path,
               have_newsboat: bool) -> dict[str, Any]:
    work = base / f"n{n}"
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"n": n}
    print(f"\n== N={n}: generating and serving {n} feeds ...", flush=True)
    t0 = time.perf_counter()
    with ServerProcess(n, args.seed, args.feed_kb * 1024, args.server_lifetime) as srv:
        info = srv.info
        result["feeds"] = info
        print(f"   {info['kinds']['rss']} RSS + {info['kinds']['atom']} Atom, "
              f"{info['bytes'] / n / 1024:.0f} KB/feed avg ({info['min'] // 1024}-"
              f"{info['max'] // 1024} KB), {info['gzip_bytes'] / n / 1024:.0f} KB gzipped; "
              f"ready in {time.perf_counter() - t0:.1f}s", flush=True)
        urls = [srv.url(i) for i in range(n)]
        config = work / "cm-console.yaml"
        store = work / "bench.db.json"
        write_config(config, store, urls, args.concurrency, args.workers)
        (work / "urls").write_text("\n".join(urls) + "\n")
        (work / "config").write_text(args.newsboat_config.replace("\\n", "\n") + "\n")

        runs: dict[str, list[Run]] = {"cm_cold": [], "cm_warm": [], "nb_cold": [],
                                      "nb_second": [], "nb_warm": []}
        checks: dict[str, list[Any]] = {}
        srv.stats()  # reset the counters

        def record(key: str, r: int, run: Run, check: Any) -> None:
            served = srv.stats()
            load = round(os.getloadavg()[0], 2)  # the machine is shared: note how busy it was
            runs[key].append(run)
            checks.setdefault(key, []).append({"client": check, "server": served,
                                               "loadavg1": load})
            print(f"   run {r + 1}: {key:<9} {run.wall:7.2f}s load={load:.1f} rc={run.rc} "
                  f"rss={run.maxrss_mb:.0f}MB tree={run.tree_peak_mb:.0f}MB "
                  f"cpu={run.user + run.sys:.1f}s client={check} server={served}", flush=True)
            if run.rc not in (0, 1):
                print(run.stderr[-2000:], file=sys.stderr)

        def cm_runs(r: int) -> None:
            # cold on an empty store, then warm on the store it left (every feed: 304)
            _clean_store(store)
            run, st = cm_poll(config, args.timeout)
            record("cm_cold", r, run, st)
            run, st = cm_poll(config, args.timeout)
            record("cm_warm", r, run, st)

        def nb_runs(r: int) -> None:
            # newsboat 2.21 stores a feed's ETag/Last-Modified only when the feed is already
            # in its cache, so its first reload after a fresh cache never sends a conditional
            # request: the second reload downloads everything again (nothing new), and only
            # the third is all 304. "warm" is that third run; the second is kept as nb_second.
            cache = work / "nb-cache.db"
            for f in work.glob("nb-cache.db*"):
                f.unlink()
            shutil.rmtree(work / "home", ignore_errors=True)
            run = nb_reload(work, cache, args.timeout)
            record("nb_cold", r, run, nb_unread(work, cache))
            run = nb_reload(work, cache, args.timeout)
            record("nb_second", r, run, "")
            run = nb_reload(work, cache, args.timeout)
            record("nb_warm", r, run, "")

        for r in range(args.runs):
            order = [cm_runs, nb_runs] if r % 2 == 0 else [nb_runs, cm_runs]
            for fn in order:
                if fn is nb_runs and not have_newsboat:
                    continue
                fn(r)
        if args.breakdown:
            print("   breakdown (separate process) ...", flush=True)
            # in a child process, so this one stays small (see run_timed)
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                result["breakdown"] = pool.apply_async(
                    breakdown, (urls, args.concurrency)).get(args.timeout)
            print(f"   {result['breakdown']}", flush=True)
    files = sorted(store.parent.glob(store.name + "*"))
    result["store_bytes"] = {p.name: p.stat().st_size for p in files}
    if (work / "nb-cache.db").exists():
        result["newsboat_cache_bytes"] = (work / "nb-cache.db").stat().st_size
    result["checks"] = checks
    result["runs"] = {k: [asdict(r) | {"stdout": "", "stderr": r.stderr[-500:]} for r in v]
                      for k, v in runs.items()}
    summary: dict[str, Any] = {}
    for key, rs in runs.items():
        if rs:
            summary[key] = {"wall_s": round(_median(rs, "wall"), 3),
                            "maxrss_mb": round(_median(rs, "maxrss_mb"), 1),
                            "tree_peak_mb": round(_median(rs, "tree_peak_mb"), 1),
                            "cpu_s": round(statistics.median(r.user + r.sys for r in rs), 2),
                            "all_wall_s": [round(r.wall, 3) for r in rs]}
    for phase in ("cold", "warm"):
        cm, nb = summary.get(f"cm_{phase}"), summary.get(f"nb_{phase}")
        if cm and nb:
            summary[f"ratio_{phase}"] = round(cm["wall_s"] / nb["wall_s"], 3)
    if summary.get("cm_warm") and summary.get("nb_second"):
        # against newsboat's second reload (a full re-download: what its users wait for the
        # second time, and probably what the orientation figures measured)
        summary["ratio_warm_vs_nb_second"] = round(
            summary["cm_warm"]["wall_s"] / summary["nb_second"]["wall_s"], 3)
    result["summary"] = summary
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    head = (f"{'N':>5} {'phase':<5} {'cm-console s':>12} {'newsboat s':>10} {'ratio':>6} "
            f"{'target':>7} {'ok':>3} {'cm RSS MB':>9} {'cm tree MB':>10} {'nb RSS MB':>9}")
    print("\n" + head + "\n" + "-" * len(head))
    for res in results:
        s, n = res["summary"], res["n"]
        for phase in ("cold", "warm"):
            cm, nb = s.get(f"cm_{phase}", {}), s.get(f"nb_{phase}")
            ratio = s.get(f"ratio_{phase}")
            target = TARGETS[phase].get(n)
            ok = "-" if ratio is None or target is None else ("yes" if ratio <= target else "NO")
            print(f"{n:>5} {phase:<5} {cm.get('wall_s', float('nan')):>12.2f} "
                  f"{nb['wall_s'] if nb else float('nan'):>10.2f} "
                  f"{ratio if ratio is not None else float('nan'):>6.2f} "
                  f"{target if target is not None else float('nan'):>7.2f} {ok:>3} "
                  f"{cm.get('maxrss_mb', float('nan')):>9.0f} "
                  f"{cm.get('tree_peak_mb', float('nan')):>10.0f} "
                  f"{nb['maxrss_mb'] if nb else float('nan'):>9.0f}")
        if s.get("nb_second"):
            print(f"{n:>5} (newsboat's second reload, a full re-download: "
                  f"{s['nb_second']['wall_s']:.2f}s; cm-console warm / that = "
                  f"{s['ratio_warm_vs_nb_second']:.3f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="200,1000", help="comma-separated feed counts")
    p.add_argument("--runs", type=int, default=3, help="runs per size (median reported)")
    p.add_argument("--feed-kb", type=int, default=100, help="approximate size of a feed")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=32, help="cm-console poll.concurrency")
    p.add_argument("--workers", type=int, default=2, help="cm-console poll.parse_workers")
    p.add_argument("--newsboat-config", default="",
                   help=r'newsboat config text (default: empty = defaults; e.g. '
                        r'"reload-threads 4\n")')
    p.add_argument("--no-newsboat", action="store_true")
    p.add_argument("--breakdown", action="store_true",
                   help="also measure fetch-only / parse_job / add_items in-process")
    p.add_argument("--timeout", type=float, default=900, help="per child process, seconds")
    p.add_argument("--server-lifetime", type=float, default=4 * 3600,
                   help="the feed server exits by itself after this many seconds")
    p.add_argument("--keep", metavar="DIR", help="work here and keep the files")
    args = p.parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # run the cleanups: child killed, temp dir removed

    signal.signal(signal.SIGTERM, on_term)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    have_newsboat = not args.no_newsboat and os.access(NEWSBOAT, os.X_OK)
    if not (VENV_BIN / "cm-console").exists():
        print(f"no {VENV_BIN / 'cm-console'}: run `python3 dev.py test` first", file=sys.stderr)
        return 2
    machine = {"nproc": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform(), "loadavg_start": os.getloadavg()}
    machine["git"] = git_state()
    if have_newsboat:
        machine["newsboat"] = subprocess.run([NEWSBOAT, "--version"], capture_output=True,
                                             text=True, timeout=30).stdout.split("\n")[0]
    print(f"machine: {machine}")
    # An installed package has its bytecode (pip compiles it); an editable checkout on a
    # machine with PYTHONDONTWRITEBYTECODE=1 (this one) would recompile every module at every
    # start, ~30 ms that no user pays. Compile once, as an install would.
    subprocess.run([str(VENV_BIN / "python"), "-m", "compileall", "-q", str(ROOT / "cm_console")],
                   check=True, timeout=300)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="poll-bench-"))
    results = []
    try:
        for n in sizes:
            results.append(bench_size(n, args, base, have_newsboat))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    machine["loadavg_end"] = os.getloadavg()
    print_table(results)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"poll-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": machine, "args": vars(args), "results": results},
                              indent=1))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
