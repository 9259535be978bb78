"""A loopback platform API for the connector tests: JSON routes on FeedServer, every request
recorded (method, path, query, headers, body) so tests can assert the exact request a
connector made, and helpers to play 401s, 429s, truncated JSON and slow answers.

Payload files live in ``tests/data/api/<platform>/``; they follow the shapes in each
platform's API documentation (fields we do not use are kept, as real answers carry them).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cm_console.feedserver import FeedServer

DATA = Path(__file__).parent / "data" / "api"


def payload(platform: str, name: str) -> Any:
    """A documented-shape payload from tests/data/api/<platform>/<name>."""
    return json.loads((DATA / platform / name).read_text(encoding="utf-8"))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow server; the client may time out)


Responder = Callable[[Request], Reply | Any]


class ApiServer:
    """JSON endpoints by path (the query string is ignored for matching)."""

    def __init__(self, server: FeedServer):
        self.server = server
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return self.server.url("").rstrip("/")

    def route(self, path: str, responder: Responder | Any) -> str:
        """``responder``: a callable (Request -> Reply or a JSON value) or a fixed value."""

        def handle(req: BaseHTTPRequestHandler) -> None:
            size = min(int(req.headers.get("Content-Length") or 0), 5_000_000)
            body = req.rfile.read(size) if size else b""
            parts = urlsplit(req.path)
            request = Request(req.command, parts.path, parse_qs(parts.query),
                              {k.lower(): v for k, v in req.headers.items()}, body)
            with self._lock:
                self.requests.append(request)
            answer = responder(request) if callable(responder) else responder
            reply = answer if isinstance(answer, Reply) else Reply(body=answer)
            if reply.delay:
                time.sleep(reply.delay)
            data = reply.body if isinstance(reply.body, bytes) else (
                b"" if reply.body is None else json.dumps(reply.body).encode())
            try:
                req.send_response(reply.status)
                req.send_header("Content-Type", "application/json; charset=utf-8")
                req.send_header("Content-Length", str(len(data)))
                for key, value in reply.headers.items():
                    req.send_header(key, value)
                req.end_headers()
                req.wfile.write(data)
            except OSError:
                pass  # the client gave up (a timeout test)

        return self.server.route(path, handle)

    def made(self, method: str | None = None, path: str | None = None) -> list[Request]:
        """The recorded requests, optionally only one method/path."""
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method)
                    and (path is None or r.path == path)]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
