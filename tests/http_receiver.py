"""A real HTTP server on 127.0.0.1 (port 0) that records every request, for tests.

    with Receiver() as rx:
        rx.respond(500, times=2)          # the next two requests get 500, then the default
        ...post to rx.url + "/hook"...
        rx.requests[0].json()
        rx.stop()                         # down: connections are refused
        rx.start()                        # up again, on the same port

No mocks: the code under test speaks real HTTP over a real socket.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # path and query, as sent
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b'{"ok": true}'
    content_type: str = "application/json"
    delay: float = 0.0  # seconds to wait before answering (to provoke client timeouts)


@dataclass
class Receiver:
    default: Response = field(default_factory=Response)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _queue: deque[Response] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Condition = field(init=False)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._arrived = threading.Condition(self._lock)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Receiver:
        """Listen (again) on 127.0.0.1; the first start picks a free port, later ones reuse it."""
        if self._server is not None:
            return self
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                answer = receiver._record(request)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test); nothing to answer

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: clients now get "connection refused"."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- behaviour ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def respond(
        self,
        status: int = 200,
        body: bytes | str | dict[str, Any] = b"",
        *,
        times: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `times` requests like this (or, with times=None, all from now on)."""
        if isinstance(body, dict):
            raw, ctype = json.dumps(body).encode(), "application/json"
        else:
            raw = body.encode() if isinstance(body, str) else body
            ctype = "application/json" if raw.startswith((b"{", b"[")) else "text/plain"
        answer = Response(status, raw, ctype, delay)
        with self._lock:
            if times is None:
                self.default = answer
                self._queue.clear()
            else:
                self._queue.extend([answer] * times)

    def _record(self, request: Request) -> Response:
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
            return self._queue.popleft() if self._queue else self.default

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:
        """Block until at least `count` requests arrived; return them (AssertionError on timeout)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} requests, got {len(self.requests)} within {timeout}s")
            return list(self.requests)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
