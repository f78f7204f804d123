"""logship.compression: Kafka's framing per codec, bounded decompression, errors."""

from __future__ import annotations

import os
import struct
import threading
import tracemalloc
import zlib

import cramjam
import lz4.frame
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from logship import compression
from logship.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD, compress, decompress
from logship.errors import CorruptRecordError, DecompressionLimitError, UnsupportedCompression

MB = 1 << 20
CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
COMPRESSED = [GZIP, SNAPPY, LZ4, ZSTD]
LOG_LINES = b"".join(
    b'{"ts":"2026-11-24T10:00:%02d.%03dZ","level":"info","msg":"request served","status":200,"bytes":%d}\n'
    % (i % 60, i % 1000, i * 7)
    for i in range(3000)
)
SAMPLES = {
    "empty": b"",
    "one byte": b"x",
    "text": LOG_LINES,
    "random": os.urandom(100_000),
    "zeros": bytes(300_000),
}


def test_codec_numbers_and_names():
    assert (NONE, GZIP, SNAPPY, LZ4, ZSTD) == (0, 1, 2, 3, 4)
    assert compression.CODEC_NAMES == {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
    for codec, name in compression.CODEC_NAMES.items():
        assert compression.codec_by_name(name) == codec
        assert compression.codec_by_name(name.upper()) == codec


def test_codec_by_name_lists_valid_names():
    with pytest.raises(ValueError) as excinfo:
        compression.codec_by_name("brotli")
    message = str(excinfo.value)
    assert "brotli" in message
    for name in ("none", "gzip", "snappy", "lz4", "zstd"):
        assert name in message


@pytest.mark.parametrize("codec", CODECS, ids=compression.CODEC_NAMES.get)
@pytest.mark.parametrize("sample", SAMPLES, ids=str)
def test_round_trip(codec, sample):
    data = SAMPLES[sample]
    packed = compress(codec, data)
    assert type(packed) is bytes
    assert decompress(codec, packed, len(data)) == data
    assert decompress(codec, memoryview(packed), 64 * MB) == data
    assert decompress(codec, bytearray(packed), 64 * MB) == data


@pytest.mark.parametrize("codec", COMPRESSED, ids=compression.CODEC_NAMES.get)
def test_compresses_log_lines(codec):
    assert len(compress(codec, LOG_LINES)) < len(LOG_LINES) / 3


@pytest.mark.parametrize("codec", CODECS, ids=compression.CODEC_NAMES.get)
def test_limit_is_exact(codec):
    data = LOG_LINES[:50_000]
    packed = compress(codec, data)
    assert decompress(codec, packed, len(data)) == data
    with pytest.raises(DecompressionLimitError):
        decompress(codec, packed, len(data) - 1)


def test_limit_error_is_a_corrupt_record_error():
    assert issubclass(DecompressionLimitError, CorruptRecordError)


# ---------------------------------------------------------------- framing per codec


def test_gzip_is_gzip():
    packed = compress(GZIP, LOG_LINES)
    assert packed[:2] == b"\x1f\x8b"
    assert zlib.decompress(packed, 31) == LOG_LINES


def test_gzip_decodes_concatenated_members_and_zlib():
    first, second = b"a" * 1000, b"b" * 1000
    assert decompress(GZIP, compress(GZIP, first) + compress(GZIP, second), MB) == first + second
    assert decompress(GZIP, zlib.compress(first), MB) == first


def test_gzip_limit_counts_all_members():
    member = compress(GZIP, bytes(1000))
    with pytest.raises(DecompressionLimitError):
        decompress(GZIP, member * 3, 2500)


def test_snappy_writes_xerial_framing():
    data = LOG_LINES[: 3 * compression.XERIAL_BLOCK_SIZE + 100]
    packed = compress(SNAPPY, data)
    assert packed[:16] == b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    pos, blocks, out = 16, 0, b""
    while pos < len(packed):
        (length,) = struct.unpack_from(">i", packed, pos)
        out += bytes(cramjam.snappy.decompress_raw(packed[pos + 4 : pos + 4 + length]))
        pos += 4 + length
        blocks += 1
    assert out == data
    assert blocks == 4


def test_snappy_reads_raw_blocks():
    raw = bytes(cramjam.snappy.compress_raw(LOG_LINES))
    assert decompress(SNAPPY, raw, len(LOG_LINES)) == LOG_LINES
    with pytest.raises(DecompressionLimitError):
        decompress(SNAPPY, raw, len(LOG_LINES) - 1)


def test_snappy_ignores_xerial_version_fields():
    # Some producers (redpanda) write version and compat little-endian.
    packed = compress(SNAPPY, LOG_LINES)
    swapped = packed[:8] + struct.pack("<ii", 1, 1) + packed[16:]
    assert decompress(SNAPPY, swapped, MB) == LOG_LINES


def test_snappy_xerial_with_no_blocks_is_empty():
    assert decompress(SNAPPY, compression.XERIAL_HEADER, MB) == b""


@pytest.mark.parametrize(
    "tail",
    [b"\x00\x00", struct.pack(">i", -5) + b"abc", struct.pack(">i", 100) + b"abc", struct.pack(">i", 3) + b"\xff\xff\xff"],
    ids=["cut length", "negative length", "length past end", "bad block"],
)
def test_snappy_corrupt_xerial(tail):
    with pytest.raises(CorruptRecordError):
        decompress(SNAPPY, compression.XERIAL_HEADER + tail, MB)


def test_lz4_writes_one_frame_with_independent_blocks():
    packed = compress(LZ4, LOG_LINES)
    assert packed[:4] == b"\x04\x22\x4d\x18"
    info = lz4.frame.get_frame_info(packed)
    assert info["block_linked"] is False
    assert lz4.frame.decompress(packed) == LOG_LINES


@pytest.mark.parametrize("options", [{}, {"store_size": False}, {"block_linked": True, "content_checksum": True}])
def test_lz4_reads_other_frame_options(options):
    packed = lz4.frame.compress(LOG_LINES, **options)
    assert decompress(LZ4, packed, len(LOG_LINES)) == LOG_LINES
    with pytest.raises(DecompressionLimitError):
        decompress(LZ4, packed, len(LOG_LINES) - 1)


def test_lz4_reads_concatenated_frames():
    packed = compress(LZ4, b"first ") + compress(LZ4, b"second")
    assert decompress(LZ4, packed, MB) == b"first second"


def test_zstd_is_one_frame_at_level_3():
    packed = compress(ZSTD, LOG_LINES)
    assert packed[:4] == b"\x28\xb5\x2f\xfd"
    assert packed == zstandard.ZstdCompressor(level=3).compress(LOG_LINES)
    assert compress(ZSTD, LOG_LINES, level=19) == zstandard.ZstdCompressor(level=19).compress(LOG_LINES)


def test_zstd_reads_streamed_frames_without_content_size():
    # Kafka's Java producer streams, so its frames carry no content size.
    packed = zstandard.ZstdCompressor(write_content_size=False).compress(LOG_LINES)
    assert zstandard.frame_content_size(packed) == -1
    assert decompress(ZSTD, packed, len(LOG_LINES)) == LOG_LINES
    with pytest.raises(DecompressionLimitError):
        decompress(ZSTD, packed, len(LOG_LINES) - 1)


def test_zstd_reads_concatenated_frames():
    packed = compress(ZSTD, b"first ") + compress(ZSTD, b"second")
    assert decompress(ZSTD, packed, MB) == b"first second"
    with pytest.raises(DecompressionLimitError):
        decompress(ZSTD, packed, 11)


def test_zstd_frame_lying_about_its_size_is_corrupt():
    packed = bytearray(compress(ZSTD, bytes(100)))
    packed[5] = 50  # single-segment frame: the content size byte follows the descriptor
    with pytest.raises(CorruptRecordError):
        decompress(ZSTD, bytes(packed), MB)


@pytest.mark.parametrize("level", [1, 9])
def test_levels(level):
    for codec in (GZIP, LZ4, ZSTD):
        assert decompress(codec, compress(codec, LOG_LINES, level=level), MB) == LOG_LINES


# ---------------------------------------------------------------- hostile input


def _zstd_bomb(size: int) -> bytes:
    stream = zstandard.ZstdCompressor(level=3).compressobj()
    chunk = bytes(MB)
    return b"".join([stream.compress(chunk) for _ in range(size // MB)] + [stream.flush()])


def _gzip_bomb(size: int) -> bytes:
    stream = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MB)
    return b"".join([stream.compress(chunk) for _ in range(size // MB)] + [stream.flush()])


def _lz4_bomb(size: int) -> bytes:
    stream = lz4.frame.LZ4FrameCompressor(block_linked=False)
    chunk = bytes(MB)
    return b"".join([stream.begin()] + [stream.compress(chunk) for _ in range(size // MB)] + [stream.flush()])


def _snappy_bomb(size: int) -> bytes:
    block = bytes(cramjam.snappy.compress_raw(bytes(compression.XERIAL_BLOCK_SIZE)))
    framed = struct.pack(">i", len(block)) + block
    return compression.XERIAL_HEADER + framed * (size // compression.XERIAL_BLOCK_SIZE)


BOMBS = {
    "zstd streamed": (ZSTD, lambda: _zstd_bomb(100 * MB)),
    "zstd with content size": (ZSTD, lambda: zstandard.ZstdCompressor().compress(bytes(100 * MB))),
    "gzip": (GZIP, lambda: _gzip_bomb(100 * MB)),
    "lz4": (LZ4, lambda: _lz4_bomb(100 * MB)),
    "snappy": (SNAPPY, lambda: _snappy_bomb(100 * MB)),
}


@pytest.mark.parametrize("name", BOMBS)
def test_bomb_is_refused_without_inflating(name):
    codec, make = BOMBS[name]
    bomb = make()
    assert len(bomb) < 5 * MB
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionLimitError):
            decompress(codec, bomb, MB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MiB while refusing a 100 MiB bomb"


def test_small_input_does_not_allocate_the_limit():
    packed = {codec: compress(codec, b"x" * 1000) for codec in COMPRESSED}
    packed[LZ4 + 10] = lz4.frame.compress(b"x" * 1000, store_size=False)
    packed[ZSTD + 10] = zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 1000)
    for codec, data in packed.items():
        tracemalloc.start()
        try:
            assert decompress(codec % 10, data, 64 * MB) == b"x" * 1000
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < MB, (codec, peak)


@pytest.mark.parametrize("codec", COMPRESSED, ids=compression.CODEC_NAMES.get)
@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"garbage" * 10, bytes((i * 73 + 41) % 256 for i in range(64))],
    ids=["empty", "one byte", "text", "noise"],
)
def test_garbage_raises_corrupt_record_error(codec, data):
    with pytest.raises(CorruptRecordError):
        decompress(codec, data, MB)


@pytest.mark.parametrize("codec", COMPRESSED, ids=compression.CODEC_NAMES.get)
def test_truncated_stream_raises_corrupt_record_error(codec):
    packed = compress(codec, LOG_LINES)
    for cut in (len(packed) // 2, len(packed) - 1):
        with pytest.raises(CorruptRecordError):
            decompress(codec, packed[:cut], 64 * MB)


@settings(max_examples=300, deadline=None)
@given(codec=st.sampled_from(COMPRESSED), data=st.binary(max_size=200), flip=st.integers(0, 10_000))
def test_arbitrary_or_mutated_input_raises_only_corrupt_record_error(codec, data, flip):
    candidates = [data, compress(codec, data)]
    mutated = bytearray(candidates[1])
    mutated[flip % len(mutated)] ^= 1 << (flip % 8)
    candidates.append(bytes(mutated))
    for candidate in candidates:
        try:
            out = decompress(codec, candidate, 10_000)
        except CorruptRecordError:
            continue
        assert len(out) <= 10_000


# ---------------------------------------------------------------- codecs we cannot handle


@pytest.mark.parametrize("codec", [5, 6, 7, -1, 99])
def test_unknown_codec(codec):
    with pytest.raises(UnsupportedCompression):
        compress(codec, b"data")
    with pytest.raises(UnsupportedCompression):
        decompress(codec, b"data", MB)


@pytest.mark.parametrize(
    "codec, attribute", [(ZSTD, "_zstd"), (LZ4, "_lz4"), (SNAPPY, "_cramjam")], ids=["zstd", "lz4", "snappy"]
)
def test_missing_library(monkeypatch, codec, attribute):
    packed = compress(codec, b"data")
    monkeypatch.setattr(compression, attribute, None)
    assert not compression.is_available(codec)
    with pytest.raises(UnsupportedCompression, match="not installed"):
        compress(codec, b"data")
    with pytest.raises(UnsupportedCompression):
        decompress(codec, packed, MB)


def test_unsupported_compression_carries_kafka_code():
    assert UnsupportedCompression.code == 76


# ---------------------------------------------------------------- reuse across calls and threads


def test_zstd_compressor_is_reused_per_thread_and_level():
    first = compression._zstd_compressor(3)
    assert compression._zstd_compressor(3) is first
    assert compression._zstd_compressor(5) is not first
    other = []
    thread = threading.Thread(target=lambda: other.append(compression._zstd_compressor(3)))
    thread.start()
    thread.join()
    assert other[0] is not first


def test_threads_compress_concurrently():
    errors = []

    def work(seed: int):
        try:
            for i in range(200):
                data = LOG_LINES[seed * 100 + i :][:5000]
                for codec in COMPRESSED:
                    assert decompress(codec, compress(codec, data), MB) == data
        except Exception as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
