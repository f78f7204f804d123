"""LogAppendTime: the broker, not the producer, dates a batch (message.timestamp.type).

As Apache Kafka does for magic 2, a leader appending to a topic whose LogConfig says
"LogAppendTime" sets bit 3 of each batch's attributes and writes the append time into its
maxTimestamp; records are not re-encoded (consumers read every record's timestamp from
maxTimestamp when the bit is set). Both fields are covered by the CRC, so the CRC is written
again. Call it only on batches that validate.py has checked: a batch that failed its CRC
must never be given a fresh one.
"""

from __future__ import annotations

import struct

from .. import records

_ATTRIBUTES = struct.Struct(">h")   # bytes 21-22
_TIMESTAMP = struct.Struct(">q")    # maxTimestamp, bytes 35-42
_CRC = struct.Struct(">I")          # bytes 17-20
_ATTRIBUTES_AT, _MAX_TIMESTAMP_AT, _CRC_AT = 21, 35, 17


def stamp_log_append_time(buf: bytearray | memoryview, checked: list[tuple], now_ms: int) -> list[tuple]:
    """Stamp every batch of `buf` (writable) at `now_ms`; `checked` is validate_batches'
    list for it, returned with each max timestamp replaced by `now_ms`."""
    view = memoryview(buf)
    stamped = []
    for pos, size, delta, _, epoch, base in checked:
        (attributes,) = _ATTRIBUTES.unpack_from(buf, pos + _ATTRIBUTES_AT)
        _ATTRIBUTES.pack_into(buf, pos + _ATTRIBUTES_AT, attributes | records.ATTR_LOG_APPEND_TIME)
        _TIMESTAMP.pack_into(buf, pos + _MAX_TIMESTAMP_AT, now_ms)
        _CRC.pack_into(buf, pos + _CRC_AT, records.crc32c(view[pos + records.CRC_START: pos + size]))
        stamped.append((pos, size, delta, now_ms, epoch, base))
    return stamped
