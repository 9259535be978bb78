"""``cm-console demo``: the whole console on bundled sample data, offline, no config needed.

The demo serves realistic feeds (a blog's comments, a forum, Mastodon, Reddit, Hacker News)
from a loopback HTTP server it starts, writes a throwaway config pointing at it, and opens a
temporary store. Everything then runs the same code as a real setup: config validation,
HTTP polling, parsing, the store, the TUI.

The forum and Mastodon samples are served as their platforms' JSON APIs (Discourse
``/posts.json``, Mastodon notifications and hashtag timeline), so the real connectors poll
them, and a reply or route-private from the console is really posted by the outbox to the
loopback server, which lists what it received (the outbox screen shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
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
  - {{id: {actor}, name: Sam, role: lead}}
  - {{id: alice, name: Alice Moreau, role: agent}}
  - {{id: bo, name: Bo Lindqvist, role: pr}}
templates:
  - id: thanks
    title: Thank you
    body: "Thanks so much, {{author}}! We've shared this with the team. – {{agent}}, Tessel"
  - id: take-private
    title: Move to a private channel (DM)
    channels: [mastodon, discourse, bluesky]
    body: "Sorry about this, {{author}}. I've sent you a private message so we can sort it out. (case {{case}})"
  - id: take-to-support
    title: Hand off to the support team
    channels: [rss, reddit, hackernews]
    body: "Sorry about this, {{author}}. Could you write to support@tessel.example and mention case {{case}}? Our support team has the details and will get back to you."
  - id: private-followup
    title: Private follow-up to the customer (DM)
    visibility: private
    channels: [mastodon, discourse, bluesky]
    body: "Hi {{author}}, this is {{agent}} from Tessel. About your post ({{link}}): could you send the e-mail on your account so I can check? Case {{case}}."
  - id: support-handoff
    title: Hand-off note for the support team (e-mail)
    visibility: private
    channels: [rss, reddit, hackernews]
    body: "Case {{case}}: {{author}} posted about this publicly ({{link}}). We asked them to write to support; please look out for their message and follow up. – {{agent}}"
support_email: support@tessel.example
smtp: {{host: 127.0.0.1, port: {smtp_port}, from: community@tessel.example}}
undo_window: 10s
escalation:
  targets:
    - {{id: pr, name: PR desk, webhook: "{webhook}", email: [pr@tessel.example]}}
    - {{id: security, name: Security team, email: [security@tessel.example]}}
    - {{id: product, name: Product team, webhook: "{webhook}"}}
"""


# The demo platforms' credentials: checked by the loopback server as a real one would, and
# passed as ${ENV} references like real secrets (set in the demo's own process only).
DEMO_SECRETS = {"CM_DEMO_FORUM_KEY": "demo-forum-key",
                "CM_DEMO_MASTODON_TOKEN": "demo-mastodon-token"}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _read_json(req: Any) -> Any:
    size = min(int(req.headers.get("Content-Length") or 0), 1_000_000)
    try:
        return json.loads(req.rfile.read(size) or b"null")
    except ValueError:
        return None


def _answer(req: Any, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    req.send_response(status)
    req.send_header("Content-Type", "application/json; charset=utf-8")
    req.send_header("Content-Length", str(len(data)))
    req.end_headers()
    req.wfile.write(data)


def _snippet(text: str, limit: int = 140) -> str:
    """What the received list shows of a post: one line, the retry marker left out."""
    text = " ".join(text.split("<!-- cm-console:")[0].split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _DemoForum:
    """The Discourse endpoints the connector uses, served on the demo's loopback server."""

    def __init__(self, server: FeedServer, feed: dict, now: float, received: list[str]):
        self.server = server
        self.path = feed["path"]
        self.received = received
        self.lock = threading.Lock()
        self.posts: list[dict[str, Any]] = []
        oldest_first = sorted(feed["entries"], key=lambda e: -parse_duration(e["ago"]))
        for n, entry in enumerate(oldest_first):
            self.posts.append({
                "id": 7000 + n, "name": entry["author"], "username": entry["username"],
                "created_at": _iso(now - parse_duration(entry["ago"])),
                "cooked": entry["html"], "post_number": entry["post_number"],
                "reply_to_post_number": entry.get("reply_to"), "topic_id": entry["topic_id"],
                "topic_slug": entry["slug"], "topic_title": entry["title"],
                "category_id": 4, "post_type": 1, "raw": "",
            })
        self.created: list[dict[str, Any]] = []
        server.route(f"{self.path}/posts.json", self.posts_json)
        server.route(f"{self.path}/user_actions.json", self.user_actions)

    def _authorized(self, req: Any) -> bool:
        if req.headers.get("Api-Key") == DEMO_SECRETS["CM_DEMO_FORUM_KEY"]:
            return True
        _answer(req, 403, {"errors": ["The API username or key is invalid."],
                           "error_type": "invalid_access"})
        return False

    def posts_json(self, req: Any) -> None:
        if req.command == "POST":
            self.create(req)
            return
        with self.lock:
            latest = sorted(self.posts + self.created, key=lambda p: -p["id"])[:50]
        _answer(req, 200, {"latest_posts": latest})

    def create(self, req: Any) -> None:
        if not self._authorized(req):
            return
        body = _read_json(req)
        if not isinstance(body, dict) or not isinstance(body.get("raw"), str):
            _answer(req, 422, {"errors": ["raw is missing"]})
            return
        private = body.get("archetype") == "private_message"
        with self.lock:
            post_id = 8000 + len(self.created)
            if private:
                topic_id, number, title = 9990 + post_id % 1000, 1, str(body.get("title"))
            else:
                topic_id = int(body.get("topic_id") or 0)
                number = 1 + max((p["post_number"] for p in self.posts + self.created
                                  if p["topic_id"] == topic_id), default=0)
                title = next((p["topic_title"] for p in self.posts
                              if p["topic_id"] == topic_id), "")
            post = {"id": post_id, "name": "Tessel Team",
                    "username": req.headers.get("Api-Username", ""),
                    "created_at": _iso(time.time()), "cooked": f"<p>{escape(body['raw'])}</p>",
                    "raw": body["raw"], "post_number": number,
                    "reply_to_post_number": body.get("reply_to_post_number"),
                    "topic_id": topic_id, "topic_slug": "reply", "topic_title": title,
                    "category_id": None if private else 4, "post_type": 1}
            self.created.append(post)
        self.server.route(f"{self.path}/posts/{post_id}.json",
                          lambda r, p=post: _answer(r, 200, p))
        what = (f"forum private message to {body.get('target_recipients')}" if private
                else f"forum reply in topic {topic_id}")
        self.received.append(f"{time.strftime('%H:%M:%S')}  {what}: {_snippet(body['raw'])}")
        _answer(req, 200, post)

    def user_actions(self, req: Any) -> None:
        if not self._authorized(req):
            return
        with self.lock:
            actions = [{"post_id": p["id"], "topic_id": p["topic_id"],
                        "post_number": p["post_number"], "created_at": p["created_at"],
                        "action_type": 12 if p["category_id"] is None else 5}
                       for p in reversed(self.created)]
        _answer(req, 200, {"user_actions": actions})


class _DemoMastodon:
    """A Mastodon instance: notifications, the #tessel timeline, POST /api/v1/statuses
    (which answers a repeated Idempotency-Key with the status it already made)."""

    def __init__(self, server: FeedServer, feed: dict, now: float, received: list[str]):
        self.received = received
        self.lock = threading.Lock()
        self.by_key: dict[str, dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        for n, entry in enumerate(feed["entries"]):
            username, _, domain = entry["acct"].partition("@")
            account = {"id": str(500 + n), "username": username, "acct": entry["acct"],
                       "display_name": entry["author"], "url": f"https://{domain}/@{username}"}
            created = _iso(now - parse_duration(entry["ago"]))
            status = {"id": entry["status_id"], "created_at": created, "in_reply_to_id": None,
                      "visibility": "public", "spoiler_text": "", "uri": entry["link"],
                      "url": entry["link"], "content": entry["html"], "account": account,
                      "reblog": None, "card": None}
            self.statuses.append(status)
            if entry.get("mention"):
                self.notifications.append({"id": str(9000 + n), "type": "mention",
                                           "created_at": created, "account": account,
                                           "status": status})
        base = feed["path"]
        server.route(f"{base}/api/v1/notifications",
                     lambda r: self.listing(r, self.notifications))
        server.route(f"{base}/api/v1/timelines/tag/tessel",
                     lambda r: self.listing(r, self.statuses))
        server.route(f"{base}/api/v1/statuses", self.post)

    def _authorized(self, req: Any) -> bool:
        token = DEMO_SECRETS["CM_DEMO_MASTODON_TOKEN"]
        if req.headers.get("Authorization") == f"Bearer {token}":
            return True
        _answer(req, 401, {"error": "The access token is invalid"})
        return False

    def listing(self, req: Any, entries: list[dict[str, Any]]) -> None:
        if not self._authorized(req):
            return
        query = parse_qs(urlsplit(req.path).query)
        rows = sorted(entries, key=lambda e: int(e["id"]), reverse=True)
        if "min_id" in query:
            rows = [r for r in rows if int(r["id"]) > int(query["min_id"][0])]
        _answer(req, 200, rows[:40])

    def post(self, req: Any) -> None:
        if not self._authorized(req):
            return
        body = _read_json(req)
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            _answer(req, 422, {"error": "Validation failed: Text can't be blank"})
            return
        key = req.headers.get("Idempotency-Key", "")
        with self.lock:
            if key and key in self.by_key:
                _answer(req, 200, self.by_key[key])
                return
            status_id = str(113600000 + len(self.by_key))
            status = {"id": status_id, "created_at": _iso(time.time()),
                      "in_reply_to_id": body.get("in_reply_to_id"),
                      "visibility": body.get("visibility", "public"),
                      "url": f"https://mastodon.tessel.example/@tessel/{status_id}",
                      "content": f"<p>{escape(body['status'])}</p>"}
            self.by_key[key or status_id] = status
        kind = "direct message" if status["visibility"] == "direct" else (
            f"{status['visibility']} reply")
        self.received.append(f"{time.strftime('%H:%M:%S')}  Mastodon {kind}: "
                             f"{_snippet(body['status'])}")
        _answer(req, 200, status)


_PLATFORMS: dict[str, Callable[[FeedServer, dict, float, list[str]], Any]] = {
    "discourse": _DemoForum, "mastodon": _DemoMastodon}


def _platform_source(feed: dict, base: str) -> dict[str, Any]:
    """The config entry of a demo platform, credentials as ${ENV} references."""
    if feed["format"] == "discourse":
        return {"id": feed["id"], "type": "discourse", "name": feed["name"], "url": base,
                "api_key": "${CM_DEMO_FORUM_KEY}", "api_username": "tessel_team",
                "notifications": False}
    return {"id": feed["id"], "type": "mastodon", "name": feed["name"], "instance": base,
            "token": "${CM_DEMO_MASTODON_TOKEN}", "hashtags": ["tessel"]}


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
        for name, value in DEMO_SECRETS.items():
            previous = os.environ.get(name)
            stack.callback(lambda n=name, v=previous: os.environ.__setitem__(n, v)
                           if v is not None else os.environ.pop(n, None))
            os.environ[name] = value
        sources: list[dict[str, Any]] = []
        for feed in data["feeds"]:
            if feed.get("format") in _PLATFORMS:
                _PLATFORMS[feed["format"]](server, feed, now, received)
                sources.append(_platform_source(feed, server.url(feed["path"])))
                continue
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
                  "(into a temporary store, removed on exit)\n")
            for item in env.store.items(env.store.item_ids()):
                fmt = "%H:%M" if time.time() - item.published < 20 * 3600 else "%m-%d"
                stamp = time.strftime(fmt, time.localtime(item.published))
                print(f"{stamp}  {item.source:<9} {item.author[:22]:<22}  {item.title[:80]}")
            return 0
        from .app import run_app

        # The demo team's one member is you, under the id the config could hold.
        return run_app(env.config, env.store, actor=env.config.team[0].id, demo=env)
