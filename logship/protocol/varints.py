"""Kafka's variable-length integers: unsigned LEB128 (uvarint, used by compact lengths and tagged
fields) and zig-zag signed varint/varlong (used inside record batches).

Readers: ``read(buf, pos) -> (value, new_pos)``; a varint running past the end of ``buf`` raises
IndexError, which the public decode entry points turn into ProtocolError. Writers append to a
bytearray.
"""

from __future__ import annotations

from logship.errors import ProtocolError

__all__ = ["read_uvarint", "write_uvarint", "read_varint", "write_varint", "read_varlong",
           "write_varlong", "VarintRangeError"]


class VarintRangeError(ProtocolError, ValueError):
    """A value outside what the varint type can encode."""


def read_uvarint(buf, pos: int) -> tuple[int, int]:
    """Unsigned LEB128 varint of at most 5 bytes (32 bits)."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    while True:
        pos += 1
        b = buf[pos]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if value > 0xFFFFFFFF:
                raise ProtocolError("unsigned varint exceeds 32 bits")
            return value, pos + 1
        shift += 7
        if shift > 28:
            raise ProtocolError("unsigned varint longer than 5 bytes")


def _read_uvarlong(buf, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ProtocolError("varlong longer than 10 bytes")


def write_uvarint(out, value: int) -> None:
    if 0 <= value < 0x80:
        out.append(value)
        return
    if value < 0 or value > 0xFFFFFFFF:
        raise VarintRangeError(f"unsigned varint out of range: {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def read_varint(buf, pos: int) -> tuple[int, int]:
    """Zig-zag signed varint (32 bits)."""
    raw, pos = read_uvarint(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def write_varint(out, value: int) -> None:
    if not -0x80000000 <= value <= 0x7FFFFFFF:
        raise VarintRangeError(f"varint out of range: {value}")
    write_uvarint(out, ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF)


def read_varlong(buf, pos: int) -> tuple[int, int]:
    """Zig-zag signed varlong (64 bits)."""
    raw, pos = _read_uvarlong(buf, pos)
    if raw > 0xFFFFFFFFFFFFFFFF:
        raise ProtocolError("varlong exceeds 64 bits")
    return (raw >> 1) ^ -(raw & 1), pos


def write_varlong(out, value: int) -> None:
    if not -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
        raise VarintRangeError(f"varlong out of range: {value}")
    raw = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
