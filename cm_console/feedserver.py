"""A small loopback HTTP server for feeds: the demo, the benchmarks and the tests all use it.

It serves in-memory documents the way a well-behaved feed host does (ETag, Last-Modified,
``304 Not Modified``, gzip on request), and accepts custom handlers so tests can play a
hostile host (stalls, bombs, redirect loops, Retry-After). It binds to 127.0.0.1 only.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Document", "FeedServer"]

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass(slots=True)
class Document:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    etag: str = ""
    last_modified: str = ""
    gzipped: bytes = b""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class FeedServer:
    """Serve documents on ``http://127.0.0.1:PORT``. Use as a context manager."""

    def __init__(self, port: int = 0, *, conditional: bool = True):
        self.documents: dict[str, Document] = {}
        self.handlers: dict[str, Handler] = {}
        self.hits: Counter[str] = Counter()
        self.conditional = conditional
        self._lock = threading.Lock()
        owner = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                owner._serve(self)

            def do_POST(self) -> None:
                owner._serve(self)

        self._httpd = _Server(("127.0.0.1", port), RequestHandler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes | str, content_type: str = "application/rss+xml; "
            "charset=utf-8") -> str:
        """Serve ``body`` at ``path`` with a fresh ETag/Last-Modified; returns its URL."""
        data = body.encode() if isinstance(body, str) else body
        doc = Document(data, content_type, '"' + hashlib.sha1(data).hexdigest()[:16] + '"',
                       formatdate(usegmt=True), gzip.compress(data, compresslevel=5))
        with self._lock:
            self.documents[path] = doc
        return self.url(path)

    def route(self, path: str, handler: Handler) -> str:
        """Answer ``path`` with a custom handler (it writes the whole response)."""
        self.handlers[path] = handler
        return self.url(path)

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path
        with self._lock:
            self.hits[path] += 1
            handler = self.handlers.get(path) or self.handlers.get(path.split("?", 1)[0])
            doc = self.documents.get(path) or self.documents.get(path.split("?", 1)[0])
        if handler is not None:
            handler(req)
            return
        if doc is None:
            self._send(req, 404, b"not found", "text/plain")
            return
        if self.conditional and (
            (doc.etag and req.headers.get("If-None-Match") == doc.etag)
            or (not req.headers.get("If-None-Match")
                and req.headers.get("If-Modified-Since") == doc.last_modified)
        ):
            req.send_response(304)
            req.send_header("ETag", doc.etag)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        gz = "gzip" in (req.headers.get("Accept-Encoding") or "")
        body = doc.gzipped if gz else doc.body
        headers = {"ETag": doc.etag, "Last-Modified": doc.last_modified} if self.conditional \
            else {}
        if gz:
            headers["Content-Encoding"] = "gzip"
        self._send(req, 200, body, doc.content_type, headers)

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        req.send_response(status)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)

    def start(self) -> FeedServer:
        # A short poll interval: stop() waits up to one interval (0.5 s by default, paid by
        # every test that uses a server).
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True, name="feedserver")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
