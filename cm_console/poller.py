"""Poll sources into the store: scheduling, conditional GET, backoff, batched writes. No UI.

One cycle fetches every chosen source concurrently (one shared HTTP client), parses bodies
in worker processes (feed parsing is CPU-bound Python; in threads it would fight the TUI for
the GIL), and commits new items in batches: one journal append per flush, never one store
write per item. A failing source records its error and backs off; the others go on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Config, SourceConfig
from .fetch import FetchError, fetch, make_client, make_feed_session, proxy_configured
from .ingest import ingest_job
from .models import Event, Item, SourceState
from .rules import apply_rules, match_text
from .sanitize import one_line
from .sources import API_TYPES, POLLABLE, FeedError, feed_url
from .sources.rss import MAX_ENTRIES
from .store import PENDING_LIMIT, NewItem, Store

__all__ = ["CycleReport", "Poller", "SourceResult"]

FLUSH_EVERY = 1.0  # seconds between batch commits while a cycle runs
FLUSH_ITEMS = 2000  # ...or sooner, so one batch (and its bodies) never holds a whole poll


@dataclass(slots=True)
class SourceResult:
    """What happened to one source in one cycle."""

    source: str
    status: str  # "ok", "304", "unchanged", "error", "waiting", "unsupported"
    new: int = 0
    entries: int = 0
    error: str = ""
    seconds: float = 0.0
    parser: str = ""


@dataclass(slots=True)
class CycleReport:
    results: list[SourceResult] = field(default_factory=list)
    new_ids: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def errors(self) -> list[SourceResult]:
        return [r for r in self.results if r.status == "error"]


ProgressFn = Callable[[int, int, SourceResult, list[str]], None]


def _pool_context() -> multiprocessing.context.BaseContext:
    # Never plain fork: the TUI polls from a thread, and forking a threaded process can
    # deadlock the child. forkserver is cheap after the first start; spawn elsewhere.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _start_helpers() -> None:
    """Start multiprocessing's helper processes now, while stdio are real files.

    The resource tracker and the forkserver hand ``sys.stderr.fileno()`` to their child when
    they first start; inside the TUI, Textual has replaced ``sys.stderr`` and that fails
    ("bad value(s) in fds_to_keep"). Started early, they are simply reused later.
    """
    from multiprocessing import forkserver, resource_tracker

    try:
        resource_tracker.ensure_running()
        if "forkserver" in multiprocessing.get_all_start_methods():
            forkserver.ensure_running()
    except (OSError, ValueError):
        pass  # _parse falls back to a thread


class Poller:
    """Polls the configured sources into ``store``. Reusable across cycles; call close()."""

    def __init__(self, config: Config, store: Store, *, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None):
        self.config = config
        self.store = store
        self.clock = clock
        self.rng = rng or random.Random()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._pool_broken = False
        self._helpers_started = False

    def prepare(self) -> None:
        """Start the parse helpers now. The TUI calls this before Textual takes over stdio;
        the CLI lets the first feed that needs parsing start them (a warm poll never does)."""
        if self.config.poll.parse_workers > 0 and not self._helpers_started:
            _start_helpers()
            self._helpers_started = True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Poller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ scheduling

    def due(self, now: float | None = None) -> list[SourceConfig]:
        """Enabled sources whose interval (or backoff) has passed."""
        now = self.clock() if now is None else now
        states = self.store.source_states()
        out = []
        for src in self.config.sources:
            state = states.get(src.id)
            if src.enabled and (state is None or max(state.next_due,
                                                     state.retry_after_until) <= now):
                out.append(src)
        return out

    def next_wake(self) -> float:
        """When the next source becomes due (for the continuous poll loop)."""
        states = self.store.source_states()
        times = [max(states[s.id].next_due, states[s.id].retry_after_until)
                 if s.id in states else 0.0 for s in self.config.sources if s.enabled]
        return min(times, default=self.clock() + self.config.poll.interval)

    def _backoff(self, src: SourceConfig, errors: int) -> float:
        delay = min(src.interval * (2 ** max(errors - 1, 0)), self.config.poll.max_backoff)
        return max(src.interval, delay) * self.rng.uniform(0.8, 1.2)

    # ------------------------------------------------------------------ the cycle

    async def poll(self, *, only_due: bool = False, source_ids: list[str] | None = None,
                   on_progress: ProgressFn | None = None) -> CycleReport:
        """Poll once. ``only_due`` limits to sources whose interval passed (cron's ``--due``).

        A server's Retry-After is honoured even here: such a source is reported "waiting".
        """
        report = CycleReport(started=self.clock())
        self.store.refresh()
        now = self.clock()
        chosen = self.due(now) if only_due else [s for s in self.config.sources if s.enabled]
        if source_ids is not None:
            chosen = [s for s in chosen if s.id in source_ids]
        states = {s.id: self.store.source_state(s.id) for s in chosen}

        pending_items: list[NewItem] = []
        pending_states: list[SourceState] = []
        last_flush = time.monotonic()
        done = 0
        total = len(chosen)

        def flush() -> list[str]:
            nonlocal pending_items, pending_states, last_flush
            if not pending_items and not pending_states:
                return []
            events = self._apply_rules(pending_items)
            added = self.store.add_items(pending_items, pending_states, events)
            pending_items, pending_states = [], []
            last_flush = time.monotonic()
            return added

        poll_cfg = self.config.poll
        sem = asyncio.Semaphore(poll_cfg.concurrency)
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(make_feed_session(
                concurrency=poll_cfg.concurrency, timeout=poll_cfg.timeout,
                trust_env=proxy_configured()))
            # The JSON APIs keep httpx (its per-request cost does not matter at their rates);
            # it is only built when the cycle has an API source.
            client = None
            if any(s.type in API_TYPES for s in chosen):
                client = await stack.enter_async_context(make_client(
                    concurrency=poll_cfg.concurrency, max_redirects=poll_cfg.max_redirects,
                    timeout=poll_cfg.timeout))

            handed: dict[str, list[NewItem]] = {}

            async def one(src: SourceConfig) -> tuple[SourceResult, SourceState]:
                # Items are handed over here, not returned: a finished task keeps its result
                # alive until the cycle ends, and 50,000 bodies held that way cost ~220 MB.
                async with sem:
                    result, state, items = await self._poll_source(session, client, src,
                                                                   states[src.id])
                handed[src.id] = items
                return result, state

            tasks = [asyncio.ensure_future(one(s)) for s in chosen]
            try:
                for fut in asyncio.as_completed(tasks):
                    result, state = await fut
                    items = handed.pop(result.source, [])
                    report.results.append(result)
                    pending_items.extend(items)
                    pending_states.append(state)
                    done += 1
                    added: list[str] = []
                    if (time.monotonic() - last_flush >= FLUSH_EVERY or done == total
                            or len(pending_items) >= FLUSH_ITEMS):
                        added = flush()
                        report.new_ids.extend(added)
                    if on_progress is not None:
                        on_progress(done, total, result, added)
            finally:
                for task in tasks:
                    task.cancel()
                report.new_ids.extend(flush())
        if len(report.new_ids) >= PENDING_LIMIT:
            # Fold this cycle's items into the snapshot now, while they are in memory anyway:
            # otherwise every later open decodes them from the journal and, past
            # PENDING_LIMIT, parses the whole items table (a warm poll after a cold one:
            # +20 ms and +13 MB at 10k items).
            self.store.compact()
        # Per-source "new" counts reflect what was really added (another console may have
        # stored some first).
        per_source = Counter(i.split(":", 1)[0] for i in report.new_ids)
        for result in report.results:
            if result.new:
                result.new = per_source[result.source]
        report.finished = self.clock()
        return report

    def _apply_rules(self, entries: list[NewItem]) -> list[Event]:
        """Run the config's routing rules on new items before they are stored (same commit);
        each item a rule changed gets one "rules" event saying which rules and what."""
        if not self.config.rules:
            return []
        events = []
        now = self.clock()
        for entry in entries:
            item = entry.item
            result = apply_rules(self.config.rules, item, match_text(item, entry.text))
            if not result.matches:
                continue
            for key, value in result.changes.items():
                setattr(item, key, value)
            visible = {k: v for k, v in result.changes.items() if k != "extra"}
            if "escalate_to" in result.changes.get("extra", {}):
                visible["escalate_to"] = result.changes["extra"]["escalate_to"]
            events.append(Event(ts=now, actor="rules", action="rules", item=item.id,
                                data={"rules": [m.rule.id for m in result.matches],
                                      "after": visible}))
        return events

    async def _poll_source(self, session: object, client: object, src: SourceConfig,
                           state: SourceState
                           ) -> tuple[SourceResult, SourceState, list[NewItem]]:
        started = time.monotonic()
        now = self.clock()
        result = SourceResult(source=src.id, status="ok")
        items: list[NewItem] = []
        if state.retry_after_until > now:
            result.status = "waiting"
            until = time.strftime("%H:%M:%S", time.localtime(state.retry_after_until))
            result.error = f"server asked to wait until {until}"
            return result, state, items
        state.last_poll = now
        if src.type not in POLLABLE:
            result.status = "unsupported"
            result.error = f"source type {src.type} is not supported by this version yet"
            state.last_status, state.last_error = "error", result.error
            state.next_due = now + src.interval
            return result, state, items
        if src.type in API_TYPES:
            return await self._poll_api(client, src, state, result, started, now)
        poll_cfg = self.config.poll
        try:
            url = feed_url(src.type, src.url, src.options)
            fetched = await fetch(
                session, url, etag=state.etag,  # type: ignore[arg-type]
                last_modified=state.last_modified, timeout=poll_cfg.timeout,
                max_bytes=poll_cfg.max_bytes, max_redirects=poll_cfg.max_redirects,
                max_retry_after=poll_cfg.max_retry_after,
                headers={str(k): str(v) for k, v in src.options.get("headers", {}).items()}
                if isinstance(src.options.get("headers"), dict) else None,
            )
            if fetched.status == 304:
                result.status = "304"
            else:
                digest = hashlib.sha256(fetched.body).hexdigest()[:32]
                if digest == state.content_hash:
                    result.status = "unchanged"  # a server without conditional GET
                else:
                    rows, result.parser = await self._parse(src, fetched.body, fetched.url, now)
                    result.entries = len(rows)
                    if len(rows) >= MAX_ENTRIES:
                        result.error = f"only the first {MAX_ENTRIES} entries are read"
                    items = self._new_items(rows)
                    result.new = len(items)
                    state.content_hash = digest
                state.etag = fetched.etag
                state.last_modified = fetched.last_modified
            self._record_success(src, state, result, now)
        except (FetchError, FeedError) as exc:
            self._record_error(src, state, result, str(exc), now,
                               getattr(exc, "retry_after", None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a parser crash must stay this source's problem
            self._record_error(src, state, result,
                               f"internal error: {type(exc).__name__}: {one_line(exc, 160)}",
                               now, None)
        result.seconds = time.monotonic() - started
        return result, state, items

    async def _poll_api(self, client: object, src: SourceConfig, state: SourceState,
                        result: SourceResult, started: float, now: float
                        ) -> tuple[SourceResult, SourceState, list[NewItem]]:
        """An API source (Mastodon, Discourse, Bluesky, HN): its connector fetches and
        parses in-process (JSON decoding is cheap and every body is byte-capped) under one
        deadline for the whole poll; new rows and the new cursor are returned together, so a
        failed poll moves neither."""
        from .ingest import score_rows
        from .sources import connector
        from .sources.api import PollLimits

        poll_cfg = self.config.poll
        limits = PollLimits(timeout=poll_cfg.timeout, max_bytes=poll_cfg.max_bytes,
                            max_retry_after=poll_cfg.max_retry_after)
        items: list[NewItem] = []
        try:
            async with asyncio.timeout(poll_cfg.timeout * 4):
                outcome = await connector(src.type).poll(client, src, state, limits, now)
            result.parser = f"{src.type} api"
            result.entries = len(outcome.rows)
            items = self._new_items(score_rows(outcome.rows, now))
            result.new = len(items)
            result.error = outcome.note
            state.cursor = outcome.cursor
            self._record_success(src, state, result, now, outcome.rate_wait or 0.0)
        except TimeoutError:
            items = []
            self._record_error(src, state, result, f"{src.type}: no complete answer within "
                               f"{poll_cfg.timeout * 4:.0f}s", now, None)
        except (FetchError, FeedError) as exc:
            items = []
            self._record_error(src, state, result, str(exc), now,
                               getattr(exc, "retry_after", None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a connector bug must stay this source's problem
            items = []
            self._record_error(src, state, result,
                               f"internal error: {type(exc).__name__}: {one_line(exc, 160)}",
                               now, None)
        result.seconds = time.monotonic() - started
        return result, state, items

    def _new_items(self, rows: list) -> list[NewItem]:
        """Parsed rows the store does not have yet, as items ready for the next batch."""
        return [NewItem(Item(**doc), text, html) for doc, text, html in rows
                if not self.store.has_item(doc["id"])]

    def _record_success(self, src: SourceConfig, state: SourceState, result: SourceResult,
                        now: float, wait: float = 0.0) -> None:
        """A good poll: clear errors and backoff, schedule the next one (after ``wait`` when
        the server said to slow down)."""
        state.last_success = now
        state.last_status = result.status
        state.last_error = ""
        state.error_count = 0
        state.retry_after_until = now + wait if wait else 0.0
        state.next_due = max(now + src.interval, state.retry_after_until)
        state.last_new = result.new
        state.items_total += result.new

    def _record_error(self, src: SourceConfig, state: SourceState, result: SourceResult,
                      message: str, now: float, retry_after: float | None) -> None:
        result.status = "error"
        result.error = one_line(message, 300)
        state.last_status = "error"
        state.last_error = result.error
        state.error_count += 1
        state.next_due = now + self._backoff(src, state.error_count)
        if retry_after:
            state.retry_after_until = now + retry_after
            state.next_due = max(state.next_due, state.retry_after_until)

    async def _parse(self, src: SourceConfig, body: bytes, base_url: str, now: float
                     ) -> tuple[list, str]:
        loop = asyncio.get_running_loop()
        workers = self.config.poll.parse_workers
        if workers <= 0 or self._pool_broken:
            return await asyncio.to_thread(ingest_job, src.id, src.type, body, base_url, now)
        self.prepare()
        try:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    workers, mp_context=_pool_context())
            future = loop.run_in_executor(self._pool, ingest_job, src.id, src.type, body,
                                          base_url, now)
        except (OSError, ValueError):
            # No worker processes on this platform/environment: parse in a thread instead.
            self._pool_broken = True
            return await asyncio.to_thread(ingest_job, src.id, src.type, body, base_url, now)
        try:
            return await future
        except concurrent.futures.process.BrokenProcessPool:
            # A worker died (out of memory on a hostile feed?): fail this source, renew pool.
            self._pool = None
            raise FeedError("the feed parser process crashed on this feed") from None

    async def run_forever(self, stop: asyncio.Event,
                          on_cycle: Callable[[CycleReport], None] | None = None) -> None:
        """Poll due sources, sleep until the next is due, repeat until ``stop`` is set."""
        while not stop.is_set():
            report = await self.poll(only_due=True)
            if on_cycle is not None:
                on_cycle(report)
            delay = min(max(self.next_wake() - self.clock(), 1.0), 60.0)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
