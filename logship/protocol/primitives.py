"""Kafka wire primitives: fixed-width integers, strings, bytes, records, uuids, array lengths and
their compact forms (varints live in varints.py and are re-exported here).

Readers have the shape ``read(buf, pos) -> (value, new_pos)`` where ``buf`` is a memoryview whose
length is the hard end of the data (a frame, or a tagged field inside one). Every length read from
the wire is checked against the bytes left in ``buf`` before anything is allocated; a short read of a
fixed-width value surfaces as ``struct.error``/``IndexError`` (see DECODE_ERRORS), which the public
entry points in framing.py turn into :class:`logship.errors.ProtocolError`.

Writers have the shape ``write(out, value)`` and append to ``out``, a :class:`Writer` (a bytearray
that may also collect spliced parts, see :func:`write_records`).

Non-compact strings/bytes/arrays carry an int16/int32 length (-1 = null); compact ones (KIP-482,
flexible versions) carry an unsigned varint of length + 1 (0 = null).
"""

from __future__ import annotations

import struct
import uuid

from logship.errors import ProtocolError

from .varints import (  # noqa: F401  (re-exported: primitives is the one place to import from)
    read_uvarint, read_varint, read_varlong, write_uvarint, write_varint, write_varlong,
)

__all__ = [
    "EncodeError", "Writer", "DECODE_ERRORS",
    "INT8", "INT16", "INT32", "INT64", "UINT16", "UINT32", "BOOL", "FLOAT64", "FIXED",
    "read_uvarint", "write_uvarint", "read_varint", "write_varint", "read_varlong", "write_varlong",
    "read_string", "read_nullable_string", "read_compact_string", "read_compact_nullable_string",
    "write_string", "write_nullable_string", "write_compact_string", "write_compact_nullable_string",
    "read_bytes", "read_nullable_bytes", "read_compact_bytes", "read_compact_nullable_bytes",
    "write_bytes", "write_nullable_bytes", "write_compact_bytes", "write_compact_nullable_bytes",
    "read_records", "read_compact_records", "write_records", "write_compact_records",
    "read_array_length", "read_compact_array_length", "read_uuid", "write_uuid",
]


class EncodeError(ProtocolError):
    """A value cannot be encoded (wrong type, out of range, null where not nullable, ...).

    `field_path` names the offending field ("responses.partitions.high_watermark") once the
    struct encoders have seen the error go by."""

    field_path = ""


class Writer(bytearray):
    """The output buffer of the encoders.

    ``splices`` is None for plain encoding; for parts encoding it is a list of
    ``(position, obj)``: a spliced records object to be emitted between ``self[:position]`` and
    the bytes that follow.
    """

    __slots__ = ("splices",)

    def __init__(self, initial: bytes = b"", splices: list | None = None):
        super().__init__(initial)
        self.splices = splices


#: What a decoder may raise on malformed input before the public entry points turn it into
#: ProtocolError (a short fixed-width read is a struct.error, a varint past the end an IndexError).
DECODE_ERRORS = (struct.error, IndexError, ValueError, OverflowError, MemoryError, RecursionError)


# --- fixed width ---------------------------------------------------------------------------------

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")
UINT16 = struct.Struct(">H")
UINT32 = struct.Struct(">I")
BOOL = struct.Struct(">?")
FLOAT64 = struct.Struct(">d")

#: Kafka type name -> struct format character, for the fixed-width types.
FIXED = {"int8": "b", "int16": "h", "int32": "i", "int64": "q", "uint16": "H", "uint32": "I",
         "bool": "?", "float64": "d"}

_unpack_h = INT16.unpack_from
_unpack_i = INT32.unpack_from
_pack_h = INT16.pack
_pack_i = INT32.pack
_NULL16 = _pack_h(-1)
_NULL32 = _pack_i(-1)
_MAX16 = 0x7FFF
_MAX32 = 0x7FFFFFFF


def _too_long(what: str, n: int, buf, pos: int) -> ProtocolError:
    return ProtocolError(f"{what} length {n} exceeds the {len(buf) - pos} bytes left in the frame")


# --- strings -------------------------------------------------------------------------------------

def _utf8(buf, pos: int, end: int) -> str:
    if end > len(buf):
        raise _too_long("string", end - pos, buf, pos)
    try:
        return str(buf[pos:end], "utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("string is not valid UTF-8") from None


def read_string(buf, pos: int) -> tuple[str, int]:
    n = _unpack_h(buf, pos)[0]
    pos += 2
    if n < 0:
        raise ProtocolError("null where a non-nullable string is required")
    return _utf8(buf, pos, pos + n), pos + n


def read_nullable_string(buf, pos: int) -> tuple[str | None, int]:
    n = _unpack_h(buf, pos)[0]
    pos += 2
    if n < 0:
        return None, pos
    return _utf8(buf, pos, pos + n), pos + n


def read_compact_nullable_string(buf, pos: int) -> tuple[str | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    n -= 1
    return _utf8(buf, pos, pos + n), pos + n


def read_compact_string(buf, pos: int) -> tuple[str, int]:
    value, pos = read_compact_nullable_string(buf, pos)
    if value is None:
        raise ProtocolError("null where a non-nullable compact string is required")
    return value, pos


def _encode_str(value) -> bytes:
    try:
        return value.encode("utf-8")
    except AttributeError:
        raise EncodeError(f"expected a str, got {type(value).__name__}") from None


def write_string(out, value: str) -> None:
    if value is None:
        raise EncodeError("null where a non-nullable string is required")
    data = _encode_str(value)
    if len(data) > _MAX16:
        raise EncodeError(f"string of {len(data)} bytes is too long")
    out += _pack_h(len(data))
    out += data


def write_nullable_string(out, value: str | None) -> None:
    if value is None:
        out += _NULL16
    else:
        write_string(out, value)


def write_compact_nullable_string(out, value: str | None) -> None:
    if value is None:
        out.append(0)
        return
    data = _encode_str(value)
    write_uvarint(out, len(data) + 1)
    out += data


def write_compact_string(out, value: str) -> None:
    if value is None:
        raise EncodeError("null where a non-nullable string is required")
    write_compact_nullable_string(out, value)


# --- bytes (copied) and records (zero-copy or spliced) -------------------------------------------

def _slice(buf, pos: int, n: int, what: str):
    end = pos + n
    if end > len(buf):
        raise _too_long(what, n, buf, pos)
    return buf[pos:end], end


def read_nullable_bytes(buf, pos: int) -> tuple[bytes | None, int]:
    n = _unpack_i(buf, pos)[0]
    pos += 4
    if n < 0:
        return None, pos
    view, pos = _slice(buf, pos, n, "bytes")
    return bytes(view), pos


def read_bytes(buf, pos: int) -> tuple[bytes, int]:
    value, pos = read_nullable_bytes(buf, pos)
    if value is None:
        raise ProtocolError("null where non-nullable bytes are required")
    return value, pos


def read_compact_nullable_bytes(buf, pos: int) -> tuple[bytes | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    view, pos = _slice(buf, pos, n - 1, "bytes")
    return bytes(view), pos


def read_compact_bytes(buf, pos: int) -> tuple[bytes, int]:
    value, pos = read_compact_nullable_bytes(buf, pos)
    if value is None:
        raise ProtocolError("null where non-nullable compact bytes are required")
    return value, pos


def read_records(buf, pos: int):
    """Nullable int32-length bytes returned as a zero-copy memoryview slice of `buf`."""
    n = _unpack_i(buf, pos)[0]
    pos += 4
    if n < 0:
        return None, pos
    return _slice(buf, pos, n, "records")


def read_compact_records(buf, pos: int):
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    return _slice(buf, pos, n - 1, "records")


def _byte_length(value) -> int:
    cls = value.__class__
    if cls is bytes or cls is bytearray:
        return len(value)
    if cls is memoryview:
        return value.nbytes
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    raise EncodeError(f"expected bytes, got {type(value).__name__}")


def write_nullable_bytes(out, value) -> None:
    if value is None:
        out += _NULL32
        return
    n = _byte_length(value)
    if n > _MAX32:
        raise EncodeError(f"bytes of length {n} are too long")
    out += _pack_i(n)
    out += value


def write_bytes(out, value) -> None:
    if value is None:
        raise EncodeError("null where non-nullable bytes are required")
    write_nullable_bytes(out, value)


def write_compact_nullable_bytes(out, value) -> None:
    if value is None:
        out.append(0)
        return
    write_uvarint(out, _byte_length(value) + 1)
    out += value


def write_compact_bytes(out, value) -> None:
    if value is None:
        raise EncodeError("null where non-nullable bytes are required")
    write_compact_nullable_bytes(out, value)


def _splice_length(out, value) -> int:
    """Length of a spliced records object (anything with an int `length`), checked."""
    n = getattr(value, "length", None)
    if n.__class__ is not int or n < 0 or n > _MAX32:
        raise EncodeError(f"records must be bytes, memoryview, None or an object with an int "
                          f"`length`, got {type(value).__name__}")
    if getattr(out, "splices", None) is None:
        raise EncodeError(f"cannot inline a spliced {type(value).__name__}; use encode_*_parts")
    return n


def write_records(out, value) -> None:
    """Nullable records: bytes-like values are copied in; other objects with an integer `length`
    (e.g. a storage FileSlice) get their int32 length written and are recorded in
    ``out.splices`` to be emitted as their own part."""
    if value is None:
        out += _NULL32
        return
    cls = value.__class__
    if cls is bytes or cls is memoryview or isinstance(value, (bytes, bytearray, memoryview)):
        write_nullable_bytes(out, value)
        return
    out += _pack_i(_splice_length(out, value))
    out.splices.append((len(out), value))


def write_compact_records(out, value) -> None:
    if value is None or isinstance(value, (bytes, bytearray, memoryview)):
        write_compact_nullable_bytes(out, value)
        return
    write_uvarint(out, _splice_length(out, value) + 1)
    out.splices.append((len(out), value))


# --- uuid ----------------------------------------------------------------------------------------

_ZERO_UUID = uuid.UUID(int=0)


def read_uuid(buf, pos: int) -> tuple[uuid.UUID, int]:
    raw = bytes(buf[pos:pos + 16])
    if len(raw) != 16:
        raise ProtocolError("truncated uuid")
    return uuid.UUID(bytes=raw), pos + 16


def write_uuid(out, value) -> None:
    """A uuid.UUID, 16 raw bytes, or None (Kafka's all-zero UUID)."""
    if value is None:
        value = _ZERO_UUID
    out += value.bytes if isinstance(value, uuid.UUID) else bytes(value)[:16].ljust(16, b"\0")


# --- array lengths -------------------------------------------------------------------------------

def read_array_length(buf, pos: int, min_item_size: int) -> tuple[int, int]:
    """int32 count (-1 = null, returned as -1), checked so that `count` items of at least
    `min_item_size` bytes fit in what is left of `buf`."""
    n = _unpack_i(buf, pos)[0]
    pos += 4
    if n > 0 and n * min_item_size > len(buf) - pos:
        raise ProtocolError(f"array of {n} items cannot fit in the {len(buf) - pos} bytes left")
    return (n if n >= 0 else -1), pos


def read_compact_array_length(buf, pos: int, min_item_size: int) -> tuple[int, int]:
    """Compact count: uvarint of count + 1 (0 = null, returned as -1)."""
    n, pos = read_uvarint(buf, pos)
    n -= 1
    if n > 0 and n * min_item_size > len(buf) - pos:
        raise ProtocolError(f"array of {n} items cannot fit in the {len(buf) - pos} bytes left")
    return n, pos
