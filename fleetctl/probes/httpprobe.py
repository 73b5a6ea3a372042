"""Many plain-HTTP GETs at once in one thread, reading only the status line.

Why not httpx here: `fleetctl status` has a 300 ms budget for 50 agents including interpreter
start-up, and importing httpx plus building its client costs ~250 ms on a small VPS. A health
probe needs nothing httpx offers over a socket: a GET to 127.0.0.1 and a status code. httpx
remains the HTTP library for everything else (https targets included, see health.py).
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections.abc import Container, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import urlsplit

K = TypeVar("K", bound=Hashable)

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; the value when Python lacks the name
_TIMESPEC = struct.Struct("@qq")  # struct timespec: tv_sec, tv_nsec (64-bit Linux)
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


@dataclass
class _Probe:
    """One request in flight."""

    key: Hashable
    sock: socket.socket
    request: bytes
    deadline: float
    started: float
    sent_ns: int  # wall clock, as the kernel's receive timestamps are
    sent: int = 0
    arrived_ns: int | None = None
    buf: bytes = b""
    done: bool = False


def parse_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not a plain http URL: {url}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 80, path


def get_status_many(
    targets: Sequence[tuple[K, str, float]],
) -> dict[K, tuple[int | None, float | None, str | None]]:
    """(key, url, timeout) → key: (status, latency_ms, error). Wall time ≈ the largest timeout."""
    return Batch(targets).finish()


class Batch(Generic[K]):
    """Probes sent now, answers collected by `finish()`: the caller can do other work in
    between (status reads the units' state from systemd while the agents answer), in one
    thread. Latency is the kernel's arrival time of the answer (SO_TIMESTAMPNS), so a late
    `finish()` does not inflate it."""

    def __init__(self, targets: Sequence[tuple[K, str, float]]) -> None:
        self.sel = selectors.DefaultSelector()
        self.out: dict[K, tuple[int | None, float | None, str | None]] = {}
        for key, url, timeout in targets:
            self._start(key, url, timeout)

    def _start(self, key: K, url: str, timeout: float) -> None:
        now = time.monotonic()
        try:
            host, port, path = parse_url(url)
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        except (ValueError, OSError) as e:
            self.out[key] = (None, None, str(e)[:120])
            return
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        req = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: fleetctl\r\nConnection: close\r\n\r\n"
        )
        probe = _Probe(key, sock, req.encode(), now + timeout, now, time.time_ns())
        err = sock.connect_ex((host, port))
        if err not in (0, 115, 36):  # 0, EINPROGRESS (Linux), EINPROGRESS (BSD)
            self.out[key] = (None, None, _errno_text(err))
            sock.close()
            return
        # On loopback the handshake is done by the time connect returns (EINPROGRESS or not):
        # send now and wait only for the answer, one event per probe instead of two.
        try:
            probe.sent = sock.send(probe.request)
        except (BlockingIOError, InterruptedError):
            pass  # not connected yet: the loop sends once the socket is writable
        except OSError as e:
            self.out[key] = (None, None, _errno_text(e.errno or 0))
            sock.close()
            return
        done = probe.sent == len(probe.request)
        self.sel.register(sock, selectors.EVENT_READ if done else selectors.EVENT_WRITE, probe)

    def finish(
        self, wanted: Container[K] | None = None
    ) -> dict[K, tuple[int | None, float | None, str | None]]:
        """The answers; with `wanted`, only those keys' (the others are not waited for)."""
        try:
            if wanted is not None:
                for key_obj in list(self.sel.get_map().values()):
                    if key_obj.data.key not in wanted:
                        _drop(self.sel, key_obj.data)
                self.out = {k: v for k, v in self.out.items() if k in wanted}
            _loop(self.sel, self.out)
        finally:
            for key_obj in list(self.sel.get_map().values()):
                key_obj.fileobj.close()  # type: ignore[union-attr]
            self.sel.close()
        return self.out


def _loop(sel: selectors.BaseSelector, out: dict) -> None:  # type: ignore[type-arg]
    # Probes by deadline: each turn looks at the earliest ones only, so a turn costs the events
    # it handles, not one pass over every open probe (200 agents made that quadratic).
    by_deadline = sorted((k.data for k in sel.get_map().values()), key=lambda p: p.deadline)
    first = 0
    while sel.get_map():
        now = time.monotonic()
        while first < len(by_deadline) and (by_deadline[first].done or now >= by_deadline[first].deadline):
            p = by_deadline[first]
            if not p.done:
                out[p.key] = (None, None, f"timeout after {p.deadline - p.started:.3g}s")
                _drop(sel, p)
            first += 1
        if not sel.get_map():
            break
        for key, events in sel.select(max(0.0, by_deadline[first].deadline - now)):
            p = key.data
            try:
                if events & selectors.EVENT_WRITE:
                    err = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        out[p.key] = (None, None, _errno_text(err))
                        _drop(sel, p)
                        continue
                    p.sent += p.sock.send(p.request[p.sent :])
                    if p.sent == len(p.request):
                        sel.modify(p.sock, selectors.EVENT_READ, p)
                else:
                    chunk, anc, _flags, _addr = p.sock.recvmsg(4096, _ANCILLARY)
                    if p.arrived_ns is None:
                        p.arrived_ns = _arrival(anc)
                    p.buf += chunk
                    if b"\r\n" in p.buf or not chunk:
                        out[p.key] = _status(p)
                        _drop(sel, p)
            except OSError as e:
                out[p.key] = (None, None, _errno_text(e.errno or 0))
                _drop(sel, p)


def _arrival(anc: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return int(sec * 1_000_000_000 + nsec)
    return None


def _status(p: _Probe) -> tuple[int | None, float | None, str | None]:
    arrived = p.arrived_ns if p.arrived_ns is not None else time.time_ns()
    latency = round(max(arrived - p.sent_ns, 0) / 1e6, 2)
    line = p.buf.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        return int(parts[1]), latency, None
    return None, latency, "not an HTTP answer" if p.buf else "connection closed without an answer"


def _drop(sel: selectors.BaseSelector, p: _Probe) -> None:
    p.done = True
    sel.unregister(p.sock)
    p.sock.close()


def _errno_text(err: int) -> str:
    if err == 111:
        return "connection refused"
    if err == 104:
        return "connection reset"
    import os

    return os.strerror(err).lower() if err else "connection failed"
