"""``cm-console demo``: the whole console on bundled sample data, offline, no config needed.

The demo serves realistic feeds (a blog's comments, a forum, Mastodon, Reddit, Hacker News)
from a loopback HTTP server it starts, writes a throwaway config pointing at it, and opens a
temporary store. Everything then runs the same code as a real setup: config validation,
HTTP polling, parsing, the store, the TUI.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from importlib import resources
from pathlib import Path
from xml.sax.saxutils import escape

import yaml

from .config import Config, load_config
from .feedserver import FeedServer
from .models import parse_duration
from .store import Store

__all__ = ["DemoEnv", "demo_env", "render_feed", "run_demo"]


def _load_demo_data() -> dict:
    text = resources.files("cm_console").joinpath("demo_data/demo.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def render_feed(feed: dict, now: float) -> bytes:
    """One demo feed as RSS 2.0 or Atom 1.0 bytes, dated relative to ``now``."""
    parts: list[str] = []
    if feed.get("format") == "atom":
        parts.append('<?xml version="1.0" encoding="utf-8"?>\n'
                     '<feed xmlns="http://www.w3.org/2005/Atom">'
                     f"<title>{escape(feed['title'])}</title><id>urn:demo:{feed['id']}</id>")
        for entry in feed["entries"]:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                 time.gmtime(now - parse_duration(entry["ago"])))
            parts.append(
                f"<entry><id>{escape(entry['link'])}</id>"
                f"<title>{escape(entry.get('title') or '')}</title>"
                f'<link rel="alternate" href="{escape(entry["link"])}"/>'
                f"<author><name>{escape(entry['author'])}</name></author>"
                f"<updated>{when}</updated><published>{when}</published>"
                f'<content type="html">{escape(entry["html"])}</content></entry>'
            )
        parts.append("</feed>")
    else:
        parts.append('<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
                     'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
                     f"<title>{escape(feed['title'])}</title>")
        for entry in feed["entries"]:
            when = formatdate(now - parse_duration(entry["ago"]), usegmt=True)
            parts.append(
                f"<item><title>{escape(entry.get('title') or '')}</title>"
                f"<link>{escape(entry['link'])}</link>"
                f'<guid isPermaLink="true">{escape(entry["link"])}</guid>'
                f"<dc:creator>{escape(entry['author'])}</dc:creator>"
                f"<pubDate>{when}</pubDate>"
                f"<description>{escape(entry['html'])}</description></item>"
            )
        parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


DEMO_CONFIG = """\
# Written by `cm-console demo`; points at the demo's loopback server.
store: {store}
poll:
  interval: 2m
  timeout: 10s
  parse_workers: 1
sources:
{sources}
team:
  - {{id: {actor}, name: "You ({actor})", role: lead}}
  - {{id: alice, name: Alice Moreau, role: agent}}
  - {{id: bo, name: Bo Lindqvist, role: pr}}
templates:
  - id: thanks
    title: Thank you
    body: "Thanks so much, {{author}}! We've shared this with the team. – {{agent}}"
  - id: take-private
    title: Move to a private channel
    body: "Sorry about this, {{author}}. I'd be happy to look into it privately: I've sent you a message. (case {{case}})"
  - id: private-followup
    title: Private follow-up
    visibility: private
    body: "Hi {{author}}, this is {{agent}} from Tessel. About your post ({{link}}): could you send the e-mail on your account so I can check? Case {{case}}."
escalation:
  targets:
    - {{id: pr, name: PR desk, email: [pr@tessel.example]}}
    - {{id: security, name: Security team, email: [security@tessel.example]}}
"""


@dataclass
class DemoEnv:
    config: Config
    store: Store
    server: FeedServer
    folder: Path


@contextlib.contextmanager
def demo_env(actor: str = "you", folder: Path | None = None) -> Iterator[DemoEnv]:
    """Start the demo's feed server, write its config, open its store; clean up after."""
    data = _load_demo_data()
    own_folder = folder is None
    folder = folder or Path(tempfile.mkdtemp(prefix="cm-console-demo-"))
    now = time.time()
    with FeedServer() as server:
        sources = []
        for feed in data["feeds"]:
            url = server.add(feed["path"], render_feed(feed, now),
                             "application/atom+xml" if feed.get("format") == "atom"
                             else "application/rss+xml")
            source_type = "reddit" if feed["id"] == "reddit" else "rss"
            sources.append({"id": feed["id"], "type": source_type, "name": feed["name"],
                            "url": url})
        lines = ["  - " + yaml.safe_dump(s, default_flow_style=True, width=10_000).strip()
                 for s in sources]
        safe_actor = "".join(c for c in actor if c.isalnum() or c in "_.-")[:40] or "you"
        config_path = folder / "cm-console.yaml"
        config_path.write_text(DEMO_CONFIG.format(store=yaml.safe_dump(str(folder / "demo.db.json")).split("\n")[0],
                                                  sources="\n".join(lines), actor=safe_actor),
                               encoding="utf-8")
        config = load_config(config_path)
        store = Store(config.store)
        try:
            yield DemoEnv(config, store, server, folder)
        finally:
            if own_folder:
                shutil.rmtree(folder, ignore_errors=True)


def run_demo(*, headless: bool = False, actor: str = "you") -> int:
    """Entry point of ``cm-console demo``."""
    with demo_env(actor) as env:
        if headless:
            from .poller import Poller

            with Poller(env.config, env.store) as poller:
                report = asyncio.run(poller.poll())
            print(f"demo: polled {len(report.results)} sources, {len(report.new_ids)} items "
                  f"(store in {env.folder})\n")
            for item in env.store.items(env.store.item_ids()):
                stamp = time.strftime("%H:%M", time.localtime(item.published))
                print(f"{stamp}  {item.source:<9} {item.author[:22]:<22}  {item.title[:80]}")
            return 0
        from .app import run_app

        return run_app(env.config, env.store, actor=actor, demo=env)
