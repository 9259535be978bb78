"""The demo's forum and Mastodon samples are real API sources: replies and private routes
from the console are posted to the demo's loopback server and listed as received."""

from __future__ import annotations

import asyncio

from cm_console import delivery
from cm_console.actions import platform_can, reply, route_private
from cm_console.demo import demo_env
from cm_console.poller import Poller


def test_demo_reply_and_route_private_really_post() -> None:
    with demo_env("tester") as demo:
        with Poller(demo.config, demo.store) as poller:
            report = asyncio.run(poller.poll())
        assert all(r.status == "ok" and r.new > 0 for r in report.results), report.results
        assert {r.source: r.parser for r in report.results}["forum"] == "discourse api"
        items = demo.store.items(demo.store.item_ids())
        ruth = next(i for i in items if i.source == "mastodon" and i.author == "Ruth")
        gwen = next(i for i in items if i.source == "forum" and i.author == "Gwen")
        assert platform_can(demo.config, ruth, "reply")
        assert platform_can(demo.config, gwen, "private")
        reply(demo.store, demo.config, ruth.id, "Sorry, Ruth! Which iOS version?", "tester",
              delay=0.0)
        route_private(demo.store, demo.config, gwen.id, "tester",
                      public_text="Thanks Gwen, I've sent you a message.",
                      private_text="Could you share one delivery id?", delay=0.0)
        results = delivery.deliver_due(demo.store, demo.config)
        assert len(results) == 3 and all(r.ok for r in results), results
        got = "\n".join(demo.received)
        assert ("Mastodon public reply: @ruth@hachyderm.example Sorry, Ruth! Which iOS "
                "version?") in got
        assert "forum reply in topic 9912: Thanks Gwen, I've sent you a message." in got
        assert "forum private message to dev_gwen: Could you share one delivery id?" in got
        assert "cm-console:" not in got  # the retry marker is not what people read
        # Cross-source: the Reddit link post and the blog's comments on that article.
        pricing = next(i for i in items if i.title.startswith("Tessel is raising prices"))
        together = demo.store.thread_items(pricing.thread)
        assert sorted({i.source for i in together}) == ["blog", "reddit"]
        assert len(together) == 3
