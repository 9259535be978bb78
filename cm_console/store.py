"""The store: the only module that touches TinyDB or the store's files.

Layout on disk, for a configured ``store: team.db.json``::

    team.db.json          snapshot: a TinyDB JSON document (tables items, sources, events,
                          outbox, meta, ...), one table per line, replaced only by atomic
                          rename
    team.db.json.journal  append-only log of commits since that snapshot; one line a commit
    team.db.json.bodies   append-only post bodies (text + original HTML), read by offset
    team.db.json.bak      previous snapshot, and .journal.bak its journal: a full last-good copy
    team.db.json.lock     the cross-process lock taken around every read-modify-write

Why not TinyDB's default JSONStorage: it rewrites the whole file on every change (measured
~36 ms at 5,000 items and ~1.1 s at 100,000) and a crash mid-write tears it. Here TinyDB
reads and queries an in-memory view through a custom ``Storage``; every change is one
``crc json\\n`` line appended and fsynced under a file lock, so

- a crash at any moment loses at most the commit being written (a torn last line fails its
  CRC and is skipped), never an earlier one;
- a state change costs one small append, whatever the store size;
- two processes never lose each other's writes: each commit re-reads what others appended
  (cheap: only the new journal bytes) before it computes its change;
- other consoles see changes by reading only the journal's new bytes (:meth:`Store.refresh`).

When the journal grows past half the snapshot, it is folded into a new snapshot by atomic
rename (the old pair becomes ``.bak``). A zero-byte or corrupt snapshot is never opened as
empty: :class:`StoreCorrupt` says so, and ``recover=True`` restores the ``.bak`` pair plus the
current journal, which together hold every committed change.

The snapshot keeps each table on its own line (still one valid JSON document) after a first
line holding the CRC of all of them, so opening a store parses only the small tables; the items and
events stay raw JSON until something reads them. A warm poll or ``cm-console sources`` never
pays for 10,000s of items (8.6 MB of items took 45 ms of a 0.4 s warm poll).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout
from tinydb import Query, TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

from .models import SCHEMA_VERSION, Event, Item, OutboxEntry, SourceState

__all__ = ["PENDING_LIMIT", "NewItem", "Store", "StoreCorrupt", "StoreError"]

TABLES = ("items", "sources", "events", "outbox", "meta", "claims", "approvals")
LOCK_TIMEOUT = 15.0
MIN_COMPACT_BYTES = 4_000_000


class StoreError(Exception):
    """The store cannot be used (locked, newer schema, unwritable...)."""


class StoreCorrupt(StoreError):
    """The snapshot is empty or unreadable; nothing was opened."""

    def __init__(self, path: Path, reason: str, backup: bool):
        self.path = path
        self.reason = reason
        self.backup = backup
        hint = (" A last good copy exists: run again with --recover to restore it (the damaged "
                "file is kept aside)." if backup else
                " No backup copy was found: move the file aside to start an empty store.")
        super().__init__(f"store {path} is unreadable: {reason}.{hint}")


@dataclass(slots=True)
class NewItem:
    """An item ready to store, with its bodies (kept apart from the hot record)."""

    item: Item
    text: str
    html: str


class _ViewStorage(Storage):
    """TinyDB storage over the store's in-memory tables. Writes go through journal commits."""

    def __init__(self, store: Store):
        self._store = store

    def read(self) -> dict[str, dict[str, Any]]:
        return self._store._data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        raise StoreError("write through Store methods, which journal the change")


class _Table(Table):
    document_id_class = str  # item ids are stable strings ("blog:9f2c...")


class _DB(TinyDB):
    table_class = _Table


def _encode_line(payload: Any) -> bytes:
    body = orjson.dumps(payload)
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def _decode_line(line: bytes) -> Any:
    """Payload of one journal line, or None when it is torn or damaged."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:].rstrip(b"\n")
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        return orjson.loads(body)
    except (ValueError, orjson.JSONDecodeError):
        return None


_SEARCH_TERM = re.compile(r'"([^"]+)"|(\S+)')  # a quoted phrase, or one word
LAZY_TABLES = ("events", "items")  # written last, parsed on first use
# Journal ops that may wait for their unparsed table. Past this many the table is parsed
# instead: a journal full of new items would otherwise be held twice over (the waiting docs
# plus the snapshot's) when the table is finally read; the TUI's peak at 50k items grew by
# 77 MB that way.
PENDING_LIMIT = 1000
_CRC_KEY = "_crc"
_SNAPSHOT_HEAD = b'{"_crc":'


class _Tables(dict):  # type: ignore[type-arg]
    """The store's tables by name. A table the snapshot holds but nobody has read yet stays
    as its raw JSON line (``raw``), and journal ops for it wait in ``pending``; the first
    read of ``tables[name]`` parses it and applies them, under the store's mutex so two
    threads never parse (or half-see) one table. A name never seen reads as a new empty
    table, as ``setdefault`` would."""

    def __init__(self, data: dict[str, Any], raw: dict[str, memoryview] | None = None,
                 lock: threading.RLock | None = None):
        super().__init__(data)
        self.raw: dict[str, memoryview] = raw or {}
        self.pending: dict[str, list[list[Any]]] = {}
        self.lock = lock or threading.RLock()

    def __missing__(self, name: str) -> dict[str, Any]:
        with self.lock:
            if dict.__contains__(self, name):  # another thread parsed it meanwhile
                return dict.__getitem__(self, name)
            raw = self.raw.get(name)
            table: dict[str, Any] = _loads_paused_gc(raw) if raw is not None else {}
            for op in self.pending.pop(name, ()):
                _apply_op(table, op)
            self[name] = table
            self.raw.pop(name, None)
            # The other raw tables are views into the whole snapshot's bytes: copy them out
            # so the items' text (most of those bytes) is not kept alive by a small table.
            for other, view in self.raw.items():
                self.raw[other] = memoryview(bytes(view))
            return table

    def is_raw(self, name: str) -> bool:
        return name in self.raw

    def load_all(self) -> None:
        for name in list(self.raw):
            self[name]  # parses it


def _loads_paused_gc(raw: memoryview | bytes) -> Any:
    """orjson.loads with the cycle collector paused: parsing 10,000 items allocates ~100,000
    containers, and the collections they trigger scan everything already loaded (measured
    23 ms with the collector paused against 29-43 ms without, for 8.6 MB of items)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return orjson.loads(raw)
    finally:
        if was_enabled:
            gc.enable()


def _bump(table: dict[str, int], key: str, by: int) -> None:
    n = table.get(key, 0) + by
    if n:
        table[key] = n
    else:
        table.pop(key, None)  # as a full recount would: no zero entries


def _count_item(counts: dict[str, dict[str, int]], doc: dict[str, Any], by: int) -> None:
    """Add (by=1) or remove (by=-1) one item's share of Store.counts()."""
    state = doc.get("state", "new")
    src = doc.get("source", "")
    _bump(counts["state"], state, by)
    _bump(counts["source"], src, by)
    if state in ("new", "open"):
        _bump(counts["active_source"], src, by)
    for tag in doc.get("tags", ()):
        _bump(counts["tag"], tag, by)
    who = doc.get("assignee")
    if who:
        _bump(counts["assignee"], who, by)
        _bump(counts["assignee_state"], f"{who}\x00{state}", by)
    else:
        _bump(counts["unassigned_state"], state, by)


def _apply_op(rows: dict[str, Any], op: list[Any]) -> None:
    kind, doc_id = op[0], op[2]
    if kind == "put":
        rows[doc_id] = op[3]
    elif kind == "patch":
        doc = rows.get(doc_id)
        if doc is not None:
            doc.update(op[3])
    elif kind == "del":
        rows.pop(doc_id, None)


def _encode_snapshot(data: dict[str, dict[str, Any]]) -> list[bytes]:
    """The snapshot file, as parts to write in order: one JSON document, one table per line
    (meta first, the big tables last), opened by ``{"_crc":N``, the CRC of every byte after
    that first line, checked at open since the lazy tables are parsed later. It covers
    meta too: a damaged ``gen`` would skip the journal, a damaged ``next_event`` would
    overwrite audit events. orjson escapes control characters in strings, so a table's JSON
    never contains a newline. Parts, not one joined buffer: at 50,000 items the items alone
    are 27 MB, and joining copies them twice more."""
    names = ["meta"] + [t for t in TABLES if t != "meta" and t not in LAZY_TABLES]
    names += sorted(k for k in data if k not in TABLES and k != _CRC_KEY)
    names += list(LAZY_TABLES)
    parts: list[bytes] = []
    crc = 0
    for name in names:
        for part in (b"\n," + orjson.dumps(name) + b":", orjson.dumps(data[name])):
            crc = zlib.crc32(part, crc)
            parts.append(part)
    parts.append(b"\n}\n")
    crc = zlib.crc32(parts[-1], crc)
    return [_SNAPSHOT_HEAD + b"%d" % crc, *parts]


def _decode_snapshot(raw: bytes) -> _Tables:
    """Tables of a snapshot, the lazy ones left raw. Raises ValueError on damage. Any other
    JSON document (a store from before the line layout, or one a tool reformatted) is
    parsed whole."""
    nl = raw.find(b"\n")
    if raw.startswith(_SNAPSHOT_HEAD) and nl > 0:
        try:
            crc = int(raw[len(_SNAPSHOT_HEAD):nl])
        except ValueError:
            raise ValueError("its first line is damaged") from None
        view = memoryview(raw)  # slices below share raw's bytes: no 10 MB copies
        if zlib.crc32(view[nl:]) != crc:
            raise ValueError("its checksum does not match (damaged or cut short)")
        tables: dict[str, Any] = {}
        lazy: dict[str, memoryview] = {}
        pos, end = nl + 1, len(raw)
        while pos < end:
            stop = raw.find(b"\n", pos)
            stop = end if stop < 0 else stop
            if stop - pos > 1:  # not the closing "}"
                colon = raw.index(b'":', pos + 2) + 1  # the line is ,"name":{...}
                name = orjson.loads(view[pos + 1:colon])
                if name in LAZY_TABLES:
                    lazy[name] = view[colon + 1:stop]
                else:
                    tables[name] = orjson.loads(view[colon + 1:stop])
            pos = stop + 1
        return _Tables(tables, lazy)
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    data.pop(_CRC_KEY, None)
    store_meta = data.get("meta", {}).get("store") if isinstance(data.get("meta"), dict) else None
    if isinstance(store_meta, dict):
        store_meta.pop("crc", None)  # where a build of 2026-11-25 kept it
    return _Tables(data)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, data: bytes | list[bytes]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        if isinstance(data, bytes):
            fh.write(data)
        else:
            fh.writelines(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _keep_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` atomically (hard link when possible)."""
    if not src.exists():
        return
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


def _empty_tables() -> dict[str, dict[str, Any]]:
    """A new store's snapshot: generation 0, no rows."""
    data: dict[str, dict[str, Any]] = {t: {} for t in TABLES}
    data["meta"]["store"] = {"schema": SCHEMA_VERSION, "gen": 0, "created": time.time()}
    return data


def _sig(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


_ITEM_FIELDS = tuple(f.name for f in fields(Item))
_SOURCE_FIELDS = tuple(f.name for f in fields(SourceState))
_EVENT_FIELDS = tuple(f.name for f in fields(Event))
_OUTBOX_FIELDS = tuple(f.name for f in fields(OutboxEntry))


class Transaction:
    """Changes computed against fresh data under the lock, committed as one journal line."""

    def __init__(self, store: Store):
        self.store = store
        self.ops: list[list[Any]] = []
        self._next_event = store._next_event_id

    def put(self, table: str, doc_id: str, doc: dict[str, Any]) -> None:
        self.ops.append(["put", table, doc_id, doc])

    def patch(self, table: str, doc_id: str, changes: dict[str, Any]) -> None:
        self.ops.append(["patch", table, doc_id, changes])

    def delete(self, table: str, doc_id: str) -> None:
        self.ops.append(["del", table, doc_id])

    def event(self, actor: str, action: str, item: str = "", data: dict[str, Any] | None = None,
              ts: float | None = None) -> Event:
        event = Event(ts=ts or time.time(), actor=actor, action=action, item=item,
                      data=data or {}, id=self._next_event)
        self._next_event += 1
        self.put("events", str(event.id), event.to_doc())
        return event


class Store:
    """Crash-safe, multi-process TinyDB store. Open with ``Store(path)``."""

    def __init__(self, path: str | Path, *, recover: bool = False):
        self.path = Path(path)
        self.journal_path = self.path.with_name(self.path.name + ".journal")
        self.bodies_path = self.path.with_name(self.path.name + ".bodies")
        self.bak_path = self.path.with_name(self.path.name + ".bak")
        self.journal_bak_path = self.path.with_name(self.path.name + ".journal.bak")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT)
        # Threads of one process (the TUI reads while its poll worker writes) take this; the
        # file lock above orders processes.
        self._mutex = threading.RLock()
        self._data = _Tables({t: {} for t in TABLES}, lock=self._mutex)
        self._db = _DB(self, storage=_ViewStorage)
        self._gen = 0
        self._snap_sig: tuple[int, int, int] | None = None
        self._read_sig: tuple[int, int, int] | None = None
        self._journal_ino = 0
        self._journal_offset = 0
        self._next_event_id = 1
        self.version = 0  # bumps on every applied change: UI caches key on it
        self._order: list[str] | None = None  # item ids, newest first
        # Kept current by _apply once computed (a state change adjusts a few counters
        # instead of recounting 50,000 items: 35 ms); None until first asked for.
        self._counts: dict[str, dict[str, int]] | None = None
        self._by_item: dict[str, list[int]] | None = None
        self._threads: dict[str, list[str]] | None = None
        self.recovered_from: str = ""
        with self._locked():
            if recover:
                self._recover_locked()
            else:
                self._load_locked()

    # ------------------------------------------------------------------ loading

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            # Retry the OS lock often (filelock's default is every 50 ms): with several busy
            # writers a slow retry lets one process keep the lock for long stretches.
            with self._mutex, self._lock.acquire(poll_interval=0.002):
                yield
        except Timeout:
            raise StoreError(f"store {self.path} is locked by another process for more than "
                             f"{LOCK_TIMEOUT:.0f}s") from None

    def _read_snapshot(self, path: Path) -> _Tables:
        """Parse a snapshot file, or raise StoreCorrupt explaining why it cannot be used."""
        backup = path != self.bak_path and (self.bak_path.exists()
                                            or self._journal_has_everything())
        try:
            with open(path, "rb") as fh:
                # The signature of exactly what was read: stat-ing the path afterwards could
                # describe a newer snapshot (a compaction in between) and leave this console
                # believing stale data is current.
                st = os.fstat(fh.fileno())
                raw = fh.read()
        except OSError as exc:
            raise StoreCorrupt(path, f"cannot read it ({exc.strerror})", backup) from None
        self._read_sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if not raw.strip():
            raise StoreCorrupt(path, "the file is empty (zero bytes)", backup)
        try:
            data = _decode_snapshot(raw)
        except orjson.JSONDecodeError as exc:
            raise StoreCorrupt(path, f"not valid JSON ({exc})", backup) from None
        except ValueError as exc:
            raise StoreCorrupt(path, str(exc), backup) from None
        meta = data.get("meta", {}).get("store") if isinstance(data.get("meta"), dict) else None
        if not isinstance(meta, dict) or not all(
            isinstance(data.get(t, {}), dict) for t in TABLES
        ):
            raise StoreCorrupt(path, "not a cm-console store (no meta record)", backup)
        schema = meta.get("schema", 0)
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise StoreError(f"store {path} was written by a newer cm-console (schema "
                             f"{schema}; this one reads {SCHEMA_VERSION}); upgrade first")
        for table in TABLES:
            if not data.is_raw(table):
                data.setdefault(table, {})
        data.lock = self._mutex
        return data

    def _load_locked(self) -> None:
        if not self.path.exists():
            if self.bak_path.exists() or self.journal_path.exists():
                raise StoreCorrupt(self.path, "the store file is missing but its journal or "
                                   "backup exists",
                                   self.bak_path.exists() or self._journal_has_everything())
            _atomic_write(self.path, _encode_snapshot(_empty_tables()))
        self._install(self._read_snapshot(self.path))
        self._snap_sig = self._read_sig
        self._replay_journal(self.journal_path, from_start=True)

    def _install(self, data: _Tables) -> None:
        self._data = data
        store_meta = data["meta"]["store"]
        self._gen = int(store_meta.get("gen", 0))
        self._migrate()
        next_event = store_meta.get("next_event")
        if data.is_raw("events") and isinstance(next_event, int):
            self._next_event_id = next_event  # saved by the compaction: events stay unparsed
        else:
            self._next_event_id = max((int(k) for k in data["events"]), default=0) + 1
        self._journal_ino = 0
        self._journal_offset = 0
        self._order = None
        self._by_item = None
        self._threads = None
        self._counts = None
        self._changed({"items", "events"})

    def _migrate(self) -> None:
        """Bring an older schema up to date (schema 1 is the first; nothing to do yet)."""
        self._data["meta"]["store"]["schema"] = SCHEMA_VERSION

    def _replay_journal(self, path: Path, *, from_start: bool, gen: int | None = None) -> bool:
        """Apply complete journal lines past our offset. Returns True if anything changed."""
        try:
            fh = open(path, "rb")  # noqa: SIM115 (closed by the with below)
        except FileNotFoundError:
            return False
        with fh:
            st = os.fstat(fh.fileno())
            if from_start:
                self._journal_offset = 0
            elif st.st_ino != self._journal_ino or st.st_size < self._journal_offset:
                return self._full_reload()
            self._journal_ino = st.st_ino
            if st.st_size == self._journal_offset:
                return False
            fh.seek(self._journal_offset)
            chunk = fh.read(st.st_size - self._journal_offset)
        end = chunk.rfind(b"\n") + 1  # only complete lines; a writer may be mid-append
        touched: set[str] = set()
        pos = 0
        expect_gen = self._gen if gen is None else gen
        while pos < end:
            nl = chunk.index(b"\n", pos) + 1
            payload = _decode_line(chunk[pos:nl])
            line_start = self._journal_offset + pos
            pos = nl
            if payload is None:
                continue  # a commit torn by a crash: it never returned, skip it
            if line_start == 0:
                if not isinstance(payload, dict) or payload.get("gen") != expect_gen:
                    # A journal from before the current snapshot (compaction crashed between
                    # its renames): everything in it is already in the snapshot.
                    self._journal_offset = st.st_size
                    return False
                continue
            for op in payload:
                touched.add(self._apply(op))
        self._journal_offset += end
        if touched:
            self._changed(touched)
        return bool(touched)

    def _full_reload(self) -> bool:
        self._install(self._read_snapshot(self.path))
        self._snap_sig = self._read_sig
        self._replay_journal(self.journal_path, from_start=True)
        return True

    def _recover_locked(self) -> None:
        """Restore from the last good copy: .bak + .journal.bak, then the current journal."""
        try:
            self._load_locked()
            return  # nothing to recover
        except StoreCorrupt:
            pass
        from_journal = not self.bak_path.exists()
        if from_journal and not self._journal_has_everything():
            raise StoreCorrupt(self.path, "it is damaged and --recover has nothing to restore "
                               "from", False)
        if self.path.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            self.recovered_from = str(aside)
        if from_journal:
            # Never compacted: the empty generation-0 snapshot plus the journal is the whole
            # store. Writing that snapshot first makes the compaction below keep the usual
            # .bak + .journal.bak pair.
            _atomic_write(self.path, _encode_snapshot(_empty_tables()))
            self._install(self._read_snapshot(self.path))
            self._replay_journal(self.journal_path, from_start=True, gen=0)
            self._compact_locked()
            return
        self._install(self._read_snapshot(self.bak_path))
        bak_gen = self._gen
        self._replay_journal(self.journal_bak_path, from_start=True, gen=bak_gen)
        self._replay_journal(self.journal_path, from_start=True, gen=bak_gen + 1)
        self._compact_locked()

    def _journal_has_everything(self) -> bool:
        """True when the journal starts at generation 0, the empty snapshot every store is
        created with: a store never compacted keeps every committed change there."""
        try:
            with open(self.journal_path, "rb") as fh:
                header = _decode_line(fh.readline(256))
        except OSError:
            return False
        return isinstance(header, dict) and header.get("gen") == 0

    # ------------------------------------------------------------------ change application

    def _apply(self, op: list[Any]) -> str:
        kind, table, doc_id = op[0], op[1], op[2]
        pending = self._data.pending.get(table, ()) if self._data.is_raw(table) else None
        if pending is not None and len(pending) < PENDING_LIMIT:
            self._data.pending.setdefault(table, []).append(op)  # applied when parsed
        elif table == "items" and self._counts is not None:
            rows = self._data["items"]
            before = rows.get(doc_id)
            if before is not None:
                _count_item(self._counts, before, -1)  # before a patch changes it in place
            _apply_op(rows, op)
            after = rows.get(doc_id)
            if after is not None:
                _count_item(self._counts, after, 1)
        else:
            _apply_op(self._data[table], op)  # (parses a raw table, applying what waited)
        if table == "events" and kind == "put":
            self._next_event_id = max(self._next_event_id, int(doc_id) + 1)
            if self._by_item is not None:
                self._by_item.setdefault(op[3].get("item", ""), []).append(int(doc_id))
        if table == "items" and kind != "patch":
            self._order = None
            self._threads = None
        return table

    def _changed(self, tables: Iterable[str]) -> None:
        self.version += 1
        for table in tables:
            self._db.table(table).clear_cache()

    def refresh(self) -> bool:
        """Pick up what other processes committed. Cheap when nothing changed (two stats)."""
        if _sig(self.path) != self._snap_sig:
            with self._locked():
                return self._full_reload()
        with self._mutex:
            return self._replay_journal(self.journal_path, from_start=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Lock, catch up with other writers, let the caller compute changes, commit once."""
        with self._locked():
            if _sig(self.path) != self._snap_sig:
                self._full_reload()
            else:
                self._replay_journal(self.journal_path, from_start=False)
            tx = Transaction(self)
            yield tx
            if tx.ops:
                self._commit_locked(tx.ops)

    def _commit_locked(self, ops: list[list[Any]]) -> None:
        self._ensure_journal_locked()
        line = _encode_line(ops)
        with open(self.journal_path, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
            self._journal_offset = fh.tell()
        touched = {self._apply(op) for op in ops}
        self._changed(touched)
        snap_size = self._snap_sig[2] if self._snap_sig else 0
        if self._journal_offset > max(MIN_COMPACT_BYTES, snap_size // 2):
            self._compact_locked()

    def _ensure_journal_locked(self) -> None:
        """A journal whose header matches our snapshot's generation, ending in a newline."""
        try:
            with open(self.journal_path, "rb") as fh:
                head = fh.readline()
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                if size:
                    fh.seek(size - 1)
                    last = fh.read(1)
            header = _decode_line(head)
            if isinstance(header, dict) and header.get("gen") == self._gen:
                if size and last != b"\n":
                    with open(self.journal_path, "ab") as fh:
                        fh.write(b"\n")  # seal a torn line so ours starts clean
                    self._journal_offset = size + 1
                return
        except FileNotFoundError:
            pass
        _atomic_write(self.journal_path, _encode_line({"gen": self._gen, "journal": 1}))
        st = self.journal_path.stat()
        self._journal_ino, self._journal_offset = st.st_ino, st.st_size

    def _compact_locked(self) -> None:
        """Fold the journal into a new snapshot; the previous pair becomes the .bak copy."""
        self._data.load_all()
        store_meta = self._data["meta"]["store"]
        store_meta["gen"] = self._gen + 1
        store_meta["next_event"] = self._next_event_id
        payload = _encode_snapshot(self._data)
        if self.path.exists():
            _keep_copy(self.path, self.bak_path)
            if self.journal_path.exists():
                _keep_copy(self.journal_path, self.journal_bak_path)
            else:
                self.journal_bak_path.unlink(missing_ok=True)
        _atomic_write(self.path, payload)
        self._gen += 1
        self._snap_sig = _sig(self.path)
        self._journal_ino = 0
        self._ensure_journal_locked()

    def compact(self) -> None:
        """Fold the journal into the snapshot now (``cm-console`` does it by itself)."""
        with self._locked():
            self._replay_journal(self.journal_path, from_start=False)
            self._compact_locked()

    # ------------------------------------------------------------------ items

    @staticmethod
    def _item(doc: dict[str, Any]) -> Item:
        try:
            return Item(**doc)  # the common case: a document written by this version
        except TypeError:  # older/newer fields: take what this version knows
            return Item(**{k: doc[k] for k in _ITEM_FIELDS if k in doc})

    def get_item(self, item_id: str) -> Item | None:
        doc = self._data["items"].get(item_id)
        return self._item(doc) if doc is not None else None

    def find_item(self, ref: str) -> Item:
        """Item by id, unique id prefix, or case number; KeyError with a message otherwise."""
        items = self._data["items"]
        if ref in items:
            return self._item(items[ref])
        if ref[:2].upper() == "C-" and len(ref) > 2:  # a case number: C- + the id's digest
            digest = ref[2:].lower()
            matches = [k for k in items if k.rsplit(":", 1)[-1].startswith(digest)]
        else:
            matches = [k for k in items
                       if k.startswith(ref) or k.split(":", 1)[-1].startswith(ref)]
        if len(matches) == 1:
            return self._item(items[matches[0]])
        if not matches:
            raise KeyError(f'no item "{ref}"')
        raise KeyError(f'"{ref}" matches {len(matches)} items; give more of the id')

    def has_item(self, item_id: str) -> bool:
        return item_id in self._data["items"]

    def item_count(self) -> int:
        return len(self._data["items"])

    def ordered_ids(self) -> list[str]:
        """All item ids, newest first. Cached until items are added or removed."""
        with self._mutex:
            if self._order is None:
                items = self._data["items"]
                self._order = sorted(items, key=lambda k: (items[k]["published"], k),
                                     reverse=True)
            return self._order

    def item_ids(self, *, states: Iterable[str] | None = None, source: str | None = None,
                 tag: str | None = None, assignee: str | None = None,
                 text: str | None = None, unassigned: bool = False,
                 due_before: tuple[dict[str, float], float] | None = None) -> list[str]:
        """Ids matching every given filter, newest first (no bodies are read).

        ``due_before=(slas, now)`` keeps items whose source has an SLA (seconds) that
        ran out before ``now``: the Breached SLA view, filtered on the hot records.
        """
        with self._mutex:
            return self._item_ids(states, source, tag, assignee, text, unassigned, due_before)

    def _item_ids(self, states: Iterable[str] | None, source: str | None, tag: str | None,
                  assignee: str | None, text: str | None, unassigned: bool,
                  due_before: tuple[dict[str, float], float] | None = None) -> list[str]:
        items = self._data["items"]
        wanted = frozenset(states) if states is not None else None
        # Every word must appear (in any order): "refund crash" finds "crash after refund";
        # a "quoted phrase" must appear as written.
        needles = [a or b for a, b in _SEARCH_TERM.findall(text.casefold())] if text else []
        out = []
        for key in self.ordered_ids():
            doc = items[key]
            if wanted is not None and doc.get("state") not in wanted:
                continue
            if source and doc.get("source") != source:
                continue
            if tag and tag not in doc.get("tags", ()):
                continue
            if assignee and doc.get("assignee") != assignee:
                continue
            if unassigned and doc.get("assignee"):
                continue
            if due_before is not None:
                sla = due_before[0].get(doc.get("source", ""))
                if not sla or doc.get("published", 0.0) + sla >= due_before[1]:
                    continue
            if needles:
                hay = (f"{doc.get('title', '')}\n{doc.get('author', '')}\n"
                       f"{doc.get('summary', '')}").casefold()
                if not all(n in hay for n in needles):
                    continue
            out.append(key)
        return out

    def items(self, ids: Iterable[str]) -> list[Item]:
        items = self._data["items"]
        return [self._item(items[k]) for k in ids if k in items]

    def thread_items(self, key: str) -> list[Item]:
        """Items of one conversation (same thread key), oldest first. Indexed, not scanned."""
        if not key:
            return []
        with self._mutex:
            if self._threads is None:
                threads: dict[str, list[str]] = {}
                for item_id, doc in self._data["items"].items():
                    if doc.get("thread"):
                        threads.setdefault(doc["thread"], []).append(item_id)
                self._threads = threads
            ids = list(self._threads.get(key, ()))
        return sorted(self.items(ids), key=lambda i: (i.published, i.id))

    def search(self, **equals: Any) -> list[Item]:
        """TinyDB query on hot fields, e.g. ``search(state="new", source="blog")``."""
        q = Query()
        cond = None
        for key, value in equals.items():
            part = q[key] == value
            cond = part if cond is None else cond & part
        table = self._db.table("items")
        docs = table.search(cond) if cond is not None else table.all()
        return sorted((self._item(d) for d in docs), key=lambda i: (i.published, i.id),
                      reverse=True)

    def counts(self) -> dict[str, dict[str, int]]:
        """Counts by state, source, tag, assignee, active items per source, and by
        ``"assignee\\x00state"`` / unassigned state (for the Mine and Unassigned views).

        One pass over the hot records, cached until the store changes."""
        with self._mutex:
            return self._count()

    def _count(self) -> dict[str, dict[str, int]]:
        if self._counts is None:
            counts: dict[str, dict[str, int]] = {
                "state": {}, "source": {}, "tag": {}, "assignee": {}, "active_source": {},
                "assignee_state": {}, "unassigned_state": {}}
            for doc in self._data["items"].values():
                _count_item(counts, doc, 1)
            self._counts = counts
        # A copy: the counters change under later commits, and callers read them outside
        # the mutex (the TUI renders while its poll worker writes).
        return {name: dict(table) for name, table in self._counts.items()}

    def body(self, item_id: str) -> tuple[str, str]:
        """(text, html) of an item, read by offset from the bodies file."""
        doc = self._data["items"].get(item_id)
        ref = doc.get("body") if doc else None
        if not ref:
            return "", ""
        try:
            with open(self.bodies_path, "rb") as fh:
                fh.seek(ref[0])
                rec = orjson.loads(fh.read(ref[1]))
        except (OSError, orjson.JSONDecodeError, TypeError, IndexError):
            return "(the body of this item could not be read from the store)", ""
        if rec.get("id") != item_id:
            return "(the body of this item could not be read from the store)", ""
        return rec.get("text", ""), rec.get("html", "")

    def _append_bodies(self, entries: list[NewItem]) -> list[list[int]]:
        """Append bodies (under the lock) and fsync them before the commit refers to them."""
        refs: list[list[int]] = []
        chunks: list[bytes] = []
        with open(self.bodies_path, "ab+") as fh:
            fh.seek(0, os.SEEK_END)
            pos = fh.tell()
            if pos:
                fh.seek(pos - 1)
                if fh.read(1) != b"\n":
                    chunks.append(b"\n")  # seal a line torn by a crash
                    pos += 1
            for entry in entries:
                rec = orjson.dumps({"id": entry.item.id, "text": entry.text,
                                    "html": entry.html}) + b"\n"
                refs.append([pos, len(rec)])
                chunks.append(rec)
                pos += len(rec)
            fh.writelines(chunks)  # not joined: a big batch would be copied whole
            fh.flush()
            os.fsync(fh.fileno())
        return refs

    def add_items(self, entries: list[NewItem], states: list[SourceState] = (),  # type: ignore[assignment]
                  events: list[Event] = ()) -> list[str]:  # type: ignore[assignment]
        """Store new items (ids already present are skipped) and poll states, in one commit.

        Returns the ids actually added. This is how a poll cycle writes: one batch.
        """
        with self.transaction() as tx:
            fresh: list[NewItem] = []
            seen: set[str] = set()
            for entry in entries:
                if entry.item.id in seen or self.has_item(entry.item.id):
                    continue
                seen.add(entry.item.id)
                fresh.append(entry)
            refs = self._append_bodies(fresh) if fresh else []
            for entry, ref in zip(fresh, refs, strict=True):
                doc = entry.item.to_doc()
                doc["body"] = ref
                tx.put("items", entry.item.id, doc)
            self._put_states(tx, states)
            added = {e.item.id for e in fresh}
            for event in events:
                if event.item and event.item not in added:
                    continue  # about an item another console stored first: not ours to log
                tx.event(event.actor, event.action, event.item, event.data, event.ts)
        return [e.item.id for e in fresh]

    def update_item(self, item_id: str, changes: dict[str, Any], *, actor: str, action: str,
                    data: dict[str, Any] | None = None) -> tuple[Item, Event]:
        """Change an item's fields and log who did it, atomically. KeyError if no such item.

        The event records the previous values of the changed fields, which is what undo and
        reports read.
        """
        with self.transaction() as tx:
            doc = self._data["items"].get(item_id)
            if doc is None:
                raise KeyError(f'no item "{item_id}"')
            before = {k: doc.get(k) for k in changes}
            now = time.time()
            tx.patch("items", item_id, {**changes, "updated": now})
            event = tx.event(actor, action, item_id,
                             {**(data or {}), "before": before, "after": changes}, now)
        item = self.get_item(item_id)
        assert item is not None
        return item, event

    # ------------------------------------------------------------------ sources, events, outbox

    def source_state(self, source_id: str) -> SourceState:
        doc = self._data["sources"].get(source_id)
        if doc is None:
            return SourceState(id=source_id)
        state = SourceState(**{k: doc[k] for k in _SOURCE_FIELDS if k in doc})
        for name in ("last_poll", "last_success", "next_due", "retry_after_until"):
            if not isinstance(getattr(state, name), int | float):  # null from a bad write
                setattr(state, name, 0.0)
        return state

    def source_states(self) -> dict[str, SourceState]:
        with self._mutex:
            return {k: self.source_state(k) for k in list(self._data["sources"])}

    def save_source_states(self, states: list[SourceState]) -> None:
        with self.transaction() as tx:
            self._put_states(tx, states)

    def _put_states(self, tx: Transaction, states: Iterable[SourceState]) -> None:
        """Poll states as patches of what changed: a warm poll of 200 feeds changes three
        timestamps per source, and writing whole documents made each such poll append ~77 KB
        to the journal (which every later open replays) instead of ~25 KB."""
        rows = self._data["sources"]
        for state in states:
            doc = state.to_doc()
            old = rows.get(state.id)
            if old is None:
                tx.put("sources", state.id, doc)
                continue
            changes = {k: v for k, v in doc.items() if k not in old or old[k] != v}
            if changes:
                tx.patch("sources", state.id, changes)

    def log_event(self, actor: str, action: str, item: str = "",
                  data: dict[str, Any] | None = None) -> Event:
        with self.transaction() as tx:
            event = tx.event(actor, action, item, data)
        return event

    def events(self, item: str | None = None, limit: int | None = None) -> list[Event]:
        """Audit events, oldest first (``limit`` keeps the newest ones)."""
        with self._mutex:
            return self._events(item, limit)

    def _events(self, item: str | None, limit: int | None) -> list[Event]:
        rows = self._data["events"]
        if item is None:
            keys = sorted(rows, key=int)
        else:
            if self._by_item is None:
                self._by_item = {}
                for key, doc in rows.items():
                    self._by_item.setdefault(doc.get("item", ""), []).append(int(key))
            keys = [str(k) for k in sorted(self._by_item.get(item, ()))]
        if limit is not None:
            keys = keys[-limit:] if limit else []
        return [Event(**{k: rows[key][k] for k in _EVENT_FIELDS if k in rows[key]})
                for key in keys if key in rows]

    def outbox(self, statuses: Iterable[str] | None = None) -> list[OutboxEntry]:
        wanted = frozenset(statuses) if statuses is not None else None
        with self._mutex:
            rows = list(self._data["outbox"].values())
        out = [OutboxEntry(**{k: d[k] for k in _OUTBOX_FIELDS if k in d})
               for d in rows
               if wanted is None or d.get("status") in wanted]
        return sorted(out, key=lambda e: (e.created, e.id))

    def get_outbox(self, entry_id: str) -> OutboxEntry | None:
        d = self._data["outbox"].get(entry_id)
        return OutboxEntry(**{k: d[k] for k in _OUTBOX_FIELDS if k in d}) if d else None

    def claims(self) -> dict[str, dict[str, Any]]:
        """Live "someone is replying" claims: item id → {"actor", "since", "until"}."""
        now = time.time()
        with self._mutex:
            return {k: dict(v) for k, v in self._data["claims"].items()
                    if v.get("until", 0) > now}

    def approvals(self, status: str | None = "awaiting") -> list[dict[str, Any]]:
        """Answers waiting for (or decided by) a reviewer, oldest first."""
        with self._mutex:
            rows = [dict(v, id=k) for k, v in self._data["approvals"].items()
                    if status is None or v.get("status") == status]
        return sorted(rows, key=lambda r: r.get("created", 0.0))

    @property
    def schema_version(self) -> int:
        return int(self._data["meta"]["store"].get("schema", SCHEMA_VERSION))

    @property
    def raw_tables(self) -> dict[str, dict[str, Any]]:
        """Read-only view for diagnostics and benchmarks (every table parsed); do not mutate."""
        with self._mutex:
            self._data.load_all()
        return self._data
