"""A local stand-in for the Groq, Anthropic and OpenAI-compatible HTTP APIs, for tests that
use the real SDKs (and fleetctl's own httpx client for OpenAI-compatible servers).

One server speaks every shape, told apart by path:

- Groq (OpenAI-style): ``POST /openai/v1/chat/completions`` -> ``choices[0].message.content``
- Anthropic:           ``POST /v1/messages``                -> ``content[0].text``
- OpenAI-compatible:   ``POST /v1/chat/completions``        -> ``choices[0].message.content``
  (what Ollama, vLLM, llama.cpp, OpenRouter and LiteLLM serve; base URL ``server.url + "/v1"``)

Point the SDKs at it with ``base_url=server.url`` (both SDKs append their own paths), or give
``server.env()`` to ``providers_from_env``. Every request is recorded (path, headers, raw body)
so tests can assert what left the host, e.g. that a canary secret never did.

Replies are scripted per provider, first in first out; when a provider's script runs out the
``default`` reply is used (by default an HTTP 500 saying nothing was scripted, so a surprise
call is visible in the chain's attempts rather than silently "ok")::

    with FakeLLM() as llm:
        llm.script("groq", Reply.rate_limited(retry_after=1), Reply.diagnosis("restart", "crash"))
        llm.script("anthropic", Reply.garbage())
        providers = providers_from_env(llm.env())
        ...
        assert "canary" not in llm.all_traffic()

Binds 127.0.0.1 on an ephemeral port; handlers run in daemon threads, and ``stop()`` wakes any
handler still "hanging" so shutdown is immediate.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

ProviderName = Literal["groq", "anthropic", "openai"]

GROQ_PATH = "/openai/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
OPENAI_PATH = "/v1/chat/completions"
_PATHS: dict[str, ProviderName] = {GROQ_PATH: "groq", ANTHROPIC_PATH: "anthropic", OPENAI_PATH: "openai"}

# Provider-style error `type`s, so the SDKs parse error bodies the way they would in production.
_GROQ_ERRORS = {401: "invalid_api_key", 403: "permission_denied", 429: "rate_limit_exceeded"}
_ANTHROPIC_ERRORS = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


@dataclass(frozen=True)
class Reply:
    """What the server answers to one request.

    ``content`` is the assistant text wrapped in the provider's response envelope (status 200),
    or the error message of a provider-shaped error body (other statuses). ``body`` bypasses
    all shaping and is sent verbatim. ``delay`` sleeps before answering: longer than the
    client's timeout, it is a hang. ``drip`` sends the status line and headers at once, then
    the body one byte every ``drip`` seconds: no single read ever waits long enough to time out.
    """

    status: int = 200
    content: str = ""
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0

    @classmethod
    def answer(cls, content: str) -> Reply:
        """200 with this exact assistant text (valid JSON or not: that is the point)."""
        return cls(content=content)

    @classmethod
    def diagnosis(cls, action: str, cause: str = "fake diagnosis") -> Reply:
        """200 whose text is a strict `{"action", "cause"}` object; `action` is not checked."""
        return cls(content=json.dumps({"action": action, "cause": cause}))

    @classmethod
    def garbage(cls) -> Reply:
        """200 with prose where JSON should be."""
        return cls(content="The agent probably crashed. I would restart it, or maybe not!")

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1) -> Reply:
        """429, with a Retry-After header (seconds) unless retry_after is None."""
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        return cls(status=429, content="rate limit reached (fake)", headers=headers)

    @classmethod
    def server_error(cls, status: int = 500) -> Reply:
        return cls(status=status, content=f"internal error (fake {status})")

    @classmethod
    def auth_error(cls, status: int = 401) -> Reply:
        return cls(status=status, content="invalid api key (fake)")

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Reply:
        """Answer nothing for `seconds` (then a valid restart diagnosis): use a client timeout
        shorter than this to exercise the timeout path."""
        return cls(content=json.dumps({"action": "restart", "cause": "late"}), delay=seconds)

    @classmethod
    def drip_feed(cls, every: float = 2.0) -> Reply:
        """A valid restart diagnosis, sent one body byte every `every` seconds after the headers."""
        return cls(content=json.dumps({"action": "restart", "cause": "dripped " + "x" * 40}), drip=every)

    @classmethod
    def raw(cls, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Reply:
        """Send exactly this status and body (e.g. HTML from a proxy, truncated JSON)."""
        return cls(status=status, body=body, headers=dict(headers or {}))


@dataclass(frozen=True)
class RecordedRequest:
    provider: ProviderName | None  # None: a path neither SDK should ever call
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


def _envelope(provider: ProviderName, reply: Reply, request: dict[str, Any], n: int) -> dict[str, Any]:
    model = request.get("model", "fake-model")
    if reply.status == 200 and provider in ("groq", "openai"):
        return {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
    if reply.status == 200:
        return {
            "id": f"msg_fake_{n}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": reply.content}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 10},
        }
    if provider in ("groq", "openai"):
        kind = _GROQ_ERRORS.get(reply.status, "internal_server_error")
        return {"error": {"message": reply.content, "type": kind, "code": kind}}
    kind = _ANTHROPIC_ERRORS.get(reply.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": reply.content}}


class FakeLLM:
    """Context manager running the fake API; see the module docstring."""

    def __init__(self, *, default: Reply | None = None) -> None:
        self.default = default or Reply.server_error(500)
        self._lock = threading.Lock()
        self._scripts: dict[ProviderName, deque[Reply]] = {
            "groq": deque(),
            "anthropic": deque(),
            "openai": deque(),
        }
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeLLM:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                fake._handle(self)

            do_GET = do_POST  # noqa: N815 - recorded and answered 404 like any unknown call

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wake hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL for either SDK (they add /openai/v1/... or /v1/messages themselves); an
        OpenAI-compatible client takes ``url + "/v1"`` and adds /chat/completions."""
        assert self._server is not None, "FakeLLM not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, provider: ProviderName, *replies: Reply) -> None:
        """Queue replies for the next requests to `provider`, in order."""
        with self._lock:
            self._scripts[provider].extend(replies)

    def env(
        self,
        groq_key: str | None = "gsk_fake_groq_key_0000000000",
        anthropic_key: str | None = "sk-ant-fake-0000000000",
    ) -> dict[str, str]:
        """Environment for providers_from_env() pointing both providers here; None omits one."""
        env: dict[str, str] = {}
        if groq_key is not None:
            env |= {"GROQ_API_KEY": groq_key, "FLEETCTL_GROQ_BASE_URL": self.url}
        if anthropic_key is not None:
            env |= {"ANTHROPIC_API_KEY": anthropic_key, "FLEETCTL_ANTHROPIC_BASE_URL": self.url}
        return env

    # -- inspection ------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, provider: ProviderName) -> list[RecordedRequest]:
        return [r for r in self.requests if r.provider == provider]

    def all_traffic(self) -> str:
        """Every request's headers and body as one string, for "never sent" (canary) checks."""
        return "\n".join(
            "\n".join(f"{k}: {v}" for k, v in r.headers.items()) + "\n" + r.text for r in self.requests
        )

    # -- serving ---------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        provider = _PATHS.get(path) if h.command == "POST" else None
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            self._requests.append(
                RecordedRequest(provider, h.command, path, {k.lower(): v for k, v in h.headers.items()}, body)
            )
            reply: Reply | None = None
            if provider is not None:
                queue = self._scripts[provider]
                reply = queue.popleft() if queue else self.default
            n = next(self._ids)
        if reply is None or provider is None:
            self._send(h, 404, b'{"error": {"message": "fake_llm: unknown path"}}', {})
            return
        if reply.delay and self._stopping.wait(reply.delay):
            return  # server stopping: drop the connection
        if reply.body is not None:
            self._send(h, reply.status, reply.body, reply.headers)
            return
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {}
        payload = json.dumps(_envelope(provider, reply, request, n)).encode()
        if reply.drip:
            self._drip(h, reply.status, payload, reply.drip)
            return
        self._send(h, reply.status, payload, reply.headers)

    def _drip(self, h: BaseHTTPRequestHandler, status: int, body: bytes, every: float) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.flush()
            for i in range(len(body)):
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
                if self._stopping.wait(every):
                    return
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client gave up: what the deadline is for

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            h.send_response(status)
            names = {k.lower() for k in headers}
            if "content-type" not in names:
                h.send_header("Content-Type", "application/json")
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): exactly what a hang test wants
