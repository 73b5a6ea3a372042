"""The demo agent's state and HTTP API (split from `demo_agent` to keep each file readable).

Endpoints: /health and /readyz, /usage with /simulate/request and /simulate/fallback (rate-limit
and provider-fallback drills), /api/diagnostics/prometheus with /simulate/spend (OpenClaw's
token and cost counters, for cost drills; a bearer token is required when $DEMO_METRICS_TOKEN is
set), /warmup, /inbox. Everything is in memory except the inbox,
which is also appended to `$FLEET_WORKSPACE/inbox.jsonl` so other processes can see it.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import sys
import threading
import time
from collections import deque

from fleetctl import __version__
from fleetctl.demo_agent.request import HTTPError, read_request

# Only what the agent needs at run time is imported: it is what the watchdog waits on after a
# restart, so every import costs each restarted agent (see request.py). typing is for mypy only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PRIMARY, FALLBACK = "groq", "anthropic"  # `provider` in /usage names the one in use
WINDOW = 60.0  # seconds counted by /usage
SERVER = f"fleet-demo-agent/{__version__}"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}


class Agent:
    """The agent's state. `config_path` and `workspace` are paths (str or os.PathLike) or None."""

    def __init__(
        self, name: str, config_path: str | os.PathLike[str] | None, workspace: str | os.PathLike[str] | None
    ) -> None:
        self.name = name
        self.config_path = config_path
        self.workspace = workspace
        self.config: dict[str, Any] = {}
        self.config_hash: str | None = None
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.requests: dict[str, deque[tuple[float, int]]] = {}
        self.fallback = False
        self.warmups: list[str] = []
        self.inbox: list[Any] = []
        # (provider, model, token_type) -> tokens, (provider, model) -> USD; since start, like OpenClaw's
        self.tokens: dict[tuple[str, str, str], int] = {}
        self.spent: dict[tuple[str, str], float] = {}

    def log(self, msg: str, err: bool = False) -> None:
        print(f"demo-agent[{self.name}]: {msg}", file=sys.stderr if err else sys.stdout, flush=True)

    def health(self) -> dict[str, Any]:
        uptime = round(time.monotonic() - self.started, 3)
        return {
            "name": self.name,
            "status": "ok",
            "uptime": uptime,
            "version": __version__,
            "config_hash": self.config_hash,
        }

    def record_requests(self, provider: str, count: int) -> None:
        with self.lock:
            self.requests.setdefault(provider, deque()).append((time.monotonic(), count))
            self._prune()  # here too, so a drill that never reads /usage stays bounded

    def _prune(self) -> None:
        cutoff = time.monotonic() - WINDOW
        for q in self.requests.values():
            while q and q[0][0] < cutoff:
                q.popleft()

    def spend(self, provider: str, model: str, tokens: dict[str, int], usd: float) -> None:
        with self.lock:
            for kind, n in tokens.items():
                key = (provider, model, kind)
                self.tokens[key] = self.tokens.get(key, 0) + n
            self.spent[(provider, model)] = self.spent.get((provider, model), 0.0) + usd

    def prometheus(self) -> str:
        """The two counter families OpenClaw's diagnostics-prometheus plugin serves."""
        with self.lock:
            tokens, spent = dict(self.tokens), dict(self.spent)
        out = [
            "# HELP openclaw_model_tokens_total Tokens used, by model and token type.",
            "# TYPE openclaw_model_tokens_total counter",
        ]
        for (prov, model, kind), n in sorted(tokens.items()):
            labels = f'agent="main",channel="demo",model="{model}",provider="{prov}",token_type="{kind}"'
            out.append(f"openclaw_model_tokens_total{{{labels}}} {n}")
        out += [
            "# HELP openclaw_model_cost_usd_total Estimated model cost in USD.",
            "# TYPE openclaw_model_cost_usd_total counter",
        ]
        for (prov, model), usd in sorted(spent.items()):
            labels = f'agent="main",channel="demo",model="{model}",provider="{prov}"'
            out.append(f"openclaw_model_cost_usd_total{{{labels}}} {usd!r}")
        return "\n".join(out) + "\n"

    def usage(self) -> dict[str, Any]:
        with self.lock:
            self._prune()
            # The primary is always listed, so "0 rpm" is an answer rather than a missing key.
            providers = {PRIMARY: {"requests_per_minute": 0}}
            for prov, q in self.requests.items():
                providers[prov] = {"requests_per_minute": sum(n for _, n in q)}
            return {
                "providers": providers,
                "fallback_active": self.fallback,
                "provider": FALLBACK if self.fallback else PRIMARY,
            }


class Handler(socketserver.BaseRequestHandler):
    """One request per connection (request.py reads it); the answer says Connection: close.

    Not http.server: it imports the email package, http.client and ssl, and an agent restarted
    by the watchdog spends that much longer starting (ten started at once answered ~80 ms
    later with it, docs/benchmarks.md)."""

    agent: Agent  # set on the subclass made in make_server()
    # Requests are served one at a time: a client that connects and sends nothing must not
    # hold the agent (and its health answer) for longer than this, for the whole request (a
    # client dripping a byte at a time included).
    timeout = 5
    max_body = 1 << 20  # the largest POST body read; more is answered 413

    def handle(self) -> None:
        sock: socket.socket = self.request
        started = time.monotonic()
        unread = False  # a refused request may leave bytes unread: a body over the limit, say
        try:
            req = read_request(sock, self.timeout, self.max_body)
            self.method, self.target = req.method, req.target
            self.headers, self.raw_body = req.headers, req.body
            code, ctype, body = self._route()
        except HTTPError as e:
            code, ctype, body = e.code, "application/json", json.dumps({"error": str(e)}).encode()
            unread = True
        except (TimeoutError, OSError):
            return  # the client went away or never finished its request: nobody to answer
        head = (
            f"HTTP/1.1 {code} {_REASONS.get(code, 'Unknown')}\r\n"
            f"Server: {SERVER}\r\n"
            f"Content-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            sock.sendall(head.encode("latin-1") + body)
            if unread:
                _linger(sock, started + self.timeout)
        except OSError:
            pass  # a client that hangs up before the answer (a timed-out probe) is no error here

    def _route(self) -> tuple[int, str, bytes]:
        if self.method == "GET":
            return self.do_GET()
        if self.method == "POST":
            return self.do_POST()
        raise HTTPError(501, f"unsupported method ({self.method})")

    @staticmethod
    def _json(code: int, payload: Any) -> tuple[int, str, bytes]:
        return code, "application/json", json.dumps(payload).encode()

    def _body(self) -> Any:
        return json.loads(self.raw_body or b"null")

    def do_GET(self) -> tuple[int, str, bytes]:
        a, (path, _query) = self.agent, _split(self.target)
        with a.lock:
            lists = {"/warmup": list(a.warmups), "/inbox": list(a.inbox)}
        if path in ("/health", "/readyz"):
            return self._json(200, a.health())
        if path == "/api/diagnostics/prometheus":
            token = os.environ.get("DEMO_METRICS_TOKEN")
            if token and self.headers.get("authorization") != f"Bearer {token}":
                return self._json(401, {"error": "unauthorized"})
            return 200, "text/plain; version=0.0.4", a.prometheus().encode()
        if path == "/usage":
            return self._json(200, a.usage())
        if path in lists:
            return self._json(200, lists[path])
        return self._json(404, {"error": f"no such path: {path}"})

    def do_POST(self) -> tuple[int, str, bytes]:
        from urllib.parse import parse_qs  # drills only: not on the health path

        a, (path, query) = self.agent, _split(self.target)
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            if path == "/simulate/request":
                prov, count = q.get("provider", PRIMARY), int(q.get("count", "1"))
                if count < 0:
                    raise ValueError("count must be >= 0")
                a.record_requests(prov, count)
                return self._json(200, a.usage())
            if path == "/simulate/spend":
                tokens: dict[str, int] = {k: int(q[k]) for k in ("input", "output") if k in q}
                usd = float(q.get("usd", "0"))
                if any(n < 0 for n in tokens.values()) or not usd >= 0:
                    raise ValueError("tokens and usd must be >= 0")
                a.spend(q.get("provider", PRIMARY), q.get("model", "llama-3.3-70b-versatile"), tokens, usd)
                return self._json(200, {"spent": True})
            if path == "/simulate/fallback":
                active = {"true": True, "false": False}[q.get("active", "true").lower()]
                with a.lock:
                    a.fallback = active
                a.log(
                    f"fallback {'active' if active else 'inactive'}: provider now "
                    f"{FALLBACK if active else PRIMARY}"
                )
                return self._json(200, a.usage())
            if path == "/warmup":
                prompt = self._body()["prompt"]
                if not isinstance(prompt, str):
                    raise ValueError("prompt must be a string")
                with a.lock:
                    a.warmups.append(prompt)
                a.log(f"warmup received: {prompt[:80]}")
                return self._json(200, {"received": True})
            if path == "/inbox":
                return self._json(200, {"received": True, "count": self._deliver(self._body())})
            return self._json(404, {"error": f"no such path: {path}"})
        except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
            return self._json(400, {"error": f"bad request: {e!r}"})

    def _deliver(self, msg: Any) -> int:
        a = self.agent
        with a.lock:
            a.inbox.append(msg)
            # The file is how other processes (and a restarted agent's operator) see the inbox.
            if a.workspace is not None and os.path.isdir(a.workspace):
                with open(os.path.join(a.workspace, "inbox.jsonl"), "a", encoding="utf-8") as f:
                    f.write(json.dumps(msg) + "\n")
            n = len(a.inbox)
        a.log(f"inbox message #{n} received")
        return n


def _linger(sock: socket.socket, deadline: float, most: int = 8 << 20) -> None:
    """Read and drop what the client still sends until it is done, within the request's time:
    closing with unread bytes makes the kernel reset the connection, and a client still
    sending (a body over the limit) gets the reset instead of the answer."""
    sock.shutdown(socket.SHUT_WR)
    while most > 0 and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return
        if not chunk:
            return
        most -= len(chunk)


def _split(target: str) -> tuple[str, str]:
    """(path, query) of a request target: origin-form by hand, anything else by urlsplit."""
    if target.startswith("/"):
        path, _, query = target.partition("#")[0].partition("?")
        return path, query
    from urllib.parse import urlsplit

    u = urlsplit(target)
    return u.path, u.query


class Server(socketserver.TCPServer):
    """One request at a time, in the serving thread, as an event-loop gateway (Node) answers.

    No thread per connection: every handler here is quick, and starting a thread per request
    doubled the CPU an agent spends on a health probe (0.38 against 0.17 ms), which is what
    `fleetctl status` waits on at 200 agents (docs/benchmarks.md)."""

    # socketserver listens with a backlog of 5: a burst of concurrent probes (status, the
    # watchdog, a test) would overflow it and the dropped SYNs retry only after 1 s, which looks
    # exactly like a hung agent.
    request_queue_size = 128
    allow_reuse_address = True  # a restarted agent binds its port again at once (TIME_WAIT)


def make_server(agent: Agent, port: int, host: str = "127.0.0.1") -> Server:
    """Bind host:port (raises OSError); the caller runs serve_forever in a thread."""

    a = agent  # a class body cannot see a same-named enclosing variable

    class Bound(Handler):
        agent = a

    return Server((host, port), Bound)
