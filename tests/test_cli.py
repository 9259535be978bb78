"""Proves the headless CLI: real subprocesses against a loopback feed server and real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lxml import etree

from cm_console.config import load_config
from cm_console.feedserver import FeedServer
from cm_console.store import Store

from .feeds import rss


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cm_console ARGS`` the way a user or cron does (piped, not a tty)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("CM_CONSOLE_CONFIG", "CM_CONSOLE_USER")}
    return subprocess.run([sys.executable, "-m", "cm_console", *args], cwd=cwd,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=60)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


NOW = time.time()
BLOG = rss([
    {"guid": "b1", "title": "Refund please", "link": "https://blog.example/1", "author": "Ann",
     "date": NOW - 300, "html": "<p>I was charged <b>twice</b>.</p>"},
    {"guid": "b2", "title": "Love the update", "link": "https://blog.example/2",
     "author": "Bo", "date": NOW - 60, "html": "<p>Great work!</p>"},
])
FORUM = rss([{"guid": "f1", "title": "Sync stuck", "link": "https://forum.example/t/1",
              "author": "cy", "date": NOW - 120, "html": "<p>Stuck at 99%</p>"}])


def write_config(tmp_path: Path, sources: list[tuple[str, str]], extra: str = "") -> Path:
    lines = [
        "# Team config: this comment must survive an OPML import.",
        f"store: {tmp_path / 'team.db.json'}",
        "poll:",
        "  timeout: 5s  # keep tests quick",
        "  parse_workers: 0",
        "sources:",
    ]
    for sid, url in sources:
        lines += [f"  # the {sid} feed", f"  - id: {sid}", "    type: rss", f"    url: {url}"]
    if not sources:
        lines[-1] = "sources: []"
    path = tmp_path / "cm-console.yaml"
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


@pytest.fixture
def polled(tmp_path: Path, feed_server: FeedServer) -> Path:
    """A config with two healthy feeds, polled once."""
    config = write_config(tmp_path, [("blog", feed_server.add("/blog", BLOG)),
                                     ("forum", feed_server.add("/forum", FORUM))])
    done = cli("--config", str(config), "poll", "--once")
    assert done.returncode == 0, done.stderr
    return config


# --------------------------------------------------------------------------- poll


def test_poll_once_prints_a_line_per_source_and_exits_1_on_an_error(
        tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.route("/down", lambda req: feed_server._send(req, 500, b"oops", "text/plain"))
    config = write_config(tmp_path, [("blog", feed_server.add("/blog", BLOG)),
                                     ("down", feed_server.url("/down")),
                                     ("forum", feed_server.add("/forum", FORUM))])
    done = cli("--config", str(config), "poll", "--once")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[:3] == ["blog: 2 new (2 in feed)",
                         "down: error: HTTP 500 Internal Server Error",
                         "forum: 1 new (1 in feed)"]
    assert lines[3].startswith("polled 3 source(s) in ")
    assert lines[3].endswith(": 3 new item(s), 1 error(s)")
    assert len(lines) == 4

    # Fixed: exit 0, and the healthy feeds answer 304 now.
    del feed_server.handlers["/down"]
    feed_server.add("/down", rss([{"guid": "d1", "title": "back"}]))
    done = cli("--config", str(config), "poll", "--once")
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[:3] == ["blog: not modified", "down: 1 new (1 in feed)",
                                            "forum: not modified"]


def test_poll_once_json_lines(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.route("/busy", lambda req: feed_server._send(
        req, 429, b"", "text/plain", {"Retry-After": "120"}))
    config = write_config(tmp_path, [("blog", feed_server.add("/blog", BLOG)),
                                     ("busy", feed_server.url("/busy"))])
    done = cli("--config", str(config), "poll", "--once", "--json")
    assert done.returncode == 1
    rows = json_lines(done.stdout)
    assert [(r["source"], r["status"], r["new"]) for r in rows] == [("blog", "ok", 2),
                                                                    ("busy", "error", 0)]
    assert all(set(r) == {"source", "status", "new", "entries", "error", "seconds"}
               for r in rows)
    assert "Retry-After 120s" in rows[1]["error"]

    # --once still honours the server's Retry-After: not asked again, reported as waiting.
    done = cli("--config", str(config), "poll", "--once", "--json")
    rows = json_lines(done.stdout)
    assert [(r["source"], r["status"]) for r in rows] == [("blog", "304"), ("busy", "waiting")]
    assert done.returncode == 0
    assert feed_server.hits["/busy"] == 1


def test_poll_due_skips_sources_whose_interval_has_not_passed(polled: Path,
                                                               feed_server: FeedServer) -> None:
    hits = sum(feed_server.hits.values())
    done = cli("--config", str(polled), "poll", "--due")
    assert done.returncode == 0
    assert done.stdout.startswith("polled 0 source(s)")
    assert sum(feed_server.hits.values()) == hits


def test_poll_unknown_source_is_a_usage_error(polled: Path) -> None:
    done = cli("--config", str(polled), "poll", "--once", "--source", "nope")
    assert done.returncode == 2
    assert "unknown source(s): nope" in done.stderr


# --------------------------------------------------------------------------- items, show, mark


def test_items_json_newest_first_with_the_documented_fields(polled: Path) -> None:
    done = cli("--config", str(polled), "items", "--json")
    assert done.returncode == 0
    rows = json_lines(done.stdout)
    assert [r["title"] for r in rows] == ["Love the update", "Sync stuck", "Refund please"]
    assert {"id", "source", "author", "title", "url", "published", "state"} <= set(rows[0])
    assert rows[2]["author"] == "Ann" and rows[2]["url"] == "https://blog.example/1"
    assert rows[2]["state"] == "new" and abs(rows[2]["published"] - (NOW - 300)) < 2
    assert [r["title"] for r in json_lines(cli("--config", str(polled), "items", "--json",
                                               "--source", "forum").stdout)] == ["Sync stuck"]
    assert len(json_lines(cli("--config", str(polled), "items", "--json", "--limit", "1")
                          .stdout)) == 1
    plain = cli("--config", str(polled), "items").stdout.splitlines()
    assert len(plain) == 3 and plain[0].split("\t")[-1] == "Love the update"


def test_show_by_prefix_then_mark_done(polled: Path) -> None:
    rows = json_lines(cli("--config", str(polled), "items", "--json").stdout)
    refund = next(r for r in rows if r["title"] == "Refund please")
    prefix = refund["id"][: len("blog:") + 5]

    shown = cli("--config", str(polled), "show", prefix)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.splitlines()
    assert text[0] == "Refund please"
    assert "blog · Ann · " in text[1] and text[1].endswith(" · new")
    assert text[2] == "https://blog.example/1"
    assert "I was charged twice." in shown.stdout
    assert text[-1] == "History: none"
    # The hash part alone works too.
    assert cli("--config", str(polled), "show", refund["id"].split(":")[1][:6]).returncode == 0

    marked = cli("--config", str(polled), "--as", "ann", "mark", prefix, "done")
    assert marked.returncode == 0 and marked.stdout.strip() == f"{refund['id']}: done"
    done_items = json_lines(cli("--config", str(polled), "items", "--json", "--state",
                                "done").stdout)
    assert [r["id"] for r in done_items] == [refund["id"]]
    new_items = json_lines(cli("--config", str(polled), "items", "--json", "--state",
                               "new").stdout)
    assert refund["id"] not in {r["id"] for r in new_items} and len(new_items) == 2

    detail = json_lines(cli("--config", str(polled), "show", prefix, "--json").stdout)[0]
    assert detail["state"] == "done" and detail["text"] == "I was charged twice."
    assert [(e["actor"], e["action"]) for e in detail["events"]] == [("ann", "state")]
    assert detail["events"][0]["data"]["before"] == {"state": "new"}

    # Who am I without --as: $CM_CONSOLE_USER.
    cli("--config", str(polled), "mark", prefix, "open", env={"CM_CONSOLE_USER": "bo"})
    detail = json_lines(cli("--config", str(polled), "show", prefix, "--json").stdout)[0]
    assert [e["actor"] for e in detail["events"]] == ["ann", "bo"]
    assert detail["state"] == "open"


def test_show_and_mark_unknown_or_ambiguous_ids_exit_1(polled: Path) -> None:
    for args in (("show", "blog:zzzz"), ("mark", "nope", "done")):
        done = cli("--config", str(polled), *args)
        assert done.returncode == 1
        assert "no item" in done.stderr
    ambiguous = cli("--config", str(polled), "show", "blog:")
    assert ambiguous.returncode == 1
    assert "matches 2 items; give more of the id" in ambiguous.stderr
    bad_state = cli("--config", str(polled), "mark", "blog:", "finished")
    assert bad_state.returncode == 2  # argparse: not one of the states


def test_sources_shows_last_poll_status_and_error(tmp_path: Path,
                                                  feed_server: FeedServer) -> None:
    feed_server.route("/down", lambda req: feed_server._send(req, 503, b"", "text/plain"))
    config = write_config(tmp_path, [("blog", feed_server.add("/blog", BLOG)),
                                     ("down", feed_server.url("/down")),
                                     ("later", feed_server.add("/later", FORUM))],
                          extra="")
    cli("--config", str(config), "poll", "--once", "--source", "blog", "--source", "down")
    done = cli("--config", str(config), "sources")
    assert done.returncode == 0
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert lines["blog"].split()[1:4] == ["rss", "2", "items"] and lines["blog"].endswith(" ok")
    assert lines["down"].endswith("error: HTTP 503 Service Unavailable")
    assert lines["later"].endswith("never polled")
    rows = {r["id"]: r for r in json_lines(cli("--config", str(config), "sources",
                                               "--json").stdout)}
    assert rows["blog"]["items"] == 2 and rows["blog"]["status"] == "ok"
    assert rows["down"]["error"] == "HTTP 503 Service Unavailable"
    assert rows["later"]["last_poll"] is None


# --------------------------------------------------------------------------- OPML


OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>newsboat export</title></head>
  <body>
    <outline text="Community">
      <outline type="rss" text="Status page" xmlUrl="https://status.example.org/feed.rss"/>
      <outline type="rss" title="Example forum" text="ignored" xmlUrl="https://forum.example.com/latest.rss"/>
    </outline>
    <outline type="rss" text="Blog (already there)" xmlUrl="URL_OF_BLOG"/>
    <outline type="rss" text="Not http" xmlUrl="file:///etc/passwd"/>
  </body>
</opml>
"""


def test_opml_import_keeps_comments_and_export_round_trips(tmp_path: Path,
                                                            feed_server: FeedServer) -> None:
    blog = feed_server.add("/blog", BLOG)
    config = write_config(tmp_path, [("blog", blog)], extra="\n# trailing comment\nteam:\n"
                          "  - {id: ann, name: Ann}  # the lead\n")
    before = config.read_text(encoding="utf-8")
    opml = tmp_path / "subs.opml"
    opml.write_bytes(OPML.replace(b"URL_OF_BLOG", blog.encode()))

    done = cli("--config", str(config), "opml", "import", str(opml))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "added 2 source(s): status-page, example-forum"
    after = config.read_text(encoding="utf-8")
    # Every original line (comments included) is still there, in order.
    old_lines = before.splitlines()
    new_lines = after.splitlines()
    it = iter(new_lines)
    assert all(line in it for line in old_lines), after
    assert len(new_lines) == len(old_lines) + 2
    loaded = load_config(config)
    assert [(s.id, s.url, s.name) for s in loaded.sources] == [
        ("blog", blog, ""),
        ("status-page", "https://status.example.org/feed.rss", "Status page"),
        ("example-forum", "https://forum.example.com/latest.rss", "Example forum"),
    ]
    assert cli("--config", str(config), "check-config").returncode == 0
    # Importing again adds nothing and leaves the file alone.
    again = cli("--config", str(config), "opml", "import", str(opml))
    assert again.stdout.strip() == "added 0 source(s): -"
    assert config.read_text(encoding="utf-8") == after

    exported = cli("--config", str(config), "opml", "export")
    assert exported.returncode == 0
    root = etree.fromstring(exported.stdout.encode())
    urls = [o.get("xmlUrl") for o in root.iter("outline")]
    assert urls == [s.url for s in loaded.sources]

    # Round trip into an empty config: the same feeds come back.
    other = tmp_path / "other"
    other.mkdir()
    empty = write_config(other, [])
    out_file = tmp_path / "export.opml"
    assert cli("--config", str(config), "opml", "export", "-o", str(out_file)).returncode == 0
    assert cli("--config", str(empty), "opml", "import", str(out_file)).returncode == 0
    assert [(s.url, s.label) for s in load_config(empty).sources] == [
        (s.url, s.label) for s in loaded.sources]


def test_opml_with_entities_is_refused_and_config_untouched(tmp_path: Path) -> None:
    config = write_config(tmp_path, [])
    before = config.read_bytes()
    opml = tmp_path / "evil.opml"
    opml.write_bytes(b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY x "xxxxxxxx">]>'
                     b'<opml><body><outline xmlUrl="https://e.com/&x;"/></body></opml>')
    done = cli("--config", str(config), "opml", "import", str(opml))
    assert done.returncode == 2
    assert done.stderr.startswith(f"cm-console: cannot import {opml}: feed declares an inline "
                                  "DTD")
    assert config.read_bytes() == before
    for bad, message in ((tmp_path / "missing.opml", "No such file or directory"),
                         (config, "not valid OPML")):
        done = cli("--config", str(config), "opml", "import", str(bad))
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert config.read_bytes() == before


# --------------------------------------------------------------------------- failures


def test_missing_config_exits_2_with_a_helpful_message(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    done = cli("items", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "no config found" in done.stderr
    assert "config.example.yaml" in done.stderr and "cm-console demo" in done.stderr
    assert "Traceback" not in done.stderr

    named = cli("--config", str(tmp_path / "nope.yaml"), "items", cwd=tmp_path, env=env)
    assert named.returncode == 2
    assert f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory" in named.stderr


def test_invalid_config_exits_2_naming_the_line(tmp_path: Path) -> None:
    config = tmp_path / "cm-console.yaml"
    config.write_text("sources:\n  - id: a\n    type: rss\n    url: ftp://x/feed\n")
    done = cli("--config", str(config), "items")
    assert done.returncode == 2
    assert done.stderr.startswith(f"{config}:4: sources[0].url: expected an http:// or https://")


def test_damaged_store_exits_3_and_recover_restores_it(polled: Path) -> None:
    store_path = load_config(polled).store
    before = json_lines(cli("--config", str(polled), "items", "--json").stdout)
    store_path.write_bytes(b"")  # a zero-byte snapshot, e.g. after a disk-full accident

    done = cli("--config", str(polled), "items", "--json")
    assert done.returncode == 3
    assert "--recover" in done.stderr and "empty (zero bytes)" in done.stderr
    assert done.stdout == ""  # never shown as an empty inbox

    done = cli("--config", str(polled), "--recover", "items", "--json")
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stderr and "last good copy" in done.stderr
    assert json_lines(done.stdout) == before
    assert cli("--config", str(polled), "items", "--json").returncode == 0


def test_store_without_any_copy_exits_3_without_pretending(tmp_path: Path) -> None:
    config = write_config(tmp_path, [])
    store = Store(load_config(config).store)
    store.compact()
    store.bak_path.unlink()
    store.journal_bak_path.unlink(missing_ok=True)
    store.path.write_bytes(b"{not json")
    for args in (("items",), ("--recover", "items")):
        done = cli("--config", str(config), *args)
        assert done.returncode == 3
        assert "unreadable" in done.stderr and "Traceback" not in done.stderr


def test_locked_store_exits_3(tmp_path: Path) -> None:
    config = write_config(tmp_path, [])
    store_path = load_config(config).store
    Store(store_path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom filelock import FileLock\n"
         f"with FileLock({str(store_path) + '.lock'!r}):\n"
         "    print('held', flush=True)\n    time.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        env = {"PYTHONPATH": str(tmp_path)}
        (tmp_path / "sitecustomize.py").write_text(
            "import cm_console.store as s\ns.LOCK_TIMEOUT = 0.5\n")
        done = cli("--config", str(config), "items", env=env)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 3
    assert "locked by another process" in done.stderr


@pytest.mark.parametrize("command", ["items", "sources"])
def test_a_reader_that_left_is_not_an_error(polled: Path, command: str) -> None:
    """`cm-console items | head`: when the reader has gone, exit 0 and say nothing (found in
    review: the flush before exit printed a traceback when stdout was buffered)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    env = {k: v for k, v in os.environ.items()
           if k not in ("CM_CONSOLE_CONFIG", "CM_CONSOLE_USER", "PYTHONUNBUFFERED")}
    try:
        done = subprocess.run([sys.executable, "-m", "cm_console", "--config", str(polled),
                               command], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              env=env, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_items_refuses_an_unknown_source_and_a_negative_limit(polled: Path) -> None:
    done = cli("--config", str(polled), "items", "--source", "nope")
    assert done.returncode == 2
    assert 'unknown source "nope" (known: blog, forum)' in done.stderr
    done = cli("--config", str(polled), "items", "--limit", "-1")
    assert done.returncode == 2
    assert "expected 0 or more, got -1" in done.stderr
    assert cli("--config", str(polled), "items", "--limit", "1").stdout.count("\n") == 1


def test_a_zero_byte_store_without_backup_says_how_to_start_over(tmp_path: Path) -> None:
    config = write_config(tmp_path, [])
    (tmp_path / "team.db.json").write_bytes(b"")
    done = cli("--config", str(config), "items")
    assert done.returncode == 3
    assert "move the file aside to start an empty store" in done.stderr
    done = cli("--config", str(config), "--recover", "items")
    assert done.returncode == 3
    assert "--recover has nothing to restore from" in done.stderr


def test_check_config_warns_about_unset_variables_with_their_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], extra=(
        "escalation:\n  targets:\n    - id: pr\n      name: PR\n"
        "      webhook: ${CM_TEST_UNSET_HOOK}\n"))
    done = cli("--config", str(config), "check-config")
    assert done.returncode == 0, done.stderr
    assert "1 warning(s)" in done.stdout
    assert (f"{config}:11: warning: webhook: ${{CM_TEST_UNSET_HOOK}} is not set in this "
            "environment") in done.stderr
    done = cli("--config", str(config), "check-config",
               env={"CM_TEST_UNSET_HOOK": "https://hooks.example/x"})
    assert "warning" not in done.stderr and "warning" not in done.stdout


def test_show_and_log_say_what_a_rule_set_in_plain_words(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """Found by a newcomer: show left out the tags, assignee and priority a rule had set,
    its history said only "rules", and log printed Python lists (tags=['billing'])."""
    config = write_config(tmp_path, [("blog", feed_server.add("/blog", BLOG))], extra=(
        "team:\n  - {id: alice, name: Alice, role: agent}\n"
        "rules:\n  - id: billing\n    match: {words: [refund]}\n"
        "    set: {tags: [billing, money], priority: high, assign: alice}\n"))
    assert cli("--config", str(config), "poll", "--once").returncode == 0
    [line] = [ln for ln in cli("--config", str(config), "items").stdout.splitlines()
              if "Refund please" in ln]
    shown = cli("--config", str(config), "show", line.split("\t")[0]).stdout
    assert "priority high · assigned to alice · tags billing, money" in shown
    assert "rules  rules  priority=high assignee=alice tags=billing, money by billing" in shown
    log = cli("--config", str(config), "log").stdout
    assert "tags=billing, money" in log and "['billing'" not in log


def test_acting_as_someone_outside_the_team_is_pointed_out(polled: Path) -> None:
    team = "team:\n  - {id: ann, name: Ann, role: agent}\n"
    polled.write_text(polled.read_text() + team)
    item_id = cli("--config", str(polled), "items").stdout.split("\t")[0]
    done = cli("--config", str(polled), "--as", "zed", "mark", item_id, "done")
    assert done.returncode == 0
    assert 'you are "zed", who is not in the config\'s team (ann)' in done.stderr
    done = cli("--config", str(polled), "--as", "ann", "mark", item_id, "open")
    assert done.returncode == 0 and done.stderr == ""
    assert cli("--config", str(polled), "--as", "zed", "items").stderr == ""  # reading: quiet


def test_poll_once_marks_sla_breaches_for_cron_only_teams(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """Found in a team walkthrough: only a running TUI marked breaches, so breach rules
    never ran for a team polling from cron."""
    url = feed_server.add("/late", rss([{"guid": "l1", "title": "Still waiting",
                                         "date": NOW - 7200, "html": "<p>Hello?</p>"}]))
    config = write_config(tmp_path, [("blog", url)], extra=(
        "rules:\n  - id: late\n    match: {breached: true}\n    set: {priority: urgent}\n"))
    config.write_text(config.read_text().replace("    url: ", "    sla: 1h\n    url: "))
    done = cli("--config", str(config), "poll", "--once")
    assert done.returncode == 0, done.stderr
    assert "passed its first-response SLA" in done.stdout
    shown = cli("--config", str(config), "items", "--json").stdout
    assert json_lines(shown)[0]["priority"] == "urgent"


def test_log_says_when_it_shows_only_the_newest(polled: Path) -> None:
    item_id = cli("--config", str(polled), "items").stdout.split("\t")[0]
    for state in ("open", "done", "open"):
        assert cli("--config", str(polled), "mark", item_id, state).returncode == 0
    done = cli("--config", str(polled), "log", "--limit", "2")
    assert len(done.stdout.splitlines()) == 2
    assert "(the newest 2 of 3 entries; --limit 0 shows all)" in done.stderr
    assert cli("--config", str(polled), "log", "--limit", "0").stderr == ""
