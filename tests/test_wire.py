"""The hand-made D-Bus wire format (fleetctl.systemd.wire) against jeepney's, with generated
messages, and the Bus's own reading of a socket: framing across any split, replies filed by
serial, signals kept, error replies returned."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jeepney import (
    DBusAddress,
    Message,
    MessageType,
    new_error,
    new_method_call,
    new_method_return,
    new_signal,
)
from jeepney.io.blocking import DBusConnectionBase
from jeepney.low_level import Endianness, HeaderFields, Parser

from fleetctl.systemd import wire
from fleetctl.systemd.bus import Bus, DBusError

ADDR = DBusAddress("/org/freedesktop/systemd1/unit/fleet_2dx_2eservice", "org.freedesktop.systemd1", "a.b")
names = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=40)
basic = st.one_of(
    st.tuples(st.just("y"), st.integers(0, 2**8 - 1)),
    st.tuples(st.just("n"), st.integers(-(2**15), 2**15 - 1)),
    st.tuples(st.just("q"), st.integers(0, 2**16 - 1)),
    st.tuples(st.just("i"), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just("u"), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("x"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("t"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("d"), st.floats(allow_nan=False)),
    st.tuples(st.just("b"), st.booleans()),
    st.tuples(st.just("s"), names),
    st.tuples(st.just("o"), st.sampled_from(["/", "/org/freedesktop/systemd1/unit/a_2eservice"])),
)
other_bodies = st.one_of(  # replies the fast path must leave to jeepney
    st.tuples(st.just("s"), names.map(lambda s: (s,))),
    st.tuples(st.just("v"), st.tuples(st.tuples(st.just("as"), st.lists(names, max_size=3)))),
    st.tuples(st.just("(uu)"), st.tuples(st.tuples(st.integers(0, 9), st.integers(0, 9)))),
    st.just((None, ())),
)


def _reply(to_serial: int, signature: str | None, body: tuple, sender: str, big: bool = False) -> Message:
    call = new_method_call(ADDR, "Get", "ss", ("x", "y"))
    call.header.serial = to_serial
    msg = new_method_return(call, signature, body)
    msg.header.fields[HeaderFields.sender] = sender
    msg.header.fields[HeaderFields.destination] = ":1.42"
    if big:
        msg.header.endianness = Endianness.big
    return msg


def _jeepney(raw: bytes) -> Message:
    p = Parser()
    p.add_data(raw)
    msg = p.get_next_message()
    assert msg is not None
    return msg


@given(st.integers(1, 2**32 - 1), basic, names, st.integers(1, 2**32 - 1))
def test_a_variant_reply_reads_as_jeepney_reads_it(serial: int, value: tuple, sender: str, own: int) -> None:
    raw = _reply(serial, "v", (value,), sender).serialise(serial=own)
    theirs = _jeepney(raw)
    assert wire.fast_reply(raw) == (theirs.header.fields[HeaderFields.reply_serial], theirs.body)
    assert wire.message_end(raw, 0) == len(raw)
    assert wire.message_end(raw[:-1], 0) is None


@given(st.integers(1, 2**32 - 1), other_bodies, names)
def test_other_replies_are_left_to_jeepney(serial: int, sig_body: tuple, sender: str) -> None:
    raw = _reply(serial, sig_body[0], sig_body[1], sender).serialise(serial=7)
    assert wire.fast_reply(raw) is None
    assert wire.message_end(raw, 0) == len(raw)


@given(st.integers(1, 2**32 - 1), basic)
def test_big_endian_and_non_replies_are_left_to_jeepney(serial: int, value: tuple) -> None:
    big = _reply(serial, "v", (value,), ":1.1", big=True).serialise(serial=3)
    assert wire.fast_reply(big) is None and wire.message_end(big, 0) == len(big)
    sig = new_signal(ADDR, "Changed", "v", (value,)).serialise(serial=4)
    assert wire.fast_reply(sig) is None
    call = new_method_call(ADDR, "Get", "ss", ("x", "y"))
    call.header.serial = serial
    err = new_error(call, "org.x.Error", "v", (value,)).serialise(serial=5)
    assert wire.fast_reply(err) is None


# --- the Bus reading a socket ---------------------------------------------------------------
def _answer(peer: socket.socket, plan: list[tuple[str, object]], cuts: list[int]) -> None:
    """Read the calls off `peer` and answer each by `plan`, with a signal before every answer,
    all written at once and cut at `cuts` into separate writes."""
    parser, calls = Parser(), []
    while len(calls) < len(plan):
        parser.add_data(peer.recv(65536))
        calls += list(iter(parser.get_next_message, None))
    out = b""
    for n, (call, (kind, value)) in enumerate(zip(calls, plan, strict=True)):
        out += new_signal(ADDR, "Tick", "u", (n,)).serialise(serial=10_000 + n)
        if kind == "error":
            out += new_error(call, "org.x.Failed", "s", (str(value),)).serialise(serial=20_000 + n)
        elif kind == "variant":
            out += _reply(call.header.serial, "v", (value,), ":1.1").serialise(serial=20_000 + n)
        else:
            out += _reply(call.header.serial, "as", (value,), ":1.1").serialise(serial=20_000 + n)
    edges = sorted({c % (len(out) + 1) for c in cuts} | {0, len(out)})
    for a, b in zip(edges, edges[1:], strict=False):
        peer.sendall(out[a:b])


plans = st.lists(
    st.one_of(
        st.tuples(st.just("variant"), basic),
        st.tuples(st.just("error"), names),
        st.tuples(st.just("array"), st.lists(names, max_size=3)),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(plans, st.lists(st.integers(0, 10_000), max_size=12))
def test_bus_files_replies_by_serial_across_any_split(plan: list, cuts: list[int]) -> None:
    mine, peer = socket.socketpair()
    bus = Bus(DBusConnectionBase(mine), "test")
    answering = threading.Thread(target=_answer, args=(peer, plan, cuts))
    answering.start()
    try:
        calls = [
            wire.StringCall("org.x", ADDR.object_path, "a.b", "Get", ("i", str(n))) for n in range(len(plan))
        ]
        replies = bus.call_many(calls, timeout=10)
    finally:
        answering.join()
        bus.close()
        peer.close()
    for (kind, value), reply in zip(plan, replies, strict=True):
        if kind == "error":
            assert isinstance(reply, DBusError) and reply.name == "org.x.Failed" and reply.text == value
        elif kind == "variant":
            assert reply == (value,)
        else:
            assert reply == (value,)


def test_message_type_of_a_signal_is_not_taken_for_a_reply() -> None:
    # A signal whose serial equals a pending call's serial must not be filed as its reply.
    raw = new_signal(ADDR, "Tick", "u", (1,)).serialise(serial=1)
    assert _jeepney(raw).header.message_type is MessageType.signal
    assert wire.fast_reply(raw) is None


paths = st.lists(st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True), min_size=0, max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)


@given(paths, st.lists(names, max_size=4), st.booleans(), st.integers(1, 2**32 - 1))
def test_string_calls_are_byte_identical_to_jeepney(
    path: str, args: list[str], no_reply: bool, serial: int
) -> None:
    # Header fields and bodies are encoded once and reused: any path length (so any padding
    # before the reused fields) must still give jeepney's bytes.
    from jeepney.low_level import MessageFlag

    address = DBusAddress(
        path, bus_name="org.freedesktop.systemd1", interface="org.freedesktop.DBus.Properties"
    )
    msg = new_method_call(address, "Get", "s" * len(args) if args else None, tuple(args))
    if no_reply:
        msg.header.flags = MessageFlag.no_reply_expected
    mine = wire.StringCall(address.bus_name, path, address.interface, "Get", args, no_reply=no_reply)
    assert mine.serialise(serial=serial) == msg.serialise(serial=serial)


unit_rows = st.lists(
    st.tuples(
        names,
        names,
        names,
        names,
        names,
        names,
        st.sampled_from(["/", "/org/freedesktop/systemd1/unit/fleet_2da_2eservice"]),
        st.integers(0, 2**32 - 1),
        names,
        st.sampled_from(["/", "/org/freedesktop/systemd1/job/42"]),
    ),
    max_size=6,
)


@given(st.integers(1, 2**32 - 1), unit_rows, names)
def test_a_unit_list_reads_as_jeepney_reads_it(serial: int, rows: list[tuple], sender: str) -> None:
    raw = _reply(serial, "a(ssssssouso)", (rows,), sender).serialise(serial=11)
    theirs = _jeepney(raw)
    assert wire.fast_reply(raw) == (serial, theirs.body)
    assert theirs.body == (rows,)


def test_signals_nobody_asked_for_are_dropped_unparsed() -> None:
    # The manager sends its private-socket peers every unit and job change without being asked.
    # A connection with no match rules must not spend a parse on them, nor trip over one: the
    # signal here has a body jeepney cannot read (a string longer than the body).
    mine, peer = socket.socketpair()
    bus = Bus(DBusConnectionBase(mine), "test")
    good = bytearray(new_signal(ADDR, "Tick", "s", ("abcd",)).serialise(serial=7))
    good[-9:-5] = (1000).to_bytes(4, "little")  # the string's length field, past the body's end
    with pytest.raises(AssertionError):  # jeepney's parser asserts on it
        _jeepney(bytes(good))

    def answer() -> None:
        parser = Parser()
        calls: list[Any] = []
        while not calls:
            parser.add_data(peer.recv(65536))
            calls += list(iter(parser.get_next_message, None))
        peer.sendall(
            bytes(good) + _reply(calls[0].header.serial, "v", (("u", 5),), ":1.1").serialise(serial=8)
        )

    t = threading.Thread(target=answer)
    t.start()
    try:
        reply = bus.call(wire.StringCall("org.x", ADDR.object_path, "a.b", "Get", ("i", "n")), timeout=10)
    finally:
        t.join()
        bus.close()
        peer.close()
    assert reply == (("u", 5),)
