"""Reads one HTTP/1.1 request off a socket: all of the protocol the demo agent needs.

Not h11: it imports dataclasses, typing and inspect, and with them a demo agent took 54 ms of
CPU from exec to its first answer, against 24 ms without (the quickstart's venv, median of 16).
Each agent the watchdog restarts pays that, and ten restarted at once on two cores wait for all
of it. A probe costs an agent woken with cold caches about half as much too (0.16-0.22 against
0.37-0.49 ms in a 200-agent bed), and `status` shares the cores with the agents it probes.

What is accepted follows h11's grammar, and tests/test_demo_agent_request.py checks it against
h11 itself over generated requests: whatever this accepts, h11 accepts with the same method,
target, headers and body length. Stricter on purpose: HTTP/1.0 and 1.1 only (505), folded
header lines (400), and chunked bodies, which no client of the agent sends (501).
"""

from __future__ import annotations

import re
import socket
import time

MAX_HEAD = 16 * 1024  # h11's default for a request's head; more is answered 431
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])")
# name ":" OWS value OWS, where the value is visible characters (or obs-text) separated by
# spaces or tabs: h11's header_field.
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*")
_END_OF_HEAD = re.compile(rb"\n\r?\n")
_LINE = re.compile(rb"\r?\n")
_DIGITS = re.compile(rb"[0-9]{1,20}")


class HTTPError(Exception):
    """A request answered with an error status instead of a route's answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Request:
    __slots__ = ("method", "target", "headers", "body")

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.method, self.target, self.headers, self.body = method, target, headers, body


def parse_head(head: bytes) -> tuple[Request, int]:
    """(the request without its body, the body's length) from the bytes before the blank line.

    Header names are lower-cased; a repeated header keeps its last value, except Host and
    Content-Length, which must not disagree (as h11)."""
    lines = _LINE.split(head)
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        raise HTTPError(400, f"illegal request line: {lines[0][:80]!r}")
    method, target, version = m.group(1), m.group(2), m.group(3)
    if version not in (b"1.1", b"1.0"):
        raise HTTPError(505, f"HTTP/{version.decode()} is not supported")
    headers: dict[str, str] = {}
    hosts = 0
    length: bytes | None = None
    for line in lines[1:]:
        f = _FIELD.fullmatch(line)
        if f is None:
            # Folded continuation lines (obs-fold) included: RFC 9112 lets a server refuse them.
            raise HTTPError(400, f"illegal header line: {line[:80]!r}")
        name = f.group(1).lower().decode("ascii")
        value = f.group(2)
        if name == "host":
            hosts += 1
        elif name == "content-length":
            values = {v.strip() for v in value.split(b",")}
            if len(values) != 1:
                raise HTTPError(400, "conflicting Content-Length headers")
            value = values.pop()
            if not _DIGITS.fullmatch(value):
                raise HTTPError(400, "bad Content-Length")
            if length is not None and length != value:
                raise HTTPError(400, "conflicting Content-Length headers")
            length = value
        elif name == "transfer-encoding":
            raise HTTPError(501, "Transfer-Encoding is not supported; send Content-Length")
        headers[name] = value.decode("latin-1")
    if hosts > 1:  # in any version, as h11
        raise HTTPError(400, "found multiple Host: headers")
    if version == b"1.1" and not hosts:
        raise HTTPError(400, "missing mandatory Host: header")
    req = Request(method.decode("ascii"), target.decode("ascii"), headers)
    return req, int(length or b"0")


def read_request(sock: socket.socket, timeout: float, max_body: int) -> Request:
    """The next request on `sock`, whole, within `timeout` seconds from now.

    Raises HTTPError (answer it), TimeoutError, or ConnectionError when the client closed
    before a whole request (nobody to answer)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        if buf[:2] == b"\r\n" or buf[:1] == b"\n":
            raise HTTPError(400, "no request line received")
        end = _END_OF_HEAD.search(buf)
        if end is not None:
            break
        if len(buf) > MAX_HEAD:
            raise HTTPError(431, f"request head over {MAX_HEAD} bytes")
        buf += _recv(sock, deadline, "request not complete within the timeout")
    head = buf[: end.start()]  # the blank line's match starts at the last line's "\n"
    req, length = parse_head(head[:-1] if head.endswith(b"\r") else head)
    if length > max_body:
        raise HTTPError(413, f"request body over {max_body} bytes")
    body = buf[end.end() :]
    while len(body) < length:
        body += _recv(sock, deadline, "request body not complete within the timeout")
    req.body = body[:length]
    return req


def _recv(sock: socket.socket, deadline: float, late: str) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(late)
    sock.settimeout(left)
    data = sock.recv(65536)
    if not data:
        raise ConnectionResetError("closed before a whole request")
    return data
