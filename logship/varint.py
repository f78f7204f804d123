"""Variable-length integers of the Kafka protocol (protobuf base-128 varints).

Seven bits per byte, least significant group first, high bit set on every byte but the
last. Signed values are zig-zag mapped first (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...), so small
magnitudes of either sign take one byte:

    |v| <= 63 -> 1 byte, <= 8191 -> 2, <= 1,048,575 -> 3, ...

A varint holds an int32 and takes at most 5 bytes; a varlong holds an int64 and takes at
most 10. Readers refuse longer encodings and values out of range with ValueError, and
raise IndexError when the buffer ends inside a varint; callers map both to their own
error (CorruptRecordError, ProtocolError).
"""

from __future__ import annotations

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

SMALL_LIMIT = 1 << 14
"""Non-negative values below this have a precomputed zig-zag encoding in SMALL."""


def unsigned_varint(value: int) -> bytes:
    """Base-128 encoding of a non-negative integer (no zig-zag)."""
    if value < 0:
        raise ValueError(f"unsigned varint of negative value {value}")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _zigzag_bytes(value: int) -> bytes:
    return unsigned_varint((value << 1) ^ (value >> 63))


SMALL: tuple[bytes, ...] = tuple(  # by encoded size: a third of the time of _zigzag_bytes each
    [bytes((z,)) for z in range(0, 0x80, 2)]
    + [bytes((z & 0x7F | 0x80, z >> 7)) for z in range(0x80, 0x4000, 2)]
    + [bytes((z & 0x7F | 0x80, z >> 7 & 0x7F | 0x80, z >> 14)) for z in range(0x4000, 2 * SMALL_LIMIT, 2)])
"""SMALL[v] is the zig-zag varint of v, for 0 <= v < SMALL_LIMIT."""


def zigzag_varint(value: int) -> bytes:
    """Zig-zag varint of an int32 (1 to 5 bytes)."""
    if 0 <= value < SMALL_LIMIT:
        return SMALL[value]
    if not INT32_MIN <= value <= INT32_MAX:
        raise ValueError(f"varint out of int32 range: {value}")
    return _zigzag_bytes(value)


def zigzag_varlong(value: int) -> bytes:
    """Zig-zag varlong of an int64 (1 to 10 bytes)."""
    if 0 <= value < SMALL_LIMIT:
        return SMALL[value]
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"varlong out of int64 range: {value}")
    return _zigzag_bytes(value)


def size_of_varint(value: int) -> int:
    """Bytes taken by the zig-zag encoding of `value`."""
    encoded = (value << 1) ^ (value >> 63)
    return max(1, (encoded.bit_length() + 6) // 7)


def read_unsigned(buf, pos: int, max_bytes: int = 5) -> tuple[int, int]:
    """(value, next position) of the unsigned varint at `buf[pos]`.

    At most `max_bytes` long (5 for 32-bit values, 10 for 64-bit) and below 2**(32 or 64).
    """
    limit_bits = 32 if max_bytes <= 5 else 64
    result = shift = 0
    for i in range(pos, pos + max_bytes):
        byte = buf[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >> limit_bits:
                raise ValueError(f"varint at byte {pos} exceeds {limit_bits} bits")
            return result, i + 1
        shift += 7
    raise ValueError(f"varint at byte {pos} is longer than {max_bytes} bytes")


def read_varint(buf, pos: int) -> tuple[int, int]:
    """(value, next position) of the zig-zag varint (int32) at `buf[pos]`."""
    byte = buf[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    raw, pos = read_unsigned(buf, pos, 5)
    return (raw >> 1) ^ -(raw & 1), pos


def read_varlong(buf, pos: int) -> tuple[int, int]:
    """(value, next position) of the zig-zag varlong (int64) at `buf[pos]`."""
    byte = buf[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    raw, pos = read_unsigned(buf, pos, 10)
    return (raw >> 1) ^ -(raw & 1), pos
