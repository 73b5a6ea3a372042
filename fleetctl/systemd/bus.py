"""A small blocking D-Bus client on jeepney: pipelined method calls and a local signal queue.

jeepney's `send_and_get_reply` waits for each reply before sending the next call, so asking
about 50 units costs 50+ round trips. `Bus.call_many` sends every call first and then
collects the replies by serial, so the whole batch costs about one round trip. Signals that
arrive meanwhile are kept (if they match a rule we subscribed to) instead of being dropped.

jeepney connects and authenticates; once connected, `Bus` reads the socket itself so that the
replies `status` reads by the hundred (one property each) skip jeepney's generic parser
(`wire.fast_reply`); every other message is still parsed by jeepney.
"""

from __future__ import annotations

import errno
import math
import select
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from jeepney import HeaderFields, MatchRule, Message, MessageType
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, DBusConnectionBase, open_dbus_connection, prep_socket

from fleetctl.common.errors import FleetError
from fleetctl.systemd import wire
from fleetctl.systemd.wire import StringCall

_SIGNAL = MessageType.signal.value  # the message type byte, the header's second

__all__ = ["Bus", "DBusError", "Reply", "StringCall", "connect", "connect_peer"]

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
    relays the messages, so there is no Hello and no signal routing (no AddMatch: systemd sends
    its signals unasked)."""
    try:
        sock = prep_socket(path)
    except OSError as e:
        raise FleetError(explain(e.strerror or str(e) or type(e).__name__)) from None
    except (ValueError, RuntimeError) as e:  # authentication refused
        raise FleetError(explain(str(e) or type(e).__name__)) from None
    # jeepney's connection without the bus's Hello (a peer has no bus to greet).
    return Bus(DBusConnectionBase(sock), f"unix:path={path}", peer=True)


class Bus:
    """One connection. Not thread-safe: one caller drives the socket."""

    def __init__(self, conn: DBusConnection | DBusConnectionBase, address: str, peer: bool = False) -> None:
        self._conn = conn
        self.address = address
        self.peer = peer  # a direct connection: no bus daemon, no AddMatch
        self._waiting: set[int] = set()  # serials whose replies we still want
        self._replies: dict[int, Message | tuple[Any, ...]] = {}
        self._rules: list[MatchRule] = []
        self._signals: deque[Message] = deque()
        # Received bytes not yet taken as messages, starting with whatever jeepney's parser
        # already holds (a signal that came in behind the Hello reply).
        pending = conn.parser.buf
        self._buf = bytearray(pending.read(pending.bytes_buffered) if pending.bytes_buffered else b"")
        self._pos = 0  # where the next message starts in _buf
        self._poll = select.poll()
        self._poll.register(conn.sock, select.POLLIN)

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
    def match_call(self, rule: MatchRule) -> Message:
        """The AddMatch call for `rule`, for a batch of calls (call_many) that it goes ahead of:
        the bus handles a connection's messages in order, so the rule is in place before any
        later call of the batch can cause a signal. Signals matching it are kept from now on.

        Leave `sender` unset in `rule`: the bus matches a well-known sender name, but the
        messages we receive carry the unique name, so a local match on it would never hit.
        """
        self.keep(rule)  # before AddMatch, so nothing delivered after it is lost
        return message_bus.AddMatch(rule)

    def keep(self, rule: MatchRule) -> None:
        """Keep the signals matching `rule` that arrive from now on, asking nobody: a peer
        (systemd's private socket) sends its signals unasked."""
        self._rules.append(rule)

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
        raw = self._next_message(deadline)
        fast = wire.fast_reply(raw)
        if fast is not None:  # a shape read by the hundred: no Message needed
            serial, body = fast
            if serial in self._waiting:
                self._replies[serial] = body
            return
        if raw[1] == _SIGNAL and not self._rules:
            # Nothing asked for signals, yet the manager sends its private-socket peers every
            # unit and job change unasked (systemd's bus_foreach_bus): drop them unparsed.
            return
        msg = Message.from_buffer(raw)
        serial = msg.header.fields.get(HeaderFields.reply_serial)
        if serial in self._waiting:
            self._replies[serial] = msg
        elif msg.header.message_type is MessageType.signal:
            if any(rule.matches(msg) for rule in self._rules):
                self._signals.append(msg)

    def _next_message(self, deadline: float) -> bytes:
        """The bytes of the next whole message; reads the socket until one is in."""
        while (end := wire.message_end(self._buf, self._pos)) is None:
            del self._buf[: self._pos]  # once per read, not once per message
            self._pos = 0
            self._read(deadline)
        raw = bytes(self._buf[self._pos : end])
        self._pos = end
        return raw

    def _read(self, deadline: float) -> None:
        # TimeoutError must reach the caller as such; a lost connection becomes a FleetError.
        if not self._poll.poll(math.ceil(max(deadline - time.monotonic(), 0.0) * 1000)):
            raise TimeoutError
        try:
            data = self._conn.sock.recv(65536)
        except OSError as e:
            raise self._lost(e) from None
        if not data:
            raise self._lost(ConnectionResetError(errno.ECONNRESET, "closed by the other end"))
        self._buf += data


def _unwrap(msg: Message | tuple[Any, ...]) -> Reply:
    if isinstance(msg, tuple):
        return msg
    if msg.header.message_type is MessageType.error:
        name = msg.header.fields.get(HeaderFields.error_name, "")
        args = msg.body
        text = args[0] if args and isinstance(args[0], str) else ""
        return DBusError(name, text)
    body: tuple[Any, ...] = msg.body
    return body
