"""Proves the store: stable ids, atomic commits, crash safety under SIGKILL, no lost writes."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cm_console.models import SCHEMA_VERSION, Item, SourceState
from cm_console.sources import item_id
from cm_console.store import NewItem, Store, StoreCorrupt, StoreError


def new_item(source: str, key: str, *, published: float = 1_700_000_000.0,
             title: str = "") -> NewItem:
    """An entry as the poller hands it to the store."""
    iid = item_id(source, key)
    item = Item(id=iid, source=source, source_type="rss", guid=key, url=f"https://x/{key}",
                title=title or f"title {key}", author="someone", published=published,
                fetched=published)
    return NewItem(item, text=f"text of {key}", html=f"<p>text of {key}</p>")


def journal_lines(store: Store) -> list[bytes]:
    return store.journal_path.read_bytes().splitlines()


def commit_payload(line: bytes) -> object:
    """A journal line is ``crc32-hex json``: return the JSON."""
    assert line[8:9] == b" "
    return json.loads(line[9:])


# --------------------------------------------------------------------------- basics


def test_ids_are_stable_and_source_scoped() -> None:
    assert item_id("blog", "id:1") == item_id("blog", "id:1")
    assert item_id("blog", "id:1") != item_id("forum", "id:1")
    assert item_id("blog", "id:1").startswith("blog:")
    hostile = item_id("blog", "id:" + "\x1b[31m/../" * 1000)
    assert len(hostile) == len("blog:") + 12 and hostile[5:].isalnum()


def test_readding_items_is_a_no_op(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.json")
    batch = [new_item("blog", f"id:{i}") for i in range(5)]
    assert store.add_items(batch) == [e.item.id for e in batch]
    journal = store.journal_path.read_bytes()
    bodies = store.bodies_path.read_bytes()
    assert store.add_items([new_item("blog", f"id:{i}") for i in range(5)]) == []
    assert store.journal_path.read_bytes() == journal  # nothing committed at all
    assert store.bodies_path.read_bytes() == bodies
    # The same key twice in one batch is stored once; a new one is added.
    again = [new_item("blog", "id:9"), new_item("blog", "id:9"), new_item("blog", "id:0")]
    assert store.add_items(again) == [item_id("blog", "id:9")]
    assert store.item_count() == 6
    reopened = Store(tmp_path / "s.json")
    assert reopened.item_count() == 6
    assert reopened.body(item_id("blog", "id:3")) == ("text of id:3", "<p>text of id:3</p>")


def test_a_poll_batch_is_one_commit(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.json")
    store.add_items([new_item("blog", "id:first")])
    store.item_count()
    before = len(journal_lines(store))
    snapshot = store.path.stat()
    store.add_items([new_item("blog", f"id:{i}") for i in range(300)],
                    [SourceState(id="blog", etag='"abc"', last_status="ok")])
    assert len(journal_lines(store)) == before + 1
    assert store.item_count() == 301
    after = store.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (snapshot.st_ino, snapshot.st_mtime_ns)
    assert store.source_state("blog").etag == '"abc"'


def test_state_change_and_its_event_are_one_commit(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.json")
    [iid] = store.add_items([new_item("blog", "id:1")])
    lines = journal_lines(store)
    item, event = store.update_item(iid, {"state": "done"}, actor="ann", action="state")
    after = journal_lines(store)
    assert len(after) == len(lines) + 1
    ops = commit_payload(after[-1])
    assert isinstance(ops, list)
    assert {(op[0], op[1]) for op in ops} == {("patch", "items"), ("put", "events")}
    assert item.state == "done"
    assert (event.actor, event.action, event.item) == ("ann", "state", iid)
    assert event.data["before"] == {"state": "new"} and event.data["after"] == {"state": "done"}
    reopened = Store(tmp_path / "s.json")
    assert reopened.get_item(iid).state == "done"  # type: ignore[union-attr]
    assert [(e.actor, e.action) for e in reopened.events(item=iid)] == [("ann", "state")]
    with pytest.raises(KeyError):
        store.update_item("blog:nope", {"state": "done"}, actor="ann", action="state")


def test_schema_version_is_recorded_and_newer_stores_are_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.json")
    assert store.schema_version == SCHEMA_VERSION
    snapshot = json.loads(store.path.read_bytes())
    assert snapshot["meta"]["store"]["schema"] == SCHEMA_VERSION
    snapshot["meta"]["store"]["schema"] = SCHEMA_VERSION + 1
    store.path.write_text(json.dumps(snapshot))
    with pytest.raises(StoreError, match="newer cm-console"):
        Store(tmp_path / "s.json")


def test_second_instance_sees_changes_through_refresh(tmp_path: Path) -> None:
    a = Store(tmp_path / "s.json")
    [iid] = a.add_items([new_item("blog", "id:1")])
    b = Store(tmp_path / "s.json")
    assert b.get_item(iid).state == "new"  # type: ignore[union-attr]
    assert b.refresh() is False  # nothing new: cheap no-op
    a.update_item(iid, {"state": "done"}, actor="ann", action="state")
    a.add_items([new_item("blog", "id:2")])
    assert b.refresh() is True
    assert b.get_item(iid).state == "done"  # type: ignore[union-attr]
    assert b.item_count() == 2
    # After a compaction by A (snapshot replaced), B reloads instead of misreading.
    a.compact()
    a.add_items([new_item("blog", "id:3")])
    assert b.refresh() is True
    assert b.item_count() == 3
    # B writes on top of A's changes without losing them, and A sees B's.
    b.update_item(item_id("blog", "id:3"), {"state": "open"}, actor="bo", action="state")
    a.refresh()
    assert [e.actor for e in a.events()] == ["ann", "bo"]
    assert [e.id for e in a.events()] == [1, 2]


def test_compaction_keeps_a_backup_and_data_survives_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.json")
    store.add_items([new_item("blog", f"id:{i}") for i in range(10)])
    store.update_item(item_id("blog", "id:4"), {"state": "done"}, actor="ann", action="state")
    old_snapshot = store.path.read_bytes()
    old_journal = store.journal_path.read_bytes()
    store.compact()
    assert store.bak_path.read_bytes() == old_snapshot
    assert store.journal_bak_path.read_bytes() == old_journal
    assert len(journal_lines(store)) == 1  # just the new generation's header
    reopened = Store(tmp_path / "s.json")
    assert reopened.item_count() == 10
    assert reopened.get_item(item_id("blog", "id:4")).state == "done"  # type: ignore[union-attr]
    assert len(reopened.events()) == 1
    # Writes after compaction land in the new journal and survive too.
    reopened.update_item(item_id("blog", "id:5"), {"state": "open"}, actor="bo", action="state")
    assert Store(tmp_path / "s.json").get_item(item_id("blog", "id:5")).state == "open"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- damage


def _history(path: Path) -> Store:
    """A store with changes in .bak, .journal.bak and the live journal."""
    store = Store(path)
    store.add_items([new_item("blog", f"id:{i}") for i in range(3)])  # -> journal.bak
    store.compact()
    store.add_items([new_item("blog", "id:3")])
    store.update_item(item_id("blog", "id:0"), {"state": "done"}, actor="ann", action="state")
    store.compact()  # .bak now holds gen 1, .journal.bak the two commits above
    store.add_items([new_item("blog", "id:4")])  # live journal
    store.update_item(item_id("blog", "id:1"), {"tags": ["billing"]}, actor="bo", action="tag")
    return store


def _assert_full_history(store: Store) -> None:
    assert store.item_count() == 5
    assert store.get_item(item_id("blog", "id:0")).state == "done"  # type: ignore[union-attr]
    assert store.get_item(item_id("blog", "id:1")).tags == ["billing"]  # type: ignore[union-attr]
    assert [(e.actor, e.action) for e in store.events()] == [("ann", "state"), ("bo", "tag")]
    assert store.body(item_id("blog", "id:4"))[0] == "text of id:4"


@pytest.mark.parametrize("damage", [b"", b"\x00" * 4096, b'{"items": {"bl', b"not json at all",
                                    b'{"items": {}}', b"[1, 2, 3]"])
def test_damaged_snapshot_is_never_opened_empty_and_recover_restores_everything(
        tmp_path: Path, damage: bytes) -> None:
    path = tmp_path / "s.json"
    _history(path)
    path.write_bytes(damage)
    with pytest.raises(StoreCorrupt) as info:
        Store(path)
    assert info.value.backup is True
    assert "--recover" in str(info.value)
    assert path.read_bytes() == damage  # a failed open touches nothing

    recovered = Store(path, recover=True)
    _assert_full_history(recovered)
    aside = Path(recovered.recovered_from)
    assert aside.read_bytes() == damage  # the damaged file is kept for inspection
    _assert_full_history(Store(path))  # and an ordinary open works again afterwards
    # Recovering a healthy store is a no-op.
    _assert_full_history(Store(path, recover=True))


def test_missing_snapshot_with_journal_is_not_treated_as_new(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    _history(path)
    path.unlink()
    with pytest.raises(StoreCorrupt, match="missing"):
        Store(path)
    _assert_full_history(Store(path, recover=True))


@pytest.mark.parametrize("damage", [b"", b"garbage"])
def test_never_compacted_store_is_recovered_from_its_journal(tmp_path: Path,
                                                             damage: bytes) -> None:
    """No .bak yet (small stores may not compact for weeks), but the journal has it all."""
    path = tmp_path / "s.json"
    store = Store(path)
    store.add_items([new_item("blog", f"id:{i}") for i in range(3)])
    store.update_item(item_id("blog", "id:1"), {"state": "done"}, actor="ann", action="state")
    assert not store.bak_path.exists()
    path.write_bytes(damage)
    with pytest.raises(StoreCorrupt) as info:
        Store(path)
    assert info.value.backup is True and "--recover" in str(info.value)
    recovered = Store(path, recover=True)
    assert recovered.item_count() == 3
    assert recovered.get_item(item_id("blog", "id:1")).state == "done"  # type: ignore[union-attr]
    assert [e.actor for e in recovered.events()] == ["ann"]
    assert Path(recovered.recovered_from).read_bytes() == damage
    reopened = Store(path)
    assert reopened.item_count() == 3
    # The usual last-good pair exists again, so a second accident is recoverable too.
    reopened.add_items([new_item("blog", "id:9")])
    path.write_bytes(b"")
    assert Store(path, recover=True).item_count() == 4


def test_damage_without_any_copy_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = Store(path)
    store.add_items([new_item("blog", "id:1")])
    store.compact()  # the journal now starts after generation 0 ...
    store.bak_path.unlink()  # ... and the last good copy is gone
    store.journal_bak_path.unlink()
    path.write_bytes(b"")
    with pytest.raises(StoreCorrupt) as info:
        Store(path)
    assert info.value.backup is False
    assert "No backup copy" in str(info.value)
    with pytest.raises(StoreCorrupt):
        Store(path, recover=True)
    assert path.read_bytes() == b""  # still never replaced by an empty store


@pytest.mark.parametrize("torn", [b'0badc0de [["put","items"', b"123", b"\x00\x00\x00",
                                  b'00000000 [["put","items","x",{}]]\n'])
def test_torn_or_damaged_last_journal_line_is_ignored(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "s.json"
    store = Store(path)
    store.add_items([new_item("blog", f"id:{i}") for i in range(3)])
    store.update_item(item_id("blog", "id:0"), {"state": "done"}, actor="ann", action="state")
    with open(store.journal_path, "ab") as fh:
        fh.write(torn)  # a crash in the middle of a commit that never returned
    reopened = Store(path)
    assert reopened.item_count() == 3
    assert not reopened.has_item("x")
    assert reopened.get_item(item_id("blog", "id:0")).state == "done"  # type: ignore[union-attr]
    # Later writes still work and are read back after the damaged line.
    reopened.add_items([new_item("blog", "id:3")])
    reopened.update_item(item_id("blog", "id:1"), {"state": "open"}, actor="bo", action="state")
    again = Store(path)
    assert again.item_count() == 4
    assert again.get_item(item_id("blog", "id:1")).state == "open"  # type: ignore[union-attr]
    assert [e.id for e in again.events()] == [1, 2]
    # A reader that had seen the torn tail picks up the commits written after it.
    store.refresh()
    assert store.item_count() == 4


def test_lock_is_taken_around_writes(tmp_path: Path) -> None:
    """A second process holding the lock makes a write wait, then go through."""
    path = tmp_path / "s.json"
    store = Store(path)
    [iid] = store.add_items([new_item("blog", "id:1")])
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from filelock import FileLock
            with FileLock({str(path) + ".lock"!r}):
                print("held", flush=True)
                time.sleep(0.7)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        started = time.monotonic()
        store.update_item(iid, {"state": "done"}, actor="ann", action="state")
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    assert waited > 0.3
    assert Store(path).get_item(iid).state == "done"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- durability

WRITER = textwrap.dedent("""
    import sys
    from cm_console.models import Item
    from cm_console.sources import item_id
    from cm_console.store import NewItem, Store

    path, round_no = sys.argv[1], int(sys.argv[2])
    store = Store(path)
    out = sys.stdout
    n = 0
    while True:
        key = f"id:{round_no}-{n}"
        iid = item_id("w", key)
        item = Item(id=iid, source="w", source_type="rss", guid=key, url="", title=key,
                    author="w", published=float(n), fetched=float(n))
        store.add_items([NewItem(item, "body " + key, "<p>" + key * 20 + "</p>")])
        out.write(f"add {iid} {key}\\n")
        out.flush()
        if n % 3 == 2:
            store.update_item(iid, {"state": "done", "tags": [key]}, actor="w", action="state")
            out.write(f"upd {iid} {key}\\n")
            out.flush()
        if n % 10 == 9:
            store.compact()  # crash windows inside compaction too (renames, .bak copies)
        n += 1
""")


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_an_acknowledged_commit(tmp_path: Path) -> None:
    """Acknowledged = printed after the commit returned. Every one must survive kill -9."""
    path = tmp_path / "s.json"
    Store(path)
    rng = random.Random(int(os.environ.get("CM_TEST_SEED", "0")) or None)
    added: dict[str, str] = {}
    updated: dict[str, str] = {}
    kills = 0
    deadline = time.monotonic() + 14.0
    for round_no in range(40):
        if time.monotonic() > deadline and kills >= 20:
            break
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(round_no)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines: list[bytes] = []
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until it is writing, then kill at random
        if not first:
            pytest.fail(f"writer died: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        lines.append(first)
        reader = threading.Thread(target=lines.extend, args=(proc.stdout,), daemon=True)
        reader.start()
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=30)
        proc.stderr.close()  # type: ignore[union-attr]
        kills += 1
        for raw in lines:
            if not raw.endswith(b"\n"):
                continue  # not acknowledged: the kill cut the print itself
            kind, iid, key = raw.decode().split()
            (added if kind == "add" else updated)[iid] = key

        store = Store(path)  # must open: never StoreCorrupt, never empty
        for iid, key in added.items():
            item = store.get_item(iid)
            assert item is not None, f"acknowledged commit {key} lost after {kills} kills"
            assert store.body(iid) == ("body " + key, "<p>" + key * 20 + "</p>")
        for iid, key in updated.items():
            item = store.get_item(iid)
            assert item is not None and item.state == "done" and item.tags == [key]
        assert len(store.events()) >= len(updated)
    print(f"{kills} kills, {len(added)} acknowledged adds, {len(updated)} updates")
    assert kills >= 20
    assert len(added) > kills  # the writers really were writing
    # The snapshot pair still holds everything after a last compaction, and so does recovery.
    store = Store(path)
    store.compact()
    assert Store(path).item_count() >= len(added)
    path.write_bytes(b"")
    assert Store(path, recover=True).item_count() >= len(added)


# --------------------------------------------------------------------------- concurrency

CONCURRENT = textwrap.dedent("""
    import sys
    import time
    from cm_console.models import Item
    from cm_console.sources import item_id
    from cm_console.store import NewItem, Store

    path, me, rounds, shared = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = Store(path)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    counter = item_id("shared", "counter")
    for n in range(rounds):
        key = f"id:{me}-{n}"
        iid = item_id(me, key)
        item = Item(id=iid, source=me, source_type="rss", guid=key, url="", title=key,
                    author=me, published=float(n), fetched=float(n))
        # Disjoint: each process adds its own items (plus one every process adds).
        store.add_items([NewItem(item, key, ""),
                         NewItem(Item(**{**item.to_doc(), "id": item_id("all", str(n)),
                                         "source": "all"}), "", "")])
        # Overlapping: everyone changes the same few items.
        target = item_id("shared", str(n % shared))
        store.update_item(target, {"assignee": me, "priority": f"{me}-{n}"}, actor=me,
                          action="assign")
        # Read-modify-write under the lock: increments are lost unless each commit re-reads.
        with store.transaction() as tx:
            doc = store.get_item(counter)
            tx.patch("items", counter, {"extra": {"n": doc.extra["n"] + 1}})
            tx.event(me, "count", counter, {"seen": doc.extra["n"]})
        if me == "p0" and n % 50 == 49:
            store.compact()  # the others must notice the new snapshot, not overwrite it
        time.sleep(0.001)  # out of the lock: lets the others in (the lock polls every 50 ms)
    print("done", flush=True)
""")


@pytest.mark.slow
def test_three_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    rounds, shared, procs = 200, 10, 3
    store = Store(path)
    setup = [new_item("shared", str(i)) for i in range(shared)]
    counter = new_item("shared", "counter")
    counter.item.extra = {"n": 0}
    store.add_items([*setup, counter])

    workers = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(path), f"p{i}",
                                 str(rounds), str(shared)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for i in range(procs)]
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline() == "ready\n"
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        for w in workers:
            out, _ = w.communicate(timeout=60)
            assert w.returncode == 0 and out == "done\n"
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()

    for view in (store, Store(path)):  # the old instance after refresh, and a fresh open
        view.refresh()
        assert view.item_count() == shared + 1 + procs * rounds + rounds
        for p in range(procs):
            assert len(view.item_ids(source=f"p{p}")) == rounds
        counter_item = view.get_item(counter.item.id)
        assert counter_item is not None and counter_item.extra == {"n": procs * rounds}
        events = view.events()
        assert len(events) == procs * rounds * 2
        assert [e.id for e in events] == list(range(1, procs * rounds * 2 + 1))
        switches = sum(a.actor != b.actor for a, b in itertools.pairwise(events))
        print(f"{switches} switches between writers")
        assert switches > procs, "the writers did not really run at the same time"
        counts = [e.data["seen"] for e in events if e.action == "count"]
        assert sorted(counts) == list(range(procs * rounds))  # each increment saw the last
        for p in range(procs):
            mine = [e for e in events if e.actor == f"p{p}"]
            assert sum(e.action == "assign" for e in mine) == rounds
        for i in range(shared):
            item = view.get_item(item_id("shared", str(i)))
            assert item is not None and item.assignee in {f"p{p}" for p in range(procs)}


# --------------------------------------------------------------------------- snapshot layout


def _compacted(path: Path, count: int = 5) -> Store:
    store = Store(path)
    store.add_items([new_item("blog", f"id:{i}", published=1_700_000_000.0 + i)
                     for i in range(count)])
    store.update_item(item_id("blog", "id:0"), {"state": "done"}, actor="ann", action="state")
    store.compact()
    return store


def test_snapshot_is_one_json_document_with_a_table_per_line(tmp_path: Path) -> None:
    from tinydb import TinyDB

    store = _compacted(tmp_path / "s.json")
    raw = store.path.read_bytes()
    lines = raw.splitlines()
    assert lines[0].startswith(b'{"_crc":') and lines[-1] == b"}"
    names = [json.loads(b"{" + line[1:] + b"}").popitem()[0] for line in lines[1:-1]]
    assert names[0] == "meta" and names[-2:] == ["events", "items"]  # the big tables last
    document = json.loads(raw)  # still plain JSON: any tool (or TinyDB itself) reads it
    assert len(document["items"]) == 5 and len(document["events"]) == 1
    with TinyDB(store.path) as db:
        assert len(db.table("items")) == 5


def test_unread_tables_catch_up_with_the_journal_when_read(tmp_path: Path) -> None:
    """A console opens the store (items not parsed yet), another commits; the first then
    reads items and events and sees every commit, in order, with no event id reused."""
    a = _compacted(tmp_path / "s.json")
    b = Store(tmp_path / "s.json")  # opened lazily: nothing below has read items yet
    a.update_item(item_id("blog", "id:1"), {"state": "open"}, actor="ann", action="state")
    a.update_item(item_id("blog", "id:1"), {"state": "done"}, actor="bo", action="state")
    a.add_items([new_item("blog", "id:9", published=1_800_000_000.0)])
    assert b.refresh() is True
    b.update_item(item_id("blog", "id:2"), {"state": "done"}, actor="cy", action="state")
    assert b.get_item(item_id("blog", "id:1")).state == "done"  # type: ignore[union-attr]
    assert b.ordered_ids()[0] == item_id("blog", "id:9")
    assert b.item_count() == 6
    assert [(e.actor, e.action) for e in b.events()] == [
        ("ann", "state"), ("ann", "state"), ("bo", "state"), ("cy", "state")]
    ids = [e.id for e in Store(tmp_path / "s.json").events()]
    assert len(set(ids)) == 4


@pytest.mark.parametrize("where", ["items", "events", "sources", "meta"])
def test_a_damaged_table_line_is_refused_at_open_not_later(tmp_path: Path, where: str) -> None:
    store = _compacted(tmp_path / "s.json")
    raw = store.path.read_bytes()
    start = raw.index(b',"%s":' % where.encode())
    damaged = raw[:start + 12] + b"#" + raw[start + 13:]  # one byte inside that table's line
    store.path.write_bytes(damaged)
    with pytest.raises(StoreCorrupt, match="checksum"):
        Store(tmp_path / "s.json")
    recovered = Store(tmp_path / "s.json", recover=True)
    assert recovered.item_count() == 5


def test_a_snapshot_from_before_the_line_layout_still_opens(tmp_path: Path) -> None:
    """Stores written by earlier versions are a single-line document without a CRC."""
    store = _compacted(tmp_path / "s.json")
    document = json.loads(store.path.read_bytes())
    document.pop("_crc")
    document["meta"]["store"].pop("next_event")
    store.path.write_text(json.dumps(document))
    old = Store(tmp_path / "s.json")
    assert old.item_count() == 5 and len(old.events()) == 1
    old.log_event("ann", "note", item_id("blog", "id:1"))
    old.compact()  # rewritten in the new layout
    assert len(store.path.read_bytes().splitlines()) > 3
    # A tool's reformatting (jq -c: one line) is parsed whole, not refused.
    store.path.write_bytes(json.dumps(json.loads(store.path.read_bytes())).encode())
    assert len(Store(tmp_path / "s.json").events()) == 2
    assert len(Store(tmp_path / "s.json").events()) == 2


def test_threads_reading_an_unparsed_table_at_once_all_see_it_whole(tmp_path: Path) -> None:
    _compacted(tmp_path / "s.json", count=2000)
    for _ in range(5):
        store = Store(tmp_path / "s.json")
        counts: list[int] = []
        barrier = threading.Barrier(4)

        def read(store: Store = store, barrier: threading.Barrier = barrier,
                 counts: list[int] = counts) -> None:
            barrier.wait()
            counts.append(store.item_count())

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert counts == [2000] * 4


def test_text_search_wants_every_word_in_any_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.json")
    store.add_items([new_item("blog", "a", title="Crash after REFUND"),
                     new_item("blog", "b", title="Refund processed"),
                     new_item("blog", "c", title="Login crash")])
    titles = lambda q: sorted(i.title for i in store.items(store.item_ids(text=q)))  # noqa: E731
    assert titles("refund crash") == ["Crash after REFUND"]
    assert titles("  Refund  ") == ["Crash after REFUND", "Refund processed"]
    assert titles("crash someone") == ["Crash after REFUND", "Login crash"]  # author too
    assert titles("refund login") == []
    assert titles('"after refund"') == ["Crash after REFUND"]  # a quoted phrase, as written
    assert titles('"refund crash"') == []
    assert titles('"login crash" someone') == ["Login crash"]


@pytest.mark.parametrize(("old", "new"), [(b'"gen":1', b'"gen":3'),
                                          (b'"next_event":2', b'"next_event":1')])
def test_a_damaged_generation_or_event_counter_is_refused(tmp_path: Path, old: bytes,
                                                         new: bytes) -> None:
    """Found in review: a wrong gen skipped the journal (and the next commit dropped it for
    good); a wrong next_event made the next event overwrite one of the audit log."""
    store = _compacted(tmp_path / "s.json")
    raw = store.path.read_bytes()
    assert raw.count(old) == 1
    store.path.write_bytes(raw.replace(old, new))
    with pytest.raises(StoreCorrupt, match="checksum"):
        Store(tmp_path / "s.json")


def test_counts_kept_current_match_a_full_recount(tmp_path: Path) -> None:
    """counts() is adjusted per change once computed; after any mix of changes (ours,
    another console's, a compaction) it must equal a recount from scratch."""
    rng = random.Random(3)
    a = Store(tmp_path / "s.json")
    b = Store(tmp_path / "s.json")
    a.add_items([new_item(("blog", "forum")[i % 2], f"id:{i}") for i in range(60)])
    ids = a.item_ids()
    assert b.refresh()
    b.counts()  # from here on both keep their counters current
    a.counts()
    for step in range(120):
        writer = rng.choice((a, b))
        writer.refresh()
        iid = rng.choice(ids)
        change = rng.choice(({"state": rng.choice(("new", "open", "done", "snoozed"))},
                             {"assignee": rng.choice(("", "ann", "bo"))},
                             {"tags": rng.sample(["billing", "bug", "pr"], rng.randint(0, 2))}))
        writer.update_item(iid, change, actor="t", action="edit")
        if step % 40 == 39:
            writer.add_items([new_item("hn", f"late:{step}")])
            ids = writer.item_ids()
        if step == 60:
            writer.compact()
    for store in (a, b):
        store.refresh()
        assert store.counts() == Store(tmp_path / "s.json").counts()
    fresh = Store(tmp_path / "s.json").counts()
    assert sum(fresh["state"].values()) == 63
    copy = a.counts()
    copy["state"].clear()  # callers get a copy: the store's counters are untouched
    assert a.counts() == fresh
