"""The demo agent's request reader (fleetctl/demo_agent/request.py) against h11, over generated
requests: it accepts only what h11 accepts, reads it the same way, and accepts every request
of the grammar both implement."""

from __future__ import annotations

import socket
import threading

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetctl.demo_agent.request import MAX_HEAD, HTTPError, parse_head, read_request

TOKEN = b"-!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHAR = bytes(range(0x21, 0x7F))
FIELD_VCHAR = bytes(b for b in range(256) if b not in b"\x00 \t\n\r\x0b\x0c")


def _bytes_of(alphabet: bytes, min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(list(alphabet)), min_size=min_size, max_size=max_size).map(bytes)


def h11_read(head: bytes) -> tuple[str, str, dict[str, str], int] | None:
    """What h11 makes of a request head (no body): None when it refuses it."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head + b"\r\n\r\n")
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
    length = int(headers.get("content-length", "0"))
    return event.method.decode(), event.target.decode(), headers, length


def ours(head: bytes) -> tuple[str, str, dict[str, str], int] | None:
    try:
        req, length = parse_head(head)
    except HTTPError as e:
        assert e.code in (400, 501, 505), e.code
        return None
    return req.method, req.target, req.headers, length


FIELD_VALUE = st.lists(_bytes_of(FIELD_VCHAR, max_size=6), max_size=3).map(b" ".join)
OWS = st.sampled_from([b"", b" ", b"\t", b"  "])
HEADER = st.builds(
    lambda name, ows1, value, ows2: name + b":" + ows1 + value + (ows2 if value else b""),
    _bytes_of(TOKEN).filter(lambda n: n.lower() not in (b"host", b"content-length", b"transfer-encoding")),
    OWS,
    FIELD_VALUE,
    OWS,
)


@st.composite
def valid_heads(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([b"1.0", b"1.1"]))
    lines = [draw(_bytes_of(TOKEN)) + b" " + draw(_bytes_of(VCHAR, max_size=30)) + b" HTTP/" + version]
    fields = draw(st.lists(HEADER, max_size=6))
    if version == b"1.1" or draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))), b"Host: " + draw(_bytes_of(VCHAR)))
    if draw(st.booleans()):
        n = str(draw(st.integers(0, 10**6))).encode()
        fields.append(b"Content-Length:" + draw(OWS) + n)
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    return eol.join(lines + fields)


@settings(max_examples=400, deadline=None)
@given(valid_heads())
def test_requests_of_the_grammar_read_as_h11_reads_them(head: bytes) -> None:
    theirs = h11_read(head)
    assert theirs is not None, head
    assert ours(head) == theirs


# Fragments of real requests, in any order, and junk: whatever is accepted, h11 accepts alike.
PARTS = [
    b"GET ", b"POST ", b"PUT ", b"/health", b"/inbox", b"?x=1&y", b"http://a/b", b" HTTP/1.1",
    b" HTTP/1.0", b" HTTP/2.0", b" HTTP/1.1x", b"\r\n", b"\n", b"\r", b"Host: a", b"host:b",
    b"Content-Length: 3", b"Content-Length: 4", b"content-length: 3, 3", b"Content-Length: -1",
    b"Content-Length: 1,2", b"Content-Length: 99999999999999999999999", b"Transfer-Encoding: chunked",
    b"X-A: b c", b"X-A:\tb\t", b" folded", b"\tfolded", b": ", b":", b" ", b"\x00", b"\xff",
    b"\x7f", b"\x0b",
]  # fmt: skip


# Whole header lines a valid head may gain: repeats of the fields with rules of their own.
LINES = [
    b"Host: b", b"host:a", b"Content-Length: 4", b"Content-Length: 3", b"Transfer-Encoding: chunked",
    b" folded", b"\tfolded", b"X-A: b", b"X-A:", b": b", b"X A: b",
]  # fmt: skip


@st.composite
def near_valid_heads(draw: st.DrawFn) -> bytes:
    """A valid head with a few edits: fragments or junk bytes put in, spans cut out, header
    lines added."""
    head = draw(valid_heads())
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["put", "cut", "line"]))
        if edit == "line":
            lines = head.split(b"\r\n")
            lines.insert(draw(st.integers(1, len(lines))), draw(st.sampled_from(LINES)))
            head = b"\r\n".join(lines)
            continue
        at = draw(st.integers(0, len(head)))
        if edit == "put":
            head = head[:at] + draw(st.sampled_from(PARTS) | st.binary(min_size=1, max_size=3)) + head[at:]
        else:
            head = head[:at] + head[at + draw(st.integers(1, 4)) :]
    return head


@settings(max_examples=600, deadline=None)
@given(near_valid_heads())
def test_whatever_is_accepted_h11_accepts_the_same_way(head: bytes) -> None:
    ends = [i for i in (head.find(b"\n\n"), head.find(b"\n\r\n")) if i >= 0]
    head = head[: min(ends)] if ends else head
    head = head[:-1] if head.endswith(b"\r") else head  # as read_request cuts the blank line off
    if not head or head[:1] in b"\r\n":
        return  # no request line: read_request answers 400 before parsing (tested below)
    mine = ours(head)
    if mine is not None:
        assert h11_read(head) == mine, head


CONTENT_LENGTHS = [
    b"3",
    b"4",
    b"0",
    b"0003",
    b"3, 3",
    b"3,4",
    b" 3 ",
    b"-1",
    b"",
    b"+3",
    b"1" * 20,
    b"1" * 21,
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(CONTENT_LENGTHS), min_size=1, max_size=3), st.booleans())
def test_content_length_is_read_as_h11_reads_it(values: list[bytes], with_body_first: bool) -> None:
    # Repeated, listed, padded, signed, empty, too long: accepted and refused alike.
    lines = [b"POST /inbox HTTP/1.1", b"Host: a"] + [b"Content-Length: " + v for v in values]
    head = b"\r\n".join(lines)
    assert ours(head) == h11_read(head), head


def _serve_once(payload: list[bytes], max_body: int = 1 << 20, timeout: float = 5) -> object:
    """read_request on one end of a socket pair, the payload written in pieces to the other."""
    a, b = socket.socketpair()
    got: list[object] = []

    def read() -> None:
        try:
            got.append(read_request(a, timeout, max_body))
        except (HTTPError, TimeoutError, ConnectionError) as e:
            got.append(e)

    t = threading.Thread(target=read)
    t.start()
    try:
        for piece in payload:
            b.sendall(piece)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the reader gave up and closed: its answer is what counts
    t.join(timeout + 5)
    a.close()
    b.close()
    return got[0]


@settings(max_examples=150, deadline=None)
@given(valid_heads(), st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=8))
def test_a_request_split_anywhere_reads_whole(head: bytes, body: bytes, cuts: list[int]) -> None:
    lines = [
        ln for ln in head.replace(b"\r\n", b"\n").split(b"\n") if not ln.lower().startswith(b"content-length")
    ]
    head = b"\r\n".join(lines) + b"\r\nContent-Length: " + str(len(body)).encode()
    data = head + b"\r\n\r\n" + body + b"trailing bytes after the body"
    pieces, at = [], 0
    for c in cuts:
        pieces.append(data[at : at + c])
        at += c
    pieces.append(data[at:])
    req = _serve_once(pieces)
    assert not isinstance(req, Exception), req
    theirs = h11_read(head)
    assert theirs is not None
    assert (req.method, req.target, req.headers, len(req.body)) == theirs  # type: ignore[attr-defined]
    assert req.body == body  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ([b"\r\nGET / HTTP/1.1\r\n\r\n"], 400),
        ([b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"], 413),
        ([b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * MAX_HEAD], 431),
        ([b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"], 501),
        ([b"GET / HTTP/3.0\r\nHost: a\r\n\r\n"], 505),
        ([b"GET / HTTP/1.1\r\n\r\n"], 400),
        ([b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"], 400),
        ([b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"], 400),
        ([b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"], 400),
    ],
)
def test_refusals_carry_the_status_to_answer(payload: list[bytes], code: int) -> None:
    got = _serve_once(payload, max_body=10)
    assert isinstance(got, HTTPError) and got.code == code, got


def test_a_client_that_stops_midway_is_not_answered() -> None:
    assert isinstance(_serve_once([b"GET / HTTP/1.1\r\nHo"]), ConnectionError)
    assert isinstance(
        _serve_once([b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc"]), ConnectionError
    )


def test_a_slow_client_times_out_on_the_whole_request() -> None:
    a, b = socket.socketpair()
    try:
        b.sendall(b"GET / HTTP/1.1\r\n")
        with pytest.raises(TimeoutError):
            read_request(a, 0.3, 100)
    finally:
        a.close()
        b.close()
