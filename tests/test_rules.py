"""Routing rules: each match type, ordering and stop, applied at poll time, explained."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import pytest

from cm_console.config import ConfigError
from cm_console.models import Item
from cm_console.poller import Poller
from cm_console.rules import Rule, apply_rules, evaluate, match_text
from cm_console.store import Store

from .feeds import rss


def item(**kw: object) -> Item:
    base = dict(id="blog:1", source="blog", source_type="rss", guid="1", url="http://x/1",
                title="I was charged twice", author="Ann", published=1.0, fetched=1.0,
                summary="support never answered")
    base.update(kw)
    return Item(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rule", "expect"), [
    (Rule("s", sources=["blog"]), True), (Rule("s", sources=["forum"]), False),
    (Rule("t", types=["rss"]), True), (Rule("t", types=["mastodon"]), False),
    (Rule("w", words=["charged twice", "refund"]), True), (Rule("w", words=["charge"]), False),
    (Rule("r", patterns=[re.compile(r"charged\s+\w+", re.I)]), True),
    (Rule("r", patterns=[re.compile(r"^refund")]), False),
    (Rule("a", authors=["ann"]), True), (Rule("a", authors=["bob"]), False),
    (Rule("m", sentiment=["negative"]), True), (Rule("m", sentiment=["positive"]), False),
])
def test_each_match_type(rule: Rule, expect: bool) -> None:
    subject = item(extra={"sentiment_score": -0.6})
    ((_, matched, reasons),) = evaluate([rule], subject, match_text(subject))
    assert matched is expect
    assert reasons  # a match says why; a miss names the failing condition


def test_words_are_whole_words() -> None:
    subject = item(title="great refunding process")
    assert not evaluate([Rule("w", words=["refund"])], subject, match_text(subject))[0][1]


def test_order_later_rules_win_a_field_tags_accumulate_stop_ends() -> None:
    rules = [Rule("a", words=["charged"], tags=["billing"], priority="high"),
             Rule("b", sources=["blog"], tags=["blog"], priority="urgent", assign="alice",
                  stop=True),
             Rule("c", tags=["never"])]
    result = apply_rules(rules, item(), match_text(item()))
    assert result.changes["tags"] == ["billing", "blog"]
    assert result.changes["priority"] == "urgent"
    assert result.changes["assignee"] == "alice"
    assert [m.rule.id for m in result.matches] == ["a", "b"]
    assert evaluate(rules, item(), match_text(item()))[2][2] == [
        "not run: rule b matched and stops"]


def test_escalation_flag() -> None:
    result = apply_rules([Rule("pr", words=["charged"], escalate="pr")], item(),
                         match_text(item()))
    assert result.changes["extra"]["escalate_to"] == "pr"


def test_rules_run_on_new_items_at_poll_and_log_an_event(feed_server, make_config) -> None:
    url = feed_server.add("/f", rss([
        {"guid": "1", "title": "Charged twice, want a refund", "date": time.time() - 60},
        {"guid": "2", "title": "Love the new release", "date": time.time() - 30}]))
    config = make_config([{"id": "blog", "type": "rss", "url": url}],
                         team=[{"id": "alice", "name": "Alice"}],
                         rules=[{"id": "billing", "match": {"words": ["refund"]},
                                 "set": {"tags": ["billing"], "assign": "alice",
                                         "priority": "high"}}])
    store = Store(config.store)
    with Poller(config, store) as poller:
        asyncio.run(poller.poll())
    billing = store.items(store.item_ids(tag="billing"))
    assert [i.title for i in billing] == ["Charged twice, want a refund"]
    assert billing[0].assignee == "alice" and billing[0].priority == "high"
    (event,) = [e for e in store.events(item=billing[0].id) if e.action == "rules"]
    assert event.actor == "rules" and event.data["rules"] == ["billing"]


def test_bad_rules_fail_check_config_with_lines(make_config) -> None:
    with pytest.raises(ConfigError) as err:
        make_config([{"id": "blog", "type": "rss", "url": "http://127.0.0.1:9/f"}],
                    rules=[{"id": "x", "match": {"regex": "(open"}, "set": {"tags": ["t"]}}])
    assert "rules[0].match.regex: invalid regular expression" in str(err.value)


def test_rules_test_and_explain_commands(feed_server, make_config) -> None:
    url = feed_server.add("/f", rss([{"guid": "1", "title": "Where is my refund?"}]))
    config = make_config([{"id": "blog", "type": "rss", "url": url}])
    store = Store(config.store)
    with Poller(config, store) as poller:
        asyncio.run(poller.poll())
    # The team adds a rule afterwards: `rules test` shows what it would change.
    text = config.path.read_text() + (
        "rules:\n  - id: billing\n    match: {words: [refund]}\n    set: {tags: [billing]}\n"
        "  - id: praise\n    match: {words: [thanks]}\n    set: {tags: [praise]}\n")
    config.path.write_text(text)
    run = [sys.executable, "-m", "cm_console", "--config", str(config.path)]
    out = subprocess.run([*run, "rules", "test"], capture_output=True, text=True, check=True)
    assert "tags → ['billing']" in out.stdout and "1 would change" in out.stdout
    item_id = store.item_ids()[0]
    out = subprocess.run([*run, "explain", item_id], capture_output=True, text=True,
                         check=True).stdout
    assert '✓ billing (line' in out and 'mentions "refund"' in out
    assert "✗ praise (line" in out and 'mentions none of "thanks"' in out
