"""The D-Bus wire format for the message shapes `fleetctl status` sends and reads by the
hundred: method calls whose arguments are all strings, `Properties.Get` replies (one variant
holding one basic value) and the ListUnitsByPatterns reply. Everything else goes through jeepney.

Why by hand: at 200 agents `status` reads 1,200 properties. jeepney's generic serialiser costs
~40 µs a call and its generic parser ~45 µs a reply (6 ms for a 200-unit list), in pure Python;
these cost a few µs each (bench/pm2_compare.py, docs/benchmarks.md). Both are checked against
jeepney byte for byte and value for value in tests/test_wire.py, with generated messages.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from typing import Any

_METHOD_RETURN = 2
_REPLY_SERIAL, _SIGNATURE = 5, 8  # header field codes

# Basic types a variant may hold, decoded here: struct format and alignment.
_FIXED: dict[bytes, tuple[struct.Struct, int]] = {
    b"y": (struct.Struct("<B"), 1),
    b"n": (struct.Struct("<h"), 2),
    b"q": (struct.Struct("<H"), 2),
    b"i": (struct.Struct("<i"), 4),
    b"u": (struct.Struct("<I"), 4),
    b"x": (struct.Struct("<q"), 8),
    b"t": (struct.Struct("<Q"), 8),
    b"d": (struct.Struct("<d"), 8),
}
_U32 = struct.Struct("<I")


def message_end(buf: bytes | bytearray, start: int) -> int | None:
    """Where the message starting at `start` ends, or None while its bytes are not all in.

    The first 16 bytes fix the size: body length at 4, header-field array length at 12, in the
    message's own byte order; the fields are padded to 8 before the body."""
    if len(buf) - start < 16:
        return None
    order = "<" if buf[start] == 0x6C else ">"  # 'l' little-endian, else 'B'
    body_len, _serial, fields_len = struct.unpack_from(order + "III", buf, start + 4)
    end = start + 16 + fields_len + (-fields_len % 8) + body_len
    return end if len(buf) >= end else None


def fast_reply(raw: bytes) -> tuple[int, tuple[Any, ...]] | None:
    """(reply serial, body) of a little-endian method return of one of the two shapes read by
    the hundred (one basic value in a variant, a unit list), as jeepney would give them; None for any
    other message (let jeepney parse it)."""
    head = _reply_head(raw)
    if head is None:
        return None
    reply_serial, signature, pos = head
    body: tuple[Any, ...] | None
    try:
        if signature == b"v":
            body = _variant(raw, pos)
        elif signature == _UNIT_LIST:
            body = _unit_list(raw, pos)
        else:
            return None
    except UnicodeDecodeError:
        return None  # jeepney says what is wrong with it
    return None if body is None else (reply_serial, body)


def _reply_head(raw: bytes) -> tuple[int, bytes, int] | None:
    """(reply serial, body signature, where the body starts) of a little-endian method return."""
    if raw[0] != 0x6C or raw[1] != _METHOD_RETURN or raw[3] != 1:
        return None
    fields_len = _U32.unpack_from(raw, 12)[0]
    pos, end = 16, 16 + fields_len
    reply_serial = signature = None
    while pos < end:  # a(yv): each field a struct aligned to 8
        pos += -pos % 8
        code, n = raw[pos], raw[pos + 1]
        sig = raw[pos + 2 : pos + 2 + n]
        pos += 3 + n
        if sig == b"u":
            pos += -pos % 4
            if code == _REPLY_SERIAL:
                reply_serial = _U32.unpack_from(raw, pos)[0]
            pos += 4
        elif sig == b"s" or sig == b"o":
            pos += -pos % 4
            pos += 5 + _U32.unpack_from(raw, pos)[0]
        elif sig == b"g":
            if code == _SIGNATURE:
                signature = raw[pos + 1 : pos + 1 + raw[pos]]
            pos += raw[pos] + 2
        else:
            return None
    if signature is None or reply_serial is None:
        return None
    return reply_serial, signature, end + (-end % 8)  # the body starts on 8


# ListUnitsByPatterns: name, description, load, active, sub, following, path, job id, type, path.
_UNIT_LIST = b"a(ssssssouso)"
_UNIT_FIELDS = "ssssssouso"


def _unit_list(raw: bytes, pos: int) -> tuple[list[tuple[Any, ...]]] | None:
    size = _U32.unpack_from(raw, pos)[0]
    pos += 4
    pos += -pos % 8  # the array's first struct starts on 8 even when the array is empty
    end = pos + size
    units: list[tuple[Any, ...]] = []
    while pos < end:
        pos += -pos % 8
        unit: list[Any] = []
        for kind in _UNIT_FIELDS:
            pos += -pos % 4
            n = _U32.unpack_from(raw, pos)[0]
            if kind == "u":
                unit.append(n)
                pos += 4
            else:
                unit.append(raw[pos + 4 : pos + 4 + n].decode())
                pos += 5 + n
        units.append(tuple(unit))
    return (units,) if pos == end else None


def _variant(raw: bytes, pos: int) -> tuple[tuple[str, Any]] | None:
    n = raw[pos]
    inner = raw[pos + 1 : pos + 1 + n]
    pos += n + 2
    if inner in _FIXED:
        fmt, align = _FIXED[inner]
        pos += -pos % align
        value: Any = fmt.unpack_from(raw, pos)[0]
    elif inner == b"b":
        pos += -pos % 4
        value = _U32.unpack_from(raw, pos)[0]
        if value > 1:
            return None  # not a valid boolean: jeepney's verdict, not ours
        value = bool(value)
    elif inner == b"s" or inner == b"o":
        pos += -pos % 4
        length = _U32.unpack_from(raw, pos)[0]
        value = raw[pos + 4 : pos + 4 + length].decode()
    else:
        return None
    return ((inner.decode(), value),)


class StringCall:
    """A method call whose arguments are all strings, encoded once by hand.

    jeepney's `send` only needs `.serialise(serial=, fds=)` from a message. Little-endian, header
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
            head += _field(code, sig, value)
        fields_len = len(head) - 16
        _pad(head, 8)  # the body starts on 8, so its own alignment can count from 0
        body = _body(tuple(args))
        flags = 1 if no_reply else 0  # NO_REPLY_EXPECTED
        struct.pack_into("<cBBBII", head, 0, b"l", 1, flags, 1, len(body), 0)
        struct.pack_into("<I", head, 12, fields_len)
        self._head = bytes(head[:8])
        self._tail = bytes(head[12:]) + body

    def serialise(self, serial: int, fds: object = None) -> bytes:
        return self._head + struct.pack("<I", serial) + self._tail


# A header field starts on 8 and a body on 8, so their bytes do not depend on where they sit:
# encoded once and reused (status sends 1,200 Gets that share all but the unit's path).
@functools.lru_cache(maxsize=4096)
def _field(code: int, sig: str, value: str) -> bytes:
    buf = bytearray([code])
    _put_signature(buf, sig)
    (_put_signature if sig == "g" else _put_string)(buf, value)
    return bytes(buf)


@functools.lru_cache(maxsize=1024)
def _body(args: tuple[str, ...]) -> bytes:
    buf = bytearray()
    for arg in args:
        _put_string(buf, arg)
    return bytes(buf)


def _pad(buf: bytearray, align: int) -> None:
    buf.extend(b"\0" * (-len(buf) % align))


def _put_string(buf: bytearray, value: str) -> None:  # also object paths
    data = value.encode()
    _pad(buf, 4)
    buf.extend(struct.pack("<I", len(data)) + data + b"\0")


def _put_signature(buf: bytearray, value: str) -> None:
    data = value.encode()
    buf.extend(bytes([len(data)]) + data + b"\0")
