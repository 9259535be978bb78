"""``cm-console demo``: the whole console on bundled sample data, offline, no config needed.

The demo serves realistic feeds (a blog's comments, a forum, Mastodon, Reddit, Hacker News)
from a loopback HTTP server it starts, writes a throwaway config pointing at it, and opens a
temporary store. Everything then runs the same code as a real setup: config validation,
HTTP polling, parsing, the store, the TUI.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from importlib import resources
from pathlib import Path
from typing import Any
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
  - id: sorry-public
    title: Public apology, moving to private
    body: "I'm sorry about this, {{author}}. I've sent you a private message so we can sort it out. ({{case}})"
support_email: support@tessel.example
smtp: {{host: 127.0.0.1, port: {smtp_port}, from: community@tessel.example}}
undo_window: 10s
escalation:
  targets:
    - {{id: pr, name: PR desk, webhook: "{webhook}", email: [pr@tessel.example]}}
    - {{id: security, name: Security team, email: [security@tessel.example]}}
    - {{id: product, name: Product team, webhook: "{webhook}"}}
"""


@dataclass
class DemoEnv:
    config: Config
    store: Store
    server: FeedServer
    folder: Path
    received: list[str] = field(default_factory=list)  # what the local sinks accepted


class _MailSink:
    """aiosmtpd handler: keeps a one-line summary of every message the demo 'sends'."""

    def __init__(self, received: list[str]):
        self.received = received

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        self.received.append(f"{time.strftime('%H:%M:%S')}  e-mail to "
                             f"{', '.join(envelope.rcpt_tos)}: {message.get('Subject', '')}")
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def demo_env(actor: str = "you", folder: Path | None = None) -> Iterator[DemoEnv]:
    """Start the demo's feed server, write its config, open its store; clean up after."""
    from aiosmtpd.controller import Controller

    data = _load_demo_data()
    own_folder = folder is None
    folder = folder or Path(tempfile.mkdtemp(prefix="cm-console-demo-"))
    now = time.time()
    received: list[str] = []
    smtp_port = _free_port()
    smtp = Controller(_MailSink(received), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    with contextlib.ExitStack() as stack:
        stack.callback(smtp.stop)
        server = stack.enter_context(FeedServer())

        def webhook(req: Any) -> None:
            size = min(int(req.headers.get("Content-Length") or 0), 1_000_000)
            try:
                text = json.loads(req.rfile.read(size)).get("text", "")
            except ValueError:
                text = "(not JSON)"
            received.append(f"{time.strftime('%H:%M:%S')}  webhook: {text}")
            req.send_response(200)
            req.send_header("Content-Length", "0")
            req.end_headers()

        webhook_url = server.route("/hooks/demo", webhook)
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
                                                  sources="\n".join(lines), actor=safe_actor,
                                                  smtp_port=smtp_port, webhook=webhook_url),
                               encoding="utf-8")
        config = load_config(config_path)
        store = Store(config.store)
        try:
            yield DemoEnv(config, store, server, folder, received)
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
