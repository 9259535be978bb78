"""Real receivers on 127.0.0.1 for delivery tests: an aiosmtpd SMTP sink, a webhook listener."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler
from typing import Any

from aiosmtpd.controller import Controller

from cm_console.feedserver import FeedServer

__all__ = ["Hit", "Mail", "SmtpSink", "Webhook", "free_port"]


def free_port() -> int:
    """A port nobody listens on right now (aiosmtpd's Controller cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class Mail:
    """One message as the SMTP server accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage

    @property
    def header_names(self) -> list[str]:
        """Every header line's name, in order, from the raw bytes (not the parsed view)."""
        head = self.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        return [line.split(b":", 1)[0].decode("ascii", "replace").strip()
                for line in head.splitlines() if line and not line[:1].isspace()]


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it accepts (250)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.messages: list[Mail] = []
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), raw,
                                  message))
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(slots=True)
class Hit:
    """One request the webhook listener received."""

    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int  # what the listener answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")


class Webhook:
    """A webhook endpoint on a real loopback HTTP server (the tests' FeedServer).

    ``statuses`` scripts the answers in order (then 200 for ever); ``delay`` slows every
    answer; ``hold`` makes requests wait until :meth:`release` (a stalled receiver).
    """

    def __init__(self, server: FeedServer, path: str = "/hook", statuses: Iterable[int] = (),
                 *, delay: float = 0.0, hold: bool = False):
        self.hits: list[Hit] = []
        self.statuses = list(statuses)
        self.delay = delay
        self.arrived = threading.Event()
        self._hold = threading.Event() if hold else None
        self._lock = threading.Lock()
        self.url = server.route(path, self._handle)

    def release(self) -> None:
        if self._hold is not None:
            self._hold.set()

    def accept_from_now_on(self) -> None:
        with self._lock:
            self.statuses = []

    @property
    def keys(self) -> list[str]:
        with self._lock:
            return [h.key for h in self.hits]

    @property
    def accepted(self) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if 200 <= h.status < 300]

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else 200
            self.hits.append(Hit({k.lower(): v for k, v in req.headers.items()}, body, status))
        self.arrived.set()
        if self._hold is not None:
            self._hold.wait(20)
        if self.delay:
            time.sleep(self.delay)
        answer = b'{"ok":true}' if status < 300 else b'{"ok":false}'
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(answer)))
            req.end_headers()
            req.wfile.write(answer)
        except OSError:  # the sender died while we held its request
            req.close_connection = True
