"""An agent for the isolation test: serves /health, and /probe, which tries to read, list and
write the paths named in its environment and answers what happened to each (as JSON).

PROBE_READ / PROBE_WRITE: paths separated by ':'. Run by the unit as the agent,
so what it can do is what any agent could do.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def _try(fn) -> str:  # type: ignore[no-untyped-def]
    """ "ok", or "ok:a,b" for a folder listed; else the error."""
    try:
        got = fn()
        return "ok" if got is None else "ok:" + ",".join(got)
    except OSError as e:
        return os.strerror(e.errno or 0)


def _read(path: str) -> list[str] | None:
    if os.path.isdir(path):
        return sorted(os.listdir(path))
    with open(path, "rb") as f:
        f.read(1)
    return None


def _append(path: str) -> None:
    with open(path, "a") as f:
        f.write("probe was here\n")


def probe() -> dict[str, object]:
    reads = [p for p in os.environ.get("PROBE_READ", "").split(":") if p]
    writes = [p for p in os.environ.get("PROBE_WRITE", "").split(":") if p]
    return {
        "read": {p: _try(lambda p=p: _read(p)) for p in reads},
        "write": {p: _try(lambda p=p: _append(p)) for p in writes},
        "env": sorted(k for k in os.environ if k.startswith("PROBE_TOKEN_")),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps(probe() if self.path == "/probe" else {"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
