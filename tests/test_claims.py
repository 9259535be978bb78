"""Claims: 'alice is replying' shows on other consoles, expires, and warns before sending."""

from __future__ import annotations

import time

from cm_console import claims
from cm_console.actions import reply
from cm_console.models import Item
from cm_console.store import NewItem, Store


def seed(store: Store) -> str:
    now = time.time()
    store.add_items([NewItem(Item(id="blog:1", source="blog", source_type="rss", guid="1",
                                  url="http://x/1", title="t", author="a", published=now,
                                  fetched=now), "", "")])
    return "blog:1"


def test_a_claim_shows_on_another_console_and_expires(tmp_path) -> None:
    alice, bob = Store(tmp_path / "s.json"), None
    item = seed(alice)
    bob = Store(tmp_path / "s.json")
    claims.claim(alice, item, "alice", seconds=0.3)
    bob.refresh()
    assert bob.claims()[item]["actor"] == "alice"
    assert claims.conflicts(bob, item, "bob", time.time()) == [
        "alice is replying to this right now"]
    assert claims.conflicts(bob, item, "alice", time.time()) == []  # not to the claimer
    time.sleep(0.35)
    assert bob.claims() == {} and claims.conflicts(bob, item, "bob", time.time()) == []


def test_release_drops_only_my_claim(tmp_path) -> None:
    store = Store(tmp_path / "s.json")
    item = seed(store)
    claims.claim(store, item, "alice")
    claims.release(store, item, "bob")
    assert store.claims()[item]["actor"] == "alice"
    claims.release(store, item, "alice")
    assert store.claims() == {}


def test_stale_reply_warning_fires_when_someone_answered_meanwhile(tmp_path,
                                                                  make_config) -> None:
    config = make_config([{"id": "blog", "type": "rss", "url": "http://127.0.0.1:9/f"}])
    mine, theirs = Store(config.store), None
    item = seed(mine)
    opened = time.time()
    theirs = Store(config.store)
    reply(theirs, config, item, "We're on it!", "carol")
    mine.refresh()
    (warning,) = claims.conflicts(mine, item, "bob", opened)
    assert warning.startswith("carol already answered (reply)")


def test_a_second_writer_does_not_take_over_a_live_claim(tmp_path) -> None:
    """Found in a team walkthrough: bob's claim replaced alice's, and when bob sent, the
    claim was dropped for both: alice's ongoing edit vanished from everyone's screen."""
    store = Store(tmp_path / "s.json")
    item = seed(store)
    assert claims.claim(store, item, "alice") is True
    assert claims.claim(store, item, "bob") is False  # alice keeps it
    assert store.claims()[item]["actor"] == "alice"
    claims.release(store, item, "bob")  # bob sends or gives up
    assert store.claims()[item]["actor"] == "alice"
    assert claims.conflicts(store, item, "bob", 0.0) == ["alice is replying to this right now"]
    assert claims.claim(store, item, "alice") is True  # renewing my own claim works
