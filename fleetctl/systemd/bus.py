"""A small blocking D-Bus client on jeepney: pipelined method calls and a local signal queue.

jeepney's `send_and_get_reply` waits for each reply before sending the next call, so asking
about 50 units costs 50+ round trips. `Bus.call_many` sends every call first and then
collects the replies by serial, so the whole batch costs about one round trip. Signals that
arrive meanwhile are kept (if they match a rule we subscribed to) instead of being dropped.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from jeepney import HeaderFields, MatchRule, Message, MessageType
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, DBusConnectionBase, open_dbus_connection, prep_socket

from fleetctl.common.errors import FleetError

DEFAULT_TIMEOUT = 30.0
# Calls per socket write; at most two chunks are in flight (dbus-daemon's system bus
# allows 128 pending replies per connection).
CHUNK = 64


class DBusError(FleetError):
    """An error reply to a method call; `name` is the D-Bus error name."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text or name)
        self.name = name
        self.text = text


Reply = tuple[Any, ...] | DBusError


def connect(address: str, explain: Callable[[str], str]) -> Bus:
    """Open `address`; any failure becomes one FleetError whose text `explain(reason)` builds."""
    try:
        # jeepney accepts a full address string as well as "SESSION"/"SYSTEM".
        conn = open_dbus_connection(bus=address)
    except OSError as e:  # missing socket, refused, permission, auth timeout, reset
        raise FleetError(explain(e.strerror or str(e) or type(e).__name__)) from None
    except (ValueError, RuntimeError) as e:  # malformed address, unsupported transport, auth
        raise FleetError(explain(str(e) or type(e).__name__)) from None
    return Bus(conn, address)


def connect_peer(path: str, explain: Callable[[str], str]) -> Bus:
    """A connection straight to one D-Bus peer, such as systemd's private socket: no bus daemon
    relays the messages, so there is no Hello and no signal routing (no `add_match`)."""
    try:
        sock = prep_socket(path)
    except OSError as e:
        raise FleetError(explain(e.strerror or str(e) or type(e).__name__)) from None
    except (ValueError, RuntimeError) as e:  # authentication refused
        raise FleetError(explain(str(e) or type(e).__name__)) from None
    return Bus(_PeerConnection(sock), f"unix:path={path}")


class _PeerConnection(DBusConnectionBase):
    """jeepney's blocking connection without the bus's Hello (a peer has no bus to greet)."""

    def receive(self, *, timeout: float | None = None) -> Message:
        deadline = None if timeout is None else time.monotonic() + timeout
        msg: Message = self._receive(deadline)
        return msg


class Bus:
    """One connection. Not thread-safe: one caller drives the socket."""

    def __init__(self, conn: DBusConnection | _PeerConnection, address: str) -> None:
        self._conn = conn
        self.address = address
        self._waiting: set[int] = set()  # serials whose replies we still want
        self._replies: dict[int, Message] = {}
        self._rules: list[MatchRule] = []
        self._signals: deque[Message] = deque()

    def close(self) -> None:
        self._conn.close()

    # --- method calls --------------------------------------------------------------------
    def call(self, msg: Message | StringCall, timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, ...]:
        """One call; raises DBusError on an error reply."""
        reply = self.call_many([msg], timeout)[0]
        if isinstance(reply, DBusError):
            raise reply
        return reply

    def call_many(
        self, msgs: Sequence[Message | StringCall], timeout: float = DEFAULT_TIMEOUT
    ) -> list[Reply]:
        """Send the calls ahead of their replies and return the replies in order. Error
        replies come back as values, so one bad item does not hide the others' results."""
        deadline = time.monotonic() + timeout
        serials = [next(self._conn.outgoing_serial) for _ in msgs]
        self._waiting.update(serials)
        sent = 0
        try:
            for i, serial in enumerate(serials):
                # Keep one to two chunks in flight: one write per chunk instead of one per
                # call, and a backlog below the bus's limit on pending replies.
                upto = min(len(msgs), (i // CHUNK + 2) * CHUNK)
                if sent < upto:
                    self._write(msgs[sent:upto], serials[sent:upto])
                    sent = upto
                while serial not in self._replies:
                    self._pump(deadline)
        except TimeoutError:
            raise FleetError(f"no reply from {self.address} within {timeout:g}s") from None
        finally:
            # Forget these serials even on failure: late replies are then dropped on arrival.
            self._waiting.difference_update(serials)
            replies = [self._replies.pop(s, None) for s in serials]
        return [_unwrap(r) for r in replies]

    def send_no_reply(self, msgs: Sequence[Message | StringCall]) -> None:
        """Fire and forget; only for calls built with `no_reply=True`."""
        self._write(msgs, [next(self._conn.outgoing_serial) for _ in msgs])

    def _write(self, msgs: Sequence[Message | StringCall], serials: Sequence[int]) -> None:
        # We never pass file descriptors, so the plain socket write jeepney would do suffices.
        data = b"".join(m.serialise(serial=s) for m, s in zip(msgs, serials, strict=True))
        try:
            self._conn.sock.sendall(data)
        except OSError as e:
            raise self._lost(e) from None

    def _lost(self, e: OSError) -> FleetError:
        return FleetError(f"lost the D-Bus connection to {self.address}: {e.strerror or e}")

    # --- signals ---------------------------------------------------------------------------
    def add_match(self, rule: MatchRule, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Ask the bus for signals matching `rule` and keep them for `next_signal`.

        Leave `sender` unset in `rule`: the bus matches a well-known sender name, but the
        messages we receive carry the unique name, so a local match on it would never hit.
        """
        self._rules.append(rule)  # before AddMatch, so nothing delivered after it is lost
        self.call(message_bus.AddMatch(rule), timeout)

    def drop_signals(self) -> None:
        self._signals.clear()

    def next_signal(self, deadline: float) -> Message:
        """The oldest kept signal; raises TimeoutError once `deadline` (monotonic) passes."""
        while not self._signals:
            self._pump(deadline)
        return self._signals.popleft()

    # --- receiving ---------------------------------------------------------------------------
    def _pump(self, deadline: float) -> None:
        """Receive one message and file it as a reply or a kept signal; others are dropped."""
        try:
            msg = self._conn.receive(timeout=max(deadline - time.monotonic(), 0.0))
        except ConnectionError as e:  # TimeoutError is an OSError too, but must propagate
            raise self._lost(e) from None
        serial = msg.header.fields.get(HeaderFields.reply_serial)
        if serial in self._waiting:
            self._replies[serial] = msg
        elif msg.header.message_type is MessageType.signal:
            if any(rule.matches(msg) for rule in self._rules):
                self._signals.append(msg)


def _unwrap(msg: Message) -> Reply:
    if msg.header.message_type is MessageType.error:
        name = msg.header.fields.get(HeaderFields.error_name, "")
        args = msg.body
        text = args[0] if args and isinstance(args[0], str) else ""
        return DBusError(name, text)
    body: tuple[Any, ...] = msg.body
    return body


class StringCall:
    """A method call whose arguments are all strings, encoded once by hand.

    jeepney's generic serialiser costs ~40 µs a message, the larger half of reading 800
    properties for `fleetctl status`; this costs a few µs. jeepney's `send` only needs
    `.serialise(serial=, fds=)` from a message. Little-endian D-Bus wire format, header
    fields in jeepney's order, so tests can compare the bytes with jeepney's.
    """

    __slots__ = ("_head", "_tail")

    def __init__(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        args: Sequence[str] = (),
        no_reply: bool = False,
    ) -> None:
        head = bytearray(16)  # fixed part, filled in below
        fields = [(1, "o", path), (2, "s", interface), (3, "s", member), (6, "s", destination)]
        if args:
            fields.append((8, "g", "s" * len(args)))
        for code, sig, value in fields:  # a(yv): each struct starts on 8
            _pad(head, 8)
            head.append(code)
            _put_signature(head, sig)
            (_put_signature if sig == "g" else _put_string)(head, value)
        fields_len = len(head) - 16
        _pad(head, 8)  # the body starts on 8, so its own alignment can count from 0
        body = bytearray()
        for arg in args:
            _put_string(body, arg)
        flags = 1 if no_reply else 0  # NO_REPLY_EXPECTED
        struct.pack_into("<cBBBII", head, 0, b"l", 1, flags, 1, len(body), 0)
        struct.pack_into("<I", head, 12, fields_len)
        self._head = bytes(head[:8])
        self._tail = bytes(head[12:]) + bytes(body)

    def serialise(self, serial: int, fds: object = None) -> bytes:
        return self._head + struct.pack("<I", serial) + self._tail


def _pad(buf: bytearray, align: int) -> None:
    buf.extend(b"\0" * (-len(buf) % align))


def _put_string(buf: bytearray, value: str) -> None:  # also object paths
    data = value.encode()
    _pad(buf, 4)
    buf.extend(struct.pack("<I", len(data)) + data + b"\0")


def _put_signature(buf: bytearray, value: str) -> None:
    data = value.encode()
    buf.extend(bytes([len(data)]) + data + b"\0")
