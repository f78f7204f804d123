"""Compression codecs of Kafka record batches (attributes bits 0-2).

Each codec compresses the records section of a batch (everything after the 61-byte
header) as one stream, in the framing Kafka's own clients use:

    0 none    the bytes as they are
    1 gzip    RFC 1952 gzip; decoding also accepts zlib and concatenated gzip members
    2 snappy  xerial framing: b"\\x82SNAPPY\\x00", int32 version 1, int32 compat 1, then
              per 32 KiB of input a big-endian int32 length and one raw snappy block.
              Decoding also accepts a single raw snappy block (no framing).
    3 lz4     one LZ4 frame with independent blocks (what Kafka and kafka-python write);
              decoding accepts concatenated frames
    4 zstd    one zstd frame (level 3 unless told); decoding accepts concatenated frames

`decompress` is bounded: it never produces, nor allocates buffers for, much more than
`max_size` bytes, and raises DecompressionLimitError as soon as the output would exceed
it, so a small "bomb" cannot exhaust memory. Malformed input raises CorruptRecordError;
an unknown codec, or one whose library is not installed, UnsupportedCompression.

Compressor and decompressor objects are cached per thread, because the zstandard ones
are not thread-safe and building them costs more than compressing a small batch.
"""

from __future__ import annotations

import struct
import threading
import zlib

from .errors import CorruptRecordError, DecompressionLimitError, UnsupportedCompression

try:
    import zstandard as _zstd
except ImportError:  # pragma: no cover - zstandard is an install requirement
    _zstd = None
try:
    import lz4.frame as _lz4
except ImportError:  # pragma: no cover
    _lz4 = None
try:
    import cramjam as _cramjam
except ImportError:  # pragma: no cover
    _cramjam = None

NONE = 0
GZIP = 1
SNAPPY = 2
LZ4 = 3
ZSTD = 4

CODEC_NAMES: dict[int, str] = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
_CODECS_BY_NAME = {name: codec for codec, name in CODEC_NAMES.items()}

DEFAULT_LEVELS = {GZIP: 6, LZ4: 0, ZSTD: 3}

XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
XERIAL_BLOCK_SIZE = 32 * 1024

_INT32 = struct.Struct(">i")
_FIRST_CHUNK = 64 * 1024
_MAX_CHUNK = 4 * 1024 * 1024
_ZSTD_MAX_RATIO = 32 * 1024
_ZSTD_MIN_PIECE = 16
_local = threading.local()
_LIBRARY_ERRORS = (zlib.error, RuntimeError, ValueError) + tuple(
    error
    for error in (getattr(_zstd, "ZstdError", None), getattr(_cramjam, "DecompressionError", None))
    if error is not None
)


def codec_by_name(name: str) -> int:
    """The codec number for a name such as "zstd" (case-insensitive)."""
    codec = _CODECS_BY_NAME.get(str(name).strip().lower())
    if codec is None:
        valid = ", ".join(CODEC_NAMES.values())
        raise ValueError(f"unknown compression {name!r}; valid names: {valid}")
    return codec


def is_available(codec: int) -> bool:
    """Whether this installation can compress and decompress `codec`."""
    library = {NONE: zlib, GZIP: zlib, SNAPPY: _cramjam, LZ4: _lz4, ZSTD: _zstd}.get(codec)
    return library is not None


def _require(codec: int) -> None:
    if codec not in CODEC_NAMES:
        raise UnsupportedCompression(f"unknown compression codec {codec}")
    if not is_available(codec):
        raise UnsupportedCompression(f"{CODEC_NAMES[codec]} is not installed")


def compress(codec: int, data, level: int | None = None) -> bytes:
    """Compress `data` (bytes-like) with `codec`, in Kafka's framing for that codec."""
    if codec == NONE:
        return bytes(data)
    _require(codec)
    if level is None:
        level = DEFAULT_LEVELS.get(codec, 0)
    if codec == ZSTD:
        return _zstd_compressor(level).compress(data)
    if codec == LZ4:
        return _lz4.compress(data, compression_level=level, block_linked=False)
    if codec == GZIP:
        return zlib.compress(data, level, wbits=31)
    return _snappy_xerial(data)


def decompress(codec: int, data, max_size: int) -> bytes:
    """Decompress `data`, refusing (DecompressionLimitError) output beyond `max_size` bytes."""
    if codec == NONE:
        if len(data) > max_size:
            raise DecompressionLimitError(f"{len(data)} bytes exceed the limit of {max_size}")
        return bytes(data)
    _require(codec)
    try:
        if codec == ZSTD:
            return _zstd_decompress(data, max_size)
        if codec == LZ4:
            return _lz4_decompress(data, max_size)
        if codec == GZIP:
            return _gzip_decompress(data, max_size)
        return _snappy_decompress(data, max_size)
    except _LIBRARY_ERRORS as exc:
        raise CorruptRecordError(f"cannot decompress {CODEC_NAMES[codec]} data: {exc}") from exc


def _too_big(max_size: int) -> DecompressionLimitError:
    return DecompressionLimitError(f"decompressed data exceeds the limit of {max_size} bytes")


def _cache() -> dict:
    try:
        return _local.objects
    except AttributeError:
        _local.objects = {}
        return _local.objects


def _zstd_compressor(level: int):
    cache = _cache()
    compressor = cache.get(("zstd-c", level))
    if compressor is None:
        compressor = cache[("zstd-c", level)] = _zstd.ZstdCompressor(level=level)
    return compressor


def _zstd_decompressor():
    cache = _cache()
    decompressor = cache.get("zstd-d")
    if decompressor is None:
        decompressor = cache["zstd-d"] = _zstd.ZstdDecompressor()
    return decompressor


def _first_chunk(content_size: int, data_size: int, max_size: int) -> int:
    if content_size >= 0:
        return min(content_size + 1, max_size + 1)
    return min(max(_FIRST_CHUNK, 4 * data_size), max_size + 1)


def _zstd_decompress(data, max_size: int) -> bytes:
    content_size = _zstd.frame_content_size(data)
    if content_size > max_size:
        raise _too_big(max_size)
    if content_size >= 0:
        try:
            return _zstd_decompressor().decompress(data, allow_extra_data=False)
        except _zstd.ZstdError:
            pass
    return _zstd_decompress_stream(data, max_size)


def _zstd_decompress_stream(data, max_size: int) -> bytes:
    """Frames without a content size (Kafka's Java producer streams), or several frames.

    A decompressobj has no output bound, so it is fed pieces of input small enough that
    even the densest zstd encoding (an RLE block: 4 bytes for 128 KiB) cannot run far
    past the bytes still allowed.
    """
    decompressor = _zstd_decompressor().decompressobj()
    view = memoryview(data)
    pos, end = 0, len(view)
    chunks, total = [], 0
    while pos < end:
        piece = max(_ZSTD_MIN_PIECE, (max_size - total) // _ZSTD_MAX_RATIO)
        chunk = decompressor.decompress(view[pos : pos + piece])
        pos = min(pos + piece, end)
        if chunk:
            chunks.append(chunk)
            total += len(chunk)
            if total > max_size:
                raise _too_big(max_size)
        if decompressor.eof:
            pos -= len(decompressor.unused_data)
            if pos < end:
                decompressor = _zstd_decompressor().decompressobj()
    if not decompressor.eof:
        raise CorruptRecordError("zstd frame is cut short")
    return b"".join(chunks)


def _lz4_decompress(data, max_size: int) -> bytes:
    chunks, total = [], 0
    view = memoryview(data)
    while True:
        content_size = _lz4.get_frame_info(view).get("content_size") or -1
        if content_size > max_size - total:
            raise _too_big(max_size)
        decompressor = _lz4.LZ4FrameDecompressor()
        step = _first_chunk(content_size, len(view), max_size)
        pending = view
        while not decompressor.eof:
            chunk = decompressor.decompress(pending, max_length=min(step, max_size + 1 - total))
            pending = b""
            chunks.append(chunk)
            total += len(chunk)
            if total > max_size:
                raise _too_big(max_size)
            if decompressor.needs_input and not decompressor.eof:
                raise CorruptRecordError("lz4 frame is cut short")
            step = min(step * 4, _MAX_CHUNK)
        view = memoryview(decompressor.unused_data or b"")
        if not view:
            return b"".join(chunks)


def _gzip_decompress(data, max_size: int) -> bytes:
    chunks, total = [], 0
    pending = data
    while True:
        decompressor = zlib.decompressobj(47)
        chunk = decompressor.decompress(pending, max_size + 1 - total)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_size:
            raise _too_big(max_size)
        if not decompressor.eof:
            raise CorruptRecordError("gzip stream is cut short")
        pending = decompressor.unused_data
        if not pending:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _snappy_xerial(data) -> bytes:
    view = memoryview(data)
    parts = [XERIAL_HEADER]
    compress_raw = _cramjam.snappy.compress_raw
    for start in range(0, len(view), XERIAL_BLOCK_SIZE):
        block = compress_raw(view[start : start + XERIAL_BLOCK_SIZE])
        parts.append(_INT32.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_block(block, room: int, max_size: int):
    snappy = _cramjam.snappy
    if snappy.decompress_raw_len(block) > room:
        raise _too_big(max_size)
    return snappy.decompress_raw(block)


def _snappy_decompress(data, max_size: int) -> bytes:
    view = memoryview(data)
    if len(view) < 16 or view[:8] != XERIAL_MAGIC:
        return bytes(_snappy_block(view, max_size, max_size))
    chunks, total = [], 0
    pos, end = 16, len(view)
    while pos < end:
        if end - pos < 4:
            raise CorruptRecordError("xerial snappy block length is cut short")
        (length,) = _INT32.unpack_from(view, pos)
        pos += 4
        if length < 0 or pos + length > end:
            raise CorruptRecordError(f"xerial snappy block of {length} bytes, {end - pos} present")
        block = _snappy_block(view[pos : pos + length], max_size - total, max_size)
        chunks.append(block)
        total += len(block)
        pos += length
    return b"".join(chunks)
